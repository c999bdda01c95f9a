//! Crash safety: a SIGKILLed hydra takes its process with it and leaves only its write-ahead
//! record (state directory, cgroups), which `hydra gc` or the next run of the same name removes.

mod common;

use common::*;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `hydra gc` collects every dead record on the host, so these tests take turns: one test's gc
/// must not collect the record another test is about to inspect.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn gone_within(path: &Path, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if !path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    !path.exists()
}

/// Starts a limited container, SIGKILLs its hydra and returns the name; checks that the
/// container's processes died with it and that the record is still there.
fn kill_hydra_mid_run(label: &str) -> String {
    require_root();
    let mut r = Hydra::run(label)
        .args(["--memory", "32M", "--pids", "20"])
        .without_clean_check()
        .sh("echo ready; sleep 30")
        .spawn();
    r.wait_for_stdout("ready");
    let name = r.name().to_string();
    let pid1 = container_pid1(r.pid, Duration::from_secs(5)).expect("container pid 1");
    r.signal(libc::SIGKILL);
    let out = r.wait();
    assert_eq!(out.signal, Some(libc::SIGKILL), "{out}");
    let proc_dir = Path::new("/proc").join(pid1.to_string());
    assert!(
        gone_within(&proc_dir, Duration::from_secs(5)),
        "the container outlived its hydra (pid {pid1})"
    );
    assert!(
        host_leftovers(&name, Path::new("/run/hydra")).is_err(),
        "a killed hydra left no record to collect"
    );
    name
}

#[test]
fn gc_removes_what_a_killed_hydra_left() {
    let _turn = serial();
    let name = kill_hydra_mid_run("gc-killed");
    let out = Hydra::bare().arg("gc").output();
    out.assert_ok();
    out.assert_stdout_contains(&format!("removed {name}"));
    assert_host_clean(&name, Path::new("/run/hydra"));
}

#[test]
fn the_next_run_of_the_same_name_takes_over_a_dead_record() {
    let _turn = serial();
    let name = kill_hydra_mid_run("gc-reuse");
    let out = Hydra::bare()
        .args(["run", "--memory", "32M", "--name", &name, "--rootfs"])
        .arg(rootfs())
        .args(["--", "echo", "again"])
        .output();
    out.assert_ok();
    out.assert_stdout_contains("again");
    assert_host_clean(&name, Path::new("/run/hydra"));
}

#[test]
fn gc_leaves_a_running_container_alone_and_names_clash() {
    require_root();
    let _turn = serial();
    let mut r = Hydra::run("gc-live")
        .stdin_pipe()
        .sh("echo ready; read x; echo done")
        .spawn();
    r.wait_for_stdout("ready");
    let name = r.name().to_string();
    let gc = Hydra::bare().arg("gc").output();
    gc.assert_ok();
    assert!(
        !gc.out().contains(&name),
        "gc removed a live container\n{gc}"
    );
    assert!(Path::new("/run/hydra").join(&name).is_dir());
    let clash = Hydra::bare()
        .args(["run", "--name", &name, "--rootfs"])
        .arg(rootfs())
        .args(["--", "true"])
        .output();
    clash.assert_code(125);
    assert!(
        clash.one_stderr_line().contains("already running"),
        "{clash}"
    );
    r.write_stdin("go\n");
    let out = r.wait();
    out.assert_ok();
    assert_eq!(out.lines(), ["ready", "done"], "{out}");
}
