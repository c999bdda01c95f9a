//! nf_tables objects and expressions as the kernel takes them over netlink: the changes hydra
//! makes to its table (`Change`), each encoded as one nf_tables message body, and the kernel's
//! own expressions (`Expr`: load into a register, compare, count, NAT, ...), which is what `nft`
//! compiles its rule language into. Each expression prints the way `nft --debug=netlink` prints
//! it, so a rule can be checked against nft's own translation of the same rule text.
//!
//! Attribute numbers and values are those of the kernel's uapi `linux/netfilter/nf_tables.h`;
//! nf_tables integers are in network byte order, register contents in the packet's or the
//! host's as the data type has it (ports and addresses big endian, interface names as bytes).
//! Nothing here does I/O (`nft_batch` sends the changes).

use std::fmt;
use std::net::Ipv4Addr;

use super::nfnetlink::{attr, be32, nest, text};
use crate::config::Protocol;

/// The uapi numbers hydra uses, named as in `nf_tables.h` (and `nfnetlink.h`).
#[allow(dead_code)]
pub mod uapi {
    pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
    pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
    pub const NFNL_MSG_BATCH_END: u16 = 0x11;
    pub const NFPROTO_INET: u8 = 1;
    pub const NFPROTO_IPV4: u32 = 2;

    // enum nf_tables_msg_types
    pub const NFT_MSG_NEWTABLE: u16 = 0;
    pub const NFT_MSG_GETTABLE: u16 = 1;
    pub const NFT_MSG_DELTABLE: u16 = 2;
    pub const NFT_MSG_NEWCHAIN: u16 = 3;
    pub const NFT_MSG_DELCHAIN: u16 = 5;
    pub const NFT_MSG_NEWRULE: u16 = 6;
    pub const NFT_MSG_GETRULE: u16 = 7;
    pub const NFT_MSG_DELRULE: u16 = 8;
    pub const NFT_MSG_NEWSET: u16 = 9;
    pub const NFT_MSG_NEWSETELEM: u16 = 12;
    pub const NFT_MSG_DELSETELEM: u16 = 14;

    pub const NFTA_TABLE_NAME: u16 = 1;
    pub const NFTA_TABLE_FLAGS: u16 = 2;
    pub const NFTA_CHAIN_TABLE: u16 = 1;
    pub const NFTA_CHAIN_NAME: u16 = 3;
    pub const NFTA_CHAIN_HOOK: u16 = 4;
    pub const NFTA_CHAIN_POLICY: u16 = 5;
    pub const NFTA_CHAIN_TYPE: u16 = 7;
    pub const NFTA_HOOK_HOOKNUM: u16 = 1;
    pub const NFTA_HOOK_PRIORITY: u16 = 2;
    pub const NFTA_RULE_TABLE: u16 = 1;
    pub const NFTA_RULE_CHAIN: u16 = 2;
    pub const NFTA_RULE_EXPRESSIONS: u16 = 4;
    pub const NFTA_RULE_USERDATA: u16 = 7;
    pub const NFTA_SET_TABLE: u16 = 1;
    pub const NFTA_SET_NAME: u16 = 2;
    pub const NFTA_SET_FLAGS: u16 = 3;
    pub const NFTA_SET_KEY_TYPE: u16 = 4;
    pub const NFTA_SET_KEY_LEN: u16 = 5;
    pub const NFTA_SET_DATA_TYPE: u16 = 6;
    pub const NFTA_SET_DATA_LEN: u16 = 7;
    pub const NFTA_SET_DESC: u16 = 9;
    pub const NFTA_SET_ID: u16 = 10;
    pub const NFTA_SET_USERDATA: u16 = 13;
    pub const NFTA_SET_DESC_SIZE: u16 = 1;
    pub const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
    pub const NFTA_SET_ELEM_LIST_SET: u16 = 2;
    pub const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
    pub const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
    pub const NFTA_SET_ELEM_KEY: u16 = 1;
    pub const NFTA_SET_ELEM_DATA: u16 = 2;
    pub const NFTA_LIST_ELEM: u16 = 1;
    pub const NFTA_EXPR_NAME: u16 = 1;
    pub const NFTA_EXPR_DATA: u16 = 2;
    pub const NFTA_DATA_VALUE: u16 = 1;
    pub const NFTA_DATA_VERDICT: u16 = 2;
    pub const NFTA_VERDICT_CODE: u16 = 1;
    pub const NFTA_VERDICT_CHAIN: u16 = 2;
    pub const NFTA_COUNTER_BYTES: u16 = 1;
    pub const NFTA_COUNTER_PACKETS: u16 = 2;

