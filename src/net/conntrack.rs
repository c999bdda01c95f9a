//! Current connections of a port mapping, from the kernel's connection tracking table
//! (`/proc/net/nf_conntrack`, the host namespace's).

use std::net::Ipv4Addr;

use super::nfnetlink::{attr, message, nest};
use crate::config::Protocol;

const TABLE: &str = "/proc/net/nf_conntrack";

/// One tracked flow: its protocol, TCP state, original tuple and reply source.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub protocol: String,
    pub state: Option<String>,
    pub orig_src: Option<Ipv4Addr>,
    pub orig_dst: Option<Ipv4Addr>,
    pub orig_sport: Option<u16>,
    pub orig_dport: Option<u16>,
    pub reply_src: Option<Ipv4Addr>,
    pub reply_sport: Option<u16>,
}

/// Parses one line of the table: `ipv4 2 tcp 6 431999 ESTABLISHED src=… dst=… sport=… dport=…
/// src=… dst=… sport=… dport=… [ASSURED] …`. The first tuple is the original direction.
pub fn parse_line(line: &str) -> Option<Flow> {
    let mut words = line.split_whitespace();
    if words.next()? != "ipv4" {
        return None;
    }
    let protocol = words.nth(1)?.to_string();
    let mut flow = Flow {
        protocol,
        state: None,
        orig_src: None,
        orig_dst: None,
        orig_sport: None,
        orig_dport: None,
        reply_src: None,
        reply_sport: None,
    };
    let mut tuple = 0;
    for word in words.skip(2) {
        match word.split_once('=') {
            None if tuple == 0 && word.chars().all(|c| c.is_ascii_uppercase() || c == '_') => {
                flow.state = Some(word.to_string());
            }
            Some(("src", v)) => {
                tuple += 1;
                match tuple {
                    1 => flow.orig_src = v.parse().ok(),
                    2 => flow.reply_src = v.parse().ok(),
                    _ => {}
                }
            }
            Some(("dst", v)) if tuple == 1 => flow.orig_dst = v.parse().ok(),
            Some(("sport", v)) if tuple == 1 => flow.orig_sport = v.parse().ok(),
            Some(("dport", v)) if tuple == 1 => flow.orig_dport = v.parse().ok(),
            Some(("sport", v)) if tuple == 2 => flow.reply_sport = v.parse().ok(),
            _ => {}
        }
    }
    Some(flow)
}

/// Whether `flow` is a live connection of a mapping from host port `host_port` to
/// `guests`:`port` that the kernel translated. (The socket redirect's connections are not
/// tracked, and one the host opened to the process's address itself is not translated: both
/// are counted from the host's sockets, `sockets::established`.)
pub fn is_active(
    flow: &Flow,
    protocol: Protocol,
    host_port: u16,
    guests: &[Ipv4Addr],
    port: u16,
) -> bool {
    flow.protocol == protocol.name()
        && flow.orig_dport == Some(host_port)
        && flow.orig_dst.is_some_and(|a| !guests.contains(&a))
        && flow.reply_sport == Some(port)
        && flow.reply_src.is_some_and(|a| guests.contains(&a))
        && match protocol {
            Protocol::Tcp => flow.state.as_deref() == Some("ESTABLISHED"),
            Protocol::Udp => true,
        }
}

/// Deletes the tracked UDP flows towards host port `port`: after a mapping appears or goes,
/// an existing flow would otherwise keep its old translation (or lack of one) for as long as
/// its sender keeps it alive (Docker's lesson). Returns how many were deleted.
pub fn flush_udp(port: u16) -> usize {
    let stale: Vec<Flow> = flows()
        .into_iter()
        .filter(|f| f.protocol == "udp" && f.orig_dport == Some(port))
        .collect();
    if stale.is_empty() {
        return 0;
    }
    let Ok(socket) = super::nfnetlink::socket() else {
        return 0;
    };
    stale
        .iter()
        .filter_map(delete_message)
        .filter(|m| socket.send(m, 0).is_ok())
        .count()
}

