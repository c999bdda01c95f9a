//! `hydra up`: a YAML file runs a multi-process application; `ps`, `logs`, `stop`, `down` reach
//! it through its control socket; a killed supervisor takes its processes with it.

mod common;

use common::*;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// DESIGN.md's example with its own files: the web server is a TCP echo server on $PORT,
/// published on host port `external` (80 as written).
fn example(external: u16) -> String {
    format!(
        "\
security: {{encryption: none, security_level: standard}}
isolation:
  mode: partial
  ports:
    - {{internal: 8080, external: {external}, protocol: tcp, process: web_server}}
resources: {{max_memory: 1GB, max_cpu: 0.5, max_files: 1000, max_file_size: 100MB}}
processes:
  - name: web_server
    command: sh -c 'echo web up; exec nc -ll -p $PORT -e cat'
    env: {{PORT: 8080}}
    limits: {{memory: 512MB, cpu: 0.3}}
  - {{name: worker, command: sleep 1000, count: 4, env: {{WORKER_MODE: background}}}}
"
    )
}

#[test]
fn the_example_comes_up_isolated_and_limited_and_goes_down_clean() {
    let app = App::new("up-example", &example(80));
    app.up_detached();
    let names = ["web_server", "worker.0", "worker.1", "worker.2", "worker.3"];
    app.wait_for("all running", |ps| {
        names.iter().all(|n| {
            ps.iter()
                .any(|p| p["process"] == *n && p["state"] == "running")
        })
    });
    // Each its own pid namespace: no two processes share one, none shares the host's.
    let mut namespaces = Vec::new();
    for n in names {
        let pid = app.process(n)["pid"].as_i64().expect("pid");
        let ns = fs::read_link(format!("/proc/{pid}/ns/pid")).expect("ns link");
        assert_ne!(ns, fs::read_link("/proc/self/ns/pid").unwrap());
        namespaces.push(ns);
    }
    namespaces.sort();
    namespaces.dedup();
    assert_eq!(
        namespaces.len(),
        names.len(),
        "processes share a pid namespace"
    );
    // Container-wide and per-process limits in the cgroup files.
    let c = &app.name;
    let mem = if cgroup_v1("memory") {
        read_trim(&cgroup_dir("memory", c).join("memory.limit_in_bytes"))
    } else {
        read_trim(&cgroup_dir("memory", c).join("memory.max"))
    };
    assert_eq!(mem, (1u64 << 30).to_string());
    assert_eq!(cpu_quota(c), "50000 100000", "container cpu quota");
    let web = format!("{c}/web_server");
    if cgroup_v1("memory") {
        assert_eq!(
            read_trim(&cgroup_dir("memory", &web).join("memory.limit_in_bytes")),
            (512u64 << 20).to_string()
        );
    }
    assert_eq!(cpu_quota(&web), "30000 100000", "web_server cpu quota");
    let pid = app.process("web_server")["pid"].as_i64().unwrap();
    let procs = read_trim(&cgroup_dir("memory", &web).join("cgroup.procs"));
    assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");
    // Output reached the log.
    let logs = Hydra::bare()
        .args(["logs", &format!("{c}/web_server")])
        .output();
    logs.assert_ok();
    logs.assert_stdout_contains("web up");
    // The published port answers at 127.0.0.1:80, through the web server's own link.
    let mut web = connect_retrying(([127, 0, 0, 1], 80).into());
    web.write_all(b"hello hydra\n").unwrap();
    let mut back = [0u8; 12];
    web.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello hydra\n");
    drop(web);
    let ports = Hydra::bare().args(["ports", c, "--json"]).output();
    ports.assert_ok();
    assert!(ports.stdout.contains("\"connections\": 1"), "{ports}");
    // The workers have links of their own but no mapping: nothing reaches them.
    let down = app.down();
    down.assert_ok();
    assert_host_clean(&app.name, Path::new("/run/hydra"));
}

