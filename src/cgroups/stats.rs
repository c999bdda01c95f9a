//! What a cgroup used, read from its control files (v1 or v2, whichever files a directory has):
//! CPU time, memory (without reclaimable page cache, as `docker stats` shows it), the limit that
//! applies to it, tasks, OOM kills and block I/O. Every figure includes the cgroups below (a
//! container's row covers its processes).
//!
//! v1 block I/O comes from `blkio.throttle.io_service_bytes_recursive`. Since Linux 6.9 the kernel
//! counts it only on devices where blk-throttle is active (some cgroup ever set a
//! `blkio.throttle.*_device` limit on it), so on an unthrottled v1 host it reads 0, for
//! `docker stats` as for hydra; v2's `io.stat` always counts.

use std::path::{Path, PathBuf};

use super::files::keyed;

/// One reading of a cgroup (summed over its v1 hierarchies).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// CPU time in nanoseconds.
    pub cpu_ns: u64,
    pub memory_bytes: u64,
    /// `None`: no limit.
    pub memory_limit: Option<u64>,
    pub pids: u64,
    pub oom_kills: u64,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
}

fn number(dir: &Path, file: &str) -> Option<u64> {
    std::fs::read_to_string(dir.join(file))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The number after `key` in a flat keyed file, if the file has that key.
fn find_key(dir: &Path, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// `dir` and every cgroup below it.
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        if let Ok(entries) = std::fs::read_dir(&all[i]) {
            all.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        i += 1;
    }
    all
}

/// v1 `blkio.throttle.io_service_bytes_recursive` (this cgroup and those below; the plain file
/// where a kernel lacks it): "MAJ:MIN Read N" lines, summed over devices.
fn blkio(dir: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(dir.join("blkio.throttle.io_service_bytes_recursive"))
        .or_else(|_| std::fs::read_to_string(dir.join("blkio.throttle.io_service_bytes")))
        .unwrap_or_default();
    let mut total = (0, 0);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [_, op, n] = f.as_slice() {
            let n: u64 = n.parse().unwrap_or(0);
            match *op {
                "Read" => total.0 += n,
                "Write" => total.1 += n,
                _ => {}
            }
        }
    }
    total
}

/// v2 `io.stat`: "MAJ:MIN rbytes=N wbytes=N ..." lines, summed over devices.
fn io_stat(dir: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(dir.join("io.stat")).unwrap_or_default();
    let mut total = (0, 0);
    for field in text.split_whitespace() {
        if let Some(n) = field.strip_prefix("rbytes=") {
            total.0 += n.parse().unwrap_or(0);
        } else if let Some(n) = field.strip_prefix("wbytes=") {
            total.1 += n.parse().unwrap_or(0);
        }
    }
    total
}

/// A v1 memory limit that large means "none" (the kernel reports PAGE_COUNTER_MAX pages).
const V1_UNLIMITED: u64 = 1 << 62;

/// v2: the tightest `memory.max` of `dir` and its ancestors (the root cgroup has none).
fn v2_memory_limit(dir: &Path) -> Option<u64> {
    dir.ancestors()
        .map_while(|d| std::fs::read_to_string(d.join("memory.max")).ok())
        .filter_map(|text| text.trim().parse::<u64>().ok())
        .min()
}

fn add_dir(sample: &mut Sample, dir: &Path) {
    if let Some(ns) = number(dir, "cpuacct.usage") {
        sample.cpu_ns = ns;
    } else if dir.join("cpu.stat").exists() && !dir.join("cpu.cfs_quota_us").exists() {
        sample.cpu_ns = keyed(dir, "cpu.stat", "usage_usec") * 1000;
    }
    if let Some(used) = number(dir, "memory.usage_in_bytes") {
        let cache = keyed(dir, "memory.stat", "total_inactive_file");
        sample.memory_bytes = used.saturating_sub(cache);
        // The tightest limit of this cgroup and its ancestors (a process without a limit of its
        // own is held by its container's).
        sample.memory_limit = find_key(dir, "memory.stat", "hierarchical_memory_limit")
            .or_else(|| number(dir, "memory.limit_in_bytes"))
            .filter(|l| *l < V1_UNLIMITED);
        // v1 counts an OOM kill only in the victim's own cgroup, not in its ancestors.
        sample.oom_kills = subtree(dir)
            .iter()
            .map(|d| keyed(d, "memory.oom_control", "oom_kill"))
            .sum();
    } else if let Some(used) = number(dir, "memory.current") {
        let cache = keyed(dir, "memory.stat", "inactive_file");
        sample.memory_bytes = used.saturating_sub(cache);
        sample.memory_limit = v2_memory_limit(dir);
        // Hierarchical on v2 (unless mounted with memory_localevents).
        sample.oom_kills = keyed(dir, "memory.events", "oom_kill");
    }
    if let Some(n) = number(dir, "pids.current") {
        sample.pids = n;
    }
    let (r, w) = if dir.join("io.stat").exists() {
        io_stat(dir)
    } else {
        blkio(dir)
    };
    sample.io_read_bytes += r;
    sample.io_write_bytes += w;
}