/// An IPCTNL_MSG_CT_DELETE request naming `flow` by its original tuple (ctnetlink).
fn delete_message(flow: &Flow) -> Option<Vec<u8>> {
    const IPCTNL_MSG_CT_DELETE: u16 = (1 << 8) | 2; // NFNL_SUBSYS_CTNETLINK << 8
    let ip = vec![
        attr(1, &flow.orig_src?.octets()), // CTA_IP_V4_SRC
        attr(2, &flow.orig_dst?.octets()), // CTA_IP_V4_DST
    ];
    let proto = vec![
        attr(1, &[Protocol::Udp.number()]),       // CTA_PROTO_NUM
        attr(2, &flow.orig_sport?.to_be_bytes()), // CTA_PROTO_SRC_PORT
        attr(3, &flow.orig_dport?.to_be_bytes()), // CTA_PROTO_DST_PORT
    ];
    // CTA_TUPLE_ORIG holding CTA_TUPLE_IP and CTA_TUPLE_PROTO.
    let tuple = nest(1, &[nest(1, &ip), nest(2, &proto)]);
    Some(message(
        IPCTNL_MSG_CT_DELETE,
        0,
        libc::AF_INET as u8,
        &tuple,
    ))
}

/// Every tracked IPv4 flow (empty when the table is unreadable).
pub fn flows() -> Vec<Flow> {
    std::fs::read_to_string(TABLE)
        .unwrap_or_default()
        .lines()
        .filter_map(parse_line)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "ipv4     2 tcp      6 431998 ESTABLISHED src=127.0.0.1 dst=127.0.0.1 sport=40512 dport=18080 src=10.231.0.2 dst=10.231.0.1 sport=8080 dport=40512 [ASSURED] mark=0 zone=0 use=2";
    const UDP: &str = "ipv4     2 udp      17 28 src=127.0.0.1 dst=127.0.0.1 sport=5000 dport=15353 src=10.231.0.6 dst=10.231.0.5 sport=53 dport=5000 mark=0 zone=0 use=2";

    #[test]
    fn reads_both_tuples_and_the_tcp_state() {
        let flow = parse_line(TCP).unwrap();
        assert_eq!(flow.protocol, "tcp");
        assert_eq!(flow.state.as_deref(), Some("ESTABLISHED"));
        assert_eq!(flow.orig_dport, Some(18080));
        assert_eq!(flow.orig_sport, Some(40512));
        assert_eq!(flow.orig_src, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(flow.orig_dst, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(flow.reply_src, Some(Ipv4Addr::new(10, 231, 0, 2)));
        assert_eq!(flow.reply_sport, Some(8080));
        let udp = parse_line(UDP).unwrap();
        assert_eq!(
            (udp.state, udp.orig_dport, udp.reply_sport),
            (None, Some(15353), Some(53))
        );
        assert!(parse_line("ipv6 10 tcp 6 1 ESTABLISHED src=::1").is_none());
    }

    #[test]
    fn a_delete_request_carries_the_original_tuple() {
        let udp = parse_line(UDP).unwrap();
        let m = delete_message(&udp).unwrap();
        assert_eq!(
            u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), 0x102);
        assert_eq!(m[16], libc::AF_INET as u8);
        let ports = [5000u16.to_be_bytes(), 15353u16.to_be_bytes()].concat();
        assert!(m.windows(2).any(|w| w == &ports[..2]) && m.windows(2).any(|w| w == &ports[2..]));
        assert!(m.windows(4).any(|w| w == [127, 0, 0, 1]));
    }

    #[test]
    fn counts_only_live_flows_of_the_mapping() {
        let guest = [Ipv4Addr::new(10, 231, 0, 2)];
        let tcp = parse_line(TCP).unwrap();
        assert!(is_active(&tcp, Protocol::Tcp, 18080, &guest, 8080));
        assert!(!is_active(&tcp, Protocol::Tcp, 18081, &guest, 8080));
        assert!(!is_active(&tcp, Protocol::Udp, 18080, &guest, 8080));
        // Not translated (the host connected to the process's address and port itself).
        let direct = TCP.replacen("dst=127.0.0.1", "dst=10.231.0.2", 1).replacen(
            "dport=18080",
            "dport=8080",
            1,
        );
        let direct = parse_line(&direct).unwrap();
        assert!(!is_active(&direct, Protocol::Tcp, 8080, &guest, 8080));
        let closing = parse_line(&TCP.replace("ESTABLISHED", "TIME_WAIT")).unwrap();
        assert!(!is_active(&closing, Protocol::Tcp, 18080, &guest, 8080));
        let udp = parse_line(UDP).unwrap();
        assert!(is_active(
            &udp,
            Protocol::Udp,
            15353,
            &[Ipv4Addr::new(10, 231, 0, 6)],
            53
        ));
    }
}
