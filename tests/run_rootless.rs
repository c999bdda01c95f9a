//! `hydra run` rootless: a throw-away user (created by the test, removed by a guard even when
//! the test fails) runs its own copy of hydra on its own copy of the rootfs.

mod common;

use common::rootless::*;
use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The user's subordinate uid range from /etc/subuid (useradd gives one): (start, count).
fn subuid(u: &RootlessUser) -> (u32, u32) {
    let text = fs::read_to_string("/etc/subuid").expect("/etc/subuid");
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&u.name.as_str()))
                .then(|| (f[1].parse().unwrap(), f[2].parse().unwrap()))
        })
        .unwrap_or_else(|| panic!("no /etc/subuid line for {}", u.name))
}

#[test]
fn the_user_is_root_inside_and_its_subordinate_ids_map_the_rest() {
    let u = RootlessUser::new();
    let (start, count) = subuid(&u);
    let out = u
        .run("rl-id")
        .sh("id -u; id -g; cat /proc/self/uid_map")
        .output();
    out.assert_ok();
    let lines = out.lines();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[..2], ["0", "0"], "{out}");
    let maps: Vec<Vec<&str>> = lines[2..]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(maps[0], ["0", &u.uid.to_string(), "1"], "{out}");
    assert_eq!(
        maps[1],
        ["1", &start.to_string(), &count.to_string()],
        "{out}"
    );
}

#[test]
fn rootless_user_flag_runs_as_a_mapped_uid() {
    let u = RootlessUser::new();
    let (start, _) = subuid(&u);
    let out = u
        .run("rl-user")
        .args(["--user", "1000:1000"])
        .arg("--volume")
        .arg(format!("{}:/data", u.volume().display()))
        .sh("id -u; id -g; mkdir /tmp/x && touch /tmp/x/f && echo private-ok")
        .output();
    out.assert_ok();
    assert_eq!(out.lines(), ["1000", "1000", "private-ok"], "{out}");
    // Host view of a file uid 1000 makes: the subordinate range, never the invoking user.
    let mk = u
        .run("rl-user-vol")
        .args(["--volume", &format!("{}:/data", u.volume().display())])
        .sh("mkdir /data/shared && chmod 777 /data/shared")
        .output();
    mk.assert_ok();
    let made = u
        .run("rl-user-vol2")
        .args(["--user", "1000"])
        .args(["--volume", &format!("{}:/data", u.volume().display())])
        .sh("touch /data/shared/by-1000")
        .output();
    made.assert_ok();
    let meta = fs::metadata(u.volume().join("shared/by-1000")).expect("the file");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        meta.uid(),
        start + 999,
        "uid 1000 inside is not start+999 outside"
    );
}

#[test]
fn rootless_pid_1_only_lo_and_no_new_privs() {
    let u = RootlessUser::new();
    let out = u
        .run("rl-iso")
        .arg("--no-init")
        .sh("echo $$; ip -o link; grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status")
        .output();
    out.assert_ok();
    let lines = out.lines();
    assert_eq!(lines.first(), Some(&"1"), "the command is not pid 1\n{out}");
    let links: Vec<&&str> = lines.iter().filter(|l| l.contains(": <")).collect();
    assert_eq!(links.len(), 1, "more than one interface\n{out}");
    assert!(links[0].contains(": lo:"), "{out}");
    assert!(links[0].contains("<LOOPBACK,UP"), "lo is not up\n{out}");
    let f = status_fields(&out.stdout);
    assert_eq!(f.get("NoNewPrivs").map(String::as_str), Some("1"), "{out}");
    assert_eq!(f.get("Seccomp").map(String::as_str), Some("2"), "{out}");
}

#[test]
fn rootless_default_init_makes_the_command_pid_2() {
    let u = RootlessUser::new();
    let out = u.run("rl-init").sh("echo $$ $PPID").output();
    out.assert_ok();
    assert_eq!(out.out(), "2 1", "{out}");
}

fn host_interfaces() -> Vec<String> {
    fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect()
}

#[test]
fn rootless_net_none_works() {
    let u = RootlessUser::new();
    let before = host_interfaces();
    let out = u
        .run("rl-netnone")
        .args(["--net", "none"])
        .sh("ip -o link")
        .output();
    out.assert_ok();
    // Interfaces other tests create and remove meanwhile are not the point.
    let after = host_interfaces();
    let stable: Vec<&String> = before.iter().filter(|i| after.contains(i)).collect();
    assert!(
        !stable.is_empty(),
        "the host has only lo; cannot tell --net none from complete"
    );
    for i in stable {
        assert!(
            out.stdout.contains(&format!(": {i}")),
            "host {i} not visible\n{out}"
        );
    }
}

