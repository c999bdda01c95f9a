//! Internal networks (`networks:` in YAML): the named processes of one container on a bridge of
//! their own, reaching each other by name and nothing else. The bridge has no address on the
//! host and nothing routes to or from it, so a member reaches only the other members; each
//! member gets a veth port on the bridge (`net0`, `net1`, … inside) with an address from the
//! network's /24, and an `/etc/hosts` naming the other members.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::pool::{Pool, PoolError};

/// The pool internal networks' /24s come from, unless `HYDRA_NETWORK_POOL` names another.
pub const DEFAULT_POOL: &str = "10.233.0.0/16";
pub const POOL_VARIABLE: &str = "HYDRA_NETWORK_POOL";

/// One member of an internal network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The virtual process (`worker.1`).
    pub process: String,
    /// Its YAML process (`worker`), also a name the others can use (for its first instance).
    pub group: String,
    pub address: Ipv4Addr,
}

/// One internal network of a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InternalNet {
    pub name: String,
    /// Its /24's network address.
    pub subnet: Ipv4Addr,
    pub members: Vec<Member>,
}

impl InternalNet {
    pub const PREFIX: u8 = 24;

    /// The host bridge, named after the subnet.
    pub fn bridge(&self) -> String {
        format!("hyn{:06x}", u32::from(self.subnet) >> 8)
    }
}

/// The host end of a member's port, named after its address.
pub fn port_name(address: Ipv4Addr) -> String {
    format!("hyp{:08x}", u32::from(address))
}

/// The internal network pool from the environment, or the default.
pub fn pool() -> Result<Pool, PoolError> {
    Pool::from_env(POOL_VARIABLE, DEFAULT_POOL)
}

/// The first `count` free /24s of `pool`, skipping `used` ones and any that overlaps an
/// address of the host.
pub fn choose(
    pool: Pool,
    count: usize,
    used: &[Ipv4Addr],
    host: &[(Ipv4Addr, u8)],
) -> Result<Vec<Ipv4Addr>, PoolError> {
    pool.free_blocks(InternalNet::PREFIX, count, used, host)
}

/// The `/etc/hosts` of `process`: localhost, and every member of each of its networks by
/// instance name (and the first instance of each YAML process by that name too).
pub fn hosts_file(process: &str, networks: &[InternalNet]) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for net in networks {
        if !net.members.iter().any(|m| m.process == process) {
            continue;
        }
        out.push_str(&format!("# network {}\n", net.name));
        let mut named_groups: Vec<&str> = Vec::new();
        for m in &net.members {
            let mut names = vec![m.process.as_str()];
            if m.group != m.process && !named_groups.contains(&m.group.as_str()) {
                names.push(&m.group);
            }
            named_groups.push(&m.group);
            out.push_str(&format!("{}\t{}\n", m.address, names.join(" ")));
        }
    }
    out
}

/// The links a process gets on its internal networks: (bridge, host port, name inside,
/// address), in network order.
pub fn links_of(process: &str, networks: &[InternalNet]) -> Vec<InternalLink> {
    networks
        .iter()
        .filter_map(|n| {
            let m = n.members.iter().find(|m| m.process == process)?;
            Some((n.bridge(), m.address))
        })
        .enumerate()
        .map(|(i, (bridge, address))| InternalLink {
            bridge,
            port: port_name(address),
            inner: format!("net{i}"),
            address,
        })
        .collect()
}

/// One port of a process on an internal network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalLink {
    pub bridge: String,
    pub port: String,
    pub inner: String,
    pub address: Ipv4Addr,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn sample() -> Vec<InternalNet> {
        let member = |process: &str, group: &str, a: &str| Member {
            process: process.into(),
            group: group.into(),
            address: ip(a),
        };
        vec![
            InternalNet {
                name: "back".into(),
                subnet: ip("10.233.0.0"),
                members: vec![
                    member("api", "api", "10.233.0.2"),
                    member("worker.0", "worker", "10.233.0.3"),
                    member("worker.1", "worker", "10.233.0.4"),
                ],
            },
            InternalNet {
                name: "front".into(),
                subnet: ip("10.233.1.0"),
                members: vec![
                    member("web", "web", "10.233.1.2"),
                    member("api", "api", "10.233.1.3"),
                ],
            },
        ]
    }

    #[test]
    fn hosts_name_every_member_and_a_group_by_its_first_instance() {
        let hosts = hosts_file("worker.1", &sample());
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(hosts.contains("10.233.0.2\tapi\n"));
        assert!(hosts.contains("10.233.0.3\tworker.0 worker\n"));
        assert!(hosts.contains("10.233.0.4\tworker.1\n"));
        assert!(!hosts.contains("web"), "worker.1 is not on front:\n{hosts}");
        let api = hosts_file("api", &sample());
        assert!(api.contains("10.233.1.2\tweb\n") && api.contains("10.233.0.3\tworker.0 worker\n"));
    }

    #[test]
    fn a_process_gets_one_port_per_network_it_is_on() {
        let links = links_of("api", &sample());
        assert_eq!(links.len(), 2);
        assert_eq!(links[0].inner, "net0");
        assert_eq!(links[0].bridge, "hyn0ae900");
        assert_eq!(links[1].address, ip("10.233.1.3"));
        assert_eq!(links[1].port, "hyp0ae90103");
        assert!(links_of("nobody", &sample()).is_empty());
    }

    #[test]
    fn subnets_skip_used_ones_and_the_hosts() {
        let pool = Pool::parse(DEFAULT_POOL).unwrap();
        let chosen = choose(pool, 2, &[ip("10.233.0.0")], &[(ip("10.233.1.9"), 32)]).unwrap();
        assert_eq!(chosen, [ip("10.233.2.0"), ip("10.233.3.0")]);
        let small = Pool::parse("10.233.0.0/24").unwrap();
        assert!(choose(small, 2, &[], &[]).is_err());
    }
}
