//! `hydra run`: pid 1 (the init or, with `--no-init`, the command), the pid namespace as seen
//! from inside, signal forwarding and zombie reaping.

mod common;

use common::*;
use std::time::Duration;

/// `ps -o pid,ppid,stat,comm` rows as (pid, ppid, stat, comm).
fn ps_rows(stdout: &str) -> Vec<(u32, u32, String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 4 {
                return None;
            }
            let pid = f[0].parse().ok()?;
            let ppid = f[1].parse().ok()?;
            Some((pid, ppid, f[2].to_string(), f[3..].join(" ")))
        })
        .collect()
}

#[test]
fn no_init_makes_the_command_pid_1() {
    require_root();
    let out = Hydra::run("noinit-pid1")
        .arg("--no-init")
        .sh("echo $$ $PPID")
        .output();
    out.assert_ok();
    assert_eq!(
        out.out(),
        "1 0",
        "with --no-init the command must be pid 1\n{out}"
    );
}

#[test]
fn default_init_is_pid_1_and_the_command_is_pid_2() {
    require_root();
    let out = Hydra::run("init-pid2").sh("echo $$ $PPID").output();
    out.assert_ok();
    assert_eq!(
        out.out(),
        "2 1",
        "by default an init is pid 1 and the command its child, pid 2\n{out}"
    );
}

#[test]
fn ps_sees_only_the_container_processes() {
    require_root();
    // `; true` keeps sh from exec'ing ps, so the tree is init -> sh -> ps.
    let out = Hydra::run("ps-only")
        .sh("ps -o pid,ppid,stat,comm; true")
        .output();
    out.assert_ok();
    let rows = ps_rows(&out.stdout);
    assert_eq!(rows.len(), 3, "expected exactly init, sh and ps\n{out}");
    assert!(
        rows.iter().any(|r| r.0 == 1 && r.1 == 0),
        "no pid 1 (with ppid 0)\n{out}"
    );
    assert!(
        rows.iter().any(|r| r.0 == 2 && r.1 == 1 && r.3 == "sh"),
        "the command (sh) is not pid 2 under pid 1\n{out}"
    );
    assert!(
        rows.iter().any(|r| r.1 == 2 && r.3 == "ps"),
        "ps is not a child of the command\n{out}"
    );
}

#[test]
fn ps_sees_only_the_command_without_init() {
    require_root();
    let out = Hydra::run("ps-noinit")
        .arg("--no-init")
        .sh("ps -o pid,ppid,stat,comm; true")
        .output();
    out.assert_ok();
    let rows = ps_rows(&out.stdout);
    assert_eq!(rows.len(), 2, "expected exactly sh and ps\n{out}");
    assert!(
        rows.iter().any(|r| r.0 == 1 && r.1 == 0 && r.3 == "sh"),
        "sh is not pid 1\n{out}"
    );
    assert!(
        rows.iter().any(|r| r.1 == 1 && r.3 == "ps"),
        "ps is not a child of pid 1\n{out}"
    );
}

#[test]
fn proc_lists_only_container_pids() {
    require_root();
    let out = Hydra::run("proc-pids")
        .sh("for d in /proc/[0-9]*; do echo ${d#/proc/}; done")
        .output();
    out.assert_ok();
    let pids: Vec<u32> = out
        .lines()
        .iter()
        .map(|l| l.parse().unwrap_or_else(|_| panic!("bad pid {l:?}\n{out}")))
        .collect();
    // init, sh; the loop itself runs in sh (builtins only).
    assert!(pids.contains(&1), "{out}");
    assert!(
        pids.iter().all(|&p| p < 50),
        "host processes visible in the container's /proc\n{out}"
    );
    assert!(
        pids.len() <= 3,
        "more processes than the container's own\n{out}"
    );
}

