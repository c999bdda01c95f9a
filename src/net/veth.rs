//! A `partial` process's link: a veth pair whose inner end (`eth0`) is created directly in the
//! process's network namespace (netavark's approach), addressed and routed from a socket opened
//! in that namespace; the host end gets per-interface settings only, never global sysctls.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::unistd::Pid;
use thiserror::Error;

use super::netlink::{Netlink, NetlinkError};
use super::pool::Subnet;

/// The process's end of the link.
pub const INNER: &str = "eth0";

#[derive(Debug, Error)]
pub enum VethError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("opening the process's network namespace: {0}")]
    Namespace(std::io::Error),
    #[error("setting {path}: {source}")]
    Sysctl {
        path: String,
        source: std::io::Error,
    },
}

/// Per-interface settings of the host end: `route_localnet` so 127.0.0.1 clients can be
/// masqueraded into it, `forwarding` so traffic between it and other links is routed at all
/// (the firewall decides what may pass), and no IPv6 (the link is IPv4 only).
const HOST_SETTINGS: [(&str, &str, &str); 3] = [
    ("ipv6", "disable_ipv6", "1"),
    ("ipv4", "route_localnet", "1"),
    ("ipv4", "forwarding", "1"),
];

fn set_interface(veth: &str) -> Result<(), VethError> {
    for (family, key, value) in HOST_SETTINGS {
        let path = format!("/proc/sys/net/{family}/conf/{veth}/{key}");
        // A kernel without IPv6 has no such file: nothing to disable.
        if family == "ipv6" && !std::path::Path::new(&path).exists() {
            continue;
        }
        std::fs::write(&path, value).map_err(|source| VethError::Sysctl { path, source })?;
    }
    Ok(())
}

/// Creates and configures the link of process `pid` on `subnet`.
pub fn attach(pid: Pid, subnet: &Subnet) -> Result<(), VethError> {
    let netns = File::open(format!("/proc/{pid}/ns/net")).map_err(VethError::Namespace)?;
    let veth = subnet.veth();
    let mut host = Netlink::open()?;
    match host.add_veth(&veth, INNER, netns.as_fd()) {
        // The same process restarted: its old link may still be on its way out with the old
        // namespace. Delete it now rather than wait.
        Err(e) if e.errno == Errno::EEXIST => {
            host.delete_link(&veth)?;
            host.add_veth(&veth, INNER, netns.as_fd())?;
        }
        other => other?,
    }
    set_interface(&veth)?;
    let index = host.link_index(&veth)?;
    host.add_address(index, IpAddr::V4(subnet.host()), Subnet::PREFIX)?;
    host.set_up(index)?;
    let mut inner = Netlink::open_in(netns.as_fd())?;
    let index = inner.link_index(INNER)?;
    inner.add_address(index, IpAddr::V4(subnet.guest()), Subnet::PREFIX)?;
    inner.set_up(index)?;
    inner.add_default_route(subnet.host())?;
    Ok(())
}

/// Deletes the host end (and with it the inner one); already gone is fine.
pub fn detach(subnet: &Subnet) -> Result<(), VethError> {
    Netlink::open()?.delete_link(&subnet.veth())?;
    Ok(())
}