    pub const NFT_SET_ANONYMOUS: u32 = 0x1;
    pub const NFT_SET_CONSTANT: u32 = 0x2;
    pub const NFT_SET_MAP: u32 = 0x8;
    pub const NFT_DATA_VERDICT: u32 = 0xffff_ff00;
    /// Verdict codes (a u32 on the wire): NF_DROP, NF_ACCEPT, NFT_JUMP (-3).
    pub const NF_DROP: u32 = 0;
    pub const NF_ACCEPT: u32 = 1;
    pub const NFT_JUMP: u32 = -3i32 as u32;
    /// Netfilter hooks (enum nf_inet_hooks).
    pub const NF_INET_PRE_ROUTING: u32 = 0;
    pub const NF_INET_LOCAL_OUT: u32 = 3;
    pub const NF_INET_POST_ROUTING: u32 = 4;
}

use uapi::*;

/// The verdict register, and the 16-byte registers 1 and 2.
pub const VERDICT: u32 = 0;
pub const REG1: u32 = 1;
pub const REG2: u32 = 2;
/// The second 32-bit register (NFT_REG32_01): the 4 bytes after register 1's first 4, where a
/// concatenation's second field goes.
pub const REG32_01: u32 = 9;

/// nft's data types (its `enum datatypes`), recorded in a map so `nft list` prints its keys.
pub mod datatype {
    pub const INTEGER: u32 = 4;
    pub const IPADDR: u32 = 7;
    pub const INET_PROTOCOL: u32 = 12;
    pub const INET_SERVICE: u32 = 13;
    pub const IFNAME: u32 = 41;
    /// `inet_proto . inet_service`: nft packs a concatenation's types 6 bits each.
    pub const PROTO_PORT: u32 = (INET_PROTOCOL << 6) | INET_SERVICE;
}

/// Interface names are compared and stored as IFNAMSIZ bytes, NUL padded.
pub const IFNAMSIZ: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    Mark,
    Iifname,
    Oifname,
    Nfproto,
    L4proto,
}

impl MetaKey {
    fn number(self) -> u32 {
        match self {
            MetaKey::Mark => 3,
            MetaKey::Iifname => 6,
            MetaKey::Oifname => 7,
            MetaKey::Nfproto => 15,
            MetaKey::L4proto => 16,
        }
    }

    fn name(self) -> &'static str {
        match self {
            MetaKey::Mark => "mark",
            MetaKey::Iifname => "iifname",
            MetaKey::Oifname => "oifname",
            MetaKey::Nfproto => "nfproto",
            MetaKey::L4proto => "l4proto",
        }
    }
}

/// Where a payload offset counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    Network,
    Transport,
}

