//! A `partial` process's link: a veth pair whose inner end (`eth0`) is created directly in the
//! process's network namespace (netavark's approach), addressed and routed from a socket opened
//! in that namespace; the host end gets per-interface settings only, never global sysctls.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::unistd::Pid;
use thiserror::Error;

use super::internal::{InternalLink, InternalNet};
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

/// Per-interface settings of the host end: no IPv6 (the link is IPv4 only), `route_localnet`
/// so 127.0.0.1 clients can be masqueraded into it, and `forwarding` so traffic between it and
/// other links is routed at all (the firewall decides what may pass).
fn set_interface(veth: &str) -> Result<(), VethError> {
    disable_ipv6(veth)?;
    set_ipv4(veth, "route_localnet", "1")?;
    set_ipv4(veth, "forwarding", "1")
}

/// Sets an IPv4 per-interface setting of a host interface of hydra's.
pub fn set_ipv4(name: &str, key: &str, value: &str) -> Result<(), VethError> {
    let path = format!("/proc/sys/net/ipv4/conf/{name}/{key}");
    std::fs::write(&path, value).map_err(|source| VethError::Sysctl { path, source })
}

/// Whether the kernel has IPv6 (otherwise there is nothing to turn off).
fn ipv6_enabled() -> bool {
    std::path::Path::new("/proc/sys/net/ipv6").exists()
}

/// Disables IPv6 on a host interface of hydra's (its links are IPv4 only).
pub fn disable_ipv6(name: &str) -> Result<(), VethError> {
    let path = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
    // A kernel without IPv6 has no such file: nothing to disable.
    if !std::path::Path::new(&path).exists() {
        return Ok(());
    }
    std::fs::write(&path, "1").map_err(|source| VethError::Sysctl { path, source })
}

/// The links a process gets before it may go: `eth0` on its own /30 (`partial`) and a port on
/// each internal network it is a member of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkPlan {
    pub eth0: Option<Subnet>,
    pub internal: Vec<InternalLink>,
}

impl LinkPlan {
    pub fn is_empty(&self) -> bool {
        self.eth0.is_none() && self.internal.is_empty()
    }
}

/// Creates a veth pair `host` ↔ `inner` (inner end in `netns`); a leftover `host` from the same
/// process's previous run, still on its way out with the old namespace, is deleted first.
fn make_pair(
    netlink: &mut Netlink,
    host: &str,
    inner: &str,
    netns: std::os::fd::BorrowedFd<'_>,
) -> Result<u32, VethError> {
    match netlink.add_veth(host, inner, netns) {
        Err(e) if e.errno == Errno::EEXIST => {
            netlink.delete_link(host)?;
            netlink.add_veth(host, inner, netns)?;
        }
        other => other?,
    }
    Ok(netlink.link_index(host)?)
}

/// Creates and configures the links of process `pid`.
pub fn attach(pid: Pid, plan: &LinkPlan) -> Result<(), VethError> {
    let netns = File::open(format!("/proc/{pid}/ns/net")).map_err(VethError::Namespace)?;
    let mut host = Netlink::open()?;
    let mut inner_setup: Vec<(String, IpAddr, u8)> = Vec::new();
    if let Some(subnet) = &plan.eth0 {
        let veth = subnet.veth();
        let index = make_pair(&mut host, &veth, INNER, netns.as_fd())?;
        set_interface(&veth)?;
        host.add_address(index, IpAddr::V4(subnet.host()), Subnet::PREFIX)?;
        host.set_up(index)?;
        inner_setup.push((
            INNER.to_string(),
            IpAddr::V4(subnet.guest()),
            Subnet::PREFIX,
        ));
    }
    for link in &plan.internal {
        let index = make_pair(&mut host, &link.port, &link.inner, netns.as_fd())?;
        disable_ipv6(&link.port)?;
        let bridge = host.link_index(&link.bridge)?;
        host.set_controller(index, bridge)?;
        host.set_up(index)?;
        inner_setup.push((
            link.inner.clone(),
            IpAddr::V4(link.address),
            InternalNet::PREFIX,
        ));
    }
    let mut inner = Netlink::open_in(netns.as_fd())?;
    // The links are IPv4 only; an IPv6 link-local address would make the kernel send ~500
    // bytes of neighbour and multicast chatter out of every process at start.
    let ipv6 = ipv6_enabled();
    for (name, address, prefix) in &inner_setup {
        let index = inner.link_index(name)?;
        if ipv6 {
            inner.no_ipv6_addresses(index)?;
        }
        inner.add_address(index, *address, *prefix)?;
        inner.set_up(index)?;
    }
    if let Some(subnet) = &plan.eth0 {
        inner.add_default_route(subnet.host())?;
    }
    Ok(())
}

/// Deletes a host interface of hydra's (a veth's other end goes with it); already gone is fine.
pub fn detach(name: &str) -> Result<(), VethError> {
    Netlink::open()?.delete_link(name)?;
    Ok(())
}
