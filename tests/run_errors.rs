//! `hydra run` with bad input or an impossible setup: exit 125, exactly one line on stderr,
//! nothing on stdout, nothing left on the host.

mod common;

use common::*;
use std::fs;
use std::path::Path;

/// 125, one stderr line starting with `prefix` and containing every `needles`, empty stdout.
/// The prefix `SETUP` accepts either documented form: `hydra: error: ` (bad input) or
/// `hydra: <name>: ` (a setup step failed).
fn assert_fails(out: &Output, prefix: &str, needles: &[&str]) {
    out.assert_code(125);
    let line = out.one_stderr_line();
    if prefix == SETUP {
        let named = out.name.as_ref().map(|n| format!("hydra: {n}: "));
        assert!(
            line.starts_with("hydra: error: ") || named.is_some_and(|p| line.starts_with(&p)),
            "the line is neither `hydra: error: ...` nor `hydra: <name>: ...`\n{out}"
        );
    } else {
        assert!(
            line.starts_with(prefix),
            "the line does not start with {prefix:?}\n{out}"
        );
    }
    for n in needles {
        assert!(line.contains(n), "the line does not mention {n:?}\n{out}");
    }
    assert!(out.stdout.is_empty(), "stdout not empty\n{out}");
}

const SETUP: &str = "hydra: <name>: ";

#[test]
fn a_missing_rootfs_is_reported() {
    require_root();
    let missing = format!("/tmp/hydra-test-no-such-rootfs-{}", std::process::id());
    let out = Hydra::run_in("no-rootfs", Path::new(&missing))
        .cmd(["true"])
        .output();
    assert_fails(&out, SETUP, &[&missing]);
}

#[test]
fn a_rootfs_that_is_a_file_is_reported() {
    require_root();
    let dir = TempDir::new("rootfs-file");
    let file = dir.join("not-a-dir");
    fs::write(&file, "x").unwrap();
    let out = Hydra::run_in("rootfs-file", &file).cmd(["true"]).output();
    assert_fails(&out, SETUP, &[&file.display().to_string()]);
}

#[test]
fn a_bad_memory_size_is_reported() {
    require_root();
    let out = Hydra::run("bad-mem")
        .args(["--memory", "12XB"])
        .cmd(["true"])
        .output();
    assert_fails(&out, "hydra: error: ", &["12XB"]);
}

#[test]
fn a_bad_security_level_is_reported() {
    require_root();
    let out = Hydra::run("bad-level")
        .args(["--security-level", "bogus"])
        .cmd(["true"])
        .output();
    assert_fails(&out, "hydra: error: ", &["bogus"]);
}

#[test]
fn an_unknown_flag_is_reported() {
    require_root();
    let out = Hydra::run("bad-flag").arg("--bogus").cmd(["true"]).output();
    assert_fails(&out, "hydra: error: ", &["--bogus"]);
}

#[test]
fn a_bad_network_mode_is_reported() {
    require_root();
    let out = Hydra::run("bad-net")
        .args(["--net", "bogus"])
        .cmd(["true"])
        .output();
    assert_fails(&out, "hydra: error: ", &["bogus"]);
}

#[test]
fn a_bad_cpus_value_is_reported() {
    require_root();
    let out = Hydra::run("bad-cpus")
        .args(["--cpus", "lots"])
        .cmd(["true"])
        .output();
    assert_fails(&out, "hydra: error: ", &["lots"]);
}

#[test]
fn a_missing_command_is_reported() {
    require_root();
    let out = Hydra::run("no-cmd").output();
    assert_fails(&out, "hydra: error: ", &[]);
}

#[test]
fn a_missing_rootfs_flag_is_reported() {
    require_root();
    let out = Hydra::bare().args(["run", "--", "true"]).output();
    assert_fails(&out, "hydra: error: ", &[]);
}

#[test]
fn invalid_names_are_rejected() {
    require_root();
    for bad in ["../escape", "a/b", ".hidden", "_x", "a b", "na:me", ""] {
        let out = Hydra::bare()
            .args(["run", "--rootfs"])
            .arg(rootfs())
            .args(["--name", bad, "--", "true"])
            .output();
        assert_fails(&out, "hydra: error: ", &[]);
        if !bad.is_empty() {
            assert!(
                !Path::new("/run/hydra").join(bad).exists(),
                "state created for the invalid name {bad:?}"
            );
        }
    }
    assert!(
        !Path::new("/run/escape").exists(),
        "`../escape` escaped /run/hydra"
    );
}

#[test]
fn an_unknown_user_is_reported() {
    require_root();
    let out = Hydra::run("bad-user")
        .args(["--user", "no-such-user"])
        .cmd(["true"])
        .output();
    assert_fails(&out, SETUP, &["no-such-user"]);
}

#[test]
fn a_missing_volume_source_is_reported() {
    require_root();
    let missing = format!("/tmp/hydra-test-no-such-volume-{}", std::process::id());
    let out = Hydra::run("bad-vol")
        .arg("--volume")
        .arg(format!("{missing}:/data"))
        .cmd(["true"])
        .output();
    assert_fails(&out, SETUP, &[&missing]);
}
