//! The PortForwarder's rules for one container: what goes into its own regular chains
//! `<container>-{pre,dnat,post,snat}` in hydra's `table inet hydra`. The shared base chains and
//! the verdict maps that lead packets of a container's links and host ports into these chains
//! are in `nft_table`.
//!
//! Per process link `V` (host end of its veth) the chains say:
//! - `-pre` (reached from filter prerouting −150 by `iifname`, after conntrack, before DNAT):
//!   count and pass replies of mapped connections; drop packets from `V` to 127.0.0.0/8
//!   (route_localnet is on for `V`) or with a source other than the process's own address; let
//!   other replies through; new connections
//!   from `V` only with `egress: allow`, and never towards another process's subnet.
//! - `-dnat` (reached from nat prerouting and nat output by protocol and host port, for local
//!   destinations): DNAT to the process (spread over the instances of a `count > 1` process),
//!   counting new connections.
//! - `-post` (reached from filter postrouting by `oifname`): count mapped traffic into `V` and
//!   let it through, with replies; drop everything else into `V`, so even the host reaches only
//!   the mapped ports.
//! - `-snat` (reached from nat postrouting by `oifname`/`iifname`): masquerade 127.0.0.0/8
//!   clients into `V`, and egress traffic.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

use nftables::expr::{Expression, Map, MetaKey, NamedExpression, NgMode, Numgen, SetItem};
use nftables::schema::{NfListObject, Rule};
use nftables::stmt::{Operator, Statement, NAT};
use nftables::types::NfFamily;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::nft_expr::{
    counter, ct_in, eq, established, field, iif, matches, meta, oif, port, prefix, text,
};
use super::pool::{Pool, Subnet};
use crate::config::Protocol;

/// hydra's table.
pub const TABLE: &str = "hydra";

#[derive(Debug, Error)]
pub enum FirewallError {
    #[error("the nft program is missing: install the nftables package (apt-get install nftables)")]
    NoNft,
    #[error("nft refused the {what} rules: {message}")]
    Refused { what: &'static str, message: String },
    #[error("reading hydra's nftables rules: {0}")]
    List(String),
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

/// Whether `chain` is one of `container`'s chains (names may contain `-`, roles do not).
pub fn is_chain_of(container: &str, chain: &str) -> bool {
    ROLES
        .iter()
        .any(|role| chain == chain_name(container, role))
}

/// Rule comments that `hydra ports` reads the counters by: `m<index> <what>`.
pub fn counter_comment(forward: usize, what: &str) -> String {
    format!("m{forward} {what}")
}

/// 127.0.0.0/8.
fn loopback_net() -> Expression<'static> {
    prefix(Ipv4Addr::new(127, 0, 0, 0), 8)
}

// ---- the rules ----------------------------------------------------------------------------

/// Collects a container's rules chain by chain.
struct Rules<'n> {
    net: &'n Network,
    pool: Option<Pool>,
    out: Vec<NfListObject<'static>>,
}

