//! hydra's `table inet hydra` as the kernel holds it: five shared base chains, one per hook,
//! each a single verdict-map lookup that sends a packet to the chains of the container it
//! concerns, found by the interface it comes in on or goes out of, or by the protocol and host
//! port it is addressed to; and two at the raw priority, before connection tracking, with one
//! rule each for all containers (the socket redirect's connections go untracked). A container
//! adds its four regular chains and its map elements in one transaction and removes them in one;
//! only the first container creates the base chains (hook registration is the slow part of an
//! nftables change) and the last one deletes the table.
//!
//! This module says what the transactions change (`nft_wire::Change`s); `nft_batch` sends them.

use super::firewall::{
    chain_name, container_rules, untrack_redirected_in, untrack_redirected_out, Network, ROLES,
};
use super::nft_wire::{
    datatype, uapi, Change, Data, Expr, Hook, Key, Map, MetaKey, Rule, Verdict, REG1, REG32_01,
    VERDICT,
};
use crate::config::Protocol;

/// A shared verdict map: its name, key and the packet fields looked up in it.
struct Lookup {
    map: &'static str,
    key: LookupKey,
}

#[derive(Clone, Copy, PartialEq)]
enum LookupKey {
    In,
    Out,
    ProtoPort,
}

const LOOKUPS: [Lookup; 5] = [
    Lookup {
        map: "pre_if",
        key: LookupKey::In,
    },
    Lookup {
        map: "post_if",
        key: LookupKey::Out,
    },
    Lookup {
        map: "snat_out",
        key: LookupKey::Out,
    },
    Lookup {
        map: "snat_in",
        key: LookupKey::In,
    },
    Lookup {
        map: "dnat_ports",
        key: LookupKey::ProtoPort,
    },
];

/// nft's notes on an `ifname : verdict` map (key in host order, not an interval map) and on
/// an `inet_proto . inet_service : verdict` one (the concatenation's types), as nft 1.0.6
/// writes them, so `nft list` prints the keys as names and `tcp . 18080`.
const IFNAME_USERDATA: [u8; 18] = [0, 4, 1, 0, 0, 0, 1, 4, 0, 0, 0, 0, 6, 4, 0, 0, 0, 0];
const PROTO_PORT_USERDATA: [u8; 28] = [
    0, 4, 0, 0, 0, 0, 1, 4, 0, 0, 0, 0, 3, 8, 0, 4, 13, 0, 0, 0, 1, 0, 6, 4, 0, 0, 0, 0,
];

impl Lookup {
    fn map(&self, id: u32) -> Map {
        let (key_type, key_len, userdata) = match self.key {
            LookupKey::ProtoPort => (datatype::PROTO_PORT, 8, PROTO_PORT_USERDATA.to_vec()),
            _ => (
                datatype::IFNAME,
                super::nft_wire::IFNAMSIZ as u32,
                IFNAME_USERDATA.to_vec(),
            ),
        };
        Map {
            name: self.map.to_string(),
            anonymous: false,
            id,
            key_type,
            key_len,
            data_type: uapi::NFT_DATA_VERDICT,
            data_len: 0,
            size: None,
            userdata,
        }
    }

    /// Loads the key into register 1 (a concatenation's second field into the next 4 bytes).
    fn load(&self) -> Vec<Expr> {
        let meta = |key| Expr::Meta { key, dreg: REG1 };
        match self.key {
            LookupKey::In => vec![meta(MetaKey::Iifname)],
            LookupKey::Out => vec![meta(MetaKey::Oifname)],
            LookupKey::ProtoPort => vec![
                meta(MetaKey::L4proto),
                Expr::Payload {
                    base: super::nft_wire::Base::Transport,
                    offset: 2,
                    len: 2,
                    dreg: REG32_01,
                },
            ],
        }
    }
}

/// One shared base chain: its hook, and the maps it looks packets up in, in order.
struct BaseChain {
    name: &'static str,
    hook: Hook,
    maps: &'static [&'static str],
    /// Only packets addressed to the host itself (`fib daddr type local`).
    local_only: bool,
    /// A rule of its own, for all containers alike, instead of map lookups.
    fixed: Option<fn(&str) -> Rule>,
}

