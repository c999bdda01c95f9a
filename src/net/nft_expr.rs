//! hydra's rules in nft's own words (`iifname "V" ip saddr A tcp sport P ct status dnat counter
//! accept`), lowered to kernel expressions exactly as nft 1.0 lowers the same text in an `inet`
//! table: an `ip` match brings its `meta nfproto ipv4` dependency and a `tcp`/`udp` port match
//! its `meta l4proto`, once per rule; a prefix on a byte boundary compares its leading bytes, any
//! other is masked first. `nft --debug=netlink` shows the same expressions for the same text.

use std::net::Ipv4Addr;

use super::nft_wire::{
    datatype, ipv4, Base, Change, CmpOp, CtKey, Data, Expr, Key, Map, MetaKey, Rule, Verdict,
    ANONYMOUS, REG1, REG2, VERDICT,
};
use crate::config::Protocol;

/// Source or destination (`saddr`/`daddr`, `sport`/`dport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Src,
    Dst,
}

/// ct state bits (1 << enum ip_conntrack_info) and ct status bits (enum ip_conntrack_status),
/// both compared in host order.
const CT_ESTABLISHED_RELATED: u32 = (1 << 1) | (1 << 2);
const CT_NEW: u32 = 1 << 3;
const CT_UNTRACKED: u32 = 1 << 6;
const IPS_DST_NAT: u32 = 1 << 5;
/// TCP header flags.
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
/// `ct direction` values (one byte).
const IP_CT_DIR_ORIGINAL: u8 = 0;
const IP_CT_DIR_REPLY: u8 = 1;
/// RTN_LOCAL, as `fib … type` leaves it in the register (host order).
const RTN_LOCAL: u32 = 2;

/// `fib daddr type local` (`fib saddr type local` with `source`).
pub fn addr_type_local(source: bool) -> [Expr; 2] {
    [
        Expr::FibAddrType { source, dreg: REG1 },
        compare(CmpOp::Eq, RTN_LOCAL.to_ne_bytes().to_vec()),
    ]
}

/// A rule being written, match by match; its statement ends it.
#[derive(Debug, Clone)]
pub struct RuleText {
    chain: String,
    exprs: Vec<Expr>,
    comment: Option<String>,
    /// `meta nfproto ipv4` is in the rule already.
    ipv4: bool,
    /// `meta l4proto` is in the rule already.
    l4proto: Option<Protocol>,
}

/// Starts a rule in `chain`.
pub fn rule(chain: impl Into<String>) -> RuleText {
    RuleText {
        chain: chain.into(),
        exprs: Vec::new(),
        comment: None,
        ipv4: false,
        l4proto: None,
    }
}

fn load_meta(key: MetaKey) -> Expr {
    Expr::Meta { key, dreg: REG1 }
}

fn compare(op: CmpOp, data: Vec<u8>) -> Expr {
    Expr::Cmp {
        op,
        sreg: REG1,
        data,
    }
}

fn load(base: Base, offset: u32, len: u32) -> Expr {
    Expr::Payload {
        base,
        offset,
        len,
        dreg: REG1,
    }
}

/// The offset of `saddr`/`daddr` in the IPv4 header.
fn ip_offset(dir: Dir) -> u32 {
    match dir {
        Dir::Src => 12,
        Dir::Dst => 16,
    }
}

impl RuleText {
    fn with(mut self, exprs: impl IntoIterator<Item = Expr>) -> Self {
        self.exprs.extend(exprs);
        self
    }

    /// `iifname "NAME"` / `iifname != "NAME"`.
    pub fn iifname(self, op: CmpOp, name: &str) -> Self {
        let name = Key::Ifname(name.to_string()).bytes();
        self.with([load_meta(MetaKey::Iifname), compare(op, name)])
    }

    /// `oifname "NAME"` / `oifname != "NAME"`.
    pub fn oifname(self, op: CmpOp, name: &str) -> Self {
        let name = Key::Ifname(name.to_string()).bytes();
        self.with([load_meta(MetaKey::Oifname), compare(op, name)])
    }

    /// `meta nfproto ipv4`.
    pub fn nfproto_ipv4(mut self) -> Self {
        self.ipv4 = true;
        let nfproto = vec![libc::NFPROTO_IPV4 as u8];
        self.with([load_meta(MetaKey::Nfproto), compare(CmpOp::Eq, nfproto)])
    }

