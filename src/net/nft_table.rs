//! hydra's `table inet hydra` as the kernel holds it: five shared base chains, one per hook,
//! each a single verdict-map lookup that sends a packet to the chains of the container it
//! concerns, found by the interface it comes in on or goes out of, or by the protocol and host
//! port it is addressed to. A container adds its four regular chains and its map elements in one
//! transaction and removes them in one; only the first container creates the base chains (hook
//! registration is the slow part of an nftables change) and the last one deletes the table.
//!
//! The batches are JSON (`nft -j -f -`): the rules come from the `nftables` crate's types; the
//! maps and their elements, which it cannot express (a verdict map's value type), are written
//! as JSON here.

use serde_json::{json, Value};

use super::firewall::{chain_name, container_rules, Network, ROLES, TABLE};
use crate::config::Protocol;

/// A shared verdict map: its name, key type and the packet expression looked up in it.
struct Lookup {
    map: &'static str,
    key_type: Value,
    key: Value,
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn lookups() -> [Lookup; 5] {
    let port_key =
        json!({"concat": [meta("l4proto"), {"payload": {"protocol": "th", "field": "dport"}}]});
    [
        Lookup {
            map: "pre_if",
            key_type: json!("ifname"),
            key: meta("iifname"),
        },
        Lookup {
            map: "post_if",
            key_type: json!("ifname"),
            key: meta("oifname"),
        },
        Lookup {
            map: "snat_out",
            key_type: json!("ifname"),
            key: meta("oifname"),
        },
        Lookup {
            map: "snat_in",
            key_type: json!("ifname"),
            key: meta("iifname"),
        },
        Lookup {
            map: "dnat_ports",
            key_type: json!(["inet_proto", "inet_service"]),
            key: port_key,
        },
    ]
}

/// One shared base chain: its hook, and the maps it looks packets up in, in order.
struct BaseChain {
    name: &'static str,
    kind: &'static str,
    hook: &'static str,
    prio: i32,
    maps: &'static [&'static str],
    /// Only packets addressed to the host itself (`fib daddr type local`).
    local_only: bool,
}

const BASE_CHAINS: [BaseChain; 5] = [
    BaseChain {
        name: "pre",
        kind: "filter",
        hook: "prerouting",
        prio: -150,
        maps: &["pre_if"],
        local_only: false,
    },
    BaseChain {
        name: "dnat",
        kind: "nat",
        hook: "prerouting",
        prio: -100,
        maps: &["dnat_ports"],
        local_only: true,
    },
    BaseChain {
        name: "out",
        kind: "nat",
        hook: "output",
        prio: -100,
        maps: &["dnat_ports"],
        local_only: true,
    },
    BaseChain {
        name: "post",
        kind: "filter",
        hook: "postrouting",
        prio: 0,
        maps: &["post_if"],
        local_only: false,
    },
    BaseChain {
        name: "snat",
        kind: "nat",
        hook: "postrouting",
        prio: 100,
        maps: &["snat_out", "snat_in"],
        local_only: false,
    },
];

fn add(kind: &str, body: Value) -> Value {
    json!({"add": {kind: body}})
}

fn object(name: &str) -> Value {
    json!({"family": "inet", "table": TABLE, "name": name})
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    base
}

