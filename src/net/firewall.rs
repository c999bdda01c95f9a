//! The PortForwarder's rules for one container: what goes into its own regular chains
//! `<container>-{pre,dnat,post,snat}` in hydra's `table inet hydra`. The shared base chains and
//! the verdict maps that lead packets of a container's links and host ports into these chains
//! are in `nft_table`.
//!
//! Per process link `V` (host end of its veth) the chains say:
//! - `-pre` (reached from filter prerouting −150 by `iifname`, after conntrack, before DNAT):
//!   count and pass replies of mapped connections (untracked ones: to the socket redirect's
//!   sockets); drop packets from `V` to 127.0.0.0/8 (route_localnet is on for `V`) or with a
//!   source other than the process's own address; let other replies through; new connections
//!   from `V` only with `egress: allow`, and never towards another process's subnet.
//! - `-dnat` (reached from nat prerouting and nat output by protocol and host port, for local
//!   destinations): DNAT to the process (spread over the instances of a `count > 1` process),
//!   counting new connections.
//! - `-post` (reached from filter postrouting by `oifname`): count mapped traffic into `V` (the
//!   socket redirect's, DNAT'd flows, the host's own) and let it through, with replies; drop
//!   everything else into `V`, so even the host reaches only the mapped ports.
//! - `-snat` (reached from nat postrouting by `oifname`/`iifname`): masquerade 127.0.0.0/8
//!   clients into `V`, and egress traffic.
//!
//! Two table-wide rules at the raw priority, before connection tracking, untrack the socket
//! redirect's connections (`raw_out`, `raw_pre`; see `redirect`).

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::nft_expr::{rule, spread_map, Dir, RuleText};
use super::nft_wire::{Change, CmpOp};
use super::pool::{Pool, Subnet, LINK_PREFIX};
use super::redirect::MARK as REDIRECT_MARK;
use crate::config::Protocol;

/// hydra's table.
pub const TABLE: &str = "hydra";

#[derive(Debug, Error)]
pub enum FirewallError {
    /// The kernel refused a transaction: `step` is the change it refused (or the stage).
    #[error("the kernel refused the {what} rules: {step}: {}", errno.desc())]
    Refused {
        what: &'static str,
        step: String,
        errno: nix::errno::Errno,
    },
    #[error("talking to nf_tables: {0}")]
    Netlink(std::io::Error),
}

/// One virtual process's link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The virtual process (`web.0`).
    pub process: String,
    pub subnet: Subnet,
    /// `egress: allow`: it may open connections to the host and beyond.
    pub egress: bool,
}

/// One port mapping: host port → `port` of the endpoints `targets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forward {
    pub protocol: Protocol,
    /// Only this host address (`0.0.0.0`: every IPv4 one, `::`: every IPv6 one); every local
    /// address of both families when `None`. The firewall serves IPv4; IPv6 is served by
    /// hydra's own forwarder (`userspace`), as the process's link is IPv4 only.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub port: u16,
    /// The YAML process (`web`), for display.
    pub process: String,
    /// The instances of `process`, as process indices in plan order (which are the endpoints'
    /// indices as root; rootless, the userspace forwarder's helper slots).
    pub targets: Vec<usize>,
}

impl Forward {
    /// Whether the firewall serves it (at least in part): every mapping but an IPv6-only one.
    pub fn in_kernel(&self) -> bool {
        !matches!(self.host_ip, Some(IpAddr::V6(_)))
    }
}

/// Everything the firewall needs to know about one container's network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub container: String,
    pub pool: String,
    pub endpoints: Vec<Endpoint>,
    pub forwards: Vec<Forward>,
    /// Internal networks (`networks:`), each on a bridge of its own.
    #[serde(default)]
    pub internal: Vec<super::internal::InternalNet>,
    /// Rootless: the mappings are served by hydra itself (`userspace`), not by nftables.
    #[serde(default)]
    pub userspace: bool,
}

impl Network {
    /// Whether it has rules in hydra's nftables table (internal networks need none).
    pub fn uses_firewall(&self) -> bool {
        !self.endpoints.is_empty()
    }
}

/// The roles of a container's chains.
pub const ROLES: [&str; 4] = ["pre", "dnat", "post", "snat"];

/// The name of one of a container's chains.
pub fn chain_name(container: &str, role: &str) -> String {
    format!("{container}-{role}")
}

/// The names of `container`'s chains, in the order of [`ROLES`].
pub fn chain_names(container: &str) -> Vec<String> {
    ROLES
        .iter()
        .map(|role| chain_name(container, role))
        .collect()
}

/// Whether `chain` is one of `container`'s chains (names may contain `-`, roles do not).
pub fn is_chain_of(container: &str, chain: &str) -> bool {
    ROLES
        .iter()
        .any(|role| chain == chain_name(container, role))
}

