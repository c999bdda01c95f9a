//! The PortForwarder's nftables side. hydra owns `table inet hydra` and nothing else; each
//! container gets its own chain set there (base chains named `<container>-<role>`), added in one
//! `nft` transaction and removed in another, so containers never touch each other's rules.
//!
//! Per process link `V` (host end of its veth) the chains say:
//! - `-pre` (filter prerouting -150, after conntrack, before DNAT): drop packets from `V` to
//!   127.0.0.0/8 (route_localnet is on for `V`) or with a source other than the process's own
//!   address; count mapped replies; let replies through; new connections from `V` only with
//!   `egress: allow`, and never towards another process's subnet.
//! - `-dnat` (nat prerouting) and `-out` (nat output): `fib daddr type local` + port → DNAT to the
//!   process (spread over the instances of a `count > 1` process), counting new connections.
//! - `-post` (filter postrouting): count mapped traffic into `V` and let it through, with
//!   replies; drop everything else into `V`, so even the host reaches only the mapped ports.
//! - `-snat` (nat postrouting): masquerade 127.0.0.0/8 clients into `V`, and egress traffic.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use nftables::batch::Batch;
use nftables::expr::{
    Expression, Fib, FibFlag, FibResult, Map, Meta, MetaKey, NamedExpression, NgMode, Numgen,
    Payload, PayloadField, Prefix, SetItem, CT,
};
use nftables::schema::{Chain, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{Counter, Match, Operator, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde::{Deserialize, Serialize};
use thiserror::Error;

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
    /// Only this host address; every local address when `None`.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub port: u16,
    /// The YAML process (`web`), for display.
    pub process: String,
    /// Indices into the endpoints (the instances of `process`).
    pub targets: Vec<usize>,
}

/// Everything the firewall needs to know about one container's network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub container: String,
    pub pool: String,
    pub endpoints: Vec<Endpoint>,
    pub forwards: Vec<Forward>,
}

/// The chains of one container: (role, type, hook, priority).
const CHAINS: [(&str, NfChainType, NfHook, i32); 5] = [
    ("pre", NfChainType::Filter, NfHook::Prerouting, -150),
    ("dnat", NfChainType::NAT, NfHook::Prerouting, -100),
    ("out", NfChainType::NAT, NfHook::Output, -100),
    ("post", NfChainType::Filter, NfHook::Postrouting, 0),
    ("snat", NfChainType::NAT, NfHook::Postrouting, 100),
];

/// The name of one of a container's chains.
pub fn chain_name(container: &str, role: &str) -> String {
    format!("{container}-{role}")
}

/// Whether `chain` is one of `container`'s chains (names may contain `-`, roles do not).
pub fn is_chain_of(container: &str, chain: &str) -> bool {
    CHAINS
        .iter()
        .any(|(role, ..)| chain == chain_name(container, role))
}

/// Rule comments that `hydra ports` reads the counters by: `m<index> <what>`.
pub fn counter_comment(forward: usize, what: &str) -> String {
    format!("m{forward} {what}")
}

// ---- expression helpers -------------------------------------------------------------------

fn text(s: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(s.into()))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn field(protocol: &str, name: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Owned(protocol.to_string()),
            field: Cow::Owned(name.to_string()),
        },
    )))
}

fn ct(key: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: Cow::Owned(key.to_string()),
        family: None,
        dir: None,
    }))
}

fn prefix(addr: Ipv4Addr, len: u32) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(text(addr.to_string())),
        len,
    }))
}

fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    matches(left, Operator::EQ, right)
}

fn iif(name: &str) -> Statement<'static> {
    eq(meta(MetaKey::Iifname), text(name))
}

fn oif(name: &str) -> Statement<'static> {
    eq(meta(MetaKey::Oifname), text(name))
}

fn counter() -> Statement<'static> {
    Statement::Counter(Counter::Anonymous(None))
}

fn ct_in(key: &str, values: &[&str]) -> Statement<'static> {
    let right = match values {
        [one] => text(*one),
        many => Expression::List(many.iter().map(|v| text(*v)).collect()),
    };
    matches(ct(key), Operator::IN, right)
}

fn established() -> Statement<'static> {
    ct_in("state", &["established", "related"])
}

fn port(protocol: Protocol, which: &str, number: u16) -> Statement<'static> {
    eq(
        field(protocol.name(), which),
        Expression::Number(number.into()),
    )
}