/// The table, its maps, base chains and their lookup rules.
fn base_objects() -> Vec<Value> {
    let mut out = vec![add("table", json!({"family": "inet", "name": TABLE}))];
    let lookups = lookups();
    for l in &lookups {
        out.push(add(
            "map",
            with(object(l.map), json!({"type": l.key_type, "map": "verdict"})),
        ));
    }
    for chain in &BASE_CHAINS {
        let name = chain.name;
        out.push(add(
            "chain",
            with(
                object(name),
                json!({"type": chain.kind, "hook": chain.hook, "prio": chain.prio, "policy": "accept"}),
            ),
        ));
        for map in chain.maps {
            let Some(l) = lookups.iter().find(|l| l.map == *map) else {
                continue;
            };
            let mut expr = Vec::new();
            if chain.local_only {
                expr.push(json!({"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}));
            }
            expr.push(json!({"vmap": {"key": l.key, "data": format!("@{map}")}}));
            out.push(add(
                "rule",
                json!({"family": "inet", "table": TABLE, "chain": name, "expr": expr}),
            ));
        }
    }
    out
}

/// The map elements of a container: (map, key) → its chain of `role`.
fn elements(net: &Network) -> Vec<(&'static str, Value, &'static str)> {
    let mut out = Vec::new();
    for (i, e) in net.endpoints.iter().enumerate() {
        let veth = json!(e.subnet.veth());
        out.push(("pre_if", veth.clone(), "pre"));
        out.push(("post_if", veth.clone(), "post"));
        if net
            .forwards
            .iter()
            .any(|f| f.in_kernel() && f.targets.contains(&i))
        {
            out.push(("snat_out", veth.clone(), "snat"));
        }
        if e.egress {
            out.push(("snat_in", veth, "snat"));
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
        out.push((
            "dnat_ports",
            json!({"concat": [protocol.name(), number]}),
            "dnat",
        ));
    }
    out
}

fn batch(objects: Vec<Value>) -> Value {
    json!({"nftables": objects})
}

/// Installs a container: its chains, rules and map elements; the shared table first when
/// `table_exists` is false.
pub fn install_batch(net: &Network, table_exists: bool) -> Value {
    let mut out = if table_exists {
        Vec::new()
    } else {
        base_objects()
    };
    for role in ROLES {
        out.push(add("chain", object(&chain_name(&net.container, role))));
    }
    for rule in container_rules(net) {
        out.push(json!({"add": serde_json::to_value(rule).unwrap_or(Value::Null)}));
    }
    for (map, key, role) in elements(net) {
        let target = chain_name(&net.container, role);
        out.push(add(
            "element",
            with(
                object(map),
                json!({"elem": [[key, {"jump": {"target": target}}]]}),
            ),
        ));
    }
    batch(out)
}

/// Removes a container: its map elements first (a chain still jumped to cannot go), then its
/// chains, flushed and deleted.
pub fn remove_batch(container: &str, elements: &[(String, Value)], chains: &[String]) -> Value {
    let mut out = Vec::new();
    for (map, key) in elements {
        out.push(json!({"delete": {"element": with(object(map), json!({"elem": [key]}))}}));
    }
    for chain in chains {
        debug_assert!(super::firewall::is_chain_of(container, chain));
        out.push(json!({"flush": {"chain": object(chain)}}));
        out.push(json!({"delete": {"chain": object(chain)}}));
    }
    batch(out)
}

/// What `install_batch` added for `net`: (map, key) of each element, and the chain names.
pub fn installed(net: &Network) -> (Vec<(String, Value)>, Vec<String>) {
    (
        elements(net)
            .into_iter()
            .map(|(m, k, _)| (m.to_string(), k))
            .collect(),
        ROLES
            .iter()
            .map(|r| chain_name(&net.container, r))
            .collect(),
    )
}

/// Deletes hydra's whole table (the last container is gone).
pub fn remove_table_batch() -> Value {
    batch(vec![
        json!({"delete": {"table": {"family": "inet", "name": TABLE}}}),
    ])
}

/// From a listing of the table (`nft -j list table inet hydra`): the elements that jump to
/// `container`'s chains and those chains — what a crashed hydra left, whatever it managed to add.
pub fn found_in(listing: &Value, container: &str) -> (Vec<(String, Value)>, Vec<String>) {
    let mut elements = Vec::new();
    let mut chains = Vec::new();
    let objects = listing["nftables"].as_array().cloned().unwrap_or_default();
    for o in &objects {
        if let Some(name) = o["chain"]["name"].as_str() {
            if super::firewall::is_chain_of(container, name) {
                chains.push(name.to_string());
            }
        }
        let (Some(map), Some(elems)) = (o["map"]["name"].as_str(), o["map"]["elem"].as_array())
        else {
            continue;
        };
        for pair in elems {
            let target = pair[1]["jump"]["target"].as_str().unwrap_or_default();
            if super::firewall::is_chain_of(container, target) {
                elements.push((map.to_string(), pair[0].clone()));
            }
        }
    }
    (elements, chains)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::firewall::{Endpoint, Forward};
    use crate::net::pool::Subnet;
    use std::net::{IpAddr, Ipv4Addr};

    fn sample() -> Network {
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

    fn objects<'v>(v: &'v Value, verb: &str, kind: &str) -> Vec<&'v Value> {
        v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o.get(verb).and_then(|x| x.get(kind)))
            .collect()
    }

    fn rules_of(v: &Value, chain: &str) -> Vec<String> {
        objects(v, "add", "rule")
            .into_iter()
            .filter(|r| r["chain"] == chain)
            .map(|r| r["expr"].to_string())
            .collect()
    }

    #[test]
    fn the_first_container_creates_the_table_its_maps_and_five_base_chains() {
        let first = install_batch(&sample(), false);
        assert_eq!(objects(&first, "add", "table").len(), 1);
        assert_eq!(objects(&first, "add", "map").len(), 5);
        let chains = objects(&first, "add", "chain");
        let base: Vec<_> = chains.iter().filter(|c| c.get("hook").is_some()).collect();
        assert_eq!(base.len(), 5);
        assert!(base
            .iter()
            .any(|c| c["name"] == "out" && c["hook"] == "output" && c["prio"] == -100));
        assert!(base.iter().any(|c| c["name"] == "pre" && c["prio"] == -150));
        let dnat = rules_of(&first, "dnat");
        assert!(
            dnat[0].contains(r#""vmap""#)
                && dnat[0].contains("@dnat_ports")
                && dnat[0].contains(r#""fib""#),
            "{dnat:?}"
        );
        // A later container adds only its own four regular chains.
        let later = install_batch(&sample(), true);
        assert!(objects(&later, "add", "table").is_empty());
        let own: Vec<_> = objects(&later, "add", "chain")
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            own,
            ["my-app-pre", "my-app-dnat", "my-app-post", "my-app-snat"]
        );
    }

    #[test]
    fn a_mapping_of_two_instances_spreads_with_numgen() {
        let v = install_batch(&sample(), true);
        let rules = rules_of(&v, "my-app-dnat");
        assert_eq!(rules.len(), 2, "{rules:?}");
        assert!(
            rules[0].contains(r#""numgen":{"mod":2,"mode":"inc"}"#),
            "{}",
            rules[0]
        );
        assert!(rules[0].contains(r#""10.231.0.2""#) && rules[0].contains(r#""10.231.0.6""#));
        assert!(
            rules[1].contains(r#""right":"127.0.0.1""#),
            "host_ip is matched: {}",
            rules[1]
        );
        assert!(rules[1].contains(r#""field":"dport","protocol":"udp""#));
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
        let v = install_batch(&net, true);
        let rules = rules_of(&v, "my-app-dnat");
        assert_eq!(rules.len(), 2, "no DNAT for [::1]: {rules:?}");
        assert!(rules
            .iter()
            .all(|r| r.contains(r#""key":"nfproto""#) && r.contains(r#""right":"ipv4""#)));
        assert!(!v.to_string().contains("18443") && !v.to_string().contains("8443"));
    }

    #[test]
    fn processes_without_egress_cannot_open_connections_and_the_egress_one_not_into_the_pool() {
        let v = install_batch(&sample(), true);
        let pre = rules_of(&v, "my-app-pre");
        let for_veth = |veth: &str| -> Vec<String> {
            pre.iter().filter(|r| r.contains(veth)).cloned().collect()
        };
        let web0 = for_veth("hy02b9c000");
        assert!(
            web0[0].contains("counter") && web0[0].contains("accept"),
            "mapped replies first: {}",
            web0[0]
        );
        assert!(web0[1].contains(r#""127.0.0.0""#) && web0[1].contains("drop"));
        assert!(
            web0[2].contains(r#""op":"!=""#),
            "anti-spoofing: {}",
            web0[2]
        );
        assert!(
            web0.last().unwrap().ends_with(r#"{"drop":null}]"#),
            "{web0:?}"
        );
        let api = for_veth("hy02b9c002");
        assert!(
            api.iter()
                .any(|r| r.contains(r#""right":"10.231.0.9""#) && r.contains("accept")),
            "its own host end: {api:?}"
        );
        assert!(api.iter().any(
            |r| r.contains(r#""prefix":{"addr":"10.231.0.0","len":16}"#) && r.contains("drop")
        ));
        assert!(
            api.last().unwrap().ends_with(r#"{"accept":null}]"#),
            "{api:?}"
        );
        let snat = rules_of(&v, "my-app-snat");
        assert!(snat
            .iter()
            .any(|r| r.contains("10.231.0.10") && r.contains("masquerade")));
    }

    #[test]
    fn only_mapped_ports_enter_a_process_and_they_are_counted_with_comments() {
        let v = install_batch(&sample(), true);
        let post = rules_of(&v, "my-app-post");
        let web1: Vec<_> = post.iter().filter(|r| r.contains("hy02b9c001")).collect();
        assert_eq!(web1.len(), 3, "{web1:?}");
        assert!(
            web1[0].contains(r#""dport""#)
                && web1[0].contains("8080")
                && web1[0].contains("counter")
        );
        assert!(web1[2].ends_with(r#"{"drop":null}]"#));
        let comments: Vec<_> = objects(&v, "add", "rule")
            .iter()
            .filter_map(|r| r["comment"].as_str())
            .collect();
        for wanted in ["m0 new", "m0 in", "m0 out", "m1 new", "m1 in", "m1 out"] {
            assert!(comments.contains(&wanted), "{wanted} in {comments:?}");
        }
    }

    #[test]
    fn map_elements_lead_links_and_host_ports_to_the_containers_chains() {
        let v = install_batch(&sample(), true);
        let elems: Vec<(String, String)> = objects(&v, "add", "element")
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    e["elem"][0].to_string(),
                )
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
            [r#"["hy02b9c002",{"jump":{"target":"my-app-snat"}}]"#]
        );
        let ports = of("dnat_ports");
        assert_eq!(ports.len(), 2);
        assert!(ports
            .iter()
            .any(|p| p.contains(r#"{"concat":["tcp",18080]}"#) && p.contains("my-app-dnat")));
    }

    #[test]
    fn removal_deletes_elements_before_flushing_and_deleting_the_chains() {
        let net = sample();
        let (elements, chains) = installed(&net);
        let v = remove_batch("my-app", &elements, &chains);
        let ops: Vec<String> = v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let (verb, body) = o.as_object().unwrap().iter().next().unwrap();
                format!(
                    "{verb} {}",
                    body.as_object().unwrap().keys().next().unwrap()
                )
            })
            .collect();
        let first_chain = ops.iter().position(|o| o.ends_with("chain")).unwrap();
        assert!(
            ops[..first_chain].iter().all(|o| o == "delete element"),
            "{ops:?}"
        );
        assert_eq!(
            ops[first_chain..].len(),
            8,
            "flush + delete of four chains: {ops:?}"
        );
    }

    #[test]
    fn a_listing_gives_back_what_belongs_to_one_container() {
        let listing = serde_json::json!({"nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"map": {"family": "inet", "name": "pre_if", "table": "hydra", "type": "ifname", "map": "verdict",
                     "elem": [["hy1", {"jump": {"target": "my-app-pre"}}], ["hy2", {"jump": {"target": "other-pre"}}]]}},
            {"chain": {"family": "inet", "table": "hydra", "name": "my-app-pre"}},
            {"chain": {"family": "inet", "table": "hydra", "name": "other-pre"}},
            {"chain": {"family": "inet", "table": "hydra", "name": "pre", "hook": "prerouting"}},
        ]});
        let (elements, chains) = found_in(&listing, "my-app");
        assert_eq!(elements, [("pre_if".to_string(), serde_json::json!("hy1"))]);
        assert_eq!(chains, ["my-app-pre"]);
    }
}