#[test]
fn rootless_exit_codes() {
    let u = RootlessUser::new();
    u.run("rl-exit42").sh("exit 42").output().assert_code(42);
    u.run("rl-kill9").sh("kill -9 $$").output().assert_code(137);
    u.run("rl-127")
        .cmd(["/no/such/command"])
        .output()
        .assert_code(127);
    u.run("rl-126")
        .cmd(["/etc/passwd"])
        .output()
        .assert_code(126);
}

#[test]
fn rootless_writes_stay_in_the_private_layer() {
    let u = RootlessUser::new();
    let before = tree_snapshot(&u.rootfs());
    let out = u
        .run("rl-write")
        .sh("echo x > /etc/newfile && rm /bin/ls && cat /etc/newfile && test ! -e /bin/ls && echo gone")
        .output();
    out.assert_ok();
    assert_eq!(out.lines(), ["x", "gone"], "{out}");
    assert_eq!(
        tree_snapshot(&u.rootfs()),
        before,
        "the rootfs copy changed on disk"
    );
}

#[test]
fn rootless_volume_files_belong_to_the_user_on_the_host() {
    let u = RootlessUser::new();
    let out = u
        .run("rl-vol")
        .arg("--volume")
        .arg(format!("{}:/data", u.volume().display()))
        .sh("touch /data/made-inside && ls -ln /data/made-inside")
        .output();
    out.assert_ok();
    let md = fs::metadata(u.volume().join("made-inside"))
        .unwrap_or_else(|e| panic!("the file did not land on the host: {e}\n{out}"));
    assert_eq!(md.uid(), u.uid, "owner on the host\n{out}");
    assert_eq!(md.gid(), u.gid, "group on the host\n{out}");
    // Inside, the same file belongs to root (the user mapped to 0).
    let f: Vec<&str> = out.out().split_whitespace().collect();
    assert_eq!(f.get(2..4), Some(&["0", "0"][..]), "owner inside\n{out}");
}

#[test]
fn rootless_memory_limit_warns_not_enforced_and_runs() {
    let u = RootlessUser::new();
    let out = u
        .run("rl-mem")
        .args(["--memory", "32M"])
        .cmd(["echo", "still runs"])
        .output();
    out.assert_ok();
    assert_eq!(out.out(), "still runs", "{out}");
    out.assert_stderr_contains("not enforced");
}

#[test]
fn rootless_cpu_and_pids_limits_warn_not_enforced_and_run() {
    let u = RootlessUser::new();
    for (label, flag, value) in [("rl-cpus", "--cpus", "0.5"), ("rl-pids", "--pids", "20")] {
        let out = u
            .run(label)
            .args([flag, value])
            .cmd(["echo", "still runs"])
            .output();
        out.assert_ok();
        assert_eq!(out.out(), "still runs", "{out}");
        out.assert_stderr_contains("not enforced");
    }
}

#[test]
fn rootless_max_file_size_is_enforced() {
    let u = RootlessUser::new();
    let out = u
        .run("rl-fsize")
        .args(["--max-file-size", "1M"])
        .sh("hydra-probe fsize /tmp/small 524288; hydra-probe fsize /tmp/f 2097152; true")
        .output();
    out.assert_ok();
    assert_eq!(out.lines(), ["fsize: ok", "fsize: EFBIG"], "{out}");
}

#[test]
fn rootless_state_lives_in_tmp_hydra_uid() {
    let u = RootlessUser::new();
    let mut r = u
        .run("rl-state")
        .stdin_pipe()
        .sh("echo ready; read x")
        .spawn();
    r.wait_for_stdout("ready");
    let state = u.state_root().join(r.name());
    let exists = state.is_dir();
    let owner = fs::metadata(&state).map(|m| m.uid()).ok();
    r.write_stdin("\n");
    let out = r.wait();
    out.assert_ok();
    assert!(
        exists,
        "{} did not exist while running\n{out}",
        state.display()
    );
    assert_eq!(owner, Some(u.uid), "state dir not owned by the user\n{out}");
    assert!(!state.exists(), "{} left behind", state.display());
    assert!(
        !Path::new("/run/hydra")
            .join(out.name.as_deref().unwrap())
            .exists(),
        "rootless state written to /run/hydra"
    );
}

