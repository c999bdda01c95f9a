//! The address pool of `partial` mode: every virtual process gets its own /30 (host end `.1`,
//! process end `.2`), so no two processes share a link and a client's address is never inside
//! a container subnet. The pool is 10.231.0.0/16 unless `HYDRA_SUBNET_POOL` names another.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The pool used when `HYDRA_SUBNET_POOL` is unset.
pub const DEFAULT_POOL: &str = "10.231.0.0/16";
/// The environment variable that overrides the pool.
pub const POOL_VARIABLE: &str = "HYDRA_SUBNET_POOL";

#[derive(Debug, Error, PartialEq)]
pub enum PoolError {
    #[error("{0}: expected an IPv4 network like 10.231.0.0/16 with a prefix from 8 to 29")]
    Syntax(String),
    #[error("the address pool {pool} is exhausted (set {variable} to a larger one)")]
    Exhausted {
        pool: String,
        variable: &'static str,
    },
}

/// An IPv4 network from which /30 subnets are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    network: u32,
    prefix: u8,
    /// The environment variable that chose it (named when it runs out).
    variable: &'static str,
}

impl Pool {
    /// Parses `A.B.C.D/N`; the host bits must be zero.
    pub fn parse(text: &str) -> Result<Pool, PoolError> {
        let bad = || PoolError::Syntax(text.to_string());
        let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=29).contains(&prefix) {
            return Err(bad());
        }
        let network = u32::from(addr);
        if network & !mask(prefix) != 0 {
            return Err(bad());
        }
        Ok(Pool {
            network,
            prefix,
            variable: POOL_VARIABLE,
        })
    }

    /// The pool `variable` names, or `default` when it is unset.
    pub fn from_env(variable: &'static str, default: &str) -> Result<Pool, PoolError> {
        let pool = match std::env::var(variable) {
            Ok(text) if !text.is_empty() => {
                Pool::parse(&text).map_err(|_| PoolError::Syntax(format!("{variable}={text}")))?
            }
            _ => Pool::parse(default)?,
        };
        Ok(Pool { variable, ..pool })
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The first `count` free networks of length `prefix` in the pool, skipping those in
    /// `used` and any that overlaps an address of the host (`host`, as address and prefix
    /// length).
    pub fn free_blocks(
        &self,
        prefix: u8,
        count: usize,
        used: &[Ipv4Addr],
        host: &[(Ipv4Addr, u8)],
    ) -> Result<Vec<Ipv4Addr>, PoolError> {
        let slots = 1u32 << prefix.saturating_sub(self.prefix);
        let size = 1u32 << (32 - prefix);
        let chosen: Vec<Ipv4Addr> = (0..slots)
            .map(|i| Ipv4Addr::from(self.network + i * size))
            .filter(|b| !used.contains(b))
            .filter(|b| !host.iter().any(|&(a, p)| overlaps(*b, prefix, a, p)))
            .take(count)
            .collect();
        if chosen.len() < count {
            return Err(PoolError::Exhausted {
                pool: format!("{}/{}", self.network(), self.prefix),
                variable: self.variable,
            });
        }
        Ok(chosen)
    }

    /// The first `count` free /30 links.
    pub fn choose(
        &self,
        count: usize,
        used: &[Subnet],
        host: &[(Ipv4Addr, u8)],
    ) -> Result<Vec<Subnet>, PoolError> {
        let used: Vec<Ipv4Addr> = used.iter().map(|s| s.network).collect();
        Ok(self
            .free_blocks(Subnet::PREFIX, count, &used, host)?
            .into_iter()
            .map(|network| Subnet { network })
            .collect())
    }
}

/// Whether `a/a_len` and `b/b_len` share any address.
fn overlaps(a: Ipv4Addr, a_len: u8, b: Ipv4Addr, b_len: u8) -> bool {
    let m = mask(a_len.min(b_len));
    u32::from(a) & m == u32::from(b) & m
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

/// One /30: the link between the host and one virtual process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub network: Ipv4Addr,
}

/// How the host ends of hydra's links (and of its internal networks' ports) are named.
pub const LINK_PREFIX: &str = "hy";

impl Subnet {
    pub const PREFIX: u8 = 30;

    /// The host end of the link.
    pub fn host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The process's end of the link.
    pub fn guest(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 2)
    }

    /// The host-side interface name: unique per subnet, under the kernel's 15 characters.
    pub fn veth(&self) -> String {
        format!("{LINK_PREFIX}{:08x}", u32::from(self.network) >> 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_pools_and_rejects_bad_ones() {
        assert_eq!(
            Pool::parse("10.231.0.0/16").unwrap().network(),
            net("10.231.0.0")
        );
        for bad in [
            "10.231.0.1/16",
            "10.231.0.0",
            "10.231.0.0/30",
            "x/16",
            "10.0.0.0/7",
        ] {
            assert_eq!(
                Pool::parse(bad),
                Err(PoolError::Syntax(bad.to_string())),
                "{bad}"
            );
        }
    }

    #[test]
    fn hands_out_free_subnets_in_order() {
        let pool = Pool::parse("10.231.0.0/16").unwrap();
        let first = pool.choose(2, &[], &[]).unwrap();
        assert_eq!(first[0].network, net("10.231.0.0"));
        assert_eq!(first[0].host(), net("10.231.0.1"));
        assert_eq!(first[0].guest(), net("10.231.0.2"));
        assert_eq!(first[1].network, net("10.231.0.4"));
        assert_eq!(first[0].veth(), "hy02b9c000");
        assert_eq!(first[1].veth(), "hy02b9c001");
        let next = pool.choose(1, &first, &[]).unwrap();
        assert_eq!(next[0].network, net("10.231.0.8"));
    }

    #[test]
    fn skips_subnets_the_host_already_uses() {
        let pool = Pool::parse("10.231.0.0/16").unwrap();
        // A host /24 covering the first 64 subnets, and a single address in the 65th.
        let host = [(net("10.231.0.77"), 24), (net("10.231.1.2"), 32)];
        let chosen = pool.choose(1, &[], &host).unwrap();
        assert_eq!(chosen[0].network, net("10.231.1.4"));
        // A wider host network covering the whole pool leaves nothing.
        assert!(matches!(
            pool.choose(1, &[], &[(net("10.0.0.0"), 8)]),
            Err(PoolError::Exhausted { .. })
        ));
    }

    #[test]
    fn a_small_pool_runs_out() {
        let pool = Pool::parse("10.231.0.0/29").unwrap();
        assert_eq!(pool.choose(2, &[], &[]).unwrap().len(), 2);
        assert_eq!(
            pool.choose(3, &[], &[]),
            Err(PoolError::Exhausted {
                pool: "10.231.0.0/29".to_string(),
                variable: POOL_VARIABLE
            })
        );
    }
}
