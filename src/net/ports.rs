//! Port mappings as users write them (`-p [IP:]HOST:CONTAINER[/udp]`) and the check that a host
//! port is free before hydra claims it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use thiserror::Error;

use crate::config::Protocol;

#[derive(Debug, Error, PartialEq)]
pub enum PortError {
    #[error("-p {0}: expected [IP:]HOST:CONTAINER[/udp] with ports from 1 to 65535")]
    Syntax(String),
    #[error("-p {0}: only IPv4 host addresses can be mapped (the process has an IPv4 link)")]
    Ipv6(String),
}

/// One `-p` mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMapping {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub port: u16,
    pub protocol: Protocol,
}

fn port_number(text: &str) -> Option<u16> {
    text.parse::<u16>().ok().filter(|&p| p != 0)
}

impl PortMapping {
    /// Parses `[IP:]HOST:CONTAINER[/tcp|/udp]`; an IPv6 address goes in brackets.
    pub fn parse(text: &str) -> Result<PortMapping, PortError> {
        let bad = || PortError::Syntax(text.to_string());
        let (spec, protocol) = match text.rsplit_once('/') {
            Some((spec, "tcp")) => (spec, Protocol::Tcp),
            Some((spec, "udp")) => (spec, Protocol::Udp),
            Some(_) => return Err(bad()),
            None => (text, Protocol::Tcp),
        };
        let (rest, port) = spec.rsplit_once(':').ok_or_else(bad)?;
        let port = port_number(port).ok_or_else(bad)?;
        let (host_ip, host_port) = match rest.rsplit_once(':') {
            None => (None, rest),
            Some((ip, host_port)) => {
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                match ip.parse::<IpAddr>().map_err(|_| bad())? {
                    IpAddr::V4(v4) => (Some(v4), host_port),
                    IpAddr::V6(_) => return Err(PortError::Ipv6(text.to_string())),
                }
            }
        };
        let host_port = port_number(host_port).ok_or_else(bad)?;
        Ok(PortMapping {
            host_ip,
            host_port,
            port,
            protocol,
        })
    }
}

/// Whether something on the host already holds `ip:port` (any address when `ip` is `None`):
/// hydra binds it for a moment, as the kernel would refuse a second listener.
pub fn host_port_busy(protocol: Protocol, ip: Option<Ipv4Addr>, port: u16) -> bool {
    let addr = SocketAddr::new(IpAddr::V4(ip.unwrap_or(Ipv4Addr::UNSPECIFIED)), port);
    let result = match protocol {
        Protocol::Tcp => TcpListener::bind(addr).map(drop),
        Protocol::Udp => UdpSocket::bind(addr).map(drop),
    };
    // A host address hydra cannot bind (not local) is not "busy"; DNAT never matches it.
    matches!(result, Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_docker_forms() {
        let p = PortMapping::parse("18080:8080").unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.port, p.protocol),
            (None, 18080, 8080, Protocol::Tcp)
        );
        let p = PortMapping::parse("127.0.0.1:5353:53/udp").unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!((p.host_port, p.port, p.protocol), (5353, 53, Protocol::Udp));
        assert_eq!(
            PortMapping::parse("80:80/tcp").unwrap().protocol,
            Protocol::Tcp
        );
    }

    #[test]
    fn refuses_bad_mappings_with_the_input() {
        for bad in [
            "8080",
            "0:80",
            "80:0",
            "80:70000",
            "x:80:80",
            "80:80/sctp",
            "1.2.3:80:80",
        ] {
            assert_eq!(
                PortMapping::parse(bad),
                Err(PortError::Syntax(bad.to_string())),
                "{bad}"
            );
        }
        assert_eq!(
            PortMapping::parse("[::1]:80:80"),
            Err(PortError::Ipv6("[::1]:80:80".to_string()))
        );
    }

    #[test]
    fn a_bound_port_is_busy_and_a_free_one_is_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(host_port_busy(
            Protocol::Tcp,
            Some(Ipv4Addr::LOCALHOST),
            port
        ));
        assert!(host_port_busy(Protocol::Tcp, None, port));
        drop(listener);
        assert!(!host_port_busy(Protocol::Tcp, None, port));
    }
}