#[test]
fn rootless_state_follows_xdg_runtime_dir() {
    let u = RootlessUser::new();
    let xdg = u.xdg_runtime_dir().display().to_string();
    let mut r = u
        .run("rl-xdg")
        .env("XDG_RUNTIME_DIR", &xdg)
        .state_root(u.xdg_runtime_dir().join("hydra"))
        .stdin_pipe()
        .sh("echo ready; read x")
        .spawn();
    r.wait_for_stdout("ready");
    let state = u.xdg_runtime_dir().join("hydra").join(r.name());
    let exists = state.is_dir();
    let in_tmp = u.state_root().join(r.name()).exists();
    r.write_stdin("\n");
    let out = r.wait();
    out.assert_ok();
    assert!(
        exists,
        "{} did not exist while running\n{out}",
        state.display()
    );
    assert!(
        !in_tmp,
        "state went to /tmp/hydra-<uid> despite XDG_RUNTIME_DIR\n{out}"
    );
    assert!(!state.exists(), "{} left behind", state.display());
}

#[test]
fn rootless_info_says_rootless() {
    let u = RootlessUser::new();
    let out = u.as_user(Hydra::bare()).args(["info", "--json"]).output();
    out.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("hydra info --json is not JSON: {e}\n{out}"));
    assert_eq!(v["rootless"], serde_json::Value::Bool(true), "{out}");
}

