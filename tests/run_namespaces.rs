//! `hydra run`: mount, pid, ipc, uts, cgroup and net namespaces, checked from inside.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::fs;

const KINDS: [&str; 6] = ["mnt", "pid", "ipc", "uts", "cgroup", "net"];

/// `kind link` lines printed by the script below.
const NS_SCRIPT: &str =
    "for n in mnt pid ipc uts cgroup net; do echo $n $(readlink /proc/self/ns/$n); done";

fn ns_links(out: &Output) -> Vec<(String, String)> {
    let v: Vec<(String, String)> = out
        .lines()
        .iter()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        v.len(),
        KINDS.len(),
        "expected one line per namespace\n{out}"
    );
    v
}

#[test]
fn every_namespace_differs_from_the_host() {
    require_root();
    let out = Hydra::run("ns-all").sh(NS_SCRIPT).output();
    out.assert_ok();
    for (kind, link) in ns_links(&out) {
        assert!(
            link.starts_with(&format!("{kind}:[")),
            "bad link {link:?}\n{out}"
        );
        assert_ne!(
            link,
            host_ns(&kind),
            "{kind} namespace is the host's\n{out}"
        );
    }
}

#[test]
fn net_none_shares_only_the_host_network_namespace() {
    require_root();
    let out = Hydra::run("ns-netnone")
        .args(["--net", "none"])
        .sh(NS_SCRIPT)
        .output();
    out.assert_ok();
    out.assert_stderr_contains("warning: network mode none: the process shares the host's network");
    for (kind, link) in ns_links(&out) {
        if kind == "net" {
            assert_eq!(
                link,
                host_ns("net"),
                "--net none must use the host network\n{out}"
            );
        } else {
            assert_ne!(
                link,
                host_ns(&kind),
                "{kind} namespace is the host's\n{out}"
            );
        }
    }
}

/// Interface names in `ip -o link` output.
fn link_names(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

/// The flags of interface `name` (`<LOOPBACK,UP,LOWER_UP>` → [LOOPBACK, UP, LOWER_UP]).
fn link_flags(stdout: &str, name: &str) -> Vec<String> {
    let line = stdout
        .lines()
        .find(|l| l.split(':').nth(1).map(str::trim) == Some(name))
        .unwrap_or_else(|| panic!("no {name} in {stdout}"));
    let start = line.find('<').expect("no flags");
    let end = line.find('>').expect("no flags");
    line[start + 1..end]
        .split(',')
        .map(str::to_string)
        .collect()
}

fn assert_only_lo_up(out: &Output) {
    out.assert_ok();
    let (links, addrs) = out
        .stdout
        .split_once("--addr--")
        .unwrap_or_else(|| panic!("no separator\n{out}"));
    assert_eq!(link_names(links), ["lo"], "only lo must exist\n{out}");
    let flags = link_flags(links, "lo");
    assert!(
        flags.iter().any(|f| f == "UP"),
        "lo is not UP: {flags:?}\n{out}"
    );
    assert!(addrs.contains("127.0.0.1"), "lo has no 127.0.0.1\n{out}");
}

#[test]
fn net_complete_has_only_lo_and_it_is_up() {
    require_root();
    let out = Hydra::run("net-complete")
        .args(["--net", "complete"])
        .sh("ip -o link; echo --addr--; ip -o addr")
        .output();
    assert_only_lo_up(&out);
}

#[test]
fn the_default_network_is_complete_isolation() {
    require_root();
    let out = Hydra::run("net-default")
        .sh("ip -o link; echo --addr--; ip -o addr")
        .output();
    assert_only_lo_up(&out);
}

fn host_interfaces() -> BTreeSet<String> {
    fs::read_dir("/sys/class/net")
        .expect("/sys/class/net")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect()
}

#[test]
fn net_none_sees_the_host_interfaces() {
    require_root();
    let before = host_interfaces();
    let out = Hydra::run("net-none")
        .args(["--net", "none"])
        .sh("ip -o link")
        .output();
    out.assert_ok();
    // Interfaces other tests create and remove meanwhile are not the point.
    let stable: BTreeSet<String> = before.intersection(&host_interfaces()).cloned().collect();
    assert!(
        !stable.is_empty(),
        "the host has no interface besides lo; this test cannot tell --net none from complete"
    );
    let inside: BTreeSet<String> = link_names(&out.stdout).into_iter().collect();
    for i in &stable {
        assert!(
            inside.contains(i),
            "host interface {i} not visible with --net none\n{out}"
        );
    }
}

fn host_hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn hostname_defaults_to_the_name() {
    require_root();
    let h = Hydra::run("host-default");
    let name = h.name().to_string();
    let out = h.sh("hostname; uname -n").output();
    out.assert_ok();
    assert_eq!(out.lines(), [name.as_str(), name.as_str()], "{out}");
}

#[test]
fn hostname_flag_sets_the_hostname_and_not_the_hosts() {
    require_root();
    let before = host_hostname();
    let out = Hydra::run("host-flag")
        .args(["--hostname", "h1"])
        .sh("hostname; uname -n")
        .output();
    out.assert_ok();
    assert_eq!(out.lines(), ["h1", "h1"], "{out}");
    assert_eq!(host_hostname(), before, "the host's hostname changed");
}

#[test]
fn the_host_cgroup_hierarchy_is_hidden() {
    require_root();
    let h = Hydra::run("cgroupns");
    let name = h.name().to_string();
    let out = h
        .arg("--memory")
        .arg("64M")
        .sh("cat /proc/self/cgroup")
        .output();
    out.assert_ok();
    assert!(!out.lines().is_empty(), "{out}");
    for l in out.lines() {
        assert!(
            !l.contains("hydra") && !l.contains(&name),
            "the cgroup namespace leaks the host path: {l}\n{out}"
        );
    }
}

#[test]
fn container_mounts_do_not_propagate_to_the_host() {
    require_root();
    // While the container runs, its /proc, /dev, /sys, overlay ... must live in its own mount
    // namespace only: no host mount point at or below the rootfs directory.
    let mut r = Hydra::run("mnt-private")
        .stdin_pipe()
        .sh("grep -c . /proc/mounts; echo ready; read x")
        .spawn();
    r.wait_for_stdout("ready");
    let host = fs::read_to_string("/proc/self/mountinfo").unwrap();
    r.write_stdin("\n");
    let out = r.wait();
    out.assert_ok();
    let root = rootfs().display().to_string();
    let leaked: Vec<&str> = host
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(4)
                .is_some_and(|mp| mp == root || mp.starts_with(&format!("{root}/")))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "container mounts visible on the host: {leaked:#?}\n{out}"
    );
}
