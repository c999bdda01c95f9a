//! `hydra run`: capabilities, no_new_privs, seccomp per security level, what the filter denies,
//! a non-dumpable init and closed file descriptors — all read from inside the process.

mod common;

use common::*;
use std::fs;

const FORBIDDEN: [(u32, &str); 4] = [
    (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
    (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
    (CAP_SYS_MODULE, "CAP_SYS_MODULE"),
    (CAP_SYS_PTRACE, "CAP_SYS_PTRACE"),
];

fn status_of(level: Option<&str>) -> (std::collections::BTreeMap<String, String>, Output) {
    require_root();
    let mut h = Hydra::run(&format!("status-{}", level.unwrap_or("default")));
    if let Some(l) = level {
        h = h.args(["--security-level", l]);
    }
    let out = h.cmd(["cat", "/proc/self/status"]).output();
    out.assert_ok();
    (status_fields(&out.stdout), out)
}

fn assert_standard_caps(f: &std::collections::BTreeMap<String, String>, out: &Output) {
    for key in ["CapEff", "CapPrm", "CapBnd"] {
        let v = cap_field(f, key);
        for (bit, cap) in FORBIDDEN {
            assert_eq!(v & (1 << bit), 0, "{key} has {cap}: {v:#x}\n{out}");
        }
        assert_eq!(
            v, DOCKER_DEFAULT_CAPS,
            "{key} = {v:#x} is not Docker's default set {DOCKER_DEFAULT_CAPS:#x}\n{out}"
        );
    }
    assert_eq!(cap_field(f, "CapAmb"), 0, "ambient capabilities set\n{out}");
    let inh = cap_field(f, "CapInh");
    assert_eq!(
        inh & !DOCKER_DEFAULT_CAPS,
        0,
        "CapInh {inh:#x} beyond the default set\n{out}"
    );
}

#[test]
fn standard_is_the_default_level() {
    let (f, out) = status_of(None);
    assert_standard_caps(&f, &out);
    assert_eq!(f.get("NoNewPrivs").map(String::as_str), Some("1"), "{out}");
    assert_eq!(f.get("Seccomp").map(String::as_str), Some("2"), "{out}");
}

#[test]
fn standard_has_docker_caps_no_new_privs_and_a_seccomp_filter() {
    let (f, out) = status_of(Some("standard"));
    assert_standard_caps(&f, &out);
    assert_eq!(f.get("NoNewPrivs").map(String::as_str), Some("1"), "{out}");
    assert_eq!(f.get("Seccomp").map(String::as_str), Some("2"), "{out}");
}

#[test]
fn strict_has_no_capabilities_at_all() {
    let (f, out) = status_of(Some("strict"));
    for key in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
        assert_eq!(cap_field(&f, key), 0, "{key} not empty at strict\n{out}");
    }
    assert_eq!(f.get("NoNewPrivs").map(String::as_str), Some("1"), "{out}");
    assert_eq!(f.get("Seccomp").map(String::as_str), Some("2"), "{out}");
}

#[test]
fn minimal_has_no_seccomp_and_the_default_caps() {
    let (f, out) = status_of(Some("minimal"));
    assert_eq!(f.get("Seccomp").map(String::as_str), Some("0"), "{out}");
    assert_standard_caps(&f, &out);
}

#[test]
fn probe_caps_agrees_with_status() {
    require_root();
    let out = Hydra::run("probe-caps")
        .cmd(["hydra-probe", "caps"])
        .output();
    out.assert_ok();
    let line = out.out();
    let want = format!("eff={DOCKER_DEFAULT_CAPS:016x} bnd={DOCKER_DEFAULT_CAPS:016x} prm={DOCKER_DEFAULT_CAPS:016x}");
    assert!(line.contains(&want), "expected {want}\n{out}");
    assert!(line.contains("amb=0000000000000000"), "{out}");
    assert!(line.ends_with("nnp=1 seccomp=2"), "{out}");
}

fn run_level(label: &str, level: &str, script: &str) -> Output {
    require_root();
    let out = Hydra::run(label)
        .args(["--security-level", level])
        .sh(&format!("{script}; true"))
        .output();
    out.assert_ok();
    out
}

fn assert_mount_fails(label: &str, level: &str) {
    let out = run_level(
        label,
        level,
        "mount -t tmpfs none /mnt; echo rc=$?; hydra-probe mount",
    );
    assert!(!out.stdout.contains("rc=0"), "mount succeeded\n{out}");
    assert!(out.stdout.contains("mount: "), "{out}");
    assert!(
        !out.stdout.contains("mount: ok"),
        "mount(2) succeeded\n{out}"
    );
}

#[test]
fn mount_fails_at_standard() {
    assert_mount_fails("mount-std", "standard");
}

#[test]
fn mount_fails_at_strict() {
    assert_mount_fails("mount-strict", "strict");
}

/// `hydra-probe unshare NS` for each namespace must fail; so must busybox `unshare -U true`.
fn assert_unshare_denied(label: &str, level: &str) {
    let out = run_level(
        label,
        level,
        "unshare -U true; echo rc=$?; for n in user net mount pid ipc uts cgroup; do \
         echo $n $(hydra-probe unshare $n); done",
    );
    assert!(
        !out.stdout.contains("rc=0"),
        "unshare -U true succeeded at {level}\n{out}"
    );
    let lines: Vec<&str> = out
        .lines()
        .into_iter()
        .filter(|l| l.contains("unshare:"))
        .collect();
    assert_eq!(lines.len(), 7, "{out}");
    for l in lines {
        assert!(!l.ends_with("unshare: ok"), "{l} at {level}\n{out}");
    }
}

#[test]
fn unshare_is_denied_at_standard() {
    assert_unshare_denied("unshare-std", "standard");
}

#[test]
fn unshare_is_denied_at_strict() {
    assert_unshare_denied("unshare-strict", "strict");
}

#[test]
fn clone3_gets_enosys_at_standard() {
    let out = run_level("clone3-std", "standard", "hydra-probe clone3");
    assert_eq!(out.out(), "clone3: ENOSYS", "{out}");
}

#[test]
fn clone3_gets_enosys_at_strict() {
    let out = run_level("clone3-strict", "strict", "hydra-probe clone3");
    assert_eq!(out.out(), "clone3: ENOSYS", "{out}");
}

#[test]
fn ptrace_of_init_fails() {
    let out = run_level("ptrace-init", "standard", "hydra-probe ptrace 1");
    assert!(out.out().starts_with("ptrace: "), "{out}");
    assert_ne!(
        out.out(),
        "ptrace: ok",
        "the command could ptrace the init\n{out}"
    );
}

#[test]
fn ptrace_is_denied_at_strict() {
    let out = run_level(
        "ptrace-strict",
        "strict",
        "sleep 10 & p=$!; hydra-probe ptrace $p; kill $p",
    );
    assert!(out.out().starts_with("ptrace: "), "{out}");
    assert_ne!(
        out.out(),
        "ptrace: ok",
        "ptrace of a sibling worked at strict\n{out}"
    );
}

#[test]
fn init_is_not_dumpable() {
    let out = run_level(
        "init-nodump",
        "standard",
        "dd if=/proc/1/mem of=/dev/null bs=1 count=1; echo mem=$?; \
         readlink /proc/1/exe; echo exe=$?; cat /proc/1/environ >/dev/null; echo env=$?",
    );
    for k in ["mem", "exe", "env"] {
        assert!(out.stdout.contains(&format!("{k}=")), "{out}");
        assert!(
            !out.stdout.contains(&format!("{k}=0")),
            "/proc/1/{k} of the init is accessible\n{out}"
        );
    }
    out.assert_stderr_contains("Permission denied");
}

fn fd_numbers(line: &str) -> Vec<u32> {
    line.split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Only 0, 1, 2 (and the directory fd `ls` uses) are open inside.
fn assert_only_stdio(out: &Output) {
    let lines = out.lines();
    let ls_line = lines
        .iter()
        .find(|l| l.starts_with("ls:"))
        .unwrap_or_else(|| panic!("no ls line\n{out}"));
    let fds = fd_numbers(&ls_line[3..]);
    assert!(fds.starts_with(&[0, 1, 2]), "stdio missing: {fds:?}\n{out}");
    assert!(
        fds.len() <= 4,
        "more than stdio and the listing fd open: {fds:?}\n{out}"
    );
    assert!(
        lines.contains(&"fds: 0 1 2"),
        "hydra-probe fds must print exactly `fds: 0 1 2`\n{out}"
    );
}

const FD_SCRIPT: &str = "echo ls: $(ls /proc/self/fd); hydra-probe fds";

#[test]
fn only_stdio_is_open() {
    require_root();
    let out = Hydra::run("fds").sh(FD_SCRIPT).output();
    out.assert_ok();
    assert_only_stdio(&out);
}

#[test]
fn only_stdio_is_open_without_init() {
    require_root();
    let out = Hydra::run("fds-noinit")
        .arg("--no-init")
        .sh(FD_SCRIPT)
        .output();
    out.assert_ok();
    assert_only_stdio(&out);
}

#[test]
fn an_inherited_host_fd_does_not_leak_inside() {
    require_root();
    let dir = TempDir::new("leak");
    fs::write(dir.join("leak-marker"), "x").unwrap();
    let out = Hydra::run("fd-leak")
        .inherit_fd(open_dir(&dir.path), 5)
        .inherit_fd(open_dir(&dir.path), 42)
        .sh(&format!(
            "{FD_SCRIPT}; cd /proc/self/fd/5 && echo escaped5; ls /proc/self/fd/5/ /proc/self/fd/42/; \
             cd /proc/1/fd/5 && echo escaped1; true"
        ))
        .output();
    out.assert_ok();
    assert_only_stdio(&out);
    assert!(
        !out.stdout.contains("escaped"),
        "cd into a leaked host fd worked\n{out}"
    );
    assert!(
        !out.stdout.contains("leak-marker"),
        "a host directory is listable inside\n{out}"
    );
}

#[test]
fn a_workdir_through_a_leaked_fd_does_not_escape() {
    // CVE-2024-21626: cwd = /proc/self/fd/N of a leaked host directory fd.
    require_root();
    let dir = TempDir::new("leak-cwd");
    fs::write(dir.join("leak-marker"), "x").unwrap();
    let out = Hydra::run("cwd-leak")
        .inherit_fd(open_dir(&dir.path), 7)
        .args(["--workdir", "/proc/self/fd/7"])
        .sh("ls -a; ls -a ..; pwd")
        .output();
    // Refusing (125) or running inside are both fine; seeing the host directory is not.
    assert!(
        !out.stdout.contains("leak-marker"),
        "the workdir resolved to the leaked host directory\n{out}"
    );
    if out.code() != 125 {
        assert!(!out.stdout.contains("hydra-test-leak-cwd"), "{out}");
    }
}

const DENIED_CALLS: [&str; 4] = ["keyctl", "setns", "perf_event_open", "io_uring_setup"];

fn probe_calls(label: &str, level: &str) -> Output {
    let script = DENIED_CALLS
        .iter()
        .map(|c| format!("hydra-probe syscall {c}"))
        .collect::<Vec<_>>()
        .join("; ");
    run_level(label, level, &script)
}

#[test]
fn the_filter_denies_keyrings_setns_perf_and_io_uring() {
    for level in ["standard", "strict"] {
        let out = probe_calls(&format!("calls-{level}"), level);
        for call in DENIED_CALLS {
            out.assert_stdout_contains(&format!("syscall {call}: EPERM"));
        }
    }
}

#[test]
fn without_the_filter_those_calls_are_not_eperm() {
    // The control for the test above: the same calls at `minimal` (same capabilities, no
    // seccomp) fail differently or succeed, so the EPERM above is the filter's.
    let out = probe_calls("calls-minimal", "minimal");
    for call in DENIED_CALLS {
        assert!(
            !out.out().contains(&format!("syscall {call}: EPERM")),
            "{call} is denied without a filter\n{out}"
        );
    }
}

#[test]
fn landlock_at_strict_blocks_writes_outside_the_writable_paths() {
    // /proc/self/oom_score_adj is writable by the process itself (raising it needs no
    // privilege) and is not a writable path, so only Landlock can refuse it.
    let script = "echo 500 > /proc/self/oom_score_adj && echo written; \
                  echo ok > /tmp/allowed && cat /tmp/allowed";
    let strict = run_level("landlock-strict", "strict", script);
    strict.assert_stdout_contains("ok");
    assert!(
        !strict.out().contains("written"),
        "strict allowed the write\n{strict}"
    );
    strict.assert_stderr_contains("Permission denied");
    let standard = run_level("landlock-standard", "standard", script);
    standard.assert_stdout_contains("written");
}

fn file_bytes(path: &std::path::Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn the_hydra_binary_cannot_be_overwritten_from_inside() {
    // runc CVE-2019-5736: the container reopened the runtime through /proc/PID/exe and wrote to
    // it. hydra's init is a fork of the hydra binary; every way to it must be closed.
    let before = file_bytes(&hydra_bin());
    let out = run_level(
        "exe-overwrite",
        "standard",
        "echo pwned > /proc/1/exe; echo w1=$?; \
         cat /proc/1/exe >/dev/null; echo r1=$?; \
         for p in /proc/[0-9]*; do echo pwned > $p/exe 2>/dev/null && echo wrote-$p; done; true",
    );
    out.assert_stdout_contains("w1=")
        .assert_stdout_contains("r1=");
    assert!(!out.out().contains("w1=0"), "wrote to /proc/1/exe\n{out}");
    assert!(!out.out().contains("r1=0"), "opened /proc/1/exe\n{out}");
    assert!(
        !out.out().contains("wrote-"),
        "wrote through a /proc/PID/exe\n{out}"
    );
    assert_eq!(file_bytes(&hydra_bin()), before, "the hydra binary changed");
}