const BASE_CHAINS: [BaseChain; 7] = [
    BaseChain {
        name: "raw_pre",
        hook: Hook {
            kind: "filter",
            hook: uapi::NF_INET_PRE_ROUTING,
            priority: -300,
        },
        maps: &[],
        local_only: false,
        fixed: Some(untrack_redirected_in),
    },
    BaseChain {
        name: "raw_out",
        hook: Hook {
            kind: "filter",
            hook: uapi::NF_INET_LOCAL_OUT,
            priority: -300,
        },
        maps: &[],
        local_only: false,
        fixed: Some(untrack_redirected_out),
    },
    BaseChain {
        name: "pre",
        hook: Hook {
            kind: "filter",
            hook: uapi::NF_INET_PRE_ROUTING,
            priority: -150,
        },
        maps: &["pre_if"],
        local_only: false,
        fixed: None,
    },
    BaseChain {
        name: "dnat",
        hook: Hook {
            kind: "nat",
            hook: uapi::NF_INET_PRE_ROUTING,
            priority: -100,
        },
        maps: &["dnat_ports"],
        local_only: true,
        fixed: None,
    },
    BaseChain {
        name: "out",
        hook: Hook {
            kind: "nat",
            hook: uapi::NF_INET_LOCAL_OUT,
            priority: -100,
        },
        maps: &["dnat_ports"],
        local_only: true,
        fixed: None,
    },
    BaseChain {
        name: "post",
        hook: Hook {
            kind: "filter",
            hook: uapi::NF_INET_POST_ROUTING,
            priority: 0,
        },
        maps: &["post_if"],
        local_only: false,
        fixed: None,
    },
    BaseChain {
        name: "snat",
        hook: Hook {
            kind: "nat",
            hook: uapi::NF_INET_POST_ROUTING,
            priority: 100,
        },
        maps: &["snat_out", "snat_in"],
        local_only: false,
        fixed: None,
    },
];

/// The transaction id of a named map: 1 to 5, as nft numbers them; a transaction that adds the
/// table names its maps by id as well as by name, as nft does. Anonymous maps come after.
fn map_id(map: &str) -> u32 {
    LOOKUPS.iter().position(|l| l.map == map).unwrap_or(0) as u32 + 1
}

/// The table, its maps, base chains and their lookup rules.
fn base_objects() -> Vec<Change> {
    let mut out = vec![Change::AddTable];
    for l in &LOOKUPS {
        out.push(Change::AddMap(l.map(map_id(l.map))));
    }
    for chain in &BASE_CHAINS {
        out.push(Change::AddChain {
            name: chain.name.to_string(),
            hook: Some(chain.hook),
        });
        if let Some(fixed) = chain.fixed {
            out.push(Change::AddRule(fixed(chain.name)));
        }
        for map in chain.maps {
            let Some(l) = LOOKUPS.iter().find(|l| l.map == *map) else {
                continue;
            };
            let mut exprs = Vec::new();
            if chain.local_only {
                exprs.extend(super::nft_expr::addr_type_local(false));
            }
            exprs.extend(l.load());
            exprs.push(Expr::Lookup {
                set: l.map.to_string(),
                set_id: Some(map_id(l.map)),
                sreg: REG1,
                dreg: VERDICT,
            });
            out.push(Change::AddRule(Rule {
                chain: chain.name.to_string(),
                exprs,
                comment: None,
            }));
        }
    }
    out
}

/// The map elements of a container: (map, key) → its chain of `role`.
fn elements(net: &Network) -> Vec<(&'static str, Key, &'static str)> {
    let mut out = Vec::new();
    for (i, e) in net.endpoints.iter().enumerate() {
        let veth = || Key::Ifname(e.subnet.veth());
        out.push(("pre_if", veth(), "pre"));
        out.push(("post_if", veth(), "post"));
        if net
            .forwards
            .iter()
            .any(|f| f.in_kernel() && f.targets.contains(&i))
        {
            out.push(("snat_out", veth(), "snat"));
        }
        if e.egress {
            out.push(("snat_in", veth(), "snat"));
        }
    }
    let mut ports: Vec<(Protocol, u16)> = net
        .forwards
        .iter()
        .filter(|f| f.in_kernel())
        .map(|f| (f.protocol, f.host_port))
        .collect();
    ports.sort_by_key(|&(p, n)| (p.name(), n));
    ports.dedup();
    for (protocol, number) in ports {
        out.push(("dnat_ports", Key::ProtoPort(protocol, number), "dnat"));
    }
    out
}