#[test]
fn egress_allow_lets_one_process_reach_the_host_and_not_the_other() {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // The host end of its link is the process's default gateway ($3 of `default via GW ...`).
    let probe =
        format!("['sh', '-c', 'set -- $(ip route | grep default); hydra-probe connect $3 {port}']");
    let app = App::new(
        "up-egress",
        &format!(
            "isolation: {{mode: partial}}\nprocesses:\n  - {{name: open, command: {probe}, egress: allow}}\n  - {{name: closed, command: {probe}}}\n"
        ),
    );
    let out = Hydra::bare().args(["up", "-f"]).arg(app.file()).output();
    assert!(
        out.stdout.contains("open") && out.stdout.contains("connect: ok"),
        "{out}"
    );
    let closed: Vec<&str> = out
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("closed"))
        .collect();
    assert!(closed.iter().any(|l| l.contains("ETIMEDOUT")), "{out}");
    drop(listener);
}

#[test]
fn on_failure_restarts_three_times_then_shows_failed() {
    let app = App::new(
        "up-restart",
        "processes:\n  - {name: flaky, command: sh -c 'echo try; exit 1', restart: 'on-failure:3'}\n  - {name: steady, command: sleep 1000}\n",
    );
    app.up_detached();
    app.wait_for("flaky failed", |ps| {
        ps.iter().any(|p| {
            p["process"] == "flaky" && p["state"].as_str().is_some_and(|s| s.starts_with("failed"))
        })
    });
    let flaky = app.process("flaky");
    assert_eq!(flaky["restarts"], 3, "{flaky}");
    assert_eq!(flaky["exit_code"], 1, "{flaky}");
    let logs = Hydra::bare()
        .args(["logs", &format!("{}/flaky", app.name)])
        .output();
    assert_eq!(logs.out().matches("try").count(), 4, "{logs}");
    app.down().assert_ok();
}

#[test]
fn foreground_up_prefixes_output_and_returns_when_all_exit() {
    let app = App::new(
        "up-fg",
        "processes:\n  - {name: a, command: echo hello from a}\n  - {name: b, command: sh -c 'echo hello from b'}\n",
    );
    let out = Hydra::bare().args(["up", "-f"]).arg(app.file()).output();
    out.assert_ok();
    assert!(
        out.out().lines().any(|l| l.starts_with("a | hello from a")),
        "{out}"
    );
    assert!(
        out.out().lines().any(|l| l.starts_with("b | hello from b")),
        "{out}"
    );
}

#[test]
fn sigint_brings_a_foreground_up_down() {
    let app = App::new(
        "up-sigint",
        "processes:\n  - {name: s, command: sh -c 'echo ready; sleep 1000'}\n",
    );
    let mut r = Hydra::bare().args(["up", "-f"]).arg(app.file()).spawn();
    r.wait_for_stdout("s | ready");
    r.signal(libc::SIGINT);
    let out = r.wait();
    out.assert_ok();
    assert_host_clean(&app.name, Path::new("/run/hydra"));
}

#[test]
fn stop_stops_one_process_and_leaves_the_others() {
    let app = App::new(
        "up-stop",
        "processes:\n  - {name: a, command: sleep 1000, restart: always}\n  - {name: b, command: sleep 1000}\n",
    );
    app.up_detached();
    app.wait_for("both running", |ps| {
        ps.iter().filter(|p| p["state"] == "running").count() == 2
    });
    Hydra::bare()
        .args(["stop", &format!("{}/a", app.name)])
        .output()
        .assert_ok();
    app.wait_for("a stopped", |ps| {
        ps.iter()
            .any(|p| p["process"] == "a" && p["state"] == "stopped")
    });
    assert_eq!(app.process("b")["state"], "running");
    app.down().assert_ok();
}

