//! Capability sets per security level, and the child-side calls that cut the process's sets
//! down to them. The sets are bit masks prepared before clone; applying them is a handful of
//! prctl/capset calls on stack data.

use caps::Capability;
use nix::errno::Errno;

use super::SecurityLevel;

/// Docker's default capability set, which `standard` (and `minimal`) keep.
pub const DOCKER_DEFAULT: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// The capability mask a level keeps.
pub fn mask_for(level: SecurityLevel) -> u64 {
    match level {
        SecurityLevel::Strict => 0,
        SecurityLevel::Minimal | SecurityLevel::Standard => DOCKER_DEFAULT
            .iter()
            .fold(0u64, |mask, cap| mask | cap.bitmask()),
    }
}

/// What the child applies.
#[derive(Debug, Clone, Copy)]
pub struct CapPlan {
    /// Bounding set (and, for uid 0, effective and permitted).
    pub keep: u64,
    /// Highest capability number the kernel knows.
    pub last_cap: u8,
}

impl CapPlan {
    pub fn new(level: SecurityLevel) -> Self {
        // Read once per hydra process: a supervisor prepares many children.
        static LAST_CAP: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
        let last_cap = *LAST_CAP.get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(40)
        });
        CapPlan {
            keep: mask_for(level),
            last_cap,
        }
    }

    /// Drops every capability outside `keep` from the bounding set and clears the ambient set.
    /// Must run while the process still has CAP_SETPCAP, i.e. before switching user.
    pub fn drop_bounding(&self) -> Result<(), Errno> {
        for cap in 0..=self.last_cap {
            if self.keep & (1u64 << cap) != 0 {
                continue;
            }
            // SAFETY: prctl with integer arguments.
            let ret =
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
            if ret < 0 && Errno::last() != Errno::EINVAL {
                return Err(Errno::last());
            }
        }
        // SAFETY: prctl with integer arguments.
        let ret = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            )
        };
        if ret < 0 {
            return Err(Errno::last());
        }
        Ok(())
    }

    /// Sets effective and permitted to `keep` for uid 0 and to nothing for other users (Docker's
    /// behaviour); inheritable is always empty (CVE-2022-24769).
    pub fn set_sets(&self, uid: u32) -> Result<(), Errno> {
        let granted = if uid == 0 { self.keep } else { 0 };
        capset(granted, granted, 0)
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

fn capset(effective: u64, permitted: u64, inheritable: u64) -> Result<(), Errno> {
    let header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let split = |v: u64| [v as u32, (v >> 32) as u32];
    let (e, p, i) = (split(effective), split(permitted), split(inheritable));
    let data = [
        CapData {
            effective: e[0],
            permitted: p[0],
            inheritable: i[0],
        },
        CapData {
            effective: e[1],
            permitted: p[1],
            inheritable: i[1],
        },
    ];
    // SAFETY: header and data are the v3 layout the kernel expects and live across the call.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_keeps_docker_set_without_admin_caps() {
        let mask = mask_for(SecurityLevel::Standard);
        assert_eq!(mask.count_ones(), 14);
        for forbidden in [
            Capability::CAP_SYS_ADMIN,
            Capability::CAP_NET_ADMIN,
            Capability::CAP_SYS_MODULE,
            Capability::CAP_SYS_PTRACE,
        ] {
            assert_eq!(mask & forbidden.bitmask(), 0, "{forbidden}");
        }
        assert_eq!(mask_for(SecurityLevel::Strict), 0);
    }
}