/// The counter of the first packets of the host's own connections to a mapped port (each is a
/// new connection and a packet in).
pub const LOCAL_NEW: &str = "local";

/// Rule comments that `hydra ports` reads the counters by: `m<index> <what>`.
pub fn counter_comment(forward: usize, what: &str) -> String {
    format!("m{forward} {what}")
}

/// `raw_out` (output, before connection tracking): the socket redirect's connections, whose
/// sockets it marked, are not tracked: their packets go as a direct connection's would.
pub fn untrack_redirected_out(chain: &str) -> super::nft_wire::Rule {
    rule(chain).mark(REDIRECT_MARK).notrack()
}

/// `raw_pre` (prerouting, before connection tracking): nor are their replies, coming in from a
/// link to a socket with the mark (the kernel looks the socket up by the packet's addresses; a
/// packet to any other socket, a listener included, stays tracked and meets the firewall).
pub fn untrack_redirected_in(chain: &str) -> super::nft_wire::Rule {
    rule(chain)
        .l4proto(Protocol::Tcp)
        .iifname_prefix(LINK_PREFIX)
        .socket_mark(REDIRECT_MARK)
        .notrack()
}

/// 127.0.0.0/8.
const LOOPBACK: (Ipv4Addr, u8) = (Ipv4Addr::new(127, 0, 0, 0), 8);

// ---- the rules ----------------------------------------------------------------------------

/// Collects a container's rules chain by chain.
struct Rules<'n> {
    net: &'n Network,
    pool: Option<Pool>,
    out: Vec<Change>,
    /// The transaction id of the next anonymous map.
    next_map_id: u32,
}