#[test]
fn a_named_volume_is_shared_between_the_processes_that_mount_it() {
    let app = App::new(
        "up-volume",
        "volumes: [{name: shared, size: 8MB}]\nprocesses:\n  - {name: writer, command: sh -c 'echo hi > /data/note; sleep 1000', volumes: ['shared:/data']}\n  - {name: reader, command: sh -c 'until cat /in/note; do sleep 0.05; done; sleep 1000', volumes: ['shared:/in:ro']}\n",
    );
    app.up_detached();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = Hydra::bare()
            .args(["logs", &format!("{}/reader", app.name)])
            .output();
        if logs.out().contains("hi") {
            break;
        }
        assert!(
            Instant::now() < end,
            "the reader never saw the file\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    app.down().assert_ok();
}

#[test]
fn a_killed_supervisor_takes_its_processes_and_gc_cleans_up() {
    let app = App::new(
        "up-kill",
        "resources: {max_memory: 64MB}\nprocesses:\n  - {name: s, command: sleep 1000, count: 2}\n",
    );
    app.up_detached();
    app.wait_for("running", |ps| {
        ps.iter().filter(|p| p["state"] == "running").count() == 2
    });
    let pids: Vec<i64> = app
        .ps()
        .iter()
        .map(|p| p["pid"].as_i64().unwrap())
        .collect();
    let state = fs::read_to_string(Path::new("/run/hydra").join(&app.name).join("state")).unwrap();
    let supervisor: i32 = state
        .lines()
        .find_map(|l| l.strip_prefix("owner "))
        .and_then(|p| p.trim().parse().ok())
        .expect("owner line");
    // SAFETY: kill(2) of the supervisor this test started (its pid is in the state it wrote).
    assert_eq!(unsafe { libc::kill(supervisor, libc::SIGKILL) }, 0);
    // "Runs" = exists and is not a zombie waiting for the host's init to reap it.
    let running = |pid: &i64| {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().to_string())
            })
            .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
    };
    let end = Instant::now() + Duration::from_secs(1);
    while pids.iter().any(running) {
        assert!(
            Instant::now() < end,
            "container processes outlived their supervisor by 1 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let gc = Hydra::bare().arg("gc").output();
    gc.assert_ok();
    assert_host_clean(&app.name, Path::new("/run/hydra"));
}

#[test]
fn up_of_a_running_name_is_refused() {
    let app = App::new(
        "up-twice",
        "processes:\n  - {name: s, command: sleep 1000}\n",
    );
    app.up_detached();
    let again = Hydra::bare()
        .args(["up", "-d", "-f"])
        .arg(app.file())
        .output();
    again.assert_code(125);
    assert!(
        again.one_stderr_line().contains("already running"),
        "{again}"
    );
    app.down().assert_ok();
}

#[test]
fn config_errors_name_line_and_column_and_start_nothing() {
    let app = App::new(
        "up-bad",
        "processes:\n  - {name: s, command: sleep 1, bogus: 1}\n",
    );
    let out = Hydra::bare()
        .args(["up", "-d", "-f"])
        .arg(app.file())
        .output();
    out.assert_code(125);
    let line = out.one_stderr_line();
    assert!(line.contains("hydra.yaml:4:"), "{out}");
    assert!(line.contains("bogus"), "{out}");
    assert!(!Path::new("/run/hydra").join(&app.name).exists());
}

#[test]
fn ten_up_down_cycles_leave_nothing() {
    let app = App::new("up-cycles", &example(18190));
    for _ in 0..10 {
        app.up_detached();
        app.down().assert_ok();
        assert_host_clean(&app.name, Path::new("/run/hydra"));
    }
}

#[test]
fn exec_joins_the_process_namespaces_files_and_privileges() {
    let app = App::new(
        "up-exec",
        "processes:\n  - {name: web, command: sh -c 'echo inside > /tmp/mark; sleep 1000', env: {GREETING: hi}}\n",
    );
    app.up_detached();
    app.wait_for("web running", |ps| {
        ps.iter().any(|p| p["state"] == "running")
    });
    let target = format!("{}/web", app.name);
    // Give the command a moment to write its file.
    std::thread::sleep(Duration::from_millis(200));
    let out = Hydra::bare()
        .args(["exec", &target, "--"])
        .args([
            "sh",
            "-c",
            "hostname; cat /tmp/mark; echo $GREETING; ps -o comm | grep -cx sleep; \
             grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; hydra-probe mount; true",
        ])
        .output();
    out.assert_ok();
    let lines = out.lines();
    assert_eq!(lines[0], "web", "{out}");
    assert_eq!(
        lines[1], "inside",
        "the exec does not see the process's files\n{out}"
    );
    assert_eq!(lines[2], "hi", "{out}");
    assert_eq!(
        lines[3], "1",
        "the exec does not see the process's pid namespace\n{out}"
    );
    out.assert_stdout_contains("NoNewPrivs:\t1");
    out.assert_stdout_contains("Seccomp:\t2");
    assert!(!out.out().contains("mount: ok"), "exec can mount\n{out}");
    let code = Hydra::bare()
        .args(["exec", &target, "--", "sh", "-c", "exit 7"])
        .output();
    code.assert_code(7);
    let missing = Hydra::bare()
        .args(["exec", &target, "--", "nosuch"])
        .output();
    missing.assert_code(127);
    let unknown = Hydra::bare()
        .args(["exec", &format!("{}/nope", app.name), "--", "true"])
        .output();
    unknown.assert_code(125);
    app.down().assert_ok();
}

#[test]
fn healthchecks_run_inside_the_process_and_show_in_ps() {
    let app = App::new(
        "up-health",
        "processes:\n  - name: good\n    command: sh -c 'sleep 0.3; touch /tmp/ready; sleep 1000'\n    healthcheck: {command: test -f /tmp/ready, interval: 100ms, timeout: 2s, retries: 2}\n  - name: bad\n    command: sleep 1000\n    healthcheck: {command: 'false', interval: 100ms, timeout: 2s, retries: 2}\n",
    );
    app.up_detached();
    app.wait_for("good healthy and bad unhealthy", |ps| {
        ps.iter()
            .any(|p| p["process"] == "good" && p["health"] == "healthy")
            && ps
                .iter()
                .any(|p| p["process"] == "bad" && p["health"] == "unhealthy")
    });
    app.down().assert_ok();
}

#[test]
fn priority_sets_nice_and_the_cpu_weight() {
    let app = App::new(
        "up-prio",
        "processes:\n  - {name: low, command: sh -c 'cut -d\" \" -f19 /proc/self/stat; sleep 1000', priority: 5}\n",
    );
    app.up_detached();
    app.wait_for("low running", |ps| {
        ps.iter().any(|p| p["state"] == "running")
    });
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let logs = Hydra::bare()
            .args(["logs", &format!("{}/low", app.name)])
            .output();
        if logs.out().trim() == "5" {
            break;
        }
        assert!(Instant::now() < end, "nice is not 5\n{logs}");
        std::thread::sleep(Duration::from_millis(50));
    }
    if cgroup_v1("cpu") {
        let shares = read_trim(&cgroup_dir("cpu", &format!("{}/low", app.name)).join("cpu.shares"));
        assert_eq!(shares, "336", "cpu.shares for nice 5");
    }
    app.down().assert_ok();
}

