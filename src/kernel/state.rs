//! The state directory of a container: `/run/hydra/<container>` as root,
//! `$XDG_RUNTIME_DIR/hydra/<container>` (or `/tmp/hydra-<uid>/<container>`) rootless. It is the
//! write-ahead record of what a run created: it exists before any kernel object does, names
//! its owner and the kernel objects in one file, `state`, and goes last. It is also where each
//! process's private tmpfs is mounted, inside that process's own mount namespace only.

use std::path::{Path, PathBuf};

use nix::unistd::Uid;
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

/// How long a state directory may lack its `state` file before it counts as abandoned: the
/// file is written right after the directory is made, so only a hydra killed in between (or a
/// foreign directory) leaves one without it.
const UNRECORDED_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether a state directory still belongs to a running hydra. One just made by another hydra,
/// whose `state` file is not written yet, counts as alive.
pub fn owner_alive(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join(STATE)) else {
        let age = std::fs::metadata(dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok());
        return age.is_some_and(|a| a < UNRECORDED_GRACE);
    };
    let owner = text.lines().find_map(|l| l.strip_prefix("owner "));
    let Some(Ok(pid)) = owner.map(|p| p.trim().parse::<i32>()) else {
        return false;
    };
    hydra_running(pid)
}

/// Whether `pid` is a live (not zombie) process named hydra: a killed supervisor can linger as a
/// zombie until the host's init reaps it, and must count as dead then.
fn hydra_running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let comm = &stat[open + 1..close];
    let state = stat[close + 1..].trim_start().chars().next();
    comm == "hydra" && !matches!(state, Some('Z' | 'X' | 'x'))
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

    /// Where a process's private tmpfs (its writable layer) is mounted, inside the process's own
    /// mount namespace (the host only ever sees an empty directory; every process of a
    /// container can use the same one). A lone `hydra run` uses the state directory itself,
    /// sparing a mkdir and an rmdir per start; a container whose state directory holds named
    /// volumes (`volumes/`) uses `layer/`, so the tmpfs does not hide them.
    pub fn layer_mountpoint(&self, beside_volumes: bool) -> Result<PathBuf, StateError> {
        if !beside_volumes {
            return Ok(self.path.clone());
        }
        let layer = self.path.join("layer");
        std::fs::create_dir_all(&layer).map_err(io(&layer))?;
        Ok(layer)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hydra-state-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn liveness_follows_the_owner_line() {
        let young = temp_dir("young");
        assert!(
            owner_alive(&young),
            "a directory being set up counts as alive"
        );
        let dead = temp_dir("dead");
        std::fs::write(dead.join(STATE), "owner 2147483646\ncgroup a/b\n").expect("state");
        assert!(!owner_alive(&dead));
        assert_eq!(
            StateDir::records(&dead),
            vec![("cgroup".to_string(), PathBuf::from("a/b"))]
        );
        let garbled = temp_dir("garbled");
        std::fs::write(garbled.join(STATE), "owner x\n").expect("state");
        assert!(!owner_alive(&garbled));
        for d in [young, dead, garbled] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
