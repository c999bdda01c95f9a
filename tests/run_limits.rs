//! `hydra run`: memory, cpu and pids limits (cgroups), rlimits, and the host objects that exist
//! only while the process runs (cgroup directories, state directory).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The process's own cgroup directory for `controller`: `hydra/<n>/<n>` of its hierarchy.
fn process_cgroup(controller: &str, name: &str) -> PathBuf {
    cgroup_dir(controller, &format!("{name}/{name}"))
}

/// Run `hydra run FLAGS -- sh -c 'echo ready; read x'`, call `check(name, hydra_pid)` while it
/// runs, then let it finish (the helper checks the host is clean afterwards).
fn while_running(label: &str, flags: &[&str], check: impl FnOnce(&str, i32)) -> Output {
    require_root();
    let mut r = Hydra::run(label)
        .args(flags)
        .stdin_pipe()
        .sh("echo ready; read x; echo done")
        .spawn();
    r.wait_for_stdout("ready");
    let name = r.name().to_string();
    let pid = r.pid;
    // The check may panic: `r` is dropped then and kills hydra and its processes.
    check(&name, pid);
    r.write_stdin("go\n");
    let out = r.wait();
    out.assert_ok();
    assert_eq!(out.lines(), ["ready", "done"], "{out}");
    out
}

