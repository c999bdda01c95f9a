//! Reading and writing cgroup control files, and removing cgroup directories, shared by both
//! backends.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::CgroupError;

pub fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(|source| CgroupError::Write {
        path,
        value: value.to_string(),
        source,
    })
}

/// The number after `key` in a flat keyed file (`memory.events`, `pids.events`,
/// `memory.oom_control`); 0 when absent.
pub fn keyed(dir: &Path, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let (k, v) = line.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok()).flatten()
            })
        })
        .unwrap_or(0)
}

/// Creates `base/TOP/rel` and any missing parents; returns the ones below TOP it created,
/// outermost first (so teardown removes exactly those and never TOP itself).
pub fn create_dirs(base: &Path, rel: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let top = base.join(super::TOP);
    match std::fs::create_dir(&top) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(CgroupError::Create { path: top, source }),
    }
    let mut created = Vec::new();
    let mut path = top;
    for part in rel.components() {
        path.push(part);
        match std::fs::create_dir(&path) {
            Ok(()) => created.push(path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(CgroupError::Create {
                    path: path.clone(),
                    source,
                })
            }
        }
    }
    Ok(created)
}

/// Kills what is left in a cgroup (v1 has no cgroup.kill) by pid from `cgroup.procs`.
pub fn kill_procs(dir: &Path) {
    let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
}

/// rmdir with retries: a cgroup stays busy for a moment after its last task exits.
pub fn remove_dir(dir: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut pause = Duration::from_micros(200);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                kill_procs(dir);
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Removes a cgroup and every cgroup below it, deepest first (a dead supervisor's container).
pub fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path())?;
            }
        }
    }
    kill_procs(dir);
    remove_dir(dir)
}

/// Removes directories this run created, innermost first; a shared parent that still holds
/// another process's cgroup stays.
pub fn remove_created(created: &[PathBuf]) -> Result<(), CgroupError> {
    for dir in created.iter().rev() {
        match remove_dir(dir) {
            Ok(()) => {}
            Err(CgroupError::Remove { source, .. })
                if source.raw_os_error() == Some(libc::ENOTEMPTY) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