#[test]
fn logs_follow_new_output_until_the_container_goes() {
    let app = App::new(
        "up-logs",
        "processes:\n  - {name: p, command: sh -c 'for i in 1 2 3 4 5; do echo line $i; sleep 0.1; done; sleep 1000'}\n",
    );
    app.up_detached();
    let mut follow = Hydra::bare()
        .args(["logs", "-f", &format!("{}/p", app.name)])
        .spawn();
    follow.wait_for_stdout("line 5");
    app.down().assert_ok();
    let out = follow.wait();
    out.assert_ok();
    let want: Vec<String> = (1..=5).map(|i| format!("line {i}")).collect();
    assert_eq!(out.lines(), want, "{out}");
}

#[test]
fn a_missing_image_is_one_line_and_starts_nothing() {
    require_root();
    // Running from an image works (run_image.rs); one that is not there is refused up front.
    let name = unique_name("up-hcon");
    let dir = TempDir::new("up-hcon");
    fs::write(
        dir.join("hydra.yaml"),
        format!("container: {{name: {name}, path: ./app.hcon}}\nprocesses:\n  - {{name: s, command: sleep 1}}\n"),
    )
    .expect("writing hydra.yaml");
    let out = Hydra::bare()
        .args(["up", "-d", "-f"])
        .arg(dir.join("hydra.yaml"))
        .output();
    out.assert_code(125);
    assert!(out.one_stderr_line().contains("app.hcon"), "{out}");
    assert!(!Path::new("/run/hydra").join(&name).exists());
}