impl Base {
    /// NFT_PAYLOAD_NETWORK_HEADER, NFT_PAYLOAD_TRANSPORT_HEADER.
    fn number(self) -> u32 {
        match self {
            Base::Network => 1,
            Base::Transport => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Base::Network => "network",
            Base::Transport => "transport",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Neq,
}

impl CmpOp {
    /// NFT_CMP_EQ, NFT_CMP_NEQ.
    fn number(self) -> u32 {
        match self {
            CmpOp::Eq => 0,
            CmpOp::Neq => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            CmpOp::Eq => "eq",
            CmpOp::Neq => "neq",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtKey {
    State,
    Direction,
    Status,
}

/// A verdict: in a rule (immediate into the verdict register) or as a map's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Jump(String),
}

/// Data: a value (bytes in the register's layout) or a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Value(Vec<u8>),
    Verdict(Verdict),
}

/// One kernel expression (`struct nft_expr_type`), with the attributes hydra sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Meta {
        key: MetaKey,
        dreg: u32,
    },
    Payload {
        base: Base,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    Cmp {
        op: CmpOp,
        sreg: u32,
        data: Vec<u8>,
    },
    /// `dreg = (sreg & mask) ^ xor`; with `named_op`, the operation is named (NFTA_BITWISE_OP =
    /// NFT_BITWISE_BOOL), as nft does for an `&` written in a rule but not for a flag test or a
    /// prefix.
    Bitwise {
        sreg: u32,
        dreg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
        named_op: bool,
    },
    Ct {
        key: CtKey,
        dreg: u32,
    },
    /// `fib daddr type` (`fib saddr type` with `source`): the address type of the packet's
    /// destination (source).
    FibAddrType {
        source: bool,
        dreg: u32,
    },
    Counter,
    Immediate {
        dreg: u32,
        data: Data,
    },
    /// Looks `sreg` up in a set; with `dreg`, a map's value goes there (VERDICT for a verdict
    /// map). An anonymous set is named by its id in the transaction that adds it.
    Lookup {
        set: String,
        set_id: Option<u32>,
        sreg: u32,
        dreg: u32,
    },
    /// `numgen inc mod N` (counting from 0).
    Numgen {
        dreg: u32,
        modulus: u32,
    },
    /// IPv4 DNAT to the address in `addr` and the port in `port`.
    Dnat {
        addr: u32,
        port: u32,
    },
    Masquerade,
    /// `notrack`: connection tracking skips the packet.
    Notrack,
    /// `socket mark`: the mark of the socket the packet belongs to (found by its addresses).
    SocketMark {
        dreg: u32,
    },
}

/// NF_NAT_RANGE_PROTO_SPECIFIED: the NAT statement names a port.
const NAT_PROTO_SPECIFIED: u32 = 2;

fn data_attr(kind: u16, data: &Data) -> Vec<u8> {
    match data {
        Data::Value(bytes) => nest(kind, &[attr(NFTA_DATA_VALUE, bytes)]),
        Data::Verdict(v) => {
            let (code, chain) = match v {
                Verdict::Accept => (NF_ACCEPT, None),
                Verdict::Drop => (NF_DROP, None),
                Verdict::Jump(chain) => (NFT_JUMP, Some(chain)),
            };
            let mut parts = vec![be32(NFTA_VERDICT_CODE, code)];
            if let Some(chain) = chain {
                parts.push(text(NFTA_VERDICT_CHAIN, chain));
            }
            nest(kind, &[nest(NFTA_DATA_VERDICT, &parts)])
        }
    }
}

impl Expr {
    fn name(&self) -> &'static str {
        match self {
            Expr::Meta { .. } => "meta",
            Expr::Payload { .. } => "payload",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Ct { .. } => "ct",
            Expr::FibAddrType { .. } => "fib",
            Expr::Counter => "counter",
            Expr::Immediate { .. } => "immediate",
            Expr::Lookup { .. } => "lookup",
            Expr::Numgen { .. } => "numgen",
            Expr::Dnat { .. } => "nat",
            Expr::Masquerade => "masq",
            Expr::Notrack => "notrack",
            Expr::SocketMark { .. } => "socket",
        }
    }

    /// The expression's own attributes (NFTA_<NAME>_*), in the order nft writes them.
    fn data(&self) -> Vec<Vec<u8>> {
        match self {
            Expr::Meta { key, dreg } => vec![be32(2, key.number()), be32(1, *dreg)],
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                vec![
                    be32(1, *dreg),
                    be32(2, base.number()),
                    be32(3, *offset),
                    be32(4, *len),
                ]
            }
            Expr::Cmp { op, sreg, data } => {
                vec![
                    be32(1, *sreg),
                    be32(2, op.number()),
                    data_attr(3, &Data::Value(data.clone())),
                ]
            }
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
                named_op,
            } => {
                let mut a = vec![be32(1, *sreg), be32(2, *dreg)];
                if *named_op {
                    a.push(be32(6, 0));
                }
                a.extend([
                    be32(3, mask.len() as u32),
                    data_attr(4, &Data::Value(mask.clone())),
                    data_attr(5, &Data::Value(xor.clone())),
                ]);
                a
            }
            Expr::Ct { key, dreg } => {
                let key = match key {
                    CtKey::State => 0,
                    CtKey::Direction => 1,
                    CtKey::Status => 2,
                };
                vec![be32(2, key), be32(1, *dreg)]
            }
            // NFTA_FIB_FLAGS = NFTA_FIB_F_DADDR (F_SADDR), NFTA_FIB_RESULT = ADDRTYPE.
            Expr::FibAddrType { source, dreg } => {
                let flags = if *source { 1 } else { 2 };
                vec![be32(3, flags), be32(2, 3), be32(1, *dreg)]
            }
            Expr::Counter | Expr::Masquerade | Expr::Notrack => Vec::new(),
            // NFTA_SOCKET_KEY = NFT_SOCKET_MARK, NFTA_SOCKET_DREG, NFTA_SOCKET_LEVEL = 0.
            Expr::SocketMark { dreg } => vec![be32(1, 1), be32(2, *dreg), be32(3, 0)],
            Expr::Immediate { dreg, data } => vec![be32(1, *dreg), data_attr(2, data)],
            Expr::Lookup {
                set,
                set_id,
                sreg,
                dreg,
            } => {
                let mut a = vec![be32(2, *sreg)];
                a.push(be32(3, *dreg));
                a.push(text(1, set));
                if let Some(id) = set_id {
                    a.push(be32(4, *id));
                }
                a
            }
            // NFTA_NG_TYPE = NFT_NG_INCREMENTAL, NFTA_NG_OFFSET = 0.
            Expr::Numgen { dreg, modulus } => {
                vec![be32(1, *dreg), be32(2, *modulus), be32(3, 0), be32(4, 0)]
            }
            // NFTA_NAT_TYPE = NFT_NAT_DNAT, NFTA_NAT_FAMILY = NFPROTO_IPV4.
            Expr::Dnat { addr, port } => vec![
                be32(1, 1),
                be32(2, NFPROTO_IPV4),
                be32(3, *addr),
                be32(5, *port),
                be32(7, NAT_PROTO_SPECIFIED),
            ],
        }
    }

    /// The expression as one element of a rule's expression list.
    pub fn encode(&self) -> Vec<u8> {
        let name = text(NFTA_EXPR_NAME, self.name());
        // libnftnl writes an empty data nest for every expression it has a builder for, and
        // none for `notrack`, which has no attributes at all.
        if *self == Expr::Notrack {
            return nest(NFTA_LIST_ELEM, &[name]);
        }
        nest(NFTA_LIST_ELEM, &[name, nest(NFTA_EXPR_DATA, &self.data())])
    }
}

