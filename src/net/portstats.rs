//! `hydra ports`: each mapping of a container with its counters. New connections come from the
//! DNAT rules (a nat chain sees only a flow's first packet), packets and bytes from the filter
//! rules on the process's link (every packet, both directions), live connections from conntrack.
//! What hydra's own forwarder carried (all of it rootless, the IPv6 side as root) is added from
//! the counters it publishes.

use std::net::Ipv4Addr;

use serde::Serialize;

use super::conntrack;
use super::firewall::{counter_comment, FirewallError, Network, LOCAL_NEW};
use super::nft::{self, Count};
use super::redirect::{self, SocketRedirect};
use crate::config::Protocol;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}

/// One virtual process a mapping leads to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    pub process: String,
    pub address: Ipv4Addr,
}

/// One mapping and what went through it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortStat {
    pub protocol: Protocol,
    pub host_ip: Option<std::net::IpAddr>,
    pub host_port: u16,
    pub process: String,
    pub port: u16,
    /// The virtual processes and addresses new connections are spread over.
    pub targets: Vec<Target>,
    /// New connections (flows) since the mapping was installed.
    pub connections: u64,
    /// Connections open now (TCP established, UDP flows still tracked).
    pub active: u64,
    /// Towards the process.
    pub received: Traffic,
    /// From the process.
    pub sent: Traffic,
    /// Local TCP clients reach the process straight (the socket redirect is linked for it).
    pub redirected: bool,
}

impl Traffic {
    fn plus(self, packets: u64, bytes: u64) -> Traffic {
        Traffic {
            packets: self.packets + packets,
            bytes: self.bytes + bytes,
        }
    }
}

fn sum(counts: &[Count], comment: &str) -> Traffic {
    counts
        .iter()
        .filter(|c| c.comment == comment)
        .fold(Traffic::default(), |t, c| t.plus(c.packets, c.bytes))
}

/// The counters hydra's own (rootless) forwarder published in the state directory `dir`:
/// per mapping [connections, active, in packets, in bytes, out packets, out bytes].
fn published(dir: &std::path::Path) -> Vec<[u64; 6]> {
    std::fs::read_to_string(super::userspace::stats_file(dir))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Reads the counters of every mapping of `net` (state directory `dir`).
pub fn read(net: &Network, dir: &std::path::Path) -> Result<Vec<PortStat>, FirewallError> {
    let userspace = published(dir);
    let (counts, flows) = if net.userspace {
        (Vec::new(), Vec::new())
    } else {
        (nft::counters(&net.container)?, conntrack::flows())
    };
    let linked = matches!(SocketRedirect::state(dir), Some(Ok(())));
    let direct = if net.userspace {
        Vec::new()
    } else {
        super::sockets::established()
    };
    Ok(net
        .forwards
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let targets: Vec<Target> = f
                .targets
                .iter()
                .filter_map(|&t| net.endpoints.get(t))
                .map(|e| Target {
                    process: e.process.clone(),
                    address: e.subnet.guest(),
                })
                .collect();
            let guests: Vec<Ipv4Addr> = targets.iter().map(|t| t.address).collect();
            // The host's own connections (the socket redirect's) count as new and as in.
            let local = sum(&counts, &counter_comment(i, LOCAL_NEW));
            let connections = sum(&counts, &counter_comment(i, "new")).packets + local.packets;
            let [conns, active, ip, ib, op, ob] = userspace.get(i).copied().unwrap_or_default();
            if net.userspace {
                return PortStat {
                    protocol: f.protocol,
                    host_ip: f.host_ip,
                    host_port: f.host_port,
                    process: f.process.clone(),
                    port: f.port,
                    connections: conns,
                    active,
                    received: Traffic {
                        packets: ip,
                        bytes: ib,
                    },
                    sent: Traffic {
                        packets: op,
                        bytes: ob,
                    },
                    // hydra connects to the port on the process's own loopback.
                    targets: vec![Target {
                        process: f.process.clone(),
                        address: Ipv4Addr::LOCALHOST,
                    }],
                    redirected: false,
                };
            }
            PortStat {
                protocol: f.protocol,
                host_ip: f.host_ip,
                host_port: f.host_port,
                process: f.process.clone(),
                port: f.port,
                connections: connections + conns,
                active: active
                    + flows
                        .iter()
                        .filter(|fl| {
                            conntrack::is_active(fl, f.protocol, f.host_port, &guests, f.port)
                        })
                        .count() as u64
                    + direct
                        .iter()
                        .filter(|&&(addr, p)| {
                            f.protocol == Protocol::Tcp && p == f.port && guests.contains(&addr)
                        })
                        .count() as u64,
                received: sum(&counts, &counter_comment(i, "in"))
                    .plus(local.packets, local.bytes)
                    .plus(ip, ib),
                sent: sum(&counts, &counter_comment(i, "out")).plus(op, ob),
                targets,
                redirected: linked && redirect::qualifies(f),
            }
        })
        .collect())
}
