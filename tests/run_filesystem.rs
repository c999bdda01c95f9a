//! `hydra run`: the filesystem view: rootfs as `/`, host files unreachable, private writable
//! layer, `--read-only`, /dev, /proc and /sys (masked and read-only paths), volumes.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

fn dir_names(p: &Path) -> BTreeSet<String> {
    fs::read_dir(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Check a listing of `/` from inside: every rootfs entry there, no host-only entry.
fn assert_is_rootfs_listing(listing: &[&str], out: &Output) {
    let inside: BTreeSet<&str> = listing.iter().copied().collect();
    let rootfs_names = dir_names(&rootfs());
    let host_only: BTreeSet<String> = dir_names(Path::new("/"))
        .difference(&rootfs_names)
        .cloned()
        .collect();
    assert!(
        !host_only.is_empty(),
        "the host / has nothing the rootfs lacks; cannot tell them apart"
    );
    for n in &rootfs_names {
        assert!(
            inside.contains(n.as_str()),
            "rootfs entry {n} missing from {inside:?}\n{out}"
        );
    }
    for n in &host_only {
        assert!(
            !inside.contains(n.as_str()),
            "host entry /{n} visible inside\n{out}"
        );
    }
}

/// Split stdout into sections separated by lines `--<tag>--`.
fn sections(stdout: &str) -> Vec<Vec<&str>> {
    let mut v = vec![Vec::new()];
    for l in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if l.starts_with("--") && l.ends_with("--") && l.len() > 4 {
            v.push(Vec::new());
        } else {
            v.last_mut().unwrap().push(l);
        }
    }
    v
}

#[test]
fn proc_1_root_is_the_rootfs() {
    require_root();
    // With the default init, pid 1 is non-dumpable and its /proc/1/root is (rightly) closed to
    // the command, so the command itself is pid 1 here.
    let out = Hydra::run("proc1-root")
        .arg("--no-init")
        .sh("ls -1 /proc/1/root/")
        .output();
    out.assert_ok();
    assert_is_rootfs_listing(&out.lines(), &out);
}

#[test]
fn root_and_dotdot_are_the_rootfs() {
    require_root();
    let out = Hydra::run("dotdot")
        .sh("ls -1 /; echo --dotdot--; cd /..; pwd; ls -1; echo --deep--; cd /../../../..; ls -1 .")
        .output();
    out.assert_ok();
    let s = sections(&out.stdout);
    assert_eq!(s.len(), 3, "{out}");
    assert_is_rootfs_listing(&s[0], &out);
    assert_eq!(s[1].first(), Some(&"/"), "cd /.. left /\n{out}");
    assert_is_rootfs_listing(&s[1][1..], &out);
    assert_is_rootfs_listing(&s[2], &out);
}

#[test]
fn proc_self_cwd_stays_inside() {
    require_root();
    let out = Hydra::run("cwd")
        .sh("readlink /proc/self/cwd; cd /..; readlink /proc/self/cwd; echo --ls--; ls -1 /proc/self/cwd/")
        .output();
    out.assert_ok();
    let s = sections(&out.stdout);
    assert_eq!(s.len(), 2, "{out}");
    assert_eq!(s[0], ["/", "/"], "cwd is not the container's /\n{out}");
    assert_is_rootfs_listing(&s[1], &out);
}

#[test]
fn a_host_file_is_not_visible_anywhere_inside() {
    require_root();
    let n = unique_name("marker");
    let marker = format!("/tmp/hydra-marker-{n}");
    fs::write(&marker, "host secret\n").unwrap();
    struct Rm(String);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }
    let _rm = Rm(marker.clone());
    // The control file proves that find works and searches /tmp.
    let out = Hydra::run("marker")
        .sh(
            "ls /tmp/hydra-marker-* >/dev/null 2>&1; echo ls=$?; \
             touch /tmp/inside-control-file; \
             find / -path /proc -prune -o -path /sys -prune -o \\( -name 'hydra-marker-*' -o -name 'inside-control-*' \\) -print",
        )
        .output();
    out.assert_ok();
    assert!(
        out.stdout.contains("ls=") && !out.stdout.contains("ls=0"),
        "ls found the marker\n{out}"
    );
    assert!(
        out.stdout.contains("/tmp/inside-control-file"),
        "find did not work inside (control file not found)\n{out}"
    );
    assert!(
        !out.stdout.contains("hydra-marker-"),
        "the host marker is visible inside\n{out}"
    );
    assert!(
        !out.stdout.contains(&n),
        "the host marker is visible inside\n{out}"
    );
}