/// Register contents as `nft --debug=netlink` shows them: 32-bit words read in host order.
fn words(bytes: &[u8]) -> String {
    bytes
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            format!("0x{:08x}", u32::from_ne_bytes(w))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Jump(chain) => format!("jump -> {chain}"),
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Meta { key, dreg } => write!(f, "[ meta load {} => reg {dreg} ]", key.name()),
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                write!(
                    f,
                    "[ payload load {len}b @ {} header + {offset} => reg {dreg} ]",
                    base.name()
                )
            }
            Expr::Cmp { op, sreg, data } => {
                write!(f, "[ cmp {} reg {sreg} {} ]", op.name(), words(data))
            }
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
                ..
            } => write!(
                f,
                "[ bitwise reg {dreg} = ( reg {sreg} & {} ) ^ {} ]",
                words(mask),
                words(xor)
            ),
            Expr::Ct { key, dreg } => {
                let key = match key {
                    CtKey::State => "state",
                    CtKey::Direction => "direction",
                    CtKey::Status => "status",
                };
                write!(f, "[ ct load {key} => reg {dreg} ]")
            }
            Expr::FibAddrType { source, dreg } => {
                let which = if *source { "saddr" } else { "daddr" };
                write!(f, "[ fib {which} type => reg {dreg} ]")
            }
            Expr::Counter => write!(f, "[ counter pkts 0 bytes 0 ]"),
            Expr::Immediate { dreg, data } => match data {
                Data::Value(v) => write!(f, "[ immediate reg {dreg} {} ]", words(v)),
                Data::Verdict(v) => write!(f, "[ immediate reg {dreg} {} ]", verdict_text(v)),
            },
            Expr::Lookup {
                set, sreg, dreg, ..
            } => write!(f, "[ lookup reg {sreg} set {set} dreg {dreg} ]"),
            Expr::Numgen { dreg, modulus } => {
                write!(f, "[ numgen reg {dreg} = inc mod {modulus} ]")
            }
            Expr::Dnat { addr, port } => write!(
                f,
                "[ nat dnat ip addr_min reg {addr} proto_min reg {port} flags 0x{NAT_PROTO_SPECIFIED:x} ]"
            ),
            Expr::Masquerade => write!(f, "[ masq ]"),
            Expr::Notrack => write!(f, "[ notrack ]"),
            Expr::SocketMark { dreg } => write!(f, "[ socket load mark => reg {dreg} ]"),
        }
    }
}

/// A rule: its chain, expressions and optional comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub chain: String,
    pub exprs: Vec<Expr>,
    pub comment: Option<String>,
}