    fn needs_ipv4(self) -> Self {
        match self.ipv4 {
            true => self,
            false => self.nfproto_ipv4(),
        }
    }

    /// `ip saddr ADDR` / `ip daddr != ADDR`.
    pub fn ip(self, dir: Dir, op: CmpOp, addr: Ipv4Addr) -> Self {
        self.needs_ipv4().with([
            load(Base::Network, ip_offset(dir), 4),
            compare(op, ipv4(addr)),
        ])
    }

    /// `ip daddr NET/LEN`.
    pub fn ip_in(self, dir: Dir, net: Ipv4Addr, len: u8) -> Self {
        let len = len.min(32);
        let this = self.needs_ipv4();
        let octets = net.octets();
        if len.is_multiple_of(8) {
            let bytes = u32::from(len / 8);
            return this.with([
                load(Base::Network, ip_offset(dir), bytes),
                compare(CmpOp::Eq, octets[..bytes as usize].to_vec()),
            ]);
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        this.with([
            load(Base::Network, ip_offset(dir), 4),
            Expr::Bitwise {
                sreg: REG1,
                dreg: REG1,
                mask: mask.to_be_bytes().to_vec(),
                xor: vec![0; 4],
                named_op: false,
            },
            compare(CmpOp::Eq, (u32::from(net) & mask).to_be_bytes().to_vec()),
        ])
    }

    /// `meta l4proto tcp`, once per rule.
    pub fn l4proto(mut self, protocol: Protocol) -> Self {
        if self.l4proto == Some(protocol) {
            return self;
        }
        self.l4proto = Some(protocol);
        self.with([
            load_meta(MetaKey::L4proto),
            compare(CmpOp::Eq, vec![protocol.number()]),
        ])
    }

    /// `iifname "PREFIX*"`.
    pub fn iifname_prefix(self, prefix: &str) -> Self {
        let prefix = prefix.as_bytes().to_vec();
        self.with([load_meta(MetaKey::Iifname), compare(CmpOp::Eq, prefix)])
    }

    /// `meta mark MARK`.
    pub fn mark(self, mark: u32) -> Self {
        self.with([
            load_meta(MetaKey::Mark),
            compare(CmpOp::Eq, mark.to_ne_bytes().to_vec()),
        ])
    }

    /// `socket mark MARK`: the packet belongs to a local socket with this mark.
    pub fn socket_mark(self, mark: u32) -> Self {
        self.with([
            Expr::SocketMark { dreg: REG1 },
            compare(CmpOp::Eq, mark.to_ne_bytes().to_vec()),
        ])
    }

    /// `tcp flags & (syn | ack) == syn`: a connection's first packet.
    pub fn tcp_syn(self) -> Self {
        self.l4proto(Protocol::Tcp).with([
            load(Base::Transport, 13, 1),
            Expr::Bitwise {
                sreg: REG1,
                dreg: REG1,
                mask: vec![TCP_SYN | TCP_ACK],
                xor: vec![0],
                named_op: true,
            },
            compare(CmpOp::Eq, vec![TCP_SYN]),
        ])
    }

    /// `tcp dport N` / `udp sport N`.
    pub fn port(self, protocol: Protocol, dir: Dir, number: u16) -> Self {
        let offset = match dir {
            Dir::Src => 0,
            Dir::Dst => 2,
        };
        self.l4proto(protocol).with([
            load(Base::Transport, offset, 2),
            compare(CmpOp::Eq, number.to_be_bytes().to_vec()),
        ])
    }

    fn ct_bits(self, key: CtKey, bits: u32) -> Self {
        self.with([
            Expr::Ct { key, dreg: REG1 },
            Expr::Bitwise {
                sreg: REG1,
                dreg: REG1,
                mask: bits.to_ne_bytes().to_vec(),
                xor: vec![0; 4],
                named_op: false,
            },
            compare(CmpOp::Neq, vec![0; 4]),
        ])
    }

    /// `ct status dnat`: a flow the kernel DNAT'd.
    pub fn ct_status_dnat(self) -> Self {
        self.ct_bits(CtKey::Status, IPS_DST_NAT)
    }

    /// `ct state new`.
    pub fn ct_new(self) -> Self {
        self.ct_bits(CtKey::State, CT_NEW)
    }

    /// `ct direction reply` (`ct direction original` without `reply`).
    pub fn ct_direction(self, reply: bool) -> Self {
        let dir = if reply {
            IP_CT_DIR_REPLY
        } else {
            IP_CT_DIR_ORIGINAL
        };
        self.with([
            Expr::Ct {
                key: CtKey::Direction,
                dreg: REG1,
            },
            compare(CmpOp::Eq, vec![dir]),
        ])
    }

    /// `fib saddr type local`: sent by the host itself.
    pub fn from_host(self) -> Self {
        self.with(addr_type_local(true))
    }

    /// `ct state untracked`.
    pub fn untracked(self) -> Self {
        self.ct_bits(CtKey::State, CT_UNTRACKED)
    }

    /// `ct state established,related`.
    pub fn established(self) -> Self {
        self.ct_bits(CtKey::State, CT_ESTABLISHED_RELATED)
    }

    pub fn counter(self) -> Self {
        self.with([Expr::Counter])
    }

    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    fn end(self, last: impl IntoIterator<Item = Expr>) -> Rule {
        let this = self.with(last);
        Rule {
            chain: this.chain,
            exprs: this.exprs,
            comment: this.comment,
        }
    }

    fn verdict(self, v: Verdict) -> Rule {
        self.end([Expr::Immediate {
            dreg: VERDICT,
            data: Data::Verdict(v),
        }])
    }

    pub fn accept(self) -> Rule {
        self.verdict(Verdict::Accept)
    }

    pub fn drop(self) -> Rule {
        self.verdict(Verdict::Drop)
    }

    pub fn masquerade(self) -> Rule {
        self.end([Expr::Masquerade])
    }

    /// `notrack`: connection tracking skips the packet.
    pub fn notrack(self) -> Rule {
        self.end([Expr::Notrack])
    }

    /// `dnat ip to ADDR:PORT`.
    pub fn dnat(self, to: Ipv4Addr, port: u16) -> Rule {
        self.end([
            Expr::Immediate {
                dreg: REG1,
                data: Data::Value(ipv4(to)),
            },
            port_into_reg2(port),
            Expr::Dnat {
                addr: REG1,
                port: REG2,
            },
        ])
    }

    /// `dnat ip to numgen inc mod N map { 0 : A, 1 : B, ... }:PORT`, the map being the
    /// anonymous one `map_id` adds in the same transaction (`spread_map`).
    pub fn dnat_spread(self, map_id: u32, count: u32, port: u16) -> Rule {
        self.end([
            Expr::Numgen {
                dreg: REG1,
                modulus: count,
            },
            Expr::Lookup {
                set: ANONYMOUS.to_string(),
                set_id: Some(map_id),
                sreg: REG1,
                dreg: REG1,
            },
            port_into_reg2(port),
            Expr::Dnat {
                addr: REG1,
                port: REG2,
            },
        ])
    }
}

fn port_into_reg2(port: u16) -> Expr {
    Expr::Immediate {
        dreg: REG2,
        data: Data::Value(port.to_be_bytes().to_vec()),
    }
}

/// The anonymous map `0 : A, 1 : B, ...` that `dnat_spread` looks its address up in, with its
/// elements: added just before the rule, in the same transaction, which names it by `id`.
pub fn spread_map(id: u32, to: &[Ipv4Addr]) -> Vec<Change> {
    // nft's notes: key in host order, value big endian, not an interval map.
    const USERDATA: [u8; 18] = [0, 4, 1, 0, 0, 0, 1, 4, 2, 0, 0, 0, 6, 4, 0, 0, 0, 0];
    vec![
        Change::AddMap(Map {
            name: ANONYMOUS.to_string(),
            anonymous: true,
            id,
            key_type: datatype::INTEGER,
            key_len: 4,
            data_type: datatype::IPADDR,
            data_len: 4,
            size: Some(to.len() as u32),
            userdata: USERDATA.to_vec(),
        }),
        Change::AddElements {
            map: ANONYMOUS.to_string(),
            set_id: Some(id),
            elements: to
                .iter()
                .enumerate()
                .map(|(n, addr)| (Key::Index(n as u32), Data::Value(ipv4(*addr))))
                .collect(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `nft --debug=netlink` (nftables 1.0.6) printed for the same rule text.
    #[test]
    fn a_mapped_reply_rule_lowers_as_nft_lowers_it() {
        let r = rule("my-app-pre")
            .iifname(CmpOp::Eq, "hy02b9c000")
            .ip(Dir::Src, CmpOp::Eq, Ipv4Addr::new(10, 231, 0, 2))
            .port(Protocol::Tcp, Dir::Src, 8080)
            .ct_status_dnat()
            .counter()
            .comment("m0 out")
            .accept();
        assert_eq!(
            r.lines(),
            [
                "[ meta load iifname => reg 1 ]",
                "[ cmp eq reg 1 0x32307968 0x30633962 0x00003030 0x00000000 ]",
                "[ meta load nfproto => reg 1 ]",
                "[ cmp eq reg 1 0x00000002 ]",
                "[ payload load 4b @ network header + 12 => reg 1 ]",
                "[ cmp eq reg 1 0x0200e70a ]",
                "[ meta load l4proto => reg 1 ]",
                "[ cmp eq reg 1 0x00000006 ]",
                "[ payload load 2b @ transport header + 0 => reg 1 ]",
                "[ cmp eq reg 1 0x0000901f ]",
                "[ ct load status => reg 1 ]",
                "[ bitwise reg 1 = ( reg 1 & 0x00000020 ) ^ 0x00000000 ]",
                "[ cmp neq reg 1 0x00000000 ]",
                "[ counter pkts 0 bytes 0 ]",
                "[ immediate reg 0 accept ]",
            ]
        );
        assert_eq!(r.comment.as_deref(), Some("m0 out"));
    }

    #[test]
    fn prefixes_compare_whole_bytes_or_mask_the_rest() {
        let r = rule("c")
            .ip_in(Dir::Dst, Ipv4Addr::new(10, 231, 0, 0), 16)
            .drop();
        assert_eq!(
            r.lines()[2..4],
            [
                "[ payload load 2b @ network header + 16 => reg 1 ]",
                "[ cmp eq reg 1 0x0000e70a ]",
            ]
        );
        let r = rule("c")
            .iifname(CmpOp::Eq, "hy02b9c002")
            .ip_in(Dir::Dst, Ipv4Addr::new(10, 232, 0, 0), 20)
            .drop();
        assert_eq!(
            r.lines()[4..],
            [
                "[ payload load 4b @ network header + 16 => reg 1 ]",
                "[ bitwise reg 1 = ( reg 1 & 0x00f0ffff ) ^ 0x00000000 ]",
                "[ cmp eq reg 1 0x0000e80a ]",
                "[ immediate reg 0 drop ]",
            ]
        );
    }

    #[test]
    fn an_explicit_nfproto_is_not_repeated_and_dnat_spreads_through_an_anonymous_map() {
        let r = rule("my-app-dnat")
            .nfproto_ipv4()
            .ip(Dir::Dst, CmpOp::Eq, Ipv4Addr::LOCALHOST)
            .port(Protocol::Udp, Dir::Dst, 15353)
            .counter()
            .dnat(Ipv4Addr::new(10, 231, 0, 10), 53);
        let lines = r.lines();
        assert_eq!(
            lines.iter().filter(|l| l.contains("nfproto")).count(),
            1,
            "{lines:?}"
        );
        assert_eq!(
            lines[lines.len() - 3..],
            [
                "[ immediate reg 1 0x0a00e70a ]",
                "[ immediate reg 2 0x00003500 ]",
                "[ nat dnat ip addr_min reg 1 proto_min reg 2 flags 0x2 ]",
            ]
        );
        let r = rule("my-app-dnat").counter().dnat_spread(1000, 2, 8080);
        assert_eq!(
            r.lines(),
            [
                "[ counter pkts 0 bytes 0 ]",
                "[ numgen reg 1 = inc mod 2 ]",
                "[ lookup reg 1 set __map%d dreg 1 ]",
                "[ immediate reg 2 0x0000901f ]",
                "[ nat dnat ip addr_min reg 1 proto_min reg 2 flags 0x2 ]",
            ]
        );
        let map = spread_map(
            1000,
            &[Ipv4Addr::new(10, 231, 0, 2), Ipv4Addr::new(10, 231, 0, 6)],
        );
        assert_eq!(map.len(), 2, "the map and its elements");
    }
}
