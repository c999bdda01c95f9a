//! cgroups: limits and accounting for virtual processes, one interface over the v1 and v2
//! backends. Hierarchy: `hydra/<container>/<process>`.

pub mod files;
pub mod limits;
pub mod mode;
pub mod stats;
pub mod v1;
pub mod v2;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use mode::CgroupMode;

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("creating cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {value} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("removing cgroup {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the {0} cgroup controller is not available on this host")]
    Controller(&'static str),
}

impl CgroupError {
    /// Whether the failure is a permission problem (rootless without a delegated subtree).
    pub fn is_permission(&self) -> bool {
        let source = match self {
            CgroupError::Create { source, .. }
            | CgroupError::Write { source, .. }
            | CgroupError::Remove { source, .. } => source,
            CgroupError::Controller(_) => return false,
        };
        matches!(
            source.raw_os_error(),
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS)
        )
    }
}

/// What the kernel counted for a cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Events {
    /// Processes the OOM killer killed inside.
    pub oom_kills: u64,
    /// Forks refused by pids.max.
    pub pids_max_hits: u64,
}

/// Which hierarchies a cgroup needs on v1 (v2 has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accounting {
    /// Only where a limit is enforced (`hydra run`).
    LimitsOnly,
    /// Also every hierarchy `hydra stats` reads (memory, cpu, cpuacct, pids, blkio).
    Full,
}

/// One virtual process's (or a container's) cgroup.
#[derive(Debug)]
pub enum Cgroup {
    V1(v1::V1Cgroup),
    V2(v2::V2Cgroup),
}

/// Every hierarchy's top directory. It is created once and never removed: concurrent runs
/// share it, and removing it would race with a run creating its container below.
pub const TOP: &str = "hydra";

/// `<container>/<process>`, below [`TOP`].
pub fn relative_path(container: &str, process: &str) -> PathBuf {
    Path::new(container).join(process)
}

impl Cgroup {
    /// Creates the cgroup and writes its limits; on failure nothing is left behind.
    /// `rel` is below [`TOP`]: `<container>` or `<container>/<process>`.
    pub fn create(
        mode: CgroupMode,
        rel: &Path,
        res: &oci_spec::runtime::LinuxResources,
        accounting: Accounting,
    ) -> Result<Self, CgroupError> {
        let values = limits::Values::from(res);
        match mode {
            CgroupMode::V2 => Ok(Cgroup::V2(v2::V2Cgroup::create(rel, &values)?)),
            CgroupMode::V1 | CgroupMode::Hybrid => {
                Ok(Cgroup::V1(v1::V1Cgroup::create(rel, &values, accounting)?))
            }
        }
    }

    /// The fd for CLONE_INTO_CGROUP (v2 only: the child is born inside).
    pub fn clone_fd(&self) -> Result<Option<OwnedFd>, CgroupError> {
        match self {
            Cgroup::V1(_) => Ok(None),
            Cgroup::V2(cg) => cg.open_for_clone().map(Some),
        }
    }

    /// Files the child writes "0" to in order to join (v1; v2 children are born inside).
    pub fn join_fds(&self) -> Result<Vec<OwnedFd>, CgroupError> {
        match self {
            Cgroup::V1(cg) => cg.open_tasks(),
            Cgroup::V2(_) => Ok(Vec::new()),
        }
    }

    /// What the process should see at /sys/fs/cgroup (its own cgroup as the root, through its
    /// cgroup namespace).
    pub fn view(&self) -> crate::fs::plan::CgroupView {
        match self {
            Cgroup::V1(cg) => crate::fs::plan::CgroupView::V1(cg.hierarchies()),
            Cgroup::V2(_) => crate::fs::plan::CgroupView::V2,
        }
    }

    /// The directories this cgroup consists of (one per v1 hierarchy, one on v2).
    pub fn dirs(&self) -> Vec<PathBuf> {
        match self {
            Cgroup::V1(cg) => cg.dirs(),
            Cgroup::V2(cg) => cg.dirs(),
        }
    }

    pub fn events(&self) -> Events {
        match self {
            Cgroup::V1(cg) => cg.events(),
            Cgroup::V2(cg) => cg.events(),
        }
    }

    /// Kills what is left inside and removes every directory this run created.
    pub fn destroy(&mut self) -> Result<(), CgroupError> {
        match self {
            Cgroup::V1(cg) => cg.destroy(),
            Cgroup::V2(cg) => cg.destroy(),
        }
    }
}

/// Every directory `<TOP>/<rel>` could be in, in any hierarchy of this host.
fn candidate_dirs(rel: &Path) -> Vec<PathBuf> {
    let mut bases = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        bases.extend(entries.flatten().map(|e| e.path()));
    }
    bases
        .into_iter()
        .map(|b| b.join(TOP).join(rel))
        .filter(|d| d.is_dir())
        .collect()
}

/// Removes a cgroup a dead hydra left behind (`<container>` with its process cgroups, or
/// `<container>/<process>`), and the container directory when it is left empty.
pub fn remove_leftover(rel: &Path) {
    for dir in candidate_dirs(rel) {
        let _ = files::remove_tree(&dir);
        if let Some(container) = dir.parent().filter(|p| !p.ends_with(TOP)) {
            let _ = std::fs::remove_dir(container);
        }
    }
}