#[test]
fn rootless_up_ps_exec_and_down() {
    let u = RootlessUser::new();
    let name = unique_name("rl-up");
    let yaml = u.dir.join("hydra.yaml");
    fs::write(
        &yaml,
        format!(
            "version: '1.0'\ncontainer: {{name: {name}, rootfs: {}}}\nresources: {{max_memory: 64MB}}\nprocesses:\n  - {{name: a, command: sh -c 'echo hi > /tmp/mark; sleep 1000'}}\n  - {{name: b, command: sleep 1000, count: 2}}\n",
            u.rootfs().display()
        ),
    )
    .unwrap();
    host_cmd(
        "chown",
        &[&format!("{}:{}", u.uid, u.gid), &yaml.display().to_string()],
    );
    let up = u
        .as_user(Hydra::bare())
        .args(["up", "-d", "-f"])
        .arg(&yaml)
        .output();
    up.assert_ok();
    up.assert_stderr_contains("not enforced");
    let ps = u.as_user(Hydra::bare()).args(["ps", "--json"]).output();
    ps.assert_ok();
    for p in ["\"a\"", "\"b.0\"", "\"b.1\""] {
        ps.assert_stdout_contains(p);
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let exec = u
        .as_user(Hydra::bare())
        .args([
            "exec",
            &format!("{name}/a"),
            "--",
            "sh",
            "-c",
            "id -u; cat /tmp/mark",
        ])
        .output();
    exec.assert_ok();
    assert_eq!(exec.lines(), ["0", "hi"], "{exec}");
    let down = u.as_user(Hydra::bare()).args(["down", &name]).output();
    down.assert_ok();
    assert!(!u.state_root().join(&name).exists());
}

#[test]
fn rootless_port_mappings_are_served_by_hydra_itself() {
    use std::io::{Read, Write};
    let u = RootlessUser::new();
    let mut run = u
        .run("rl-ports")
        .args(["-p", "18191:8080", "-p", "18192:5353/udp"])
        .sh("nc -ll -p 8080 -e cat & hydra-probe udp-echo 5353 & ip -o link | wc -l; echo servers up; wait")
        .spawn();
    run.wait_for_stdout("servers up");
    assert!(
        run.stdout_so_far().lines().any(|l| l == "1"),
        "only lo inside: {}",
        run.stdout_so_far()
    );
    let name = run.name().to_string();
    let mut echoed = Vec::new();
    for _ in 0..50 {
        let mut s = connect_retrying(([127, 0, 0, 1], 18191).into());
        if s.write_all(b"through hydra\n").is_ok() {
            let mut got = vec![0u8; 14];
            if s.read_exact(&mut got).is_ok() {
                echoed = got;
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        echoed,
        b"through hydra\n",
        "stdout: {}\nstderr: {}",
        run.stdout_so_far(),
        run.stderr_so_far()
    );
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let mut answer = [0u8; 32];
    let mut got = None;
    for _ in 0..5 {
        udp.send_to(b"dgram", "127.0.0.1:18192").unwrap();
        if let Ok((n, _)) = udp.recv_from(&mut answer) {
            got = Some(answer[..n].to_vec());
            break;
        }
    }
    assert_eq!(got.as_deref(), Some(&b"dgram"[..]));
    // The same mapping over IPv6 (hydra listens on [::] too).
    let mut v6 = connect_retrying((std::net::Ipv6Addr::LOCALHOST, 18191).into());
    v6.write_all(b"over ipv6\n").unwrap();
    let mut got = vec![0u8; 10];
    v6.read_exact(&mut got).unwrap();
    assert_eq!(got, b"over ipv6\n");
    drop(v6);
    // The counters reach `hydra ports` (published twice a second).
    std::thread::sleep(std::time::Duration::from_millis(700));
    let ports = u
        .as_user(Hydra::bare())
        .args(["ports", &name, "--json"])
        .output();
    ports.assert_ok();
    let v: Vec<serde_json::Value> = serde_json::from_str(&ports.stdout).unwrap();
    assert!(v[0]["connections"].as_u64().unwrap() >= 2, "{ports}");
    assert!(v[0]["received"]["bytes"].as_u64().unwrap() >= 24, "{ports}");
    assert!(v[1]["sent"]["bytes"].as_u64().unwrap() >= 5, "{ports}");
    run.signal(libc::SIGTERM);
    run.wait();
}

#[test]
fn rootless_mapping_errors_are_one_line() {
    let u = RootlessUser::new();
    let privileged = u
        .run("rl-priv")
        .args(["-p", "80:8080"])
        .cmd(["true"])
        .output();
    privileged.assert_code(125);
    assert!(
        privileged
            .one_stderr_line()
            .contains("host port 80/tcp is privileged"),
        "{privileged}"
    );
    let egress = u
        .run("rl-egress")
        .args(["--net", "partial", "--egress"])
        .cmd(["true"])
        .output();
    egress.assert_code(125);
    assert!(
        egress.one_stderr_line().contains("--egress needs root"),
        "{egress}"
    );
}

#[test]
fn rootless_up_spreads_a_mapping_over_the_instances_and_survives_a_restart() {
    use std::io::Read;
    let u = RootlessUser::new();
    let name = format!("rl-up-{}", std::process::id());
    let yaml = u.dir.join("hydra.yaml");
    fs::write(
        &yaml,
        format!(
            "version: '1.0'\ncontainer: {{name: {name}, rootfs: {}}}\nisolation:\n  mode: partial\n  ports: [{{internal: 8080, external: 18193, process: web}}]\nprocesses:\n  - {{name: web, count: 2, restart: always, command: nc -ll -p 8080 -e hostname}}\n",
            u.rootfs().display()
        ),
    )
    .unwrap();
    let up = u
        .as_user(Hydra::bare())
        .arg("up")
        .arg("-d")
        .arg("-f")
        .arg(&yaml)
        .output();
    up.assert_ok();
    let down = || u.as_user(Hydra::bare()).args(["down", &name]).output();
    let ask = || {
        let mut s = connect_retrying(([127, 0, 0, 1], 18193).into());
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.trim().to_string()
    };
    let mut seen = Vec::new();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while seen.len() < 2 && std::time::Instant::now() < end {
        let a = ask();
        if !a.is_empty() && !seen.contains(&a) {
            seen.push(a);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    seen.sort();
    if seen != ["web.0", "web.1"] {
        let ps = u.as_user(Hydra::bare()).args(["ps"]).output();
        let logs = u
            .as_user(Hydra::bare())
            .args(["logs", &format!("{name}/web.0")])
            .output();
        down();
        panic!("answers: {seen:?}\n{ps}\n{logs}");
    }
    // web.0 killed and restarted: the mapping reaches its new namespace.
    let ps = || -> Vec<serde_json::Value> {
        let out = u.as_user(Hydra::bare()).args(["ps", "--json"]).output();
        serde_json::from_str(&out.stdout).unwrap_or_default()
    };
    let web0 = |v: &[serde_json::Value]| v.iter().find(|p| p["process"] == "web.0").cloned();
    let pid = web0(&ps())
        .and_then(|p| p["pid"].as_i64())
        .expect("web.0 pid");
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut answered = false;
    while !answered && std::time::Instant::now() < end {
        let restarted = web0(&ps())
            .is_some_and(|p| p["state"] == "running" && p["restarts"].as_u64().unwrap_or(0) >= 1);
        answered = restarted && (0..4).any(|_| ask() == "web.0");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if !answered {
        down();
        panic!("the restarted web.0 never answered through the mapping");
    }
    down().assert_ok();
    assert!(!u.state_root().join(&name).exists());
}
