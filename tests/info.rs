//! `hydra info`: what the host offers, compared with what the test measures itself.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::Path;

/// "v1", "hybrid" or "v2", from the host's mount table.
fn host_cgroup_mode() -> &'static str {
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let (mut v1, mut v2, mut v2_at_root) = (false, false, false);
    for l in mi.lines() {
        let Some((pre, post)) = l.split_once(" - ") else {
            continue;
        };
        let mountpoint = pre.split_whitespace().nth(4).unwrap_or("");
        match post.split_whitespace().next() {
            Some("cgroup") => v1 = true,
            Some("cgroup2") => {
                v2 = true;
                v2_at_root |= mountpoint == "/sys/fs/cgroup";
            }
            _ => {}
        }
    }
    match (v1, v2, v2_at_root) {
        (_, _, true) => "v2",
        (true, true, false) => "hybrid",
        (true, false, _) => "v1",
        _ => panic!("no cgroup hierarchy mounted on this host"),
    }
}

/// The Landlock ABI version the kernel reports (0 if none).
fn host_landlock_abi() -> i64 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: landlock_create_ruleset(NULL, 0, VERSION) only returns the ABI version.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    r.max(0)
}

fn on_path(prog: &str) -> bool {
    [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .iter()
    .any(|d| Path::new(d).join(prog).is_file())
}

fn info_json() -> (Value, Output) {
    let out = Hydra::bare().args(["info", "--json"]).output();
    out.assert_ok();
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("hydra info --json is not JSON: {e}\n{out}"));
    assert!(v.is_object(), "not a JSON object\n{out}");
    (v, out)
}

#[test]
fn info_json_reports_kernel_and_cgroup_mode() {
    let (v, out) = info_json();
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let kernel = v["kernel"]
        .as_str()
        .unwrap_or_else(|| panic!("no kernel string\n{out}"));
    assert!(
        kernel.contains(release.trim()),
        "kernel {kernel:?} vs {release:?}\n{out}"
    );
    let mode = v["cgroup_mode"]
        .as_str()
        .unwrap_or_else(|| panic!("no cgroup_mode\n{out}"));
    assert!(["v1", "hybrid", "v2"].contains(&mode), "{out}");
    assert_eq!(
        mode,
        host_cgroup_mode(),
        "wrong cgroup mode for this host\n{out}"
    );
}

#[test]
fn info_json_reports_namespaces() {
    let (v, out) = info_json();
    let ns = v["namespaces"]
        .as_object()
        .unwrap_or_else(|| panic!("namespaces is not an object\n{out}"));
    for want in ["pid", "net", "ipc", "uts", "cgroup", "user"] {
        assert_eq!(
            ns.get(want),
            Some(&Value::Bool(true)),
            "namespace {want}\n{out}"
        );
    }
    assert!(
        ns.get("mount") == Some(&Value::Bool(true)) || ns.get("mnt") == Some(&Value::Bool(true)),
        "mount namespace\n{out}"
    );
    for (k, val) in ns {
        // Every namespace type works on these machines (see ENVIRONMENT.md).
        assert_eq!(val, &Value::Bool(true), "namespace {k}\n{out}");
    }
}

#[test]
fn info_json_reports_security_features() {
    let (v, out) = info_json();
    assert_eq!(v["seccomp"], Value::Bool(true), "{out}");
    let abi = v["landlock_abi"]
        .as_i64()
        .unwrap_or_else(|| panic!("landlock_abi is not an integer\n{out}"));
    assert!(abi >= 1, "landlock_abi {abi}\n{out}");
    assert_eq!(
        abi,
        host_landlock_abi(),
        "landlock_abi differs from the kernel's\n{out}"
    );
}

#[test]
fn info_json_reports_tools_and_rootless() {
    let (v, out) = info_json();
    assert!(v["nft"].is_boolean(), "nft is not a bool\n{out}");
    assert_eq!(
        v["newuidmap"],
        Value::Bool(on_path("newuidmap")),
        "newuidmap vs the binary on PATH\n{out}"
    );
    assert_eq!(v["rootless"], Value::Bool(!is_root()), "{out}");
}

#[test]
fn info_plain_prints_a_summary() {
    let out = Hydra::bare().arg("info").output();
    out.assert_ok();
    assert!(!out.stdout.trim().is_empty(), "{out}");
}

/// A report whose reader is already gone (`hydra info | head -0`) ends on SIGPIPE like any Unix
/// tool: no panic about a broken pipe, nothing on stderr.
#[test]
fn a_report_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    for args in [&["info"][..], &["ps"], &["stats", "--no-stream"]] {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let out = std::process::Command::new(hydra_bin())
            .args(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("running hydra");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?}, stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
