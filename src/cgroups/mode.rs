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

/// Reads the layout from `/sys/fs/cgroup`.
pub fn detect() -> CgroupMode {
    let root = Path::new("/sys/fs/cgroup");
    if is_cgroup2(root) {
        CgroupMode::V2
    } else if is_cgroup2(&root.join("unified")) {
        CgroupMode::Hybrid
    } else {
        CgroupMode::V1
    }
}

impl CgroupMode {
    pub fn name(self) -> &'static str {
        match self {
            CgroupMode::V1 => "v1",
            CgroupMode::Hybrid => "hybrid",
            CgroupMode::V2 => "v2",
        }
    }
}