/// Installs a container: its chains, rules and map elements; the shared table first when
/// `table_exists` is false.
pub fn install(net: &Network, table_exists: bool) -> Vec<Change> {
    let mut out = if table_exists {
        Vec::new()
    } else {
        base_objects()
    };
    for role in ROLES {
        out.push(Change::AddChain {
            name: chain_name(&net.container, role),
            hook: None,
        });
    }
    out.extend(container_rules(net, LOOKUPS.len() as u32 + 1));
    for (map, key, role) in elements(net) {
        out.push(Change::AddElements {
            map: map.to_string(),
            set_id: (!table_exists).then(|| map_id(map)),
            elements: vec![(
                key,
                Data::Verdict(Verdict::Jump(chain_name(&net.container, role))),
            )],
        });
    }
    out
}

/// What `install` added for `net`, as independent parts: each map element alone, then each
/// chain flushed and deleted (a chain still jumped to cannot go, so elements come first).
/// Together they are one transaction; apart, a part that is already gone can be skipped.
pub fn removal(net: &Network) -> Vec<Vec<Change>> {
    let mut parts: Vec<Vec<Change>> = elements(net)
        .into_iter()
        .map(|(map, key, _)| {
            vec![Change::DeleteElement {
                map: map.to_string(),
                key,
            }]
        })
        .collect();
    for role in ROLES {
        let chain = chain_name(&net.container, role);
        parts.push(vec![
            Change::FlushChain(chain.clone()),
            Change::DeleteChain(chain),
        ]);
    }
    parts
}