impl Rule {
    /// The expressions, one `nft --debug=netlink` line each.
    pub fn lines(&self) -> Vec<String> {
        self.exprs.iter().map(|e| e.to_string()).collect()
    }
}

/// A base chain's hook: its type (`filter`, `nat`), hook number and priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hook {
    pub kind: &'static str,
    pub hook: u32,
    pub priority: i32,
}

/// A map's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// An interface name (`ifname`).
    Ifname(String),
    /// `inet_proto . inet_service`: each field in 4 bytes, the port big endian.
    ProtoPort(Protocol, u16),
    /// An integer in host order (`numgen`'s result).
    Index(u32),
}

impl Key {
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Key::Ifname(name) => {
                let mut b = name.as_bytes().to_vec();
                b.resize(IFNAMSIZ, 0);
                b
            }
            Key::ProtoPort(protocol, port) => {
                let p = port.to_be_bytes();
                vec![protocol.number(), 0, 0, 0, p[0], p[1], 0, 0]
            }
            Key::Index(n) => n.to_ne_bytes().to_vec(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Ifname(name) => write!(f, "\"{name}\""),
            Key::ProtoPort(protocol, port) => write!(f, "{} . {port}", protocol.name()),
            Key::Index(n) => write!(f, "{n}"),
        }
    }
}

/// The name an anonymous map is added under; the kernel numbers it (`__map0`, ...).
pub const ANONYMOUS: &str = "__map%d";

/// A map: named ones carry verdicts; an anonymous one belongs to the rule that follows it in
/// the same transaction, which names it by `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map {
    pub name: String,
    pub anonymous: bool,
    pub id: u32,
    pub key_type: u32,
    pub key_len: u32,
    /// NFT_DATA_VERDICT or an nft data type.
    pub data_type: u32,
    pub data_len: u32,
    pub size: Option<u32>,
    /// nft's notes on the map (byte orders, the concatenation's types), so `nft list` prints
    /// keys and values in their own syntax.
    pub userdata: Vec<u8>,
}

/// One change to hydra's table; a transaction is a list of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    AddTable,
    AddMap(Map),
    AddChain {
        name: String,
        hook: Option<Hook>,
    },
    AddRule(Rule),
    /// Elements of a map (named by its id too when the same transaction adds it).
    AddElements {
        map: String,
        set_id: Option<u32>,
        elements: Vec<(Key, Data)>,
    },
    DeleteElement {
        map: String,
        key: Key,
    },
    /// Deletes every rule of the chain.
    FlushChain(String),
    DeleteChain(String),
    DeleteTable,
}

/// NLM_F_CREATE and NLM_F_APPEND (`nft add`: create if absent, rules at the end).
const CREATE: u16 = libc::NLM_F_CREATE as u16;
const APPEND: u16 = libc::NLM_F_APPEND as u16;

