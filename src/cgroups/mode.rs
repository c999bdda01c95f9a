//! Which cgroup layout the host has.

use std::path::Path;

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// The host's cgroup layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// Only v1 hierarchies.
    V1,
    /// v1 controllers plus a cgroup2 mount without them (systemd's hybrid layout).
    Hybrid,
    /// Pure cgroup v2 (every current distribution).
    V2,
}

fn is_cgroup2(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type().0 == CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

const ROOT: &str = "/sys/fs/cgroup";
/// systemd's hybrid layout mounts cgroup2 here.
const UNIFIED: &str = "/sys/fs/cgroup/unified";

/// Reads the layout from `/sys/fs/cgroup`.
pub fn detect() -> CgroupMode {
    if is_cgroup2(Path::new(ROOT)) {
        CgroupMode::V2
    } else if is_cgroup2(Path::new(UNIFIED)) {
        CgroupMode::Hybrid
    } else {
        CgroupMode::V1
    }
}

impl CgroupMode {
    /// Where the cgroup v2 hierarchy is mounted (`None` on a v1-only host).
    pub fn v2_root(self) -> Option<&'static Path> {
        match self {
            CgroupMode::V2 => Some(Path::new(ROOT)),
            CgroupMode::Hybrid => Some(Path::new(UNIFIED)),
            CgroupMode::V1 => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CgroupMode::V1 => "v1",
            CgroupMode::Hybrid => "hybrid",
            CgroupMode::V2 => "v2",
        }
    }
}
