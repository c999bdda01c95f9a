//! `hydra run`: exit codes (the command's, 128+N for signals, 126, 127) and stdio pass-through.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn the_exit_code_is_the_commands() {
    require_root();
    Hydra::run("exit42").sh("exit 42").output().assert_code(42);
}

#[test]
fn the_exit_code_is_the_commands_without_init() {
    require_root();
    Hydra::run("exit42-noinit")
        .arg("--no-init")
        .sh("exit 42")
        .output()
        .assert_code(42);
}

#[test]
fn success_is_zero() {
    require_root();
    Hydra::run("true").cmd(["true"]).output().assert_ok();
    Hydra::run("false").cmd(["false"]).output().assert_code(1);
}

#[test]
fn kill_9_of_the_command_is_137() {
    require_root();
    // The command is pid 2 under the init, so it can kill itself.
    Hydra::run("kill9")
        .sh("kill -9 $$; echo survived")
        .output()
        .assert_code(137);
}

#[test]
fn sigterm_of_the_command_is_143() {
    require_root();
    Hydra::run("kill15")
        .sh("kill -TERM $$; echo survived")
        .output()
        .assert_code(143);
}

#[test]
fn sigkill_of_pid_1_without_init_is_137() {
    // With --no-init the command is the namespace's init: the kernel ignores a SIGKILL it sends
    // itself (`kill -9 $$` is a no-op there), so the kill comes from the host, as from `kill`.
    require_root();
    let mut r = Hydra::run("kill9-noinit")
        .arg("--no-init")
        .sh("echo ready; sleep 30")
        .spawn();
    r.wait_for_stdout("ready");
    let pid1 = container_pid1(r.pid, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no container pid 1 below hydra (pid {})", r.pid));
    // SAFETY: kill(2) of the container process this test started (a descendant of its hydra).
    assert_eq!(unsafe { libc::kill(pid1, libc::SIGKILL) }, 0);
    r.wait().assert_code(137);
}

fn assert_not_found(out: &Output) {
    out.assert_code(127);
    let prefix = format!("hydra: {}: ", out.name.as_deref().unwrap());
    assert!(
        out.stderr_lines().iter().any(|l| l.starts_with(&prefix)
            && l.contains("exec")
            && l.contains("no such file or directory")),
        "no clear `hydra: <name>: exec ...: no such file or directory` line on stderr\n{out}"
    );
}

#[test]
fn a_missing_command_is_127() {
    require_root();
    assert_not_found(&Hydra::run("missing").cmd(["/no/such/command"]).output());
}

#[test]
fn a_missing_command_on_path_is_127() {
    require_root();
    assert_not_found(&Hydra::run("missing-path").cmd(["no-such-command"]).output());
}

#[test]
fn a_missing_command_without_init_is_127() {
    require_root();
    assert_not_found(
        &Hydra::run("missing-noinit")
            .arg("--no-init")
            .cmd(["/no/such/command"])
            .output(),
    );
}

#[test]
fn a_non_executable_file_is_126() {
    require_root();
    let out = Hydra::run("noexec").cmd(["/etc/passwd"]).output();
    out.assert_code(126);
    assert!(!out.stderr.trim().is_empty(), "no message on stderr\n{out}");
}

#[test]
fn a_non_executable_file_without_init_is_126() {
    require_root();
    Hydra::run("noexec-noinit")
        .arg("--no-init")
        .cmd(["/etc/passwd"])
        .output()
        .assert_code(126);
}

#[test]
fn a_directory_as_command_is_126() {
    require_root();
    Hydra::run("dir-cmd")
        .cmd(["/etc"])
        .output()
        .assert_code(126);
}

#[test]
fn stdout_and_stderr_pass_through_unchanged() {
    require_root();
    let out = Hydra::run("stdio")
        .sh("echo out; echo err >&2; printf 'no newline'")
        .output();
    out.assert_ok();
    assert_eq!(out.stdout, "out\nno newline", "{out}");
    assert_eq!(out.stderr, "err\n", "{out}");
}

#[test]
fn stdin_passes_through() {
    require_root();
    let out = Hydra::run("stdin")
        .stdin_bytes("line one\nline two\n")
        .cmd(["cat"])
        .output();
    out.assert_ok();
    assert_eq!(out.stdout, "line one\nline two\n", "{out}");
}

#[test]
fn stdin_is_not_a_tty_when_piped() {
    require_root();
    let out = Hydra::run("notty")
        .stdin_bytes("x\n")
        .sh("test -t 0 && echo tty0; test -t 1 && echo tty1; echo done")
        .output();
    out.assert_ok();
    assert_eq!(out.out(), "done", "{out}");
}

#[test]
fn a_megabyte_of_output_arrives_complete() {
    require_root();
    let out = Hydra::run("bigout")
        .sh("head -c 1048576 /dev/zero | tr '\\0' a")
        .output();
    out.assert_ok();
    assert_eq!(out.stdout.len(), 1 << 20, "lost output");
    assert!(out.stdout.bytes().all(|b| b == b'a'));
}