fn local_destination() -> Statement<'static> {
    eq(
        Expression::Named(NamedExpression::Fib(Fib {
            result: FibResult::Type,
            flags: [FibFlag::Daddr].into_iter().collect(),
        })),
        text("local"),
    )
}

// ---- the ruleset --------------------------------------------------------------------------

fn table() -> Table<'static> {
    Table {
        family: NfFamily::INet,
        name: Cow::Borrowed(TABLE),
        ..Table::default()
    }
}

fn chain(container: &str, role: &str) -> Chain<'static> {
    Chain {
        family: NfFamily::INet,
        table: Cow::Borrowed(TABLE),
        name: Cow::Owned(chain_name(container, role)),
        ..Chain::default()
    }
}

fn base_chain(
    container: &str,
    (role, kind, hook, prio): (&str, NfChainType, NfHook, i32),
) -> Chain<'static> {
    Chain {
        _type: Some(kind),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..chain(container, role)
    }
}

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
            .filter(|(_, f)| f.targets.contains(&e))
            .map(|(i, f)| (i, f.clone()))
            .collect()
    }

    fn leaving_process(&mut self, e: usize) {
        let endpoint = self.net.endpoints[e].clone();
        let veth = endpoint.subnet.veth();
        let guest = endpoint.subnet.guest();
        self.rule(
            "pre",
            vec![
                iif(&veth),
                eq(field("ip", "daddr"), prefix(Ipv4Addr::new(127, 0, 0, 0), 8)),
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
        for (i, f) in self.forwards_to(e) {
            self.rule(
                "pre",
                vec![
                    iif(&veth),
                    eq(field("ip", "saddr"), text(guest.to_string())),
                    port(f.protocol, "sport", f.port),
                    ct_in("status", &["dnat"]),
                    counter(),
                ],
                Some(counter_comment(i, "out")),
            );
        }
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
        let guest = endpoint.subnet.guest();
        let forwards = self.forwards_to(e);
        for (i, f) in &forwards {
            self.rule(
                "post",
                vec![
                    oif(&veth),
                    eq(field("ip", "daddr"), text(guest.to_string())),
                    port(f.protocol, "dport", f.port),
                    ct_in("status", &["dnat"]),
                    counter(),
                    Statement::Accept(None),
                ],
                Some(counter_comment(*i, "in")),
            );
        }
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
                    eq(field("ip", "saddr"), prefix(Ipv4Addr::new(127, 0, 0, 0), 8)),
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
        let mut expr = vec![local_destination()];
        if let Some(ip) = f.host_ip {
            expr.push(eq(field("ip", "daddr"), text(ip.to_string())));
        }
        expr.push(port(f.protocol, "dport", f.host_port));
        expr.push(counter());
        expr.push(Statement::DNAT(Some(NAT {
            addr: Some(addr),
            family: Some(nftables::stmt::NATFamily::IP),
            port: Some(Expression::Number(f.port.into())),
            flags: None,
        })));
        for role in ["dnat", "out"] {
            self.rule(role, expr.clone(), Some(counter_comment(i, "new")));
        }
    }
}

/// The batch that installs a container's chains and rules (and hydra's table if missing).
pub fn install_batch(net: &Network) -> Nftables<'static> {
    let mut rules = Rules {
        net,
        pool: Pool::parse(&net.pool).ok(),
        out: Vec::new(),
    };
    for e in 0..net.endpoints.len() {
        rules.leaving_process(e);
        rules.entering_process(e);
    }
    for (i, f) in net.forwards.iter().enumerate() {
        rules.dnat(i, f);
    }
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table()));
    for spec in CHAINS {
        batch.add(NfListObject::Chain(base_chain(&net.container, spec)));
    }
    for rule in rules.out {
        batch.add(rule);
    }
    batch.to_nftables()
}

/// The batch that removes a container's chains (flushed first: a chain must be empty to go).
pub fn remove_batch(container: &str, present: &[String]) -> Nftables<'static> {
    let mut batch = Batch::new();
    for (role, ..) in CHAINS {
        if present.contains(&chain_name(container, role)) {
            batch.add_cmd(nftables::schema::NfCmd::Flush(
                nftables::schema::FlushObject::Chain(chain(container, role)),
            ));
            batch.delete(NfListObject::Chain(chain(container, role)));
        }
    }
    batch.to_nftables()
}