#[test]
fn a_process_that_cannot_start_brings_up_down_and_leaves_nothing() {
    let app = App::new(
        "up-nostart",
        "processes:\n  - {name: a, command: sleep 1000}\n  - {name: b, command: sleep 1000, user: nosuchuser}\n",
    );
    let out = Hydra::bare()
        .args(["up", "-d", "-f"])
        .arg(app.file())
        .output();
    out.assert_code(125);
    assert!(out.one_stderr_line().contains("nosuchuser"), "{out}");
    assert_host_clean(&app.name, Path::new("/run/hydra"));
    let fg = Hydra::bare().args(["up", "-f"]).arg(app.file()).output();
    fg.assert_code(125);
    assert_host_clean(&app.name, Path::new("/run/hydra"));
}

#[test]
fn a_last_line_without_newline_is_kept() {
    let app = App::new(
        "up-nonl",
        "processes:\n  - {name: p, command: printf 'one\\ntwo'}\n",
    );
    let out = Hydra::bare().args(["up", "-f"]).arg(app.file()).output();
    out.assert_ok();
    assert_eq!(out.lines(), ["p | one", "p | two"], "{out}");
}

#[test]
fn an_oom_kill_by_the_container_limit_names_that_limit() {
    let app = App::new(
        "up-ctr-oom",
        "resources: {max_memory: 32MB}\nprocesses:\n  - {name: big, command: hydra-probe alloc 100}\n  - {name: idle, command: sleep 1000}\n",
    );
    app.up_detached();
    app.wait_for("big killed", |ps| {
        ps.iter()
            .any(|p| p["process"] == "big" && p["exit_code"] == 137)
    });
    let logs = Hydra::bare()
        .args(["logs", &format!("{}/big", app.name)])
        .output();
    logs.assert_stdout_contains("killed: out of memory (limit 32 MiB)");
    app.down().assert_ok();
}

#[test]
fn logs_of_a_quiet_process_are_empty_not_an_error() {
    let app = App::new(
        "up-quiet",
        "processes:\n  - {name: q, command: sleep 1000}\n",
    );
    app.up_detached();
    let logs = Hydra::bare()
        .args(["logs", &format!("{}/q", app.name)])
        .output();
    logs.assert_ok();
    assert_eq!(logs.out(), "", "{logs}");
    app.down().assert_ok();
}

#[test]
fn a_second_ctrl_c_does_not_wait_for_the_grace_period() {
    // The command ignores SIGTERM, so the first Ctrl-C alone would wait the whole 10 s grace
    // period before SIGKILL; the second one must not.
    let app = App::new(
        "up-2int",
        "processes:\n  - {name: s, command: sh -c 'trap \"\" TERM; echo ready; while :; do sleep 1; done'}\n",
    );
    let mut r = Hydra::bare().args(["up", "-f"]).arg(app.file()).spawn();
    r.wait_for_stdout("s | ready");
    r.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    let second = Instant::now();
    r.signal(libc::SIGINT);
    let out = r.wait();
    out.assert_ok();
    assert!(
        second.elapsed() < Duration::from_secs(5),
        "the second Ctrl-C waited {:?}\n{out}",
        second.elapsed()
    );
}