#[test]
fn orphans_are_reaped_by_init() {
    require_root();
    // The subshell exits at once, so `sleep 0.2` is re-parented to pid 1 (the init), which must
    // reap it when it exits. A missing reaper shows it as a zombie (stat Z).
    let out = Hydra::run("reap")
        .sh("(sleep 0.2 &) ; (sleep 0.2 &) ; sleep 2; ps -o pid,ppid,stat,comm")
        .output();
    out.assert_ok();
    let rows = ps_rows(&out.stdout);
    assert!(!rows.is_empty(), "no ps output\n{out}");
    let zombies: Vec<_> = rows.iter().filter(|r| r.2.starts_with('Z')).collect();
    assert!(
        zombies.is_empty(),
        "zombies were not reaped: {zombies:?}\n{out}"
    );
    assert!(
        !rows.iter().any(|r| r.3 == "sleep"),
        "the orphaned sleeps should have exited and been reaped by now\n{out}"
    );
}

#[test]
fn background_children_do_not_keep_the_container_alive() {
    require_root();
    // When the command exits, the init exits and the kernel kills what is left in the pid
    // namespace. A surviving `sleep 30` would hold stdout open (the helper fails on that) or
    // keep hydra running past the timeout.
    let out = Hydra::run("bg-children")
        .sh("sleep 30 & echo started")
        .timeout(Duration::from_secs(20))
        .output();
    out.assert_ok();
    assert_eq!(out.out(), "started", "{out}");
}

#[test]
fn background_children_do_not_keep_a_no_init_container_alive() {
    require_root();
    let out = Hydra::run("bg-noinit")
        .arg("--no-init")
        .sh("sleep 30 & echo started")
        .timeout(Duration::from_secs(20))
        .output();
    out.assert_ok();
    assert_eq!(out.out(), "started", "{out}");
}

/// Send `sig` to the hydra process once the command trapped it; the trap must run.
fn signal_is_forwarded(label: &str, no_init: bool, sig: i32, signame: &str, code: i32) {
    require_root();
    let mut h = Hydra::run(label);
    if no_init {
        h = h.arg("--no-init");
    }
    let mut r = h
        .sh(&format!(
            "trap 'echo got {signame}; exit {code}' {signame}; echo ready; sleep 30 & wait"
        ))
        .spawn();
    r.wait_for_stdout("ready");
    r.signal(sig);
    let out = r.wait();
    out.assert_code(code);
    out.assert_stdout_contains(&format!("got {signame}"));
}

#[test]
fn sigterm_is_forwarded_through_init() {
    signal_is_forwarded("sig-term", false, libc::SIGTERM, "TERM", 3);
}

#[test]
fn sigterm_is_forwarded_without_init() {
    signal_is_forwarded("sig-term-noinit", true, libc::SIGTERM, "TERM", 3);
}

#[test]
fn sigint_is_forwarded_through_init() {
    signal_is_forwarded("sig-int", false, libc::SIGINT, "INT", 4);
}

#[test]
fn sighup_is_forwarded_through_init() {
    signal_is_forwarded("sig-hup", false, libc::SIGHUP, "HUP", 5);
}

#[test]
fn sigusr1_is_forwarded_through_init() {
    signal_is_forwarded("sig-usr1", false, libc::SIGUSR1, "USR1", 6);
}

#[test]
fn sigusr2_is_forwarded_through_init() {
    signal_is_forwarded("sig-usr2", false, libc::SIGUSR2, "USR2", 7);
}

#[test]
fn sigquit_is_forwarded_through_init() {
    signal_is_forwarded("sig-quit", false, libc::SIGQUIT, "QUIT", 8);
}

#[test]
fn untrapped_sigterm_kills_the_command_with_143() {
    require_root();
    let mut r = Hydra::run("sig-term-dflt")
        .sh("echo ready; sleep 30")
        .spawn();
    r.wait_for_stdout("ready");
    r.signal(libc::SIGTERM);
    let out = r.wait();
    out.assert_code(128 + libc::SIGTERM);
}

#[test]
fn the_init_shows_no_host_path_or_hydra_arguments() {
    require_root();
    let out = Hydra::run("init-argv")
        .sh("tr '\\0' ' ' < /proc/1/cmdline")
        .output();
    out.assert_ok();
    assert_eq!(out.out().trim(), "hydra-init", "{out}");
    assert!(!out.out().contains("rootfs"), "{out}");
}
