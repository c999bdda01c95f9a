//! `hydra run` options seen from inside: default name, environment, working directory, user.

mod common;

use common::*;
use std::path::Path;

#[test]
fn the_default_name_is_run_xxxxxx() {
    require_root();
    let out = Hydra::run_unnamed().cmd(["hostname"]).output();
    out.assert_ok();
    let name = out.out().to_string();
    let suffix = name
        .strip_prefix("run-")
        .unwrap_or_else(|| panic!("default name {name:?} is not run-XXXXXX\n{out}"));
    assert_eq!(
        suffix.len(),
        6,
        "default name {name:?} is not run-XXXXXX\n{out}"
    );
    assert!(
        suffix.chars().all(|c| c.is_ascii_alphanumeric()),
        "default name {name:?} is not run-XXXXXX\n{out}"
    );
    assert_host_clean(&name, Path::new("/run/hydra"));
}

#[test]
fn two_unnamed_runs_get_different_names() {
    require_root();
    let a = Hydra::run_unnamed().cmd(["hostname"]).output();
    let b = Hydra::run_unnamed().cmd(["hostname"]).output();
    a.assert_ok();
    b.assert_ok();
    assert_ne!(a.out(), b.out(), "two runs got the same default name");
    assert_host_clean(a.out(), Path::new("/run/hydra"));
    assert_host_clean(b.out(), Path::new("/run/hydra"));
}

#[test]
fn env_flags_are_visible_and_the_host_env_is_not() {
    require_root();
    let out = Hydra::run("env")
        .args(["-e", "FOO=bar", "-e", "WITH_EQ=a=b", "-e", "EMPTY="])
        .env("HYDRA_TEST_HOST_SECRET", "leaked")
        .cmd(["env"])
        .output();
    out.assert_ok();
    let lines = out.lines();
    for want in ["FOO=bar", "WITH_EQ=a=b", "EMPTY="] {
        assert!(lines.contains(&want), "{want} missing\n{out}");
    }
    assert!(
        !out.stdout.contains("HYDRA_TEST_HOST_SECRET"),
        "the host environment leaked into the process\n{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("PATH=/") && l.contains("/bin")),
        "no usable PATH inside\n{out}"
    );
}

#[test]
fn workdir_sets_the_working_directory() {
    require_root();
    let out = Hydra::run("workdir")
        .args(["--workdir", "/tmp"])
        .sh("pwd; readlink /proc/self/cwd")
        .output();
    out.assert_ok();
    assert_eq!(out.lines(), ["/tmp", "/tmp"], "{out}");
}

#[test]
fn the_default_workdir_is_root() {
    require_root();
    let out = Hydra::run("workdir-default").cmd(["pwd"]).output();
    out.assert_ok();
    assert_eq!(out.out(), "/", "{out}");
}

fn ids(label: &str, user: &str) -> Output {
    require_root();
    let out = Hydra::run(label)
        .args(["--user", user])
        .sh("id -u; id -g; id -G")
        .output();
    out.assert_ok();
    out
}

#[test]
fn user_uid_takes_the_gid_from_passwd() {
    let out = ids("user-uid", "1000");
    assert_eq!(out.lines(), ["1000", "1000", "1000"], "{out}");
}

#[test]
fn user_uid_gid() {
    let out = ids("user-uidgid", "1000:1000");
    assert_eq!(out.lines(), ["1000", "1000", "1000"], "{out}");
}

#[test]
fn user_uid_other_gid() {
    let out = ids("user-othergid", "1000:2000");
    let lines = out.lines();
    assert_eq!(lines[..2], ["1000", "2000"], "{out}");
    assert!(
        !lines[2].split_whitespace().any(|g| g == "0"),
        "root group kept\n{out}"
    );
}

#[test]
fn user_by_name() {
    let out = ids("user-name", "app");
    assert_eq!(out.lines(), ["1000", "1000", "1000"], "{out}");
}

#[test]
fn a_non_root_user_cannot_write_root_owned_files() {
    require_root();
    let out = Hydra::run("user-perm")
        .args(["--user", "1000"])
        .sh("echo x >> /etc/passwd; echo rc=$?; touch /tmp/ok; echo tmp=$?")
        .output();
    out.assert_ok();
    assert!(
        !out.stdout.contains("rc=0"),
        "uid 1000 wrote /etc/passwd\n{out}"
    );
    assert!(
        out.stdout.contains("tmp=0"),
        "uid 1000 cannot write /tmp\n{out}"
    );
}
