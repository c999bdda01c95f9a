//! cgroup v2 backend: one directory in the unified hierarchy. Controllers are enabled down the
//! path; the child is born inside through CLONE_INTO_CGROUP.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::files::{self, keyed};
use super::limits::Values;
use super::{CgroupError, Events};

const ROOT: &str = "/sys/fs/cgroup";
const CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

#[derive(Debug)]
pub struct V2Cgroup {
    dir: PathBuf,
    created: Vec<PathBuf>,
}

/// Enables hydra's controllers in `dir`'s subtree_control (those `dir` itself offers).
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let offered = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    let missing: Vec<String> = CONTROLLERS
        .iter()
        .filter(|c| offered.split_whitespace().any(|o| o == **c))
        .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    files::write(dir, "cgroup.subtree_control", &missing.join(" "))
}

impl V2Cgroup {
    pub fn create(rel: &Path, values: &Values) -> Result<Self, CgroupError> {
        let root = Path::new(ROOT);
        let created = files::create_dirs(root, rel)?;
        let mut cg = V2Cgroup {
            dir: root.join(super::TOP).join(rel),
            created,
        };
        if let Err(e) = cg.prepare(rel, values) {
            let _ = cg.destroy();
            return Err(e);
        }
        Ok(cg)
    }

    fn prepare(&self, rel: &Path, values: &Values) -> Result<(), CgroupError> {
        // Every ancestor of the process's cgroup must delegate the controllers to its children.
        let mut dir = PathBuf::from(ROOT);
        enable_controllers(&dir)?;
        dir.push(super::TOP);
        enable_controllers(&dir)?;
        let parts: Vec<_> = rel.components().collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            dir.push(part);
            enable_controllers(&dir)?;
        }
        self.apply(values)
    }

    fn apply(&self, v: &Values) -> Result<(), CgroupError> {
        if let Some(limit) = v.memory {
            files::write(&self.dir, "memory.max", &limit.to_string())?;
            if self.dir.join("memory.swap.max").exists() {
                // OCI's swap is memory+swap; v2's swap.max is swap alone.
                let swap = v.memory_swap.map_or(0, |s| (s - limit).max(0));
                files::write(&self.dir, "memory.swap.max", &swap.to_string())?;
            }
        }
        if let Some(quota) = v.cpu_quota {
            let period = v.cpu_period.unwrap_or(super::limits::CPU_PERIOD_US);
            files::write(&self.dir, "cpu.max", &format!("{quota} {period}"))?;
        }
        if let Some(shares) = v.cpu_shares {
            let weight = super::limits::weight_for_shares(shares);
            files::write(&self.dir, "cpu.weight", &weight.to_string())?;
        }
        if let Some(max) = v.pids {
            files::write(&self.dir, "pids.max", &max.to_string())?;
        }
        Ok(())
    }

    /// The directory fd for clone3's CLONE_INTO_CGROUP.
    pub fn open_for_clone(&self) -> Result<OwnedFd, CgroupError> {
        let file = std::fs::File::open(&self.dir).map_err(|source| CgroupError::Create {
            path: self.dir.clone(),
            source,
        })?;
        Ok(file.into())
    }

    pub fn dirs(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }

    pub fn events(&self) -> Events {
        Events {
            oom_kills: keyed(&self.dir, "memory.events", "oom_kill"),
            pids_max_hits: keyed(&self.dir, "pids.events", "max"),
        }
    }

    pub fn destroy(&mut self) -> Result<(), CgroupError> {
        if self.dir.join("cgroup.kill").exists() {
            let _ = files::write(&self.dir, "cgroup.kill", "1");
        } else {
            files::kill_procs(&self.dir);
        }
        let created = std::mem::take(&mut self.created);
        files::remove_created(&created)
    }
}
