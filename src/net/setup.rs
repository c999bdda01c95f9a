//! A container's network as one unit: claiming subnets and host ports and installing the
//! firewall (`claim`), and undoing all of it (`release`, also what `gc` runs after a crash).
//! Everything claimed is written to `<state>/network.json` before the kernel objects exist
//! (write-ahead), under the network lock, so two hydras never hand out the same subnet or port.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::firewall::{Endpoint, FirewallError, Forward, Network};
use super::lock::NetLock;
use super::netlink::{Netlink, NetlinkError};
use super::pool::{Pool, PoolError};
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
    #[error("host port {port} is already mapped by container {container}")]
    PortMapped { port: String, container: String },
    #[error("host port {0} is already in use on the host")]
    PortBusy(String),
    #[error("writing {path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a container asks for: one endpoint per `partial` process (name, egress allowed) and
/// its port mappings, whose targets index the endpoints.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub endpoints: Vec<(String, bool)>,
    pub forwards: Vec<Forward>,
}

/// `[ip:]port/proto`, as errors and `hydra ports` show a host port.
pub fn host_port_text(protocol: Protocol, ip: Option<Ipv4Addr>, port: u16) -> String {
    match ip {
        Some(ip) => format!("{ip}:{port}/{}", protocol.name()),
        None => format!("{port}/{}", protocol.name()),
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

/// Two containers cannot share a host port and protocol, whatever host address each names:
/// hydra's port lookup is keyed by protocol and port.
fn clashes(a: &Forward, b: &Forward) -> bool {
    a.protocol == b.protocol && a.host_port == b.host_port
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

/// A claim whose firewall rules are still being installed (`nft` runs while the caller goes on
/// with the process's own set-up); the network lock is held until `finish`.
pub struct Claiming {
    net: Network,
    install: nft::Running,
    _lock: NetLock,
}

impl Claiming {
    /// The claimed network (subnets are known at once; the rules may not be in place yet).
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// Waits for the rules, then forgets stale UDP flows of the mapped ports.
    pub fn finish(self) -> Result<Network, NetError> {
        self.install.wait()?;
        flush_udp(&self.net);
        Ok(self.net)
    }
}

/// Claims subnets and host ports for `container` and starts installing its firewall rules.
/// The veths themselves are made per process start (`veth::attach`).
pub fn start_claim(dir: &Path, container: &str, request: &Request) -> Result<Claiming, NetError> {
    let lock = NetLock::take();
    let pool = Pool::from_env()?;
    let others = other_networks(dir);
    let used: Vec<_> = others
        .iter()
        .flat_map(|n| n.endpoints.iter().map(|e| e.subnet))
        .collect();
    let host = Netlink::open()?.ipv4_addresses()?;
    let subnets = pool.choose(request.endpoints.len(), &used, &host)?;
    check_ports(&request.forwards, &others)?;
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
    };
    write(dir, &net)?;
    let install = nft::start_install(&net, &lock)?;
    Ok(Claiming {
        net,
        install,
        _lock: lock,
    })
}

/// Claims and installs, waiting for the rules.
pub fn claim(dir: &Path, container: &str, request: &Request) -> Result<Network, NetError> {
    start_claim(dir, container, request)?.finish()
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
    let last = other_networks(dir).is_empty();
    let mut first_error = None;
    for endpoint in &net.endpoints {
        if let Err(e) = veth::detach(&endpoint.subnet) {
            first_error.get_or_insert(NetError::from(e));
        }
    }
    if let Err(e) = nft::remove(&net, last, &lock) {
        first_error.get_or_insert(NetError::from(e));
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
