//! The state directory of a container: `/run/hydra/<container>` as root,
//! `$XDG_RUNTIME_DIR/hydra/<container>` (or `/tmp/hydra-<uid>/<container>`) rootless. It is the
//! write-ahead record of what a run created: it exists before any kernel object does, names
//! its owner and the kernel objects in one file, `state`, and goes last. It is also where each
//! process's private tmpfs is mounted, inside that process's own mount namespace only.

use std::io::Write;
use std::path::{Path, PathBuf};

use nix::unistd::{Pid, Uid};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StateError {
    #[error("a container named '{0}' is already running")]
    InUse(String),
    #[error("state directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where hydra keeps state for the calling user.
pub fn base_dir() -> PathBuf {
    if Uid::effective().is_root() {
        return PathBuf::from("/run/hydra");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("hydra"),
        _ => PathBuf::from(format!("/tmp/hydra-{}", Uid::effective())),
    }
}

/// A container's state directory, removed on drop.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
}

/// The one file of a state directory: `owner <pid>`, then one line per kernel object.
const STATE: &str = "state";

/// Whether the hydra that owns a state directory is still running.
pub fn owner_alive(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join(STATE)) else {
        return false;
    };
    let owner = text.lines().find_map(|l| l.strip_prefix("owner "));
    let Some(Ok(pid)) = owner.map(|p| p.trim().parse::<i32>()) else {
        return false;
    };
    nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
        && std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "hydra")
}

impl StateDir {
    /// Creates `<base>/<name>` with the kernel objects about to be made already recorded; a
    /// directory left by a dead hydra is cleaned and taken over.
    pub fn create(name: &str, records: &[(&str, &Path)]) -> Result<Self, StateError> {
        let base = base_dir();
        create_private_dir(&base)?;
        let path = base.join(name);
        if let Err(e) = std::fs::create_dir(&path) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(io(&path)(e));
            }
            if owner_alive(&path) {
                return Err(StateError::InUse(name.to_string()));
            }
            crate::kernel::gc::collect_dir(&path);
            std::fs::create_dir(&path).map_err(io(&path))?;
        }
        let dir = StateDir { path };
        let state = dir.path.join(STATE);
        let mut text = format!("owner {}\n", std::process::id());
        for (kind, value) in records {
            text.push_str(&format!("{kind} {}\n", value.display()));
        }
        std::fs::write(&state, text).map_err(io(&state))?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where a process's private tmpfs (its writable layer) is mounted: the state directory
    /// itself, inside the process's own mount namespace, so the host sees nothing of it and
    /// every process of a container can use the same directory.
    pub fn layer_mountpoint(&self) -> &Path {
        &self.path
    }

    /// Records a kernel object (`cgroup /sys/fs/cgroup/...`) before it is created.
    pub fn record(&self, kind: &str, value: &Path) -> Result<(), StateError> {
        let path = self.path.join(STATE);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        // No fsync: the record must outlive a crash of hydra, not of the machine, and a reboot
        // takes cgroups and namespaces with it.
        let line = format!("{kind} {}\n", value.display());
        file.write_all(line.as_bytes()).map_err(io(&path))
    }

    /// The objects recorded in a state directory.
    pub fn records(dir: &Path) -> Vec<(String, PathBuf)> {
        std::fs::read_to_string(dir.join(STATE))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(kind, _)| *kind != "owner")
            .map(|(k, v)| (k.to_string(), PathBuf::from(v)))
            .collect()
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn create_private_dir(path: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
    {
        Ok(()) => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}
