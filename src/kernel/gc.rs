//! Garbage collection after a crash: removes what a dead hydra recorded in its state directory.
//! Mounts need no collection: they live in the dead process's mount namespace.

use std::path::Path;

use super::state::StateDir;

/// Removes the recorded objects of a state directory whose owner is gone, then the directory.
pub fn collect_dir(dir: &Path) {
    let _ = crate::net::setup::release(dir);
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

/// Collects every state directory of the calling user whose hydra is gone; returns their names.
pub fn collect_all() -> Vec<String> {
    let base = super::state::base_dir();
    let Ok(entries) = std::fs::read_dir(&base) else {
        return Vec::new();
    };
    let mut collected = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !super::state::owner_alive(&path) {
            collect_dir(&path);
            collected.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    collected.sort();
    collected
}
