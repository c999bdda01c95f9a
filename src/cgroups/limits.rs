//! Limits as the OCI runtime spec expresses them (`LinuxResources`), so hydra's cgroup code
//! speaks the same language as OCI bundles.

use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use crate::config::Limits;

/// The CFS period hydra uses (100 ms, Docker's).
pub const CPU_PERIOD_US: u64 = 100_000;

/// The cgroup part of `limits`.
pub fn resources(limits: &Limits) -> LinuxResources {
    let mut res = LinuxResources::default();
    if let Some(bytes) = limits.memory {
        let mut memory = LinuxMemory::default();
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        memory.set_limit(Some(bytes));
        // No swap beyond the limit: memory+swap equals memory.
        memory.set_swap(Some(bytes));
        res.set_memory(Some(memory));
    }
    if let Some(millis) = limits.cpu_millis {
        let mut cpu = LinuxCpu::default();
        cpu.set_period(Some(CPU_PERIOD_US));
        let quota = millis.saturating_mul(CPU_PERIOD_US) / 1000;
        cpu.set_quota(Some(i64::try_from(quota).unwrap_or(i64::MAX)));
        res.set_cpu(Some(cpu));
    }
    if let Some(max) = limits.pids {
        let mut pids = LinuxPids::default();
        pids.set_limit(i64::try_from(max).unwrap_or(i64::MAX));
        res.set_pids(Some(pids));
    }
    res
}

/// CPU shares (v1 `cpu.shares`, 1024 = normal) for a nice value: each nice step is ~1.25× the
/// weight, as in the kernel's own table.
pub fn shares_for_nice(nice: i32) -> u64 {
    let nice = nice.clamp(-20, 19);
    let shares = 1024.0 * 1.25f64.powi(-nice);
    (shares.round() as u64).clamp(2, 262_144)
}

/// Gives the resources the cpu weight of `nice`.
pub fn set_weight(res: &mut LinuxResources, nice: i32) {
    let mut cpu = res.cpu().clone().unwrap_or_default();
    cpu.set_shares(Some(shares_for_nice(nice)));
    res.set_cpu(Some(cpu));
}

/// v2 `cpu.weight` (1–10000, 100 = normal) for v1 shares (2–262144, 1024 = normal), the
/// conversion runc and crun use.
pub fn weight_for_shares(shares: u64) -> u64 {
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// The values each backend writes, taken out of `LinuxResources` once.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Values {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpu_shares: Option<u64>,
    pub pids: Option<i64>,
}

impl Values {
    pub fn from(res: &LinuxResources) -> Self {
        let memory = res.memory().as_ref();
        let cpu = res.cpu().as_ref();
        Values {
            memory: memory.and_then(|m| m.limit()),
            memory_swap: memory.and_then(|m| m.swap()),
            cpu_quota: cpu.and_then(|c| c.quota()),
            cpu_period: cpu.and_then(|c| c.period()),
            cpu_shares: cpu.and_then(|c| c.shares()),
            pids: res.pids().as_ref().map(|p| p.limit()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_maps_to_shares_and_weight() {
        assert_eq!(shares_for_nice(0), 1024);
        assert!(shares_for_nice(-5) > 3000 && shares_for_nice(5) < 400);
        assert_eq!(shares_for_nice(-40), shares_for_nice(-20));
        assert_eq!(weight_for_shares(2), 1);
        assert_eq!(weight_for_shares(262_144), 10_000);
        assert_eq!(weight_for_shares(1024), 39);
    }

    #[test]
    fn half_a_cpu_is_half_the_period() {
        let limits = Limits {
            cpu_millis: Some(500),
            memory: Some(64 << 20),
            pids: Some(20),
            ..Default::default()
        };
        let v = Values::from(&resources(&limits));
        assert_eq!(v.cpu_quota, Some(50_000));
        assert_eq!(v.cpu_period, Some(100_000));
        assert_eq!(v.memory, Some(64 << 20));
        assert_eq!(v.pids, Some(20));
        assert_eq!(
            Values::from(&resources(&Limits::default())),
            Values::default()
        );
    }
}
