//! cgroup v1 backend: one directory per hierarchy. With `Accounting::LimitsOnly` only the
//! hierarchies whose controller carries a limit (every v1 directory is a mkdir and an rmdir per
//! level, ~0.1 ms each: not worth it for nothing to enforce); with `Accounting::Full` also the
//! ones `hydra stats` reads. The child joins itself (see `open_tasks`).

use std::path::{Path, PathBuf};

use super::files::{self, keyed};
use super::limits::Values;
use super::{Accounting, CgroupError, Events};

/// The controllers hydra uses on v1.
const CONTROLLERS: [&str; 5] = ["memory", "cpu", "cpuacct", "pids", "blkio"];

/// The controllers a cgroup with these limits lives in.
fn needed(values: &Values, accounting: Accounting) -> Vec<&'static str> {
    if accounting == Accounting::Full {
        return CONTROLLERS.to_vec();
    }
    let mut needed = Vec::new();
    if values.memory.is_some() {
        needed.push("memory");
    }
    if values.cpu_quota.is_some() || values.cpu_shares.is_some() {
        needed.push("cpu");
    }
    if values.pids.is_some() {
        needed.push("pids");
    }
    needed
}

#[derive(Debug)]
pub struct V1Cgroup {
    /// (controller, this process's directory in its hierarchy).
    dirs: Vec<(&'static str, PathBuf)>,
    /// Every directory this run created, in creation order.
    created: Vec<PathBuf>,
}

/// Mount point of each controller's hierarchy, from /proc/self/mounts. Co-mounted controllers
/// (`cpu,cpuacct`) share one.
fn mount_points() -> Vec<(&'static str, PathBuf)> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut found: Vec<(&'static str, PathBuf)> = Vec::new();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 || f[2] != "cgroup" {
            continue;
        }
        for controller in CONTROLLERS {
            if f[3].split(',').any(|o| o == controller)
                && !found.iter().any(|(c, _)| *c == controller)
            {
                found.push((controller, PathBuf::from(f[1])));
            }
        }
    }
    found
}

impl V1Cgroup {
    pub fn create(
        rel: &Path,
        values: &Values,
        accounting: Accounting,
    ) -> Result<Self, CgroupError> {
        let mut cg = V1Cgroup {
            dirs: Vec::new(),
            created: Vec::new(),
        };
        let wanted = needed(values, accounting);
        let mut seen: Vec<PathBuf> = Vec::new();
        let mounts = mount_points();
        for (controller, mount) in mounts.into_iter().filter(|(c, _)| wanted.contains(c)) {
            // A co-mounted hierarchy is one directory for several controllers.
            if seen.contains(&mount) {
                cg.dirs.push((controller, mount.join(super::TOP).join(rel)));
                continue;
            }
            seen.push(mount.clone());
            match files::create_dirs(&mount, rel) {
                Ok(created) => cg.created.extend(created),
                Err(e) => {
                    let _ = cg.destroy();
                    return Err(e);
                }
            }
            cg.dirs.push((controller, mount.join(super::TOP).join(rel)));
        }
        // Accounting hierarchies the host lacks are skipped; a limit's hierarchy is required.
        let required = needed(values, Accounting::LimitsOnly);
        if let Some(missing) = required.iter().find(|c| cg.dir(c).is_none()) {
            let _ = cg.destroy();
            return Err(CgroupError::Controller(missing));
        }
        if let Err(e) = cg.apply(values) {
            let _ = cg.destroy();
            return Err(e);
        }
        Ok(cg)
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(c, _)| *c == controller)
            .map(|(_, d)| d.as_path())
    }

    fn need(&self, controller: &'static str) -> Result<&Path, CgroupError> {
        self.dir(controller)
            .ok_or(CgroupError::Controller(controller))
    }

    fn apply(&self, v: &Values) -> Result<(), CgroupError> {
        if let Some(limit) = v.memory {
            let dir = self.need("memory")?;
            files::write(dir, "memory.limit_in_bytes", &limit.to_string())?;
            // memsw exists only with swap accounting; where it does, forbid swapping past the limit.
            if let Some(swap) = v.memory_swap {
                if dir.join("memory.memsw.limit_in_bytes").exists() {
                    files::write(dir, "memory.memsw.limit_in_bytes", &swap.to_string())?;
                }
            }
        }
        if let Some(quota) = v.cpu_quota {
            let dir = self.need("cpu")?;
            let period = v.cpu_period.unwrap_or(super::limits::CPU_PERIOD_US);
            files::write(dir, "cpu.cfs_period_us", &period.to_string())?;
            files::write(dir, "cpu.cfs_quota_us", &quota.to_string())?;
        }
        if let Some(shares) = v.cpu_shares {
            files::write(self.need("cpu")?, "cpu.shares", &shares.to_string())?;
        }
        if let Some(max) = v.pids {
            files::write(self.need("pids")?, "pids.max", &max.to_string())?;
        }
        Ok(())
    }

    /// Each hierarchy's `tasks` file, opened for the child to write "0" to: a thread moving
    /// itself skips the global threadgroup lock whose RCU grace period makes writing a pid to
    /// `cgroup.procs` cost ~10 ms here.
    pub fn open_tasks(&self) -> Result<Vec<std::os::fd::OwnedFd>, CgroupError> {
        let mut fds = Vec::new();
        let mut done: Vec<&Path> = Vec::new();
        for (_, dir) in &self.dirs {
            if done.contains(&dir.as_path()) {
                continue;
            }
            let path = dir.join("tasks");
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|source| CgroupError::Write {
                    path,
                    value: "0".into(),
                    source,
                })?;
            fds.push(file.into());
            done.push(dir);
        }
        Ok(fds)
    }

    /// This cgroup's directory in every hierarchy it lives in.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (_, d) in &self.dirs {
            if !dirs.contains(d) {
                dirs.push(d.clone());
            }
        }
        dirs
    }

    /// The hierarchies this cgroup lives in, as mount option strings (`memory`, `cpu,cpuacct`
    /// when co-mounted), for mounting the process's own view of them.
    pub fn hierarchies(&self) -> Vec<String> {
        let mut by_dir: Vec<(&PathBuf, Vec<&str>)> = Vec::new();
        for (controller, dir) in &self.dirs {
            match by_dir.iter_mut().find(|(d, _)| *d == dir) {
                Some((_, list)) => list.push(controller),
                None => by_dir.push((dir, vec![controller])),
            }
        }
        by_dir.into_iter().map(|(_, list)| list.join(",")).collect()
    }

    pub fn events(&self) -> Events {
        Events {
            oom_kills: self
                .dir("memory")
                .map_or(0, |d| keyed(d, "memory.oom_control", "oom_kill")),
            pids_max_hits: self
                .dir("pids")
                .map_or(0, |d| keyed(d, "pids.events", "max")),
        }
    }

    /// Removes the directories. By now the process's pid namespace is gone with its init, so
    /// they are empty; `remove_dir` kills stragglers only if the kernel says one is busy.
    pub fn destroy(&mut self) -> Result<(), CgroupError> {
        let created = std::mem::take(&mut self.created);
        files::remove_created(&created)
    }
}