impl Rules<'_> {
    fn chain(&self, role: &str) -> RuleText {
        rule(chain_name(&self.net.container, role))
    }

    fn push(&mut self, r: super::nft_wire::Rule) {
        self.out.push(Change::AddRule(r));
    }

    /// The forwards (with their index) that reach endpoint `e`.
    fn forwards_to(&self, e: usize) -> Vec<(usize, Forward)> {
        self.net
            .forwards
            .iter()
            .enumerate()
            .filter(|(_, f)| f.in_kernel() && f.targets.contains(&e))
            .map(|(i, f)| (i, f.clone()))
            .collect()
    }

    /// The packets of mapping `f` to endpoint `e`'s address and port (`Dir::Dst`: into its
    /// link, in `-post`) or from them (`Dir::Src`: out of it, in `-pre`).
    fn mapped(&self, e: usize, f: &Forward, dir: Dir) -> RuleText {
        let subnet = self.net.endpoints[e].subnet;
        let veth = subnet.veth();
        let start = match dir {
            Dir::Dst => self.chain("post").oifname(CmpOp::Eq, &veth),
            Dir::Src => self.chain("pre").iifname(CmpOp::Eq, &veth),
        };
        start
            .ip(dir, CmpOp::Eq, subnet.guest())
            .port(f.protocol, dir, f.port)
    }

    /// Counts and lets out the replies of endpoint `e`'s mappings (`-pre`).
    fn count_replies(&mut self, e: usize) {
        for (i, f) in self.forwards_to(e) {
            let mapped = self.mapped(e, &f, Dir::Src);
            if f.protocol == Protocol::Tcp {
                // Untracked only by `raw_pre`: to a socket the redirect connected here.
                let r = mapped.clone().untracked().counter();
                self.push(r.comment(counter_comment(i, "out")).accept());
            }
            // Every flow to the mapped port was let in by `count_mapped_in`'s rules, so any
            // reply from it is one of the mapping's.
            let r = mapped.ct_direction(true).counter();
            self.push(r.comment(counter_comment(i, "out")).accept());
        }
    }

    /// Counts and lets in the packets of endpoint `e`'s mappings (`-post`): the socket
    /// redirect's (untracked), a flow the kernel DNAT'd, or a TCP connection the host itself
    /// opened to the process's address and port (the host reaches the mapped port at 127.0.0.1
    /// anyway). A connection's first packet counts as `local` (new and in), the rest as `in`.
    fn count_mapped_in(&mut self, e: usize) {
        for (i, f) in self.forwards_to(e) {
            let mapped = self.mapped(e, &f, Dir::Dst);
            let tcp = f.protocol == Protocol::Tcp;
            if tcp {
                // The socket redirect's (untracked) first: with local clients, the bulk.
                let first = mapped.clone().untracked().tcp_syn().counter();
                self.push(first.comment(counter_comment(i, LOCAL_NEW)).accept());
                let rest = mapped.clone().untracked().counter();
                self.push(rest.comment(counter_comment(i, "in")).accept());
            }
            let dnat = mapped.clone().ct_status_dnat().counter();
            self.push(dnat.comment(counter_comment(i, "in")).accept());
            if !tcp {
                continue;
            }
            // The host's own connections that the redirect did not untrack.
            let opened = mapped.clone().ct_new().from_host().counter();
            self.push(opened.comment(counter_comment(i, LOCAL_NEW)).accept());
            let rest = mapped.established().ct_direction(false).counter();
            self.push(rest.comment(counter_comment(i, "in")).accept());
        }
    }

    fn leaving_process(&mut self, e: usize) {
        let endpoint = self.net.endpoints[e].clone();
        let veth = endpoint.subnet.veth();
        let guest = endpoint.subnet.guest();
        // Replies of mapped connections first: the bulk of the traffic stops here. Never a
        // packet to 127.0.0.0/8: a flow from there into the link is masqueraded, so its reply
        // direction is addressed to the host end of the link.
        self.count_replies(e);
        let from_veth = || self.chain("pre").iifname(CmpOp::Eq, &veth);
        let mut rules = vec![
            from_veth().ip_in(Dir::Dst, LOOPBACK.0, LOOPBACK.1).drop(),
            from_veth().ip(Dir::Src, CmpOp::Neq, guest).drop(),
            from_veth().established().accept(),
        ];
        if endpoint.egress {
            // The host itself is fine (its end of this link is in the pool too); other
            // processes' links are not.
            let host = endpoint.subnet.host();
            rules.push(from_veth().ip(Dir::Dst, CmpOp::Eq, host).accept());
            if let Some(pool) = self.pool {
                rules.push(
                    from_veth()
                        .ip_in(Dir::Dst, pool.network(), pool.prefix())
                        .drop(),
                );
            }
            rules.push(from_veth().accept());
            rules.push(
                self.chain("snat")
                    .ip(Dir::Src, CmpOp::Eq, guest)
                    .oifname(CmpOp::Neq, &veth)
                    .masquerade(),
            );
        } else {
            rules.push(from_veth().drop());
        }
        for r in rules {
            self.push(r);
        }
    }

    fn entering_process(&mut self, e: usize) {
        let endpoint = self.net.endpoints[e].clone();
        let veth = endpoint.subnet.veth();
        let forwards = self.forwards_to(e);
        self.count_mapped_in(e);
        let into_veth = || self.chain("post").oifname(CmpOp::Eq, &veth);
        let mut rules = vec![into_veth().established().accept(), into_veth().drop()];
        if !forwards.is_empty() {
            rules.push(
                self.chain("snat")
                    .oifname(CmpOp::Eq, &veth)
                    .ip_in(Dir::Src, LOOPBACK.0, LOOPBACK.1)
                    .masquerade(),
            );
        }
        for r in rules {
            self.push(r);
        }
    }

    fn dnat(&mut self, i: usize, f: &Forward) {
        let guests: Vec<Ipv4Addr> = f
            .targets
            .iter()
            .map(|&t| self.net.endpoints[t].subnet.guest())
            .collect();
        // An IPv6 host address is the userspace forwarder's; IPv6 packets to the host port pass
        // on to its listener.
        let mut r = self.chain("dnat").nfproto_ipv4();
        match f.host_ip {
            Some(IpAddr::V4(ip)) if !ip.is_unspecified() => {
                r = r.ip(Dir::Dst, CmpOp::Eq, ip);
            }
            _ => {}
        }
        let r = r
            .port(f.protocol, Dir::Dst, f.host_port)
            .counter()
            .comment(counter_comment(i, "new"));
        let r = match guests.as_slice() {
            [one] => r.dnat(*one, f.port),
            many => {
                let id = self.next_map_id;
                self.next_map_id += 1;
                self.out.extend(spread_map(id, many));
                r.dnat_spread(id, many.len() as u32, f.port)
            }
        };
        self.push(r);
    }
}

/// Every rule of a container's chains, in order, with the anonymous map a spreading DNAT rule
/// looks its address up in just before it (transaction ids from `first_map_id` on).
pub fn container_rules(net: &Network, first_map_id: u32) -> Vec<Change> {
    let mut rules = Rules {
        net,
        pool: Pool::parse(&net.pool).ok(),
        out: Vec::new(),
        next_map_id: first_map_id,
    };
    for e in 0..net.endpoints.len() {
        rules.leaving_process(e);
        rules.entering_process(e);
    }
    for (i, f) in net
        .forwards
        .iter()
        .enumerate()
        .filter(|(_, f)| f.in_kernel())
    {
        rules.dnat(i, f);
    }
    rules.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_belong_to_exactly_one_container() {
        assert!(is_chain_of("my-app", "my-app-pre"));
        assert!(is_chain_of("my", "my-post"));
        assert!(!is_chain_of("my", "my-app-pre"));
        assert!(
            !is_chain_of("my-app", "my-app-out"),
            "out is a base chain, not a container's"
        );
    }
}