/// Reads a cgroup made of `dirs` (one per v1 hierarchy, or one v2 directory).
pub fn read(dirs: &[PathBuf]) -> Sample {
    let mut sample = Sample::default();
    for dir in dirs {
        add_dir(&mut sample, dir);
    }
    sample
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(label: &str, files: &[(&str, &str, &str)]) -> (PathBuf, Vec<PathBuf>) {
        let root = std::env::temp_dir().join(format!("hydra-stats-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (dir, file, text) in files {
            let d = root.join(dir);
            std::fs::create_dir_all(&d).expect("dir");
            std::fs::write(d.join(file), text).expect("file");
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        (root, dirs)
    }

    #[test]
    fn v1_hierarchies_add_up() {
        let (root, dirs) = tree(
            "v1",
            &[
                ("cpuacct", "cpuacct.usage", "2500000000\n"),
                // v1's cpu.stat has no usage: it must not be mistaken for v2's.
                ("cpu", "cpu.stat", "nr_periods 10\nnr_throttled 2\n"),
                ("cpu", "cpu.cfs_quota_us", "-1\n"),
                ("memory", "memory.usage_in_bytes", "50000000\n"),
                (
                    "memory",
                    "memory.stat",
                    "cache 1\ntotal_inactive_file 8000000\n",
                ),
                ("memory", "memory.limit_in_bytes", "9223372036854771712\n"),
                (
                    "memory",
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
                ),
                ("pids", "pids.current", "7\n"),
                (
                    "blkio",
                    "blkio.throttle.io_service_bytes",
                    "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\n8:16 Read 4096\nTotal 16384\n",
                ),
            ],
        );
        let s = read(&dirs);
        assert_eq!(s.cpu_ns, 2_500_000_000);
        assert_eq!(s.memory_bytes, 42_000_000);
        assert_eq!(s.memory_limit, None);
        assert_eq!((s.pids, s.oom_kills), (7, 2));
        assert_eq!((s.io_read_bytes, s.io_write_bytes), (8192, 8192));
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn v2_files_are_read() {
        let (root, dirs) = tree(
            "v2",
            &[
                ("c", "cpu.stat", "usage_usec 1500\nuser_usec 1000\n"),
                ("c", "memory.current", "1000000\n"),
                ("c", "memory.stat", "inactive_file 1000\n"),
                ("c", "memory.max", "67108864\n"),
                ("c", "memory.events", "low 0\noom 1\noom_kill 1\n"),
                ("c", "pids.current", "3\n"),
                ("c", "io.stat", "8:0 rbytes=10 wbytes=20 rios=1 wios=2\n"),
            ],
        );
        let s = read(&dirs);
        assert_eq!(s.cpu_ns, 1_500_000);
        assert_eq!(s.memory_bytes, 999_000);
        assert_eq!(s.memory_limit, Some(64 << 20));
        assert_eq!(
            (s.pids, s.oom_kills, s.io_read_bytes, s.io_write_bytes),
            (3, 1, 10, 20)
        );
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn v1_container_rows_include_their_processes_and_limits_apply_from_above() {
        let (root, _) = tree(
            "v1-tree",
            &[
                ("memory/c", "memory.usage_in_bytes", "3000\n"),
                (
                    "memory/c",
                    "memory.stat",
                    "total_inactive_file 1000\nhierarchical_memory_limit 1073741824\n",
                ),
                ("memory/c", "memory.limit_in_bytes", "1073741824\n"),
                (
                    "memory/c",
                    "memory.oom_control",
                    "under_oom 0\noom_kill 0\n",
                ),
                ("memory/c/a", "memory.usage_in_bytes", "1000\n"),
                (
                    "memory/c/a",
                    "memory.stat",
                    "hierarchical_memory_limit 1073741824\n",
                ),
                (
                    "memory/c/a",
                    "memory.limit_in_bytes",
                    "9223372036854771712\n",
                ),
                ("memory/c/a", "memory.oom_control", "oom_kill 1\n"),
                ("memory/c/b", "memory.oom_control", "oom_kill 2\n"),
                ("blkio/c", "blkio.throttle.io_service_bytes", "Total 0\n"),
                (
                    "blkio/c",
                    "blkio.throttle.io_service_bytes_recursive",
                    "8:0 Read 10\n8:0 Write 20\n8:0 Total 30\nTotal 30\n",
                ),
            ],
        );
        let container = read(&[root.join("memory/c"), root.join("blkio/c")]);
        assert_eq!(container.memory_bytes, 2000);
        assert_eq!(container.memory_limit, Some(1 << 30));
        assert_eq!(container.oom_kills, 3);
        assert_eq!(
            (container.io_read_bytes, container.io_write_bytes),
            (10, 20)
        );
        // No limit of its own: its container's applies.
        let a = read(&[root.join("memory/c/a")]);
        assert_eq!((a.memory_limit, a.oom_kills), (Some(1 << 30), 1));
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn v2_limits_apply_from_above() {
        let (root, _) = tree(
            "v2-tree",
            &[
                ("c", "memory.max", "1073741824\n"),
                ("c/a", "memory.current", "4096\n"),
                ("c/a", "memory.max", "max\n"),
                ("c/b", "memory.current", "4096\n"),
                ("c/b", "memory.max", "33554432\n"),
                ("d", "memory.current", "4096\n"),
                ("d", "memory.max", "max\n"),
            ],
        );
        let limit = |d: &str| read(&[root.join(d)]).memory_limit;
        assert_eq!(limit("c/a"), Some(1 << 30));
        assert_eq!(limit("c/b"), Some(32 << 20));
        assert_eq!(limit("d"), None);
        let _ = std::fs::remove_dir_all(root);
    }
}