#[cfg(test)]
mod tests {
    use super::*;

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
                    host_ip: Some(Ipv4Addr::LOCALHOST),
                    host_port: 15353,
                    port: 53,
                    process: "api".into(),
                    targets: vec![2],
                },
            ],
        }
    }

    fn json(n: &Nftables) -> serde_json::Value {
        serde_json::to_value(n).unwrap()
    }

    fn rules_of(value: &serde_json::Value, chain: &str) -> Vec<String> {
        value["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o["add"]["rule"].as_object())
            .filter(|r| r["chain"] == chain)
            .map(|r| serde_json::to_string(&r["expr"]).unwrap())
            .collect()
    }

    #[test]
    fn installs_the_table_and_five_base_chains() {
        let v = json(&install_batch(&sample()));
        let objects = v["nftables"].as_array().unwrap();
        assert_eq!(objects[0]["add"]["table"]["name"], "hydra");
        assert_eq!(objects[0]["add"]["table"]["family"], "inet");
        let chains: Vec<_> = objects
            .iter()
            .filter_map(|o| o["add"]["chain"].as_object())
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["hook"].clone(),
                    c["prio"].clone(),
                )
            })
            .collect();
        assert_eq!(chains.len(), 5);
        assert_eq!(
            chains[0],
            ("my-app-pre".to_string(), "prerouting".into(), (-150).into())
        );
        assert_eq!(
            chains[2],
            ("my-app-out".to_string(), "output".into(), (-100).into())
        );
    }

    #[test]
    fn a_mapping_of_two_instances_spreads_with_numgen_in_prerouting_and_output() {
        let v = json(&install_batch(&sample()));
        for chain in ["my-app-dnat", "my-app-out"] {
            let rules = rules_of(&v, chain);
            assert_eq!(rules.len(), 2, "{chain}: {rules:?}");
            assert!(
                rules[0].contains(r#""numgen":{"mod":2,"mode":"inc"}"#),
                "{}",
                rules[0]
            );
            assert!(rules[0].contains(r#""10.231.0.2""#) && rules[0].contains(r#""10.231.0.6""#));
            assert!(rules[0].contains(r#""fib":{"flags":["daddr"],"result":"type"}"#));
            assert!(
                rules[1].contains(r#""right":"127.0.0.1""#),
                "host_ip is matched: {}",
                rules[1]
            );
            assert!(rules[1].contains(r#""field":"dport","protocol":"udp""#));
        }
    }

    #[test]
    fn processes_without_egress_cannot_open_connections_and_the_egress_one_not_into_the_pool() {
        let v = json(&install_batch(&sample()));
        let pre = rules_of(&v, "my-app-pre");
        let for_veth =
            |veth: &str| -> Vec<&String> { pre.iter().filter(|r| r.contains(veth)).collect() };
        let web0 = for_veth("hy02b9c000");
        assert!(web0[0].contains(r#""127.0.0.0""#) && web0[0].contains("drop"));
        assert!(
            web0[1].contains(r#""op":"!=""#),
            "anti-spoofing: {}",
            web0[1]
        );
        assert!(
            web0.last().unwrap().ends_with(r#"{"drop":null}]"#),
            "{web0:?}"
        );
        let api = for_veth("hy02b9c002");
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
        let batch = install_batch(&sample());
        let v = json(&batch);
        let post = rules_of(&v, "my-app-post");
        let web1: Vec<_> = post.iter().filter(|r| r.contains("hy02b9c001")).collect();
        assert_eq!(web1.len(), 3, "{web1:?}");
        assert!(
            web1[0].contains(r#""dport""#)
                && web1[0].contains("8080")
                && web1[0].contains("counter")
        );
        assert!(web1[2].ends_with(r#"{"drop":null}]"#));
        let comments: Vec<_> = v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o["add"]["rule"]["comment"].as_str())
            .collect();
        for wanted in ["m0 new", "m0 in", "m0 out", "m1 new", "m1 in", "m1 out"] {
            assert!(comments.contains(&wanted), "{wanted} in {comments:?}");
        }
    }

    #[test]
    fn removal_flushes_then_deletes_only_the_chains_present() {
        let present = vec!["my-app-pre".to_string(), "my-app-snat".to_string()];
        let v = json(&remove_batch("my-app", &present));
        let text = v.to_string();
        assert_eq!(v["nftables"].as_array().unwrap().len(), 4, "{text}");
        assert!(text.contains(r#"{"flush":{"chain""#) && text.contains(r#"{"delete":{"chain""#));
        assert!(!text.contains("my-app-dnat"));
        assert!(is_chain_of("my-app", "my-app-pre"));
        assert!(!is_chain_of("my", "my-app-pre"));
    }
}