/// A private copy of the rootfs (so a broken runtime cannot damage the shared one).
fn rootfs_copy(label: &str) -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new(label);
    let copy = dir.join("rootfs");
    host_cmd(
        "cp",
        &[
            "-a",
            &rootfs().display().to_string(),
            &copy.display().to_string(),
        ],
    );
    (dir, copy)
}

#[test]
fn writes_go_to_a_private_layer_and_leave_the_rootfs_unchanged() {
    require_root();
    let (_dir, root) = rootfs_copy("private-write");
    let before = tree_snapshot(&root);
    let out = Hydra::run_in("private-write", &root)
        .sh(
            "echo x > /etc/newfile && rm /bin/ls && echo hi >> /etc/passwd && mkdir /newdir && \
             cat /etc/newfile && test ! -e /bin/ls && echo ls-gone && tail -n 1 /etc/passwd",
        )
        .output();
    out.assert_ok();
    assert_eq!(out.lines(), ["x", "ls-gone", "hi"], "{out}");
    assert!(
        !root.join("etc/newfile").exists(),
        "the write reached the rootfs on disk"
    );
    assert!(
        !root.join("newdir").exists(),
        "mkdir reached the rootfs on disk"
    );
    assert!(
        fs::symlink_metadata(root.join("bin/ls")).is_ok(),
        "rm /bin/ls reached the rootfs on disk"
    );
    let after = tree_snapshot(&root);
    let changed: Vec<_> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .chain(after.keys().filter(|k| !before.contains_key(*k)))
        .collect();
    assert!(changed.is_empty(), "rootfs changed on disk: {changed:?}");
}

#[test]
fn each_run_starts_from_a_fresh_layer() {
    require_root();
    Hydra::run("fresh-1")
        .sh("echo leftover > /etc/fresh-layer-probe")
        .output()
        .assert_ok();
    let out = Hydra::run("fresh-2")
        .sh("test -e /etc/fresh-layer-probe && echo present || echo absent")
        .output();
    out.assert_ok();
    assert_eq!(
        out.out(),
        "absent",
        "a write of an earlier run is visible\n{out}"
    );
}

#[test]
fn read_only_makes_the_root_unwritable() {
    require_root();
    let (_dir, root) = rootfs_copy("read-only");
    let before = tree_snapshot(&root);
    let out = Hydra::run_in("read-only", &root)
        .arg("--read-only")
        .sh("touch /x; echo rc=$?; echo y >> /etc/passwd; echo rc2=$?; mkdir /newdir; echo rc3=$?")
        .output();
    out.assert_ok();
    assert!(
        !out.stdout.contains("rc=0"),
        "touch /x succeeded with --read-only\n{out}"
    );
    assert!(
        !out.stdout.contains("rc2=0"),
        "writing /etc/passwd succeeded\n{out}"
    );
    assert!(!out.stdout.contains("rc3=0"), "mkdir succeeded\n{out}");
    out.assert_stderr_contains("Read-only file system");
    assert_eq!(tree_snapshot(&root), before, "the rootfs changed on disk");
}

#[test]
fn strict_has_a_read_only_root_and_a_writable_tmp() {
    require_root();
    let out = Hydra::run("strict-ro")
        .args(["--security-level", "strict"])
        .sh("touch /x; echo root=$?; touch /tmp/y && echo z > /tmp/y; echo tmp=$?; cat /tmp/y")
        .output();
    out.assert_ok();
    assert!(
        !out.stdout.contains("root=0"),
        "the root is writable at strict\n{out}"
    );
    assert!(
        out.stdout.contains("tmp=0"),
        "/tmp is not writable at strict\n{out}"
    );
    out.assert_stdout_contains("z");
}

