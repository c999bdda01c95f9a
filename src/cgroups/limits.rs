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

/// The values each backend writes, taken out of `LinuxResources` once.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Values {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
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
            pids: res.pids().as_ref().map(|p| p.limit()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