impl Change {
    /// The message type (without the subsystem), extra flags and attributes of the change to
    /// table `table` (family inet).
    pub fn encode(&self, table: &str) -> (u16, u16, Vec<u8>) {
        match self {
            Change::AddTable => (
                NFT_MSG_NEWTABLE,
                CREATE,
                [text(NFTA_TABLE_NAME, table), be32(NFTA_TABLE_FLAGS, 0)].concat(),
            ),
            Change::AddMap(m) => {
                let mut flags = NFT_SET_MAP;
                if m.anonymous {
                    flags |= NFT_SET_ANONYMOUS | NFT_SET_CONSTANT;
                }
                let mut a = vec![
                    text(NFTA_SET_TABLE, table),
                    text(NFTA_SET_NAME, &m.name),
                    be32(NFTA_SET_FLAGS, flags),
                    be32(NFTA_SET_KEY_TYPE, m.key_type),
                    be32(NFTA_SET_KEY_LEN, m.key_len),
                    be32(NFTA_SET_DATA_TYPE, m.data_type),
                    be32(NFTA_SET_DATA_LEN, m.data_len),
                    be32(NFTA_SET_ID, m.id),
                ];
                if let Some(size) = m.size {
                    a.push(nest(NFTA_SET_DESC, &[be32(NFTA_SET_DESC_SIZE, size)]));
                }
                a.push(attr(NFTA_SET_USERDATA, &m.userdata));
                (NFT_MSG_NEWSET, CREATE, a.concat())
            }
            Change::AddChain { name, hook } => {
                let mut a = vec![text(NFTA_CHAIN_TABLE, table), text(NFTA_CHAIN_NAME, name)];
                if let Some(h) = hook {
                    a.push(text(NFTA_CHAIN_TYPE, h.kind));
                    a.push(be32(NFTA_CHAIN_POLICY, NF_ACCEPT));
                    a.push(nest(
                        NFTA_CHAIN_HOOK,
                        &[
                            be32(NFTA_HOOK_HOOKNUM, h.hook),
                            be32(NFTA_HOOK_PRIORITY, h.priority as u32),
                        ],
                    ));
                }
                (NFT_MSG_NEWCHAIN, CREATE, a.concat())
            }
            Change::AddRule(rule) => {
                let exprs: Vec<Vec<u8>> = rule.exprs.iter().map(Expr::encode).collect();
                let mut a = vec![
                    text(NFTA_RULE_TABLE, table),
                    text(NFTA_RULE_CHAIN, &rule.chain),
                    nest(NFTA_RULE_EXPRESSIONS, &exprs),
                ];
                if let Some(comment) = &rule.comment {
                    a.push(attr(NFTA_RULE_USERDATA, &comment_userdata(comment)));
                }
                (NFT_MSG_NEWRULE, CREATE | APPEND, a.concat())
            }
            Change::AddElements {
                map,
                set_id,
                elements,
            } => {
                let elements: Vec<Vec<u8>> = elements
                    .iter()
                    .map(|(key, data)| {
                        nest(
                            NFTA_LIST_ELEM,
                            &[
                                data_attr(NFTA_SET_ELEM_KEY, &Data::Value(key.bytes())),
                                data_attr(NFTA_SET_ELEM_DATA, data),
                            ],
                        )
                    })
                    .collect();
                let mut a = vec![
                    text(NFTA_SET_ELEM_LIST_TABLE, table),
                    text(NFTA_SET_ELEM_LIST_SET, map),
                ];
                if let Some(id) = set_id {
                    a.push(be32(NFTA_SET_ELEM_LIST_SET_ID, *id));
                }
                a.push(nest(NFTA_SET_ELEM_LIST_ELEMENTS, &elements));
                (NFT_MSG_NEWSETELEM, CREATE, a.concat())
            }
            Change::DeleteElement { map, key } => {
                let element = nest(
                    NFTA_LIST_ELEM,
                    &[data_attr(NFTA_SET_ELEM_KEY, &Data::Value(key.bytes()))],
                );
                let a = [
                    text(NFTA_SET_ELEM_LIST_TABLE, table),
                    text(NFTA_SET_ELEM_LIST_SET, map),
                    nest(NFTA_SET_ELEM_LIST_ELEMENTS, &[element]),
                ];
                (NFT_MSG_DELSETELEM, 0, a.concat())
            }
            Change::FlushChain(chain) => (
                NFT_MSG_DELRULE,
                0,
                [text(NFTA_RULE_TABLE, table), text(NFTA_RULE_CHAIN, chain)].concat(),
            ),
            Change::DeleteChain(chain) => (
                NFT_MSG_DELCHAIN,
                0,
                [text(NFTA_CHAIN_TABLE, table), text(NFTA_CHAIN_NAME, chain)].concat(),
            ),
            Change::DeleteTable => (NFT_MSG_DELTABLE, 0, text(NFTA_TABLE_NAME, table)),
        }
    }
}

/// What a change does, for an error line ("adding a rule to chain my-app-dnat").
impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::AddTable => write!(f, "adding the table"),
            Change::AddMap(m) if m.anonymous => write!(f, "adding an anonymous map"),
            Change::AddMap(m) => write!(f, "adding map {}", m.name),
            Change::AddChain { name, .. } => write!(f, "adding chain {name}"),
            Change::AddRule(r) => match &r.comment {
                Some(c) => write!(f, "adding rule \"{c}\" to chain {}", r.chain),
                None => write!(f, "adding a rule to chain {}", r.chain),
            },
            Change::AddElements { map, elements, .. } => {
                let map = match map.as_str() {
                    ANONYMOUS => "an anonymous map".to_string(),
                    name => format!("map {name}"),
                };
                match elements.as_slice() {
                    [(key, data)] => {
                        let value = match data {
                            Data::Verdict(v) => verdict_text(v).replace(" ->", ""),
                            Data::Value(v) => words(v),
                        };
                        write!(f, "adding {key} : {value} to {map}")
                    }
                    many => write!(f, "adding {} elements to {map}", many.len()),
                }
            }
            Change::DeleteElement { map, key } => write!(f, "deleting {key} from map {map}"),
            Change::FlushChain(chain) => write!(f, "flushing chain {chain}"),
            Change::DeleteChain(chain) => write!(f, "deleting chain {chain}"),
            Change::DeleteTable => write!(f, "deleting the table"),
        }
    }
}