/// Fields of the /proc/mounts line whose mount point is `mp` (the last one wins).
fn mount_of<'a>(mounts: &'a [&'a str], mp: &str) -> Option<Vec<&'a str>> {
    mounts
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .rfind(|f| f.len() >= 4 && f[1] == mp)
}

#[test]
fn dev_proc_and_sys_are_set_up() {
    require_root();
    let out = Hydra::run("dev-proc-sys")
        .sh("cat /proc/mounts; echo --dev--; ls -1A /dev; echo --io--; \
             echo hi > /dev/null && echo null-ok; head -c 5 /dev/zero | wc -c; \
             head -c 8 /dev/urandom | wc -c; echo x > /dev/full || echo full-fails")
        .output();
    out.assert_ok();
    let s = sections(&out.stdout);
    assert_eq!(s.len(), 3, "{out}");
    let mounts = &s[0];
    for (mp, fstype) in [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/sys", "sysfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
    ] {
        let f = mount_of(mounts, mp).unwrap_or_else(|| panic!("{mp} is not mounted\n{out}"));
        assert_eq!(f[2], fstype, "{mp} has type {}\n{out}", f[2]);
    }
    let sys = mount_of(mounts, "/sys").unwrap();
    assert!(
        sys[3].split(',').any(|o| o == "ro"),
        "/sys is not read-only: {sys:?}\n{out}"
    );
    let devs: BTreeSet<&str> = s[1].iter().copied().collect();
    for d in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue",
    ] {
        assert!(devs.contains(d), "/dev/{d} missing: {devs:?}\n{out}");
    }
    let allowed_extra = ["console", "ptmx", "fd", "stdin", "stdout", "stderr", "core"];
    let required = [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue",
    ];
    for d in &devs {
        assert!(
            required.contains(d) || allowed_extra.contains(d),
            "unexpected /dev/{d} inside (host device?)\n{out}"
        );
    }
    assert_eq!(s[2], ["null-ok", "5", "8", "full-fails"], "{out}");
}

#[test]
fn masked_paths_are_empty_or_unreadable() {
    require_root();
    let files: Vec<&str> = [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/latency_stats",
    ]
    .into_iter()
    .filter(|p| Path::new(p).exists())
    .collect();
    let dirs: Vec<&str> = [
        "/proc/acpi",
        "/proc/asound",
        "/proc/scsi",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ]
    .into_iter()
    .filter(|p| Path::new(p).exists())
    .collect();
    assert!(
        !files.is_empty() && !dirs.is_empty(),
        "nothing to check on this host"
    );
    let mut script = String::new();
    for f in &files {
        script.push_str(&format!("echo {f} $(cat {f} 2>/dev/null | wc -c); "));
    }
    for d in &dirs {
        script.push_str(&format!("echo {d} $(ls -A {d} 2>/dev/null | wc -l); "));
    }
    let out = Hydra::run("masked").sh(&script).output();
    out.assert_ok();
    let lines = out.lines();
    assert_eq!(lines.len(), files.len() + dirs.len(), "{out}");
    for l in lines {
        let (p, n) = l.rsplit_once(' ').unwrap();
        assert_eq!(n, "0", "{p} is readable/non-empty inside\n{out}");
    }
}

#[test]
fn proc_sys_and_friends_are_read_only() {
    require_root();
    let h = Hydra::run("proc-ro");
    let name = h.name().to_string();
    // kernel/hostname is per-UTS-namespace: harmless even if the write went through.
    let out = h
        .sh("echo h2 > /proc/sys/kernel/hostname; echo rc=$?; hostname; echo --mounts--; cat /proc/mounts")
        .output();
    out.assert_ok();
    let s = sections(&out.stdout);
    assert_eq!(s.len(), 2, "{out}");
    assert!(
        !s[0].contains(&"rc=0"),
        "writing /proc/sys/kernel/hostname succeeded\n{out}"
    );
    assert!(s[0].contains(&name.as_str()), "the hostname changed\n{out}");
    out.assert_stderr_contains("Read-only file system");
    for p in [
        "/proc/sys",
        "/proc/sysrq-trigger",
        "/proc/irq",
        "/proc/bus",
        "/proc/fs",
    ] {
        if !Path::new(p).exists() {
            continue;
        }
        let f = mount_of(&s[1], p).unwrap_or_else(|| panic!("{p} is not a read-only mount\n{out}"));
        assert!(
            f[3].split(',').any(|o| o == "ro"),
            "{p} is not read-only: {f:?}\n{out}"
        );
    }
}

#[test]
fn sys_is_read_only() {
    require_root();
    // lo inside the container's own network namespace: harmless even if the write went through.
    let out = Hydra::run("sys-ro")
        .sh("echo 100 > /sys/class/net/lo/tx_queue_len; echo rc=$?; touch /sys/x; echo rc2=$?")
        .output();
    out.assert_ok();
    assert!(
        !out.stdout.contains("rc=0"),
        "a write to /sys succeeded\n{out}"
    );
    assert!(
        !out.stdout.contains("rc2=0"),
        "creating a file in /sys succeeded\n{out}"
    );
    out.assert_stderr_contains("Read-only file system");
}