impl Rules<'_> {
    fn rule(&mut self, role: &str, expr: Vec<Statement<'static>>, comment: Option<String>) {
        self.out.push(NfListObject::Rule(Rule {
            family: NfFamily::INet,
            table: Cow::Borrowed(TABLE),
            chain: Cow::Owned(chain_name(&self.net.container, role)),
            expr: Cow::Owned(expr),
            comment: comment.map(Cow::Owned),
            ..Rule::default()
        }));
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

    /// Counts and lets through the packets of the mappings of endpoint `e` in one direction:
    /// into its link (`inbound`: to its address and port, in `-post`) or out of it (replies
    /// from them, in `-pre`). Only flows the kernel DNAT'd match.
    fn count_mapped(&mut self, e: usize, inbound: bool) {
        let subnet = self.net.endpoints[e].subnet;
        let (role, link, addr, which, what) = match inbound {
            true => ("post", oif(&subnet.veth()), "daddr", "dport", "in"),
            false => ("pre", iif(&subnet.veth()), "saddr", "sport", "out"),
        };
        for (i, f) in self.forwards_to(e) {
            self.rule(
                role,
                vec![
                    link.clone(),
                    eq(field("ip", addr), text(subnet.guest().to_string())),
                    port(f.protocol, which, f.port),
                    ct_in("status", &["dnat"]),
                    counter(),
                    Statement::Accept(None),
                ],
                Some(counter_comment(i, what)),
            );
        }
    }

    fn leaving_process(&mut self, e: usize) {
        let endpoint = self.net.endpoints[e].clone();
        let veth = endpoint.subnet.veth();
        let guest = endpoint.subnet.guest();
        // Replies of mapped connections first: the bulk of the traffic stops here. Only a
        // flow the kernel DNAT'd to this process matches (so never a packet to 127.0.0.0/8,
        // whose reply direction would be addressed to the host end of the link).
        self.count_mapped(e, false);
        self.rule(
            "pre",
            vec![
                iif(&veth),
                eq(field("ip", "daddr"), loopback_net()),
                Statement::Drop(None),
            ],
            None,
        );
        self.rule(
            "pre",
            vec![
                iif(&veth),
                matches(field("ip", "saddr"), Operator::NEQ, text(guest.to_string())),
                Statement::Drop(None),
            ],
            None,
        );
        self.rule(
            "pre",
            vec![iif(&veth), established(), Statement::Accept(None)],
            None,
        );
        if endpoint.egress {
            // The host itself is fine (its end of this link is in the pool too); other
            // processes' links are not.
            self.rule(
                "pre",
                vec![
                    iif(&veth),
                    eq(
                        field("ip", "daddr"),
                        text(endpoint.subnet.host().to_string()),
                    ),
                    Statement::Accept(None),
                ],
                None,
            );
            if let Some(pool) = self.pool {
                self.rule(
                    "pre",
                    vec![
                        iif(&veth),
                        eq(
                            field("ip", "daddr"),
                            prefix(pool.network(), pool.prefix().into()),
                        ),
                        Statement::Drop(None),
                    ],
                    None,
                );
            }
            self.rule("pre", vec![iif(&veth), Statement::Accept(None)], None);
            self.rule(
                "snat",
                vec![
                    eq(field("ip", "saddr"), text(guest.to_string())),
                    matches(meta(MetaKey::Oifname), Operator::NEQ, text(veth.clone())),
                    Statement::Masquerade(None),
                ],
                None,
            );
        } else {
            self.rule("pre", vec![iif(&veth), Statement::Drop(None)], None);
        }
    }

    fn entering_process(&mut self, e: usize) {
        let endpoint = self.net.endpoints[e].clone();
        let veth = endpoint.subnet.veth();
        let forwards = self.forwards_to(e);
        self.count_mapped(e, true);
        self.rule(
            "post",
            vec![oif(&veth), established(), Statement::Accept(None)],
            None,
        );
        self.rule("post", vec![oif(&veth), Statement::Drop(None)], None);
        if !forwards.is_empty() {
            self.rule(
                "snat",
                vec![
                    oif(&veth),
                    eq(field("ip", "saddr"), loopback_net()),
                    Statement::Masquerade(None),
                ],
                None,
            );
        }
    }

    fn dnat(&mut self, i: usize, f: &Forward) {
        let guests: Vec<Ipv4Addr> = f
            .targets
            .iter()
            .map(|&t| self.net.endpoints[t].subnet.guest())
            .collect();
        let addr = match guests.as_slice() {
            [one] => text(one.to_string()),
            many => Expression::Named(NamedExpression::Map(Box::new(Map {
                key: Expression::Named(NamedExpression::Numgen(Numgen {
                    mode: NgMode::Inc,
                    ng_mod: many.len() as u32,
                    offset: None,
                })),
                data: Expression::Named(NamedExpression::Set(
                    many.iter()
                        .enumerate()
                        .map(|(n, g)| {
                            SetItem::Mapping(Expression::Number(n as u32), text(g.to_string()))
                        })
                        .collect(),
                )),
            }))),
        };
        // An IPv6 host address is the userspace forwarder's; IPv6 packets to the host port pass
        // on to its listener.
        let mut expr = vec![eq(meta(MetaKey::Nfproto), text("ipv4"))];
        match f.host_ip {
            Some(IpAddr::V4(ip)) if !ip.is_unspecified() => {
                expr.push(eq(field("ip", "daddr"), text(ip.to_string())));
            }
            _ => {}
        }
        expr.push(port(f.protocol, "dport", f.host_port));
        expr.push(counter());
        expr.push(Statement::DNAT(Some(NAT {
            addr: Some(addr),
            family: Some(nftables::stmt::NATFamily::IP),
            port: Some(Expression::Number(f.port.into())),
            flags: None,
        })));
        self.rule("dnat", expr, Some(counter_comment(i, "new")));
    }
}

/// Every rule of a container's chains, in order.
pub fn container_rules(net: &Network) -> Vec<NfListObject<'static>> {
    let mut rules = Rules {
        net,
        pool: Pool::parse(&net.pool).ok(),
        out: Vec::new(),
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