/// A rule comment as nft stores it (libnftnl's udata): NFTNL_UDATA_RULE_COMMENT (0), its
/// length with the NUL, the text, NUL.
fn comment_userdata(comment: &str) -> Vec<u8> {
    let mut u = vec![0, (comment.len() + 1).min(255) as u8];
    u.extend_from_slice(&comment.as_bytes()[..comment.len().min(254)]);
    u.push(0);
    u
}

/// A rule comment read back from NFTA_RULE_USERDATA.
pub fn comment_of(userdata: &[u8]) -> Option<String> {
    let mut rest = userdata;
    while rest.len() >= 2 {
        let (kind, len) = (rest[0], rest[1] as usize);
        let value = rest.get(2..2 + len)?;
        if kind == 0 {
            return Some(super::nfnetlink::as_text(value));
        }
        rest = &rest[2 + len..];
    }
    None
}

/// The IPv4 address as register contents.
pub fn ipv4(addr: Ipv4Addr) -> Vec<u8> {
    addr.octets().to_vec()
}

/// Hex words as `nft --debug=mnl` prints a message body: attribute headers decoded as
/// `<LLLLTTTT>` (length, type with the NESTED bit), payload bytes in memory order.
#[cfg(test)]
pub(crate) fn mnl(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    tests::dump(bytes, &mut out);
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn dump(mut bytes: &[u8], out: &mut Vec<String>) {
        while bytes.len() >= 4 {
            let len = u16::from_ne_bytes([bytes[0], bytes[1]]) as usize;
            let kind = u16::from_ne_bytes([bytes[2], bytes[3]]);
            out.push(format!("<{len:04x}{kind:04x}>"));
            let payload = &bytes[4..len];
            if kind & 0x8000 != 0 {
                dump(payload, out);
            } else {
                for w in payload.chunks(4) {
                    let mut b = [0u8; 4];
                    b[..w.len()].copy_from_slice(w);
                    out.push(b.iter().map(|x| format!("{x:02x}")).collect());
                }
            }
            bytes = &bytes[len.next_multiple_of(4)..];
        }
    }

    fn ifname(name: &str) -> Vec<u8> {
        Key::Ifname(name.into()).bytes()
    }

    /// `iifname "hy02b9c000" ip daddr 127.0.0.0/8 drop` in chain my-app-pre: the rule body as
    /// `nft --debug=mnl` printed it for the same rule (nftables 1.0.6).
    #[test]
    fn a_rule_is_laid_out_as_nft_lays_it_out() {
        let rule = Rule {
            chain: "my-app-pre".into(),
            exprs: vec![
                Expr::Meta {
                    key: MetaKey::Iifname,
                    dreg: REG1,
                },
                Expr::Cmp {
                    op: CmpOp::Eq,
                    sreg: REG1,
                    data: ifname("hy02b9c000"),
                },
                Expr::Meta {
                    key: MetaKey::Nfproto,
                    dreg: REG1,
                },
                Expr::Cmp {
                    op: CmpOp::Eq,
                    sreg: REG1,
                    data: vec![2],
                },
                Expr::Payload {
                    base: Base::Network,
                    offset: 16,
                    len: 1,
                    dreg: REG1,
                },
                Expr::Cmp {
                    op: CmpOp::Eq,
                    sreg: REG1,
                    data: vec![127],
                },
                Expr::Immediate {
                    dreg: VERDICT,
                    data: Data::Verdict(Verdict::Drop),
                },
            ],
            comment: None,
        };
        let (kind, flags, body) = Change::AddRule(rule.clone()).encode("hydra");
        assert_eq!(kind, NFT_MSG_NEWRULE);
        assert_eq!(
            flags,
            (libc::NLM_F_CREATE | libc::NLM_F_APPEND) as u16,
            "appended, not inserted at the head"
        );
        let from_nft = "<000a0001> 68796472 61000000 <000f0002> 6d792d61 70702d70 72650000 \
            <01408004> \
            <00248001> <00090001> 6d657461 00000000 <00148002> <00080002> 00000006 <00080001> 00000001 \
            <00388001> <00080001> 636d7000 <002c8002> <00080001> 00000001 <00080002> 00000000 \
            <00188003> <00140001> 68793032 62396330 30300000 00000000 \
            <00248001> <00090001> 6d657461 00000000 <00148002> <00080002> 0000000f <00080001> 00000001 \
            <002c8001> <00080001> 636d7000 <00208002> <00080001> 00000001 <00080002> 00000000 \
            <000c8003> <00050001> 02000000 \
            <00348001> <000c0001> 7061796c 6f616400 <00248002> <00080001> 00000001 <00080002> 00000001 \
            <00080003> 00000010 <00080004> 00000001 \
            <002c8001> <00080001> 636d7000 <00208002> <00080001> 00000001 <00080002> 00000000 \
            <000c8003> <00050001> 7f000000 \
            <00308001> <000e0001> 696d6d65 64696174 65000000 <001c8002> <00080001> 00000000 \
            <00108002> <000c8002> <00080001> 00000000";
        assert_eq!(
            mnl(&body),
            from_nft.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        // And as `nft --debug=netlink` lists it.
        assert_eq!(
            rule.lines(),
            [
                "[ meta load iifname => reg 1 ]",
                "[ cmp eq reg 1 0x32307968 0x30633962 0x00003030 0x00000000 ]",
                "[ meta load nfproto => reg 1 ]",
                "[ cmp eq reg 1 0x00000002 ]",
                "[ payload load 1b @ network header + 16 => reg 1 ]",
                "[ cmp eq reg 1 0x0000007f ]",
                "[ immediate reg 0 drop ]",
            ]
        );
    }

    /// `"hy02b9c000" : jump my-app-pre` added to map pre_if, and `tcp . 18080 : jump
    /// my-app-dnat` to dnat_ports, as `nft --debug=mnl` printed them (without the set id nft
    /// adds for a map created in the same transaction: the kernel finds a named map by name).
    #[test]
    fn map_elements_are_laid_out_as_nft_lays_them_out() {
        let (kind, _, body) = Change::AddElements {
            map: "pre_if".into(),
            set_id: None,
            elements: vec![(
                Key::Ifname("hy02b9c000".into()),
                Data::Verdict(Verdict::Jump("my-app-pre".into())),
            )],
        }
        .encode("hydra");
        assert_eq!(kind, NFT_MSG_NEWSETELEM);
        assert_eq!(
            mnl(&body),
            "<000a0001> 68796472 61000000 <000b0002> 7072655f 69660000 \
             <00408003> <003c8001> <00188001> <00140001> 68793032 62396330 30300000 00000000 \
             <00208002> <001c8002> <00080001> fffffffd <000f0002> 6d792d61 70702d70 72650000"
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        );
        let (_, _, body) = Change::AddElements {
            map: "dnat_ports".into(),
            set_id: None,
            elements: vec![(
                Key::ProtoPort(Protocol::Tcp, 18080),
                Data::Verdict(Verdict::Jump("my-app-dnat".into())),
            )],
        }
        .encode("hydra");
        assert!(
            mnl(&body).contains("<00108001> <000c0001> 06000000 46a00000 <00208002>"),
            "{}",
            mnl(&body)
        );
    }

    #[test]
    fn a_base_chain_and_a_verdict_map_are_laid_out_as_nft_lays_them_out() {
        let (_, _, body) = Change::AddChain {
            name: "out".into(),
            hook: Some(Hook {
                kind: "nat",
                hook: NF_INET_LOCAL_OUT,
                priority: -100,
            }),
        }
        .encode("hydra");
        assert_eq!(
            mnl(&body),
            "<000a0001> 68796472 61000000 <00080003> 6f757400 <00080007> 6e617400 \
             <00080005> 00000001 <00148004> <00080001> 00000003 <00080002> ffffff9c"
        );
        let comment = comment_userdata("m0 out");
        assert_eq!(
            comment, b"\x00\x07m0 out\x00",
            "as nft --debug=netlink shows"
        );
        assert_eq!(comment_of(&comment).as_deref(), Some("m0 out"));
    }

    #[test]
    fn changes_describe_themselves_for_error_lines() {
        let add = Change::AddElements {
            map: "dnat_ports".into(),
            set_id: None,
            elements: vec![(
                Key::ProtoPort(Protocol::Udp, 15353),
                Data::Verdict(Verdict::Jump("my-app-dnat".into())),
            )],
        };
        assert_eq!(
            add.to_string(),
            "adding udp . 15353 : jump my-app-dnat to map dnat_ports"
        );
    }
}