/// The container's pid 1 (host pid) is a member of `dir`.
fn assert_member(dir: &Path, hydra_pid: i32) {
    let pid1 = container_pid1(hydra_pid, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no container pid 1 below hydra (pid {hydra_pid})"));
    let procs = read_trim(&dir.join("cgroup.procs"));
    assert!(
        procs.lines().any(|l| l.trim() == pid1.to_string()),
        "container pid 1 (host pid {pid1}) is not in {}: {procs:?}",
        dir.display()
    );
}

/// Runs with `flags`; while the process runs, its `controller` cgroup directory must exist,
/// hold its pid 1 and carry `want` in the file `v1_file` (v1) or `v2_file` (v2); after exit the
/// process and container directories must be gone.
fn assert_cgroup_limit(
    label: &str,
    flags: &[&str],
    controller: &str,
    files: (&str, &str),
    want: &str,
) {
    let mut seen = None;
    let out = while_running(label, flags, |name, pid| {
        let dir = process_cgroup(controller, name);
        assert!(
            wait_for_path(&dir, Duration::from_secs(5)),
            "{} missing",
            dir.display()
        );
        let file = if cgroup_v1(controller) {
            files.0
        } else {
            files.1
        };
        assert_eq!(read_trim(&dir.join(file)), want, "{}/{file}", dir.display());
        assert_member(&dir, pid);
        seen = Some(dir);
    });
    let dir = seen.expect("the check ran");
    for gone in [dir.as_path(), dir.parent().expect("container dir")] {
        assert!(
            !gone.exists(),
            "{} still exists after exit\n{out}",
            gone.display()
        );
    }
}

#[test]
fn memory_limit_is_set_on_the_process_cgroup() {
    let files = ("memory.limit_in_bytes", "memory.max");
    assert_cgroup_limit("mem-64", &["--memory", "64M"], "memory", files, "67108864");
}

#[test]
fn cpus_sets_the_cfs_quota() {
    let files = ("cpu.cfs_quota_us", "cpu.max");
    let want = if cgroup_v1("cpu") {
        "50000"
    } else {
        "50000 100000"
    };
    assert_cgroup_limit("cpu-half", &["--cpus", "0.5"], "cpu", files, want);
}

#[test]
fn cpus_uses_a_100ms_period() {
    let files = ("cpu.cfs_period_us", "cpu.max");
    let want = if cgroup_v1("cpu") {
        "100000"
    } else {
        "50000 100000"
    };
    assert_cgroup_limit("cpu-period", &["--cpus", "0.5"], "cpu", files, want);
}

#[test]
fn pids_sets_pids_max() {
    assert_cgroup_limit(
        "pids-max",
        &["--pids", "20"],
        "pids",
        ("pids.max", "pids.max"),
        "20",
    );
}

#[test]
fn state_directory_exists_only_while_running() {
    let mut seen = None;
    while_running("state-dir", &[], |name, _| {
        let dir = Path::new("/run/hydra").join(name);
        assert!(
            dir.is_dir(),
            "{} does not exist while running",
            dir.display()
        );
        seen = Some(dir);
    });
    let dir = seen.unwrap();
    assert!(!dir.exists(), "{} still exists after exit", dir.display());
}

#[test]
fn out_of_memory_exits_137_and_says_so() {
    require_root();
    let h = Hydra::run("oom").args(["--memory", "32M"]);
    let name = h.name().to_string();
    let out = h.cmd(["hydra-probe", "alloc", "100"]).output();
    out.assert_code(137);
    assert!(
        !out.stdout.contains("alloc: ok"),
        "100 MiB fit in a 32 MiB limit\n{out}"
    );
    let want = format!("hydra: {name}: killed: out of memory (limit 32 MiB)");
    assert!(
        out.stderr_lines().contains(&want.as_str()),
        "stderr lacks the line {want:?}\n{out}"
    );
}

#[test]
fn out_of_memory_without_init_exits_137_and_says_so() {
    require_root();
    let h = Hydra::run("oom-noinit").args(["--memory", "32M", "--no-init"]);
    let name = h.name().to_string();
    let out = h.cmd(["hydra-probe", "alloc", "100"]).output();
    out.assert_code(137);
    let want = format!("hydra: {name}: killed: out of memory (limit 32 MiB)");
    assert!(
        out.stderr_lines().contains(&want.as_str()),
        "stderr lacks the line {want:?}\n{out}"
    );
}

#[test]
fn memory_below_the_limit_is_fine() {
    require_root();
    let out = Hydra::run("mem-fits")
        .args(["--memory", "64M"])
        .cmd(["hydra-probe", "alloc", "16"])
        .output();
    out.assert_ok();
    assert_eq!(out.out(), "alloc: ok", "{out}");
    assert!(!out.stderr.contains("out of memory"), "{out}");
}

#[test]
fn a_fork_bomb_hits_the_pids_limit_and_ends() {
    require_root();
    // The bomb runs in the background; the shell exits when `sleep 3` ends, then the init exits
    // and the kernel kills everything left in the pid namespace.
    let out = Hydra::run("forkbomb")
        .args(["--pids", "20"])
        .sh("sleep 3 & s=$!; (b(){ b & b & wait; }; b) 2>/dev/null & wait $s; exit 0")
        .output();
    out.assert_ok();
    out.assert_stderr_contains("pids limit (20) reached");
}

#[test]
fn max_file_size_limits_writes() {
    require_root();
    let out = Hydra::run("fsize")
        .args(["--max-file-size", "1M"])
        .sh("hydra-probe fsize /tmp/small 524288; hydra-probe fsize /tmp/f 2097152; true")
        .output();
    out.assert_ok();
    assert_eq!(out.lines(), ["fsize: ok", "fsize: EFBIG"], "{out}");
}

#[test]
fn max_files_limits_open_descriptors() {
    require_root();
    let out = Hydra::run("nofile")
        .args(["--max-files", "16"])
        .sh("ulimit -n; ulimit -Hn; hydra-probe open-max")
        .output();
    out.assert_ok();
    let lines = out.lines();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "16", "soft RLIMIT_NOFILE\n{out}");
    assert_eq!(
        lines[1], "16",
        "hard RLIMIT_NOFILE (else the process can raise it again)\n{out}"
    );
    let f: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(f.len(), 3, "{out}");
    assert_eq!((f[0], f[2]), ("open-max:", "EMFILE"), "{out}");
    let n: u32 = f[1].parse().unwrap();
    assert!(
        n > 0 && n < 16,
        "opened {n} files with --max-files 16\n{out}"
    );
}

#[test]
fn the_process_sees_its_own_limits_read_only_at_sys_fs_cgroup() {
    require_root();
    let (file, write) = if cgroup_v1("memory") {
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "memory/memory.limit_in_bytes",
        )
    } else {
        ("/sys/fs/cgroup/memory.max", "memory.max")
    };
    let out = Hydra::run("cg-view")
        .args(["--memory", "64M"])
        .sh(&format!(
            "cat {file}; echo 1 > /sys/fs/cgroup/{write} && echo wrote; \
             ls /sys/fs/cgroup/release_agent /sys/fs/cgroup/memory/release_agent 2>&1 | grep -c 'No such'"
        ))
        .output();
    out.assert_ok();
    let lines = out.lines();
    assert_eq!(lines[0], "67108864", "{out}");
    assert!(
        !out.out().contains("wrote"),
        "the cgroup view is writable\n{out}"
    );
    assert_eq!(
        lines.last(),
        Some(&"2"),
        "a release_agent is visible\n{out}"
    );
}
