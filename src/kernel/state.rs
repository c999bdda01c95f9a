//! The state directory of a container: `/run/hydra/<container>` as root,
//! `$XDG_RUNTIME_DIR/hydra/<container>` (or `/tmp/hydra-<uid>/<container>`) rootless. It is the
//! write-ahead record of what a run created: it exists before any kernel object does, names
//! the kernel objects in `objects`, and goes last.

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

const OWNER: &str = "owner.pid";
const OBJECTS: &str = "objects";

/// Whether the hydra that owns a state directory is still running.
pub fn owner_alive(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join(OWNER)) else {
        return false;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return false;
    };
    nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
        && std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "hydra")
}

impl StateDir {
    /// Creates `<base>/<name>`; a directory left by a dead hydra is cleaned and taken over.
    pub fn create(name: &str) -> Result<Self, StateError> {
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
        dir.write(OWNER, &format!("{}\n", std::process::id()))?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A subdirectory for one process's writable layer (a tmpfs is mounted on it inside the
    /// process's own mount namespace, so the host only ever sees the empty directory).
    pub fn layer_dir(&self, process: &str) -> Result<PathBuf, StateError> {
        let path = self.path.join(format!("{process}.layer"));
        match std::fs::create_dir(&path) {
            Ok(()) => Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(path),
            Err(e) => Err(io(&path)(e)),
        }
    }

    fn write(&self, file: &str, text: &str) -> Result<(), StateError> {
        let path = self.path.join(file);
        std::fs::write(&path, text).map_err(io(&path))
    }

    /// Records a kernel object (`cgroup /sys/fs/cgroup/...`) before it is created.
    pub fn record(&self, kind: &str, value: &Path) -> Result<(), StateError> {
        let path = self.path.join(OBJECTS);
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
        std::fs::read_to_string(dir.join(OBJECTS))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
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