/// Deletes hydra's whole table (the last container is gone).
pub fn remove_table() -> Vec<Change> {
    vec![Change::DeleteTable]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::net::firewall::{Endpoint, Forward};
    use crate::net::pool::Subnet;
    use std::net::{IpAddr, Ipv4Addr};

    pub(crate) fn sample() -> Network {
        let subnet = |n: u8| Subnet {
            network: Ipv4Addr::new(10, 231, 0, n),
        };
        Network {
            container: "my-app".to_string(),
            pool: "10.231.0.0/16".to_string(),
            endpoints: vec![
                Endpoint {
                    process: "web.0".into(),
                    subnet: subnet(0),
                    egress: false,
                },
                Endpoint {
                    process: "web.1".into(),
                    subnet: subnet(4),
                    egress: false,
                },
                Endpoint {
                    process: "api".into(),
                    subnet: subnet(8),
                    egress: true,
                },
            ],
            forwards: vec![
                Forward {
                    protocol: Protocol::Tcp,
                    host_ip: None,
                    host_port: 18080,
                    port: 8080,
                    process: "web".into(),
                    targets: vec![0, 1],
                },
                Forward {
                    protocol: Protocol::Udp,
                    host_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                    host_port: 15353,
                    port: 53,
                    process: "api".into(),
                    targets: vec![2],
                },
            ],
            internal: Vec::new(),
            userspace: false,
        }
    }

    fn rules(changes: &[Change]) -> Vec<&Rule> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::AddRule(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// The rules of `chain`, each as its expressions on one line (and its comment).
    fn rules_of(changes: &[Change], chain: &str) -> Vec<String> {
        rules(changes)
            .into_iter()
            .filter(|r| r.chain == chain)
            .map(|r| {
                let mut line = r.lines().join(" ");
                if let Some(c) = &r.comment {
                    line.push_str(&format!(" comment {c}"));
                }
                line
            })
            .collect()
    }

    /// `ip` addresses and interface names as they appear in expression lines.
    fn reg(addr: Ipv4Addr) -> String {
        format!("0x{:08x}", u32::from_ne_bytes(addr.octets()))
    }

    fn veth_word(n: u8) -> String {
        // "hy02b9c0" is the same for the three links; the third word holds "0N".
        format!("0x0000{:02x}30", b'0' + n)
    }

    /// The rules `nft --debug=netlink` listed for the JSON batch of the nft-based installer
    /// (tests/fixtures/nft/sample-install.netlink): (chain, expression lines, comment).
    fn from_nft() -> Vec<(String, Vec<String>, Option<String>)> {
        let text = include_str!("../../tests/fixtures/nft/sample-install.netlink");
        let mut out: Vec<(String, Vec<String>, Option<String>)> = Vec::new();
        let mut current: Option<(String, Vec<String>, Option<String>)> = None;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some(chain) = line.strip_prefix("inet hydra ") {
                out.extend(current.take());
                current = Some((chain.to_string(), Vec::new(), None));
            } else if let (Some(c), Some(expr)) = (current.as_mut(), line.strip_prefix("  [")) {
                c.1.push(format!("[{expr}"));
            } else if let (Some(c), Some(u)) =
                (current.as_mut(), line.strip_prefix("  userdata = { "))
            {
                // `\x00\x07m0 out\x00 }`: the comment between the length and the NUL.
                let comment = u.get(8..).and_then(|s| s.split("\\x00").next());
                c.2 = comment.map(str::to_string);
            } else {
                out.extend(current.take());
            }
        }
        out.extend(current);
        out
    }

    #[test]
    fn every_rule_lowers_to_the_expressions_nft_made_of_the_same_rules() {
        let ours: Vec<(String, Vec<String>, Option<String>)> = rules(&install(&sample(), false))
            .into_iter()
            .map(|r| (r.chain.clone(), r.lines(), r.comment.clone()))
            .collect();
        let theirs = from_nft();
        assert_eq!(ours.len(), theirs.len(), "{ours:#?}\n{theirs:#?}");
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert_eq!(a, b, "rule {i}");
        }
    }

    /// Every message of the first container's transaction is byte for byte the one nft sent for
    /// the JSON batch of the nft-based installer (tests/fixtures/nft/sample-install.mnl).
    #[test]
    fn the_whole_transaction_is_the_one_nft_sent() {
        let text = include_str!("../../tests/fixtures/nft/sample-install.mnl");
        let theirs: Vec<(u16, String)> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (kind, body) = l.split_once(' ').unwrap();
                (kind.parse().unwrap(), body.to_string())
            })
            .collect();
        let ours: Vec<(u16, String)> = install(&sample(), false)
            .iter()
            .map(|c| {
                let (kind, _, body) = c.encode("hydra");
                (kind, crate::net::nft_wire::mnl(&body))
            })
            .collect();
        assert_eq!(ours.len(), theirs.len());
        // One difference: libnftnl numbers the elements of one message 1, 2, ... where the uapi
        // says NFTA_LIST_ELEM (1) for each; the kernel reads them without looking at the type.
        let second_element = "<001c8002> <000c8001> <00080001> 01000000";
        let theirs: Vec<(u16, String)> = theirs
            .into_iter()
            .map(|(k, b)| {
                let uapi = second_element.replacen("<001c8002>", "<001c8001>", 1);
                (k, b.replace(second_element, &uapi))
            })
            .collect();
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert_eq!(a, b, "message {i}: {}", install(&sample(), false)[i]);
        }
    }

    #[test]
    fn the_first_container_creates_the_table_its_maps_and_seven_base_chains() {
        let first = install(&sample(), false);
        assert_eq!(first[0], Change::AddTable);
        let maps: Vec<&Map> = first
            .iter()
            .filter_map(|c| match c {
                Change::AddMap(m) if !m.anonymous => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(maps.len(), 5);
        assert!(maps.iter().all(|m| m.data_type == uapi::NFT_DATA_VERDICT));
        let base: Vec<(&String, &Hook)> = first
            .iter()
            .filter_map(|c| match c {
                Change::AddChain {
                    name,
                    hook: Some(h),
                } => Some((name, h)),
                _ => None,
            })
            .collect();
        assert_eq!(base.len(), 7);
        // Before connection tracking (-200) in both directions.
        for (name, hook) in [
            ("raw_pre", uapi::NF_INET_PRE_ROUTING),
            ("raw_out", uapi::NF_INET_LOCAL_OUT),
        ] {
            assert!(base
                .iter()
                .any(|(n, h)| *n == name && h.hook == hook && h.priority == -300));
            assert!(rules_of(&first, name)[0].ends_with("[ notrack ]"));
        }
        assert!(base.iter().any(|(n, h)| *n == "out"
            && h.hook == uapi::NF_INET_LOCAL_OUT
            && h.priority == -100
            && h.kind == "nat"));
        assert!(base.iter().any(|(n, h)| *n == "pre" && h.priority == -150));
        let dnat = rules_of(&first, "dnat");
        assert!(
            dnat[0].starts_with("[ fib daddr type => reg 1 ]")
                && dnat[0].ends_with("[ lookup reg 1 set dnat_ports dreg 0 ]"),
            "{dnat:?}"
        );
        // A later container adds only its own four regular chains.
        let later = install(&sample(), true);
        assert!(!later.contains(&Change::AddTable));
        let own: Vec<String> = later
            .iter()
            .filter_map(|c| match c {
                Change::AddChain { name, hook } => {
                    assert!(hook.is_none());
                    Some(name.clone())
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            own,
            ["my-app-pre", "my-app-dnat", "my-app-post", "my-app-snat"]
        );
    }

    #[test]
    fn a_mapping_of_two_instances_spreads_with_numgen() {
        let v = install(&sample(), true);
        let rules = rules_of(&v, "my-app-dnat");
        assert_eq!(rules.len(), 2, "{rules:?}");
        assert!(
            rules[0].contains("[ numgen reg 1 = inc mod 2 ] [ lookup reg 1 set __map%d dreg 1 ]")
        );
        // The anonymous map comes just before its rule, with the two addresses.
        let at = v
            .iter()
            .position(|c| matches!(c, Change::AddMap(m) if m.anonymous))
            .unwrap();
        let Change::AddElements {
            set_id: Some(_),
            elements,
            ..
        } = &v[at + 1]
        else {
            panic!("{:?}", v[at + 1]);
        };
        let values: Vec<&Data> = elements.iter().map(|(_, d)| d).collect();
        assert_eq!(
            values,
            [
                &Data::Value(vec![10, 231, 0, 2]),
                &Data::Value(vec![10, 231, 0, 6])
            ]
        );
        assert!(matches!(&v[at + 2], Change::AddRule(r) if r.chain == "my-app-dnat"));
        assert!(
            rules[1].contains(&format!("[ cmp eq reg 1 {} ]", reg(Ipv4Addr::LOCALHOST))),
            "host_ip is matched: {}",
            rules[1]
        );
        assert!(rules[1].contains("[ cmp eq reg 1 0x00000011 ]"), "udp");
    }

    #[test]
    fn an_ipv6_only_mapping_is_left_to_the_forwarder_and_dnat_is_ipv4_only() {
        let mut net = sample();
        net.forwards.push(Forward {
            protocol: Protocol::Tcp,
            host_ip: Some("::1".parse().unwrap()),
            host_port: 18443,
            port: 8443,
            process: "api".into(),
            targets: vec![2],
        });
        let v = install(&net, true);
        let rules = rules_of(&v, "my-app-dnat");
        assert_eq!(rules.len(), 2, "no DNAT for [::1]: {rules:?}");
        assert!(rules
            .iter()
            .all(|r| r.starts_with("[ meta load nfproto => reg 1 ] [ cmp eq reg 1 0x00000002 ]")));
        assert!(!v.iter().any(|c| c.to_string().contains("18443")));
    }

    #[test]
    fn processes_without_egress_cannot_open_connections_and_the_egress_one_not_into_the_pool() {
        let v = install(&sample(), true);
        let pre = rules_of(&v, "my-app-pre");
        let for_veth = |n: u8| -> Vec<String> {
            pre.iter()
                .filter(|r| r.contains(&veth_word(n)))
                .cloned()
                .collect()
        };
        let web0 = for_veth(0);
        for (rule, state) in web0[..2].iter().zip(["state", "direction"]) {
            assert!(
                rule.contains(&format!("[ ct load {state} => reg 1 ]"))
                    && rule.ends_with(
                        "[ counter pkts 0 bytes 0 ] [ immediate reg 0 accept ] comment m0 out"
                    ),
                "mapped replies first, untracked then tracked: {rule}"
            );
        }
        assert!(web0[2].contains("[ cmp eq reg 1 0x0000007f ] [ immediate reg 0 drop ]"));
        assert!(
            web0[3].contains(&format!(
                "[ cmp neq reg 1 {} ]",
                reg(Ipv4Addr::new(10, 231, 0, 2))
            )),
            "anti-spoofing: {}",
            web0[3]
        );
        assert!(
            web0.last().unwrap().ends_with("[ immediate reg 0 drop ]"),
            "{web0:?}"
        );
        let api = for_veth(2);
        assert!(
            api.iter().any(|r| r.contains(&format!(
                "[ cmp eq reg 1 {} ] [ immediate reg 0 accept ]",
                reg(Ipv4Addr::new(10, 231, 0, 9))
            ))),
            "its own host end: {api:?}"
        );
        assert!(api.iter().any(|r| r.contains(
            "[ payload load 2b @ network header + 16 => reg 1 ] [ cmp eq reg 1 0x0000e70a ] [ immediate reg 0 drop ]"
        )));
        assert!(
            api.last().unwrap().ends_with("[ immediate reg 0 accept ]"),
            "{api:?}"
        );
        let snat = rules_of(&v, "my-app-snat");
        assert!(snat
            .iter()
            .any(|r| r.contains(&reg(Ipv4Addr::new(10, 231, 0, 10)))
                && r.contains("[ cmp neq reg 1 0x32307968")
                && r.ends_with("[ masq ]")));
    }

    #[test]
    fn only_mapped_ports_enter_a_process_and_they_are_counted_with_comments() {
        let v = install(&sample(), true);
        let post = rules_of(&v, "my-app-post");
        let web1: Vec<_> = post.iter().filter(|r| r.contains(&veth_word(1))).collect();
        // Five for the mapped TCP port (the redirect's untracked first packets and the rest,
        // DNAT'd flows, the host's own tracked first packets and the rest), replies, the drop.
        assert_eq!(web1.len(), 7, "{web1:?}");
        let port =
            "[ payload load 2b @ transport header + 2 => reg 1 ] [ cmp eq reg 1 0x0000901f ]";
        assert!(web1[..5]
            .iter()
            .all(|r| r.contains(port) && r.contains("counter")));
        assert!(web1[0].contains(
            "[ payload load 1b @ transport header + 13 => reg 1 ] \
             [ bitwise reg 1 = ( reg 1 & 0x00000012 ) ^ 0x00000000 ] [ cmp eq reg 1 0x00000002 ]"
        ));
        assert!(web1[3].contains("[ fib saddr type => reg 1 ] [ cmp eq reg 1 0x00000002 ]"));
        assert!(web1[6].ends_with("[ immediate reg 0 drop ]"));
        let comments: Vec<_> = rules(&v).iter().filter_map(|r| r.comment.clone()).collect();
        for wanted in [
            "m0 new", "m0 in", "m0 out", "m0 local", "m1 new", "m1 in", "m1 out",
        ] {
            assert!(
                comments.iter().any(|c| c == wanted),
                "{wanted} in {comments:?}"
            );
        }
    }

    #[test]
    fn map_elements_lead_links_and_host_ports_to_the_containers_chains() {
        let v = install(&sample(), true);
        let elems: Vec<(String, String)> = v
            .iter()
            .filter_map(|c| match c {
                Change::AddElements {
                    map, set_id: None, ..
                } => Some((map.clone(), c.to_string())),
                _ => None,
            })
            .collect();
        let of = |map: &str| {
            elems
                .iter()
                .filter(|(m, _)| m == map)
                .map(|(_, e)| e.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(of("pre_if").len(), 3);
        assert_eq!(of("post_if").len(), 3);
        assert_eq!(
            of("snat_out").len(),
            3,
            "every endpoint is a mapping target"
        );
        assert_eq!(
            of("snat_in"),
            [r#"adding "hy02b9c002" : jump my-app-snat to map snat_in"#]
        );
        assert_eq!(
            of("dnat_ports"),
            [
                "adding tcp . 18080 : jump my-app-dnat to map dnat_ports",
                "adding udp . 15353 : jump my-app-dnat to map dnat_ports"
            ]
        );
    }

    #[test]
    fn removal_deletes_elements_before_flushing_and_deleting_the_chains() {
        let parts = removal(&sample());
        let all: Vec<Change> = parts.iter().flatten().cloned().collect();
        let first_chain = all
            .iter()
            .position(|c| matches!(c, Change::FlushChain(_)))
            .unwrap();
        assert_eq!(first_chain, 12, "the twelve elements first: {all:?}");
        assert!(all[..first_chain]
            .iter()
            .all(|c| matches!(c, Change::DeleteElement { .. })));
        assert_eq!(all[first_chain..].len(), 8, "flush + delete of four chains");
        assert!(parts.iter().all(|p| p.len() <= 2));
        assert_eq!(remove_table(), [Change::DeleteTable]);
    }
}
