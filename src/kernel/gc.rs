//! Garbage collection after a crash: removes what a dead hydra recorded in its state directory.
//! Mounts need no collection: they live in the dead process's mount namespace.

use std::path::Path;

use super::state::StateDir;

/// Removes the recorded objects of a state directory whose owner is gone, then the directory.
pub fn collect_dir(dir: &Path) {
    let mut records = StateDir::records(dir);
    // Innermost objects were recorded last.
    records.reverse();
    for (kind, path) in records {
        if kind == "cgroup" {
            crate::cgroups::remove_leftover(&path);
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
