//! A container's network as one unit: claiming subnets and host ports and installing the
//! firewall (`claim`), and undoing all of it (`release`, also what `gc` runs after a crash).
//! Everything claimed is written to `<state>/network.json` before the kernel objects exist
//! (write-ahead), under the network lock, so two hydras never hand out the same subnet or port.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::firewall::{Endpoint, FirewallError, Forward, Network};
use super::internal::{self, InternalNet, Member};
use super::lock::NetLock;
use super::netlink::{Netlink, NetlinkError};
use super::pool::{Pool, PoolError};
use super::redirect::SocketRedirect;
use super::userspace::Ports;
use super::veth::{self, VethError};
use super::{nft, ports};
use crate::config::Protocol;

/// The file in a container's state directory that describes its network.
pub const NETWORK_FILE: &str = "network.json";

#[derive(Debug, Error)]
pub enum NetError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error(transparent)]
    Veth(#[from] VethError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Forward(#[from] super::userspace::ForwardError),
    #[error("host port {port} is already mapped by container {container}")]
    PortMapped { port: String, container: String },
    #[error("host port {0} is already in use on the host")]
    PortBusy(String),
    #[error("this kernel cannot create {0} devices (load the module: modprobe {0})")]
    NoKernelSupport(&'static str),
    #[error("writing {path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a container asks for: one endpoint per `partial` process (name, egress allowed; none
/// rootless), its port mappings, whose targets are process indices in plan order (the same as
/// the endpoints' when there are endpoints), and its internal networks (name, members as
/// (virtual process, YAML process)).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub endpoints: Vec<(String, bool)>,
    pub forwards: Vec<Forward>,
    pub networks: Vec<(String, Vec<(String, String)>)>,
}

/// `[ip:]port/proto` (an IPv6 address in brackets), as errors and `hydra ports` show a host
/// port.
pub fn host_port_text(protocol: Protocol, ip: Option<IpAddr>, port: u16) -> String {
    let name = protocol.name();
    match ip {
        Some(IpAddr::V4(ip)) => format!("{ip}:{port}/{name}"),
        Some(IpAddr::V6(ip)) => format!("[{ip}]:{port}/{name}"),
        None => format!("{port}/{name}"),
    }
}

/// The network of the container whose state directory is `dir`, if it has one.
pub fn load(dir: &Path) -> Option<Network> {
    let text = std::fs::read_to_string(dir.join(NETWORK_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The networks of every other state directory of this user.
fn other_networks(own: &Path) -> Vec<Network> {
    let Ok(entries) = std::fs::read_dir(crate::kernel::state::base_dir()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p != own)
        .filter_map(|p| load(&p))
        .collect()
}

/// Two containers cannot share a host port and protocol in the firewall, whatever IPv4 host
/// address each names: hydra's port lookup is keyed by protocol and port. (hydra's own
/// listeners, the IPv6 side, clash where the kernel refuses the second bind.)
fn clashes(a: &Forward, b: &Forward) -> bool {
    a.protocol == b.protocol && a.host_port == b.host_port && a.in_kernel() && b.in_kernel()
}

fn check_ports(forwards: &[Forward], others: &[Network]) -> Result<(), NetError> {
    for f in forwards {
        let text = host_port_text(f.protocol, f.host_ip, f.host_port);
        if let Some(other) = others
            .iter()
            .find(|o| o.forwards.iter().any(|g| clashes(f, g)))
        {
            return Err(NetError::PortMapped {
                port: text,
                container: other.container.clone(),
            });
        }
        if ports::host_port_busy(f.protocol, f.host_ip, f.host_port) {
            return Err(NetError::PortBusy(text));
        }
    }
    Ok(())
}

fn write(dir: &Path, net: &Network) -> Result<(), NetError> {
    let path = dir.join(NETWORK_FILE);
    let text = serde_json::to_string_pretty(net).unwrap_or_default();
    std::fs::write(&path, text).map_err(|source| NetError::State { path, source })
}

/// A claimed network whose firewall rules are in place, with hydra's own forwarder for the IPv6
/// side of its mappings until the caller takes it.
pub struct Claiming {
    net: Network,
    ports: Option<Ports>,
    redirect: Option<SocketRedirect>,
}

impl Claiming {
    /// The claimed network (subnets are known at once; the rules may not be in place yet).
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// hydra's own forwarder for the IPv6 side of the mappings, if the host has IPv6 and there
    /// are mappings; its processes must be attached as they start.
    pub fn take_ports(&mut self) -> Option<Ports> {
        self.ports.take()
    }

    /// The socket redirect of the mappings (linked in the background, if the kernel takes it);
    /// the caller keeps it for as long as the container lives.
    pub fn take_redirect(&mut self) -> Option<SocketRedirect> {
        self.redirect.take()
    }

    /// Forgets stale UDP flows of the mapped ports, just before the process may go.
    pub fn finish(self) -> Result<Network, NetError> {
        flush_udp(&self.net);
        Ok(self.net)
    }
}

/// Claims subnets and host ports for `container` and installs its firewall rules (one netlink
/// transaction). The veths themselves are made per process start (`veth::attach`).
pub fn start_claim(dir: &Path, container: &str, request: &Request) -> Result<Claiming, NetError> {
    let lock = NetLock::take();
    let pool = Pool::from_env(super::pool::POOL_VARIABLE, super::pool::DEFAULT_POOL)?;
    let others = other_networks(dir);
    let used: Vec<_> = others
        .iter()
        .flat_map(|n| n.endpoints.iter().map(|e| e.subnet))
        .collect();
    let mut netlink = Netlink::open()?;
    let host = netlink.ipv4_addresses()?;
    let subnets = pool.choose(request.endpoints.len(), &used, &host)?;
    check_ports(&request.forwards, &others)?;
    let listeners = super::userspace::bind(&request.forwards, true)?;
    let internal = internal_networks(&request.networks, &others, &host)?;
    let net = Network {
        container: container.to_string(),
        pool: format!("{}/{}", pool.network(), pool.prefix()),
        endpoints: request
            .endpoints
            .iter()
            .zip(subnets)
            .map(|((process, egress), subnet)| Endpoint {
                process: process.clone(),
                subnet,
                egress: *egress,
            })
            .collect(),
        forwards: request.forwards.clone(),
        internal,
        userspace: false,
    };
    write(dir, &net)?;
    for n in &net.internal {
        make_bridge(&mut netlink, &n.bridge())?;
    }
    let mut redirect = None;
    if net.uses_firewall() {
        nft::install(&net, &lock)?;
        // Without it (no cgroup BPF here, or the root cgroup is another tool's alone) the
        // same connections go through DNAT.
        redirect = SocketRedirect::start(&net, dir);
    }
    drop(lock);
    let ports = (!listeners.is_empty())
        .then(|| Ports::start(&net.forwards, listeners, net.endpoints.len(), dir, false));
    Ok(Claiming {
        net,
        ports,
        redirect,
    })
}

/// Allocates a /24 per internal network and an address per member (.2 onwards).
fn internal_networks(
    asked: &[(String, Vec<(String, String)>)],
    others: &[Network],
    host: &[(std::net::Ipv4Addr, u8)],
) -> Result<Vec<InternalNet>, NetError> {
    if asked.is_empty() {
        return Ok(Vec::new());
    }
    let used: Vec<_> = others
        .iter()
        .flat_map(|n| n.internal.iter().map(|i| i.subnet))
        .collect();
    let subnets = internal::choose(internal::pool()?, asked.len(), &used, host)?;
    Ok(asked
        .iter()
        .zip(subnets)
        .map(|((name, members), subnet)| InternalNet {
            name: name.clone(),
            subnet,
            members: members
                .iter()
                .enumerate()
                .map(|(i, (process, group))| Member {
                    process: process.clone(),
                    group: group.clone(),
                    address: std::net::Ipv4Addr::from(u32::from(subnet) + 2 + i as u32),
                })
                .collect(),
        })
        .collect())
}

/// A bridge with no address, no IPv6, and strict reverse-path filtering (no route leads back
/// through it, so a packet a member crafts for the host itself is dropped), up.
fn make_bridge(netlink: &mut Netlink, name: &str) -> Result<(), NetError> {
    netlink.add_bridge(name).map_err(|e| match e.errno {
        nix::errno::Errno::EOPNOTSUPP => NetError::NoKernelSupport("bridge"),
        _ => NetError::from(e),
    })?;
    veth::disable_ipv6(name)?;
    veth::set_ipv4(name, "rp_filter", "1")?;
    let index = netlink.link_index(name)?;
    netlink.set_up(index)?;
    Ok(())
}

/// Rootless: claims the host ports of `request.forwards` for hydra's own forwarder, binding
/// them now (a busy or privileged port fails here, before any process exists), and starts
/// serving them into the `processes` process slots as they attach.
pub fn claim_userspace(
    dir: &Path,
    container: &str,
    request: &Request,
    processes: usize,
) -> Result<Ports, NetError> {
    let _lock = NetLock::take();
    let others = other_networks(dir);
    check_ports(&request.forwards, &others)?;
    let listeners = super::userspace::bind(&request.forwards, false)?;
    let net = Network {
        container: container.to_string(),
        pool: String::new(),
        endpoints: Vec::new(),
        forwards: request.forwards.clone(),
        internal: Vec::new(),
        userspace: true,
    };
    write(dir, &net)?;
    Ok(Ports::start(&net.forwards, listeners, processes, dir, true))
}

/// Claims and installs, waiting for the rules; with hydra's forwarder for the IPv6 side and the
/// socket redirect, both to be kept while the container lives.
pub fn claim(
    dir: &Path,
    container: &str,
    request: &Request,
) -> Result<(Network, Option<Ports>, Option<SocketRedirect>), NetError> {
    let mut claiming = start_claim(dir, container, request)?;
    let ports = claiming.take_ports();
    let redirect = claiming.take_redirect();
    Ok((claiming.finish()?, ports, redirect))
}

/// Forgets the tracked UDP flows of the container's UDP host ports, so none keeps a translation
/// from before the mapping changed.
fn flush_udp(net: &Network) {
    for f in net.forwards.iter().filter(|f| f.protocol == Protocol::Udp) {
        super::conntrack::flush_udp(f.host_port);
    }
}

/// Removes everything `claim` and `veth::attach` made for the container of `dir`.
pub fn release(dir: &Path) -> Result<(), NetError> {
    let Some(net) = load(dir) else {
        return Ok(());
    };
    let lock = NetLock::take();
    // The table goes with the last container that has rules in it.
    let last = other_networks(dir).iter().all(|n| !n.uses_firewall());
    let mut first_error = None;
    let mut links: Vec<String> = net.endpoints.iter().map(|e| e.subnet.veth()).collect();
    for n in &net.internal {
        links.extend(n.members.iter().map(|m| internal::port_name(m.address)));
        links.push(n.bridge());
    }
    for link in &links {
        if let Err(e) = veth::detach(link) {
            first_error.get_or_insert(NetError::from(e));
        }
    }
    if net.uses_firewall() {
        if let Err(e) = nft::remove(&net, last, &lock) {
            first_error.get_or_insert(NetError::from(e));
        }
    }
    flush_udp(&net);
    match first_error {
        Some(e) => Err(e),
        None => {
            let _ = std::fs::remove_file(dir.join(NETWORK_FILE));
            Ok(())
        }
    }
}
