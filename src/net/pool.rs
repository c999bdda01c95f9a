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
    #[error("{POOL_VARIABLE}={0}: expected an IPv4 network like 10.231.0.0/16 with a prefix from 8 to 29")]
    Syntax(String),
    #[error("the subnet pool {0} is exhausted (set {POOL_VARIABLE} to a larger one)")]
    Exhausted(String),
}

/// An IPv4 network from which /30 subnets are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    network: u32,
    prefix: u8,
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
        Ok(Pool { network, prefix })
    }

    /// The pool from the environment, or the default.
    pub fn from_env() -> Result<Pool, PoolError> {
        match std::env::var(POOL_VARIABLE) {
            Ok(text) if !text.is_empty() => Pool::parse(&text),
            _ => Pool::parse(DEFAULT_POOL),
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn slots(&self) -> u32 {
        1 << (30 - self.prefix)
    }

    /// The first `count` free subnets, skipping those in `used` and any that overlaps an
    /// address of the host (`host`, as address and prefix length).
    pub fn choose(
        &self,
        count: usize,
        used: &[Subnet],
        host: &[(Ipv4Addr, u8)],
    ) -> Result<Vec<Subnet>, PoolError> {
        let free = (0..self.slots())
            .map(|i| Subnet {
                network: Ipv4Addr::from(self.network + (i << 2)),
            })
            .filter(|s| !used.contains(s))
            .filter(|s| !host.iter().any(|&(a, p)| s.overlaps(a, p)));
        let chosen: Vec<Subnet> = free.take(count).collect();
        if chosen.len() < count {
            return Err(PoolError::Exhausted(format!(
                "{}/{}",
                self.network(),
                self.prefix
            )));
        }
        Ok(chosen)
    }
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
        format!("hy{:08x}", u32::from(self.network) >> 2)
    }

    /// Whether this subnet and `addr/prefix` share any address.
    fn overlaps(&self, addr: Ipv4Addr, prefix: u8) -> bool {
        let shorter = prefix.min(Self::PREFIX);
        let m = mask(shorter);
        u32::from(self.network) & m == u32::from(addr) & m
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
            Err(PoolError::Exhausted(_))
        ));
    }

    #[test]
    fn a_small_pool_runs_out() {
        let pool = Pool::parse("10.231.0.0/29").unwrap();
        assert_eq!(pool.choose(2, &[], &[]).unwrap().len(), 2);
        assert_eq!(
            pool.choose(3, &[], &[]),
            Err(PoolError::Exhausted("10.231.0.0/29".to_string()))
        );
    }
}
