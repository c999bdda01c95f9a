//! Port mappings as users write them (`-p [IP:]HOST:CONTAINER[/udp]`), binding a host port (an
//! IPv6 one for IPv6 only, so it never collides with an IPv4 listener) and the check that a host
//! port is free before hydra claims it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use thiserror::Error;

use crate::config::Protocol;

#[derive(Debug, Error, PartialEq)]
pub enum PortError {
    #[error("-p {0}: expected [IP:]HOST:CONTAINER[/udp] with ports from 1 to 65535")]
    Syntax(String),
}

/// One `-p` mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMapping {
    pub host_ip: Option<IpAddr>,
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
                // IPv6 only in brackets, as Docker has it.
                let ip = match ip.strip_prefix('[').and_then(|i| i.strip_suffix(']')) {
                    Some(v6) => IpAddr::V6(v6.parse().map_err(|_| bad())?),
                    None => IpAddr::V4(ip.parse().map_err(|_| bad())?),
                };
                (Some(ip), host_port)
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

/// Whether the host has IPv6 (a mapping without a host address is then served on `[::]` too).
pub fn host_has_ipv6() -> bool {
    std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|t| !t.trim().is_empty())
}

/// A socket bound to `addr` (listening, for TCP). An IPv6 socket is IPv6-only, so `[::]` and
/// `0.0.0.0` are two separate claims, as the firewall treats them.
pub fn bind(protocol: Protocol, addr: SocketAddr) -> std::io::Result<OwnedFd> {
    let (domain, kind) = match (addr, protocol) {
        (SocketAddr::V4(_), Protocol::Tcp) => (libc::AF_INET, libc::SOCK_STREAM),
        (SocketAddr::V4(_), Protocol::Udp) => (libc::AF_INET, libc::SOCK_DGRAM),
        (SocketAddr::V6(_), Protocol::Tcp) => (libc::AF_INET6, libc::SOCK_STREAM),
        (SocketAddr::V6(_), Protocol::Udp) => (libc::AF_INET6, libc::SOCK_DGRAM),
    };
    let os = std::io::Error::last_os_error;
    // SAFETY: socket returns a new fd that we own at once.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(os());
    }
    // SAFETY: fd was just created and nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let on: libc::c_int = 1;
    let set = |level, name| {
        // SAFETY: setsockopt with an int on this stack.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                level,
                name,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    if protocol == Protocol::Tcp && set(libc::SOL_SOCKET, libc::SO_REUSEADDR) != 0 {
        return Err(os());
    }
    if addr.is_ipv6() && set(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) != 0 {
        return Err(os());
    }
    // SAFETY: bind with a sockaddr on this stack, its true length given.
    let rc = unsafe {
        match addr {
            SocketAddr::V4(a) => {
                let sa = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*a.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                libc::bind(
                    sock.as_raw_fd(),
                    (&sa as *const libc::sockaddr_in).cast(),
                    std::mem::size_of_val(&sa) as libc::socklen_t,
                )
            }
            SocketAddr::V6(a) => {
                let sa = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: 0,
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                libc::bind(
                    sock.as_raw_fd(),
                    (&sa as *const libc::sockaddr_in6).cast(),
                    std::mem::size_of_val(&sa) as libc::socklen_t,
                )
            }
        }
    };
    if rc != 0 {
        return Err(os());
    }
    // SAFETY: listen on our own socket.
    if protocol == Protocol::Tcp && unsafe { libc::listen(sock.as_raw_fd(), 1024) } != 0 {
        return Err(os());
    }
    Ok(sock)
}

/// Whether something on the host already holds `ip:port` (any IPv4 address when `ip` is
/// `None`): hydra binds it for a moment, as the kernel would refuse a second listener.
pub fn host_port_busy(protocol: Protocol, ip: Option<IpAddr>, port: u16) -> bool {
    let addr = SocketAddr::new(ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), port);
    // A host address hydra cannot bind (not local) is not "busy"; DNAT never matches it.
    matches!(bind(protocol, addr), Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
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
        assert_eq!(p.host_ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
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
    }

    #[test]
    fn an_ipv6_host_address_goes_in_brackets() {
        let p = PortMapping::parse("[::1]:18080:80/udp").unwrap();
        assert_eq!(p.host_ip, Some(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)));
        assert_eq!(
            (p.host_port, p.port, p.protocol),
            (18080, 80, Protocol::Udp)
        );
        assert_eq!(
            PortMapping::parse("[::1:80:80"),
            Err(PortError::Syntax("[::1:80:80".to_string()))
        );
        assert_eq!(
            PortMapping::parse("::1:80:80"),
            Err(PortError::Syntax("::1:80:80".to_string()))
        );
        assert_eq!(
            PortMapping::parse("[127.0.0.1]:80:80"),
            Err(PortError::Syntax("[127.0.0.1]:80:80".to_string()))
        );
    }

    #[test]
    fn a_bound_port_is_busy_and_a_free_one_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(host_port_busy(
            Protocol::Tcp,
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            port
        ));
        assert!(host_port_busy(Protocol::Tcp, None, port));
        drop(listener);
        assert!(!host_port_busy(Protocol::Tcp, None, port));
    }

    #[test]
    fn an_ipv6_binding_leaves_the_ipv4_port_free() {
        assert!(host_has_ipv6(), "these machines have IPv6 (::1 at least)");
        let v6 =
            std::net::TcpListener::from(bind(Protocol::Tcp, "[::]:0".parse().unwrap()).unwrap());
        let port = v6.local_addr().unwrap().port();
        assert!(host_port_busy(
            Protocol::Tcp,
            Some("::".parse().unwrap()),
            port
        ));
        assert!(!host_port_busy(Protocol::Tcp, None, port));
    }
}