#[test]
fn a_volume_is_shared_with_the_host() {
    require_root();
    let dir = TempDir::new("vol-rw");
    fs::write(dir.join("from-host"), "hello from host\n").unwrap();
    let out = Hydra::run("vol-rw")
        .arg("--volume")
        .arg(format!("{}:/data", dir.path.display()))
        .sh("cat /data/from-host; echo inside > /data/from-container; echo rc=$?")
        .output();
    out.assert_ok();
    assert_eq!(out.lines(), ["hello from host", "rc=0"], "{out}");
    assert_eq!(
        fs::read_to_string(dir.join("from-container")).unwrap_or_default(),
        "inside\n",
        "the write did not land on the host\n{out}"
    );
}

#[test]
fn a_read_only_volume_cannot_be_written() {
    require_root();
    let dir = TempDir::new("vol-ro");
    fs::write(dir.join("from-host"), "hello from host\n").unwrap();
    let out = Hydra::run("vol-ro")
        .arg("--volume")
        .arg(format!("{}:/data:ro", dir.path.display()))
        .sh("cat /data/from-host; echo inside > /data/from-container; echo rc=$?; rm /data/from-host; echo rc2=$?")
        .output();
    out.assert_ok();
    assert_eq!(out.lines().first(), Some(&"hello from host"), "{out}");
    assert!(
        !out.stdout.contains("rc=0"),
        "write to a :ro volume succeeded\n{out}"
    );
    assert!(
        !out.stdout.contains("rc2=0"),
        "rm in a :ro volume succeeded\n{out}"
    );
    assert!(
        !dir.join("from-container").exists(),
        "the write reached the host"
    );
    assert!(dir.join("from-host").exists(), "the rm reached the host");
}

#[test]
fn strict_volumes_stay_writable() {
    require_root();
    let dir = TempDir::new("vol-strict");
    let out = Hydra::run("vol-strict")
        .args(["--security-level", "strict"])
        .arg("--volume")
        .arg(format!("{}:/data", dir.path.display()))
        .sh("echo inside > /data/f; echo rc=$?")
        .output();
    out.assert_ok();
    assert_eq!(
        out.out(),
        "rc=0",
        "a volume is not writable at strict\n{out}"
    );
    assert_eq!(
        fs::read_to_string(dir.join("f")).unwrap_or_default(),
        "inside\n"
    );
}

#[test]
fn a_symlinked_volume_target_is_resolved_inside_the_root() {
    // CVE-2021-30465 class: the target `/data` is a symlink to `/etc`. Resolved inside the root,
    // the volume covers the container's /etc; resolved on the host, it would land on the host's
    // /etc in hydra's mount namespace and the container would not see it. Refusing is fine too.
    require_root();
    let (_dir, root) = rootfs_copy("vol-symlink");
    std::os::unix::fs::symlink("/etc", root.join("data")).unwrap();
    let vol = TempDir::new("vol-symlink-src");
    fs::write(vol.join("volume-marker"), "v").unwrap();
    let out = Hydra::run_in("vol-symlink", &root)
        .arg("--volume")
        .arg(format!("{}:/data", vol.path.display()))
        .sh("ls /data/ /etc/")
        .output();
    if out.code() != 125 {
        out.assert_ok();
        assert!(
            out.stdout.contains("volume-marker"),
            "the volume was not mounted where /data resolves inside the root\n{out}"
        );
    }
    assert!(fs::read_dir("/etc")
        .unwrap()
        .flatten()
        .all(|e| e.file_name() != "volume-marker"));
}

#[test]
fn device_nodes_made_inside_never_open() {
    // The process keeps CAP_MKNOD at `standard` (Docker's set). Without a device policy a node
    // for the host's disk would give it the raw disk; every writable place is nodev instead.
    require_root();
    let vol = TempDir::new("mknod-vol");
    let script = "for d in / /tmp /dev /data; do \
                    mknod $d/n c 1 3 && echo made-$d; \
                    echo x > $d/n && echo opened-$d; \
                  done; echo x > /dev/null && echo devnull-ok";
    let out = Hydra::run("mknod")
        .arg("--volume")
        .arg(format!("{}:/data", vol.join("").display()))
        .sh(script)
        .output();
    out.assert_ok();
    out.assert_stdout_contains("devnull-ok");
    for d in ["/", "/tmp", "/data"] {
        out.assert_stdout_contains(&format!("made-{d}"));
    }
    assert!(
        !out.out().contains("opened-"),
        "a device node opened\n{out}"
    );
}
