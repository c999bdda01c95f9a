//! `config::parse` and `config::load` on whole files: the DESIGN.md example, every key, and
//! every error with its exact line, column and message.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::config::app::*;
use crate::config::{Limits, UserSpec};
use crate::net::NetMode;
use crate::security::SecurityLevel;

const DESIGN_EXAMPLE: &str = include_str!("../../../tests/fixtures/config/design-example.yaml");
const EVERY_KEY: &str = include_str!("../../../tests/fixtures/config/every-key.yaml");

/// The first line of most test files; what the test is about starts on line 2.
const HEAD: &str = "container: {name: app, rootfs: /r}\n";

fn file() -> &'static Path {
    Path::new("/srv/app/hydra.yaml")
}

fn ok(yaml: &str) -> AppSpec {
    parse(yaml, file()).unwrap_or_else(|e| panic!("{e}\n--- in:\n{yaml}"))
}

/// `HEAD` + `body` must fail; returns "line:column: message".
fn fail(body: &str) -> String {
    fail_whole(&format!("{HEAD}{body}"))
}

fn fail_whole(yaml: &str) -> String {
    match parse(yaml, file()) {
        Ok(spec) => panic!("accepted:\n{yaml}\n--- as {spec:?}"),
        Err(e) => {
            assert_eq!(e.file, file());
            assert!(!e.to_string().contains('\n'), "{e}");
            format!("{}:{}: {}", e.line, e.column, e.message)
        }
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

#[test]
fn design_example_loads_as_written() {
    let app = ok(DESIGN_EXAMPLE);
    assert_eq!(app.file, file());
    assert_eq!(app.version, "1.0");
    assert_eq!(
        app.container,
        ContainerDef {
            name: "my_application".into(),
            image: ImageSource::Image("/srv/app/app_container.hcon".into()),
        }
    );
    assert_eq!(
        app.security,
        SecurityDef {
            encryption: Encryption::KyberAes,
            level: SecurityLevel::Standard,
            key: None,
        }
    );
    assert_eq!(
        app.isolation,
        IsolationDef {
            mode: NetMode::Partial,
            ports: vec![PortDef {
                internal: 8080,
                external: 80,
                protocol: Protocol::Tcp,
                process: "web_server".into(),
                host_ip: None,
            }],
        }
    );
    assert_eq!(
        app.resources,
        ResourcesDef {
            memory: Some(1 << 30),
            cpu_millis: Some(500),
            pids: None,
            max_files: Some(1000),
            max_file_size: Some(100 << 20),
        }
    );
    assert_eq!(app.processes.len(), 2);
    let web = &app.processes[0];
    assert_eq!(
        *web,
        ProcessDef {
            name: "web_server".into(),
            command: vec!["/bin/web_server".into()],
            count: 1,
            env: vec![("PORT".into(), "8080".into())],
            limits: Limits {
                memory: Some(512 << 20),
                cpu_millis: Some(300),
                pids: None,
                max_files: Some(1000),
                max_file_size: Some(100 << 20),
            },
            priority: None,
            restart: RestartPolicy::No,
            depends_on: vec![],
            user: None,
            workdir: None,
            read_only: false,
            healthcheck: None,
            volumes: vec![],
            egress: false,
        }
    );
    let worker = &app.processes[1];
    assert_eq!(
        *worker,
        ProcessDef {
            name: "worker".into(),
            command: vec!["/bin/worker".into()],
            count: 4,
            env: vec![("WORKER_MODE".into(), "background".into())],
            limits: Limits {
                max_files: Some(1000),
                max_file_size: Some(100 << 20),
                ..Limits::default()
            },
            ..web.clone()
        }
    );
    assert_eq!(
        worker.instance_names(),
        ["worker.0", "worker.1", "worker.2", "worker.3"]
    );
    assert_eq!(web.instance_names(), ["web_server"]);
    assert!(app.volumes.is_empty());
    assert_eq!(app.ipc, IpcDef::default());
    assert!(app.networks.is_empty());
}

#[test]
fn fixture_files_load_with_paths_next_to_them() {
    let path = fixture("design-example.yaml");
    let app = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(app.file, path);
    assert_eq!(
        app.container.image,
        ImageSource::Image(fixture("app_container.hcon"))
    );

    let path = fixture("design-example-rootfs.yaml");
    let rootfs = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rootfs.container.image,
        ImageSource::Rootfs(fixture("rootfs"))
    );
    // Apart from the image, the same application.
    assert_eq!(rootfs.processes, app.processes);
    assert_eq!(rootfs.resources, app.resources);
    assert_eq!(rootfs.isolation, app.isolation);
}

#[test]
fn every_key() {
    let app = ok(EVERY_KEY);
    assert_eq!(app.version, "1.0");
    assert_eq!(
        app.container,
        ContainerDef {
            name: "shop".into(),
            image: ImageSource::Image("/srv/app/images/shop.hcon".into()),
        }
    );
    assert_eq!(
        app.security,
        SecurityDef {
            encryption: Encryption::Aes,
            level: SecurityLevel::Strict,
            key: Some("/srv/app/../keys/shop.key".into()),
        }
    );
    assert_eq!(app.isolation.mode, NetMode::Partial);
    assert_eq!(
        app.isolation.ports[1],
        PortDef {
            internal: 53,
            external: 5353,
            protocol: Protocol::Udp,
            process: "dns".into(),
            host_ip: Some(IpAddr::from([127, 0, 0, 1])),
        }
    );
    assert_eq!(app.isolation.ports[2].host_ip, "::1".parse().ok());
    assert_eq!(
        app.resources,
        ResourcesDef {
            memory: Some(2 << 30),
            cpu_millis: Some(1500),
            pids: Some(500),
            max_files: Some(4096),
            max_file_size: Some(1 << 30),
        }
    );
    let web = &app.processes[0];
    assert_eq!(web.command, ["/bin/server", "--port", "8080", "true"]);
    assert_eq!(web.count, 2);
    assert_eq!(
        web.env,
        [
            ("MODE".into(), "prod".into()),
            ("EMPTY".into(), String::new())
        ]
    );
    assert_eq!(
        web.limits,
        Limits {
            memory: Some(256 << 20),
            cpu_millis: Some(250),
            pids: Some(100),
            max_files: Some(4096),
            max_file_size: Some(1 << 30),
        }
    );
    assert_eq!(web.priority, Some(-5));
    assert_eq!(web.restart, RestartPolicy::OnFailure { max: Some(3) });
    assert_eq!(web.depends_on, ["db", "dns"]);
    assert_eq!(
        web.user,
        Some(UserSpec::Ids {
            uid: 1000,
            gid: Some(1000)
        })
    );
    assert_eq!(web.workdir.as_deref(), Some("/srv"));
    assert!(web.read_only);
    assert_eq!(
        web.healthcheck,
        Some(HealthcheckDef {
            command: vec![
                "wget".into(),
                "-q".into(),
                "-O-".into(),
                "http://127.0.0.1:8080/health".into()
            ],
            interval: Duration::from_secs(90),
            timeout: Duration::from_millis(500),
            retries: 5,
        })
    );
    assert_eq!(
        web.volumes,
        [
            VolumeMount {
                volume: "shared".into(),
                target: "/data".into(),
                read_only: false
            },
            VolumeMount {
                volume: "cache".into(),
                target: "/cache".into(),
                read_only: true
            },
        ]
    );
    let db = &app.processes[1];
    assert_eq!(
        db.user,
        Some(UserSpec::Name {
            user: "postgres".into(),
            group: None
        })
    );
    assert_eq!(db.restart, RestartPolicy::Always);
    assert_eq!(
        db.healthcheck,
        Some(HealthcheckDef {
            command: vec!["/bin/db".into(), "--ping".into()],
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            retries: 3,
        })
    );
    assert!(!db.volumes[0].read_only);
    assert_eq!(
        app.processes[2].restart,
        RestartPolicy::OnFailure { max: None }
    );
    assert_eq!(
        app.volumes,
        [
            VolumeDef {
                name: "shared".into(),
                size: 64 << 20
            },
            VolumeDef {
                name: "cache".into(),
                size: 1 << 20
            },
        ]
    );
    assert_eq!(
        app.ipc,
        IpcDef {
            channels: vec![
                ChannelDef {
                    name: "jobs".into(),
                    capacity: 128,
                    max_message: 1 << 20,
                    senders: vec!["web".into()],
                    receivers: vec!["db".into(), "web".into()],
                    reply: true,
                },
                ChannelDef {
                    name: "events".into(),
                    capacity: 64,
                    max_message: 64 << 10,
                    senders: vec!["db".into()],
                    receivers: vec![],
                    reply: false,
                },
            ],
            shared_memory: vec![SharedMemoryDef {
                name: "frames".into(),
                size: 16 << 20,
                processes: vec!["web".into(), "dns".into()],
            }],
        }
    );
    assert_eq!(
        app.networks,
        [
            NetworkDef {
                name: "backend".into(),
                processes: vec!["web".into(), "db".into()]
            },
            NetworkDef {
                name: "edge".into(),
                processes: vec!["web".into(), "dns".into()]
            },
        ]
    );
    let order: Vec<&str> = app.start_order().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(order, ["db", "dns", "web"]);
}

#[test]
fn defaults() {
    let app = ok("container: {name: app, rootfs: rootfs}\nprocesses: [{name: a, command: a}]\n");
    assert_eq!(app.version, "1.0");
    assert_eq!(
        app.container.image,
        ImageSource::Rootfs("/srv/app/rootfs".into())
    );
    assert_eq!(app.security, SecurityDef::default());
    assert_eq!(app.security.encryption, Encryption::None);
    assert_eq!(app.security.level, SecurityLevel::Standard);
    assert_eq!(app.isolation.mode, NetMode::Complete);
    assert_eq!(app.resources, ResourcesDef::default());
    let a = &app.processes[0];
    assert_eq!(a.count, 1);
    assert_eq!(a.restart, RestartPolicy::No);
    assert_eq!(a.limits, Limits::default());
    assert!(!a.read_only && a.env.is_empty() && a.priority.is_none());

    // A relative file name: paths stay relative to the working directory.
    let app = parse(
        "container: {name: app, rootfs: ./rootfs}\nprocesses: [{name: a, command: a}]\n",
        Path::new("hydra.yaml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(app.container.image, ImageSource::Rootfs("rootfs".into()));
}

#[test]
fn version_is_one_point_something() {
    for v in ["'1.0'", "1.0", "\"1\"", "1", "1.1"] {
        let app = ok(&format!(
            "version: {v}\n{HEAD}processes: [{{name: a, command: a}}]\n"
        ));
        assert_eq!(app.version, v.trim_matches(['\'', '"']));
    }
    assert_eq!(
        fail_whole(&format!(
            "version: 2.0\n{HEAD}processes: [{{name: a, command: a}}]\n"
        )),
        "1:10: version: expected '1.0', found '2.0'"
    );
}

#[test]
fn env_values_of_every_type_become_text() {
    let app = ok(&format!(
        "{HEAD}processes:\n  - name: a\n    command: a\n    env:\n      PORT: 8080\n      DEBUG: true\n      OFF: no\n      RATIO: 0.50\n      NEG: -3\n      HEX: 0x1F\n      NAME: 'web server'\n      QUOTED: \"8080\"\n      EMPTY: ''\n      HYDRA_SURELY_UNSET_VAR:\n"
    ));
    let env: Vec<(&str, &str)> = app.processes[0]
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("PORT", "8080"),
            ("DEBUG", "true"),
            ("OFF", "no"),
            ("RATIO", "0.50"),
            ("NEG", "-3"),
            ("HEX", "0x1F"),
            ("NAME", "web server"),
            ("QUOTED", "8080"),
            ("EMPTY", ""),
        ]
    );
    // A name with no value takes hydra's own, as `hydra run -e NAME` does.
    let path = std::env::var("PATH").unwrap_or_default();
    let app = ok(&format!(
        "{HEAD}processes:\n  - {{name: a, command: a, env: [PATH, A=b=c]}}\n"
    ));
    let mut expected = vec![("A".to_string(), "b=c".to_string())];
    if !path.is_empty() {
        expected.insert(0, ("PATH".to_string(), path));
    }
    assert_eq!(app.processes[0].env, expected);
}

#[test]
fn commands_are_split_like_a_shell_would() {
    let app = ok(&format!(
        r#"{HEAD}processes:
  - {{name: a, command: "sh -c 'echo \"hi there\"; exit 3'"}}
  - name: b
    command: echo a\ b $HOME "c d"
  - {{name: c, command: [sh, -c, "echo $HOME | wc", 10]}}
  - name: d
    command: >-
      /bin/server
      --port 80
"#
    ));
    let commands: Vec<&Vec<String>> = app.processes.iter().map(|p| &p.command).collect();
    assert_eq!(commands[0], &["sh", "-c", "echo \"hi there\"; exit 3"]);
    assert_eq!(commands[1], &["echo", "a b", "$HOME", "c d"]);
    assert_eq!(commands[2], &["sh", "-c", "echo $HOME | wc", "10"]);
    assert_eq!(commands[3], &["/bin/server", "--port", "80"]);
}

#[test]
fn start_order_follows_depends_on_then_file_order() {
    let app = ok(&format!(
        "{HEAD}processes:\n  - {{name: web, command: a, depends_on: [api]}}\n  - {{name: log, command: a}}\n  - {{name: api, command: a, depends_on: [db, log]}}\n  - {{name: db, command: a}}\n  - {{name: tool, command: a}}\n"
    ));
    let order: Vec<&str> = app.start_order().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(order, ["log", "db", "api", "web", "tool"]);

    let app = ok(&format!(
        "{HEAD}processes:\n  - {{name: c, command: a}}\n  - {{name: b, command: a}}\n  - {{name: a, command: a}}\n"
    ));
    let order: Vec<&str> = app.start_order().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(order, ["c", "b", "a"]);
}

#[test]
fn restart_policies() {
    for (text, policy) in [
        ("no", RestartPolicy::No),
        ("'no'", RestartPolicy::No),
        ("always", RestartPolicy::Always),
        ("on-failure", RestartPolicy::OnFailure { max: None }),
        ("on-failure:3", RestartPolicy::OnFailure { max: Some(3) }),
    ] {
        let app = ok(&format!(
            "{HEAD}processes:\n  - {{name: a, command: a, restart: {text}}}\n"
        ));
        assert_eq!(app.processes[0].restart, policy, "{text}");
    }
    for bad in ["on-failure:0", "on-failure:x", "unless-stopped", "true"] {
        assert_eq!(
            fail(&format!("processes:\n  - {{name: a, command: a, restart: {bad}}}\n")),
            format!("3:36: restart: expected no, always, on-failure or on-failure:N (N a whole number of at least 1), found '{bad}'")
        );
    }
}

#[test]
fn ports_clash_only_on_the_same_host_port_protocol_and_address() {
    let ports = |a: &str, b: &str| {
        format!(
            "isolation:\n  mode: partial\n  ports:\n    - {{internal: 1, external: 80, process: a{a}}}\n    - {{internal: 2, external: 80, process: a{b}}}\nprocesses: [{{name: a, command: a}}]\n"
        )
    };
    // Different protocols or different addresses: no clash.
    for (a, b) in [
        ("", ", protocol: udp"),
        (", host_ip: 127.0.0.1", ", host_ip: 127.0.0.2"),
        (", host_ip: 127.0.0.1", ", host_ip: '::1'"),
        // `::` is every IPv6 address, `0.0.0.0` every IPv4 one.
        (", host_ip: 0.0.0.0", ", host_ip: '::'"),
        (", host_ip: '::'", ", host_ip: 127.0.0.1"),
    ] {
        let app = ok(&format!("{HEAD}{}", ports(a, b)));
        assert_eq!(app.isolation.ports.len(), 2);
    }
    assert_eq!(
        fail(&ports("", "")),
        "6:31: ports: host port 80/tcp is already mapped (to a:1, at line 5, column 31)"
    );
    // No address is every address.
    assert_eq!(
        fail(&ports("", ", host_ip: 127.0.0.1")),
        "6:31: ports: host port 127.0.0.1:80/tcp is already mapped (to a:1, at line 5, column 31)"
    );
    assert_eq!(
        fail(&ports(", host_ip: 0.0.0.0", ", host_ip: 10.0.0.1")),
        "6:31: ports: host port 10.0.0.1:80/tcp is already mapped (to a:1, at line 5, column 31)"
    );
    assert_eq!(
        fail(&ports(
            ", protocol: udp, host_ip: '::1'",
            ", protocol: udp, host_ip: '::1'"
        )),
        "6:31: ports: host port [::1]:80/udp is already mapped (to a:1, at line 5, column 31)"
    );
    assert_eq!(
        fail(&ports(", host_ip: '::'", ", host_ip: '::1'")),
        "6:31: ports: host port [::1]:80/tcp is already mapped (to a:1, at line 5, column 31)"
    );
}

#[test]
fn process_limits_may_not_exceed_the_container() {
    let body = |resources: &str, limits: &str| {
        format!("resources: {{{resources}}}\nprocesses:\n  - {{name: a, command: a, limits: {{{limits}}}}}\n")
    };
    // Equal is fine, and a limit with no container limit is fine.
    ok(&format!(
        "{HEAD}{}",
        body(
            "max_memory: 1GB, max_cpu: 1, max_pids: 10",
            "memory: 1024MB, cpu: 1.0, pids: 10"
        )
    ));
    ok(&format!(
        "{HEAD}{}",
        body("max_cpu: 1", "memory: 8GB, cpu: 0.5")
    ));
    assert_eq!(
        fail(&body("max_memory: 1GB", "memory: 1025MB")),
        "4:44: limits.memory of process 'a' (1025 MiB) is above the container's resources.max_memory (1 GiB, at line 2, column 25)"
    );
    assert_eq!(
        fail(&body("max_cpu: 0.5", "cpu: 0.75")),
        "4:41: limits.cpu of process 'a' (0.75 CPU) is above the container's resources.max_cpu (0.5 CPU, at line 2, column 22)"
    );
    assert_eq!(
        fail(&body("max_pids: 10", "pids: 11")),
        "4:42: limits.pids of process 'a' (11) is above the container's resources.max_pids (10, at line 2, column 23)"
    );
}

#[test]
fn unreadable_file() {
    let path = Path::new("/nonexistent-hydra-dir/hydra.yaml");
    let e = load(path).expect_err("no such file");
    assert_eq!((e.line, e.column), (0, 0));
    assert_eq!(
        e.to_string(),
        "/nonexistent-hydra-dir/hydra.yaml: cannot read the file: No such file or directory (os error 2)"
    );
}

#[test]
fn errors_name_file_line_and_column() {
    let e = parse(
        &format!("{HEAD}processes:\n  - {{name: s, command: sleep 1, bogus: 1}}\n"),
        file(),
    )
    .expect_err("unknown key");
    assert_eq!(
        e.to_string(),
        "/srv/app/hydra.yaml:3:33: unknown key `bogus` (expected one of: name, command, count, env, limits, priority, restart, depends_on, user, workdir, read_only, healthcheck, volumes, egress)"
    );
}

/// Every error, with its exact position and message.
#[test]
fn errors() {
    let p = "processes:\n  - {name: a, command: a}\n";
    let cases: Vec<(String, &str)> = vec![
        // Unknown keys, at every level.
        (
            format!("bogus: 1\n{p}"),
            "2:1: unknown key `bogus` (expected one of: version, container, security, isolation, resources, processes, volumes, ipc, networks)",
        ),
        (
            format!("resources: {{max_mem: 1GB}}\n{p}"),
            "2:13: unknown key `max_mem` (expected one of: max_memory, max_cpu, max_pids, max_files, max_file_size)",
        ),
        (
            "processes:\n  - {name: a, command: a, limits: {memory: 1GB, cpus: 1}}\n".into(),
            "3:49: unknown key `cpus` (expected one of: memory, cpu, pids)",
        ),
        (
            format!("isolation:\n  mode: partial\n  ports: [{{internal: 1, external: 2, process: a, proto: udp}}]\n{p}"),
            "4:50: unknown key `proto` (expected one of: internal, external, protocol, process, host_ip)",
        ),
        (
            format!("security: {{level: strict}}\n{p}"),
            "2:12: unknown key `level` (expected one of: encryption, security_level, key)",
        ),
        // egress.
        (
            "processes:\n  - {name: a, command: a, egress: yes}\n".into(),
            "3:35: egress: expected one of allow, deny, found 'yes'",
        ),
        (
            "processes:\n  - {name: a, command: a, egress: allow}\n".into(),
            "3:35: egress: allow needs `isolation: {mode: partial}` (a has no link of its own to open connections from)",
        ),
        // Wrong types.
        (
            "processes: {a: 1}\n".into(),
            "2:12: expected a list",
        ),
        (
            "processes:\n  - {name: [a], command: a}\n".into(),
            "3:12: expected a single value (a string or number), not a list or mapping",
        ),
        (
            "processes:\n  - {name: a, command: 12}\n".into(),
            "3:24: command: expected a command line or a list of words, found a number",
        ),
        (
            "processes:\n  - {name: a, command: a, env: x}\n".into(),
            "3:32: env: expected a mapping NAME: value or a list of NAME=value, found a single value",
        ),
        (
            format!("resources: 1GB\n{p}"),
            "2:12: expected a mapping (key: value ...)",
        ),
        // Bad sizes and cpus.
        (
            format!("resources: {{max_memory: 12XB}}\n{p}"),
            "2:25: max_memory: invalid size '12XB' (expected a number with an optional unit: 512K, 64M, 1G, 100MB)",
        ),
        (
            "processes:\n  - {name: a, command: a, limits: {memory: 0}}\n".into(),
            "3:44: memory: size '0' must be greater than zero",
        ),
        (
            format!("volumes: [{{name: v, size: lots}}]\n{p}"),
            "2:27: size: invalid size 'lots' (expected a number with an optional unit: 512K, 64M, 1G, 100MB)",
        ),
        (
            format!("resources: {{max_cpu: -0.5}}\n{p}"),
            "2:22: max_cpu: invalid cpu amount '-0.5' (expected a positive number of CPUs such as 0.5 or 2)",
        ),
        (
            format!("resources: {{max_cpu: 0}}\n{p}"),
            "2:22: max_cpu: invalid cpu amount '0' (expected a positive number of CPUs such as 0.5 or 2)",
        ),
        (
            "processes:\n  - {name: a, command: a, limits: {cpu: -1}}\n".into(),
            "3:41: cpu: invalid cpu amount '-1' (expected a positive number of CPUs such as 0.5 or 2)",
        ),
        // Names.
        (
            "processes:\n  - {name: s, command: sleep 1}\n  - name: s\n    command: sleep 2\n".into(),
            "4:11: duplicate process name 's' (first defined at line 3, column 12)",
        ),
        (
            "processes:\n  - {name: a, command: x, count: 2}\n  - {name: a.1, command: x}\n".into(),
            "4:12: duplicate process name 'a.1': processes 'a' (at line 3, column 12) and 'a.1' both make a virtual process of that name",
        ),
        (
            "processes:\n  - {name: 'web server', command: x}\n".into(),
            "3:12: name: invalid name 'web server' (use letters, digits, '_', '.', '-'; start with a letter or digit; at most 63 characters)",
        ),
        (
            "processes:\n  - {command: x}\n".into(),
            "3:5: missing key `name` (every process needs a name)",
        ),
        (
            "processes:\n  - {name: a}\n".into(),
            "3:5: missing key `command` (process 'a' needs a command to run)",
        ),
        (
            format!("volumes: [{{name: v, size: 1M}}, {{name: v, size: 2M}}]\n{p}"),
            "2:39: duplicate volume name 'v' (first defined at line 2, column 18)",
        ),
        (
            format!("networks: {{'-x': [a]}}\n{p}"),
            "2:12: network name: invalid name '-x' (use letters, digits, '_', '.', '-'; start with a letter or digit; at most 63 characters)",
        ),
        // count
        (
            "processes:\n  - {name: s, command: sleep 1, count: 0}\n".into(),
            "3:40: count: expected a whole number of at least 1, found '0'",
        ),
        (
            "processes:\n  - {name: s, command: sleep 1, count: 4294967296}\n".into(),
            "3:40: count: expected a whole number no larger than 4294967295, found '4294967296'",
        ),
        (
            "processes:\n  - {name: s, command: sleep 1, count: two}\n".into(),
            "3:40: count: expected a whole number of at least 1, found 'two'",
        ),
        // Unknown processes.
        (
            format!("isolation:\n  mode: partial\n  ports:\n    - {{internal: 80, external: 8080, process: web}}\n{p}"),
            "5:47: ports: unknown process 'web' (the processes are: a)",
        ),
        (
            "processes:\n  - {name: a, command: x, depends_on: [c]}\n  - {name: b, command: x}\n".into(),
            "3:40: depends_on: unknown process 'c' (the processes are: a, b)",
        ),
        (
            format!("ipc:\n  channels:\n    - {{name: q, senders: [z], receivers: [a]}}\n{p}"),
            "4:27: senders: unknown process 'z' (the processes are: a)",
        ),
        (
            format!("ipc:\n  channels:\n    - {{name: q, senders: [a], receivers: [a, z]}}\n{p}"),
            "4:46: receivers: unknown process 'z' (the processes are: a)",
        ),
        (
            format!("ipc:\n  shared_memory:\n    - {{name: m, size: 1MB, processes: [a, b]}}\n{p}"),
            "4:43: processes: unknown process 'b' (the processes are: a)",
        ),
        (
            format!("networks: {{backend: [a, b]}}\n{p}"),
            "2:25: networks: unknown process 'b' (the processes are: a)",
        ),
        // Ports.
        (
            format!("isolation:\n  mode: partial\n  ports:\n    - {{internal: 80, external: 8080, process: a}}\n    - {{internal: 81, external: 8080, process: a}}\n{p}"),
            "6:32: ports: host port 8080/tcp is already mapped (to a:80, at line 5, column 32)",
        ),
        (
            format!("isolation:\n  ports:\n    - {{internal: 80, external: 8080, process: a}}\n{p}"),
            "4:5: ports: publishing a port needs `mode: partial` (the mode is complete)",
        ),
        (
            format!("isolation:\n  mode: partial\n  ports: [{{internal: 80, external: 70000, process: a}}]\n{p}"),
            "4:36: external: expected a port number from 1 to 65535, found '70000'",
        ),
        (
            format!("isolation:\n  mode: partial\n  ports: [{{internal: 80, external: 81, protocol: sctp, process: a}}]\n{p}"),
            "4:50: protocol: expected one of tcp, udp, found 'sctp'",
        ),
        (
            format!("isolation:\n  mode: partial\n  ports: [{{internal: 80, external: 81, process: a, host_ip: localhost}}]\n{p}"),
            "4:61: host_ip: expected an IP address such as 127.0.0.1, found 'localhost'",
        ),
        (
            format!("isolation: {{mode: full}}\n{p}"),
            "2:19: mode: expected one of none, partial, complete, found 'full'",
        ),
        // depends_on cycles.
        (
            "processes:\n  - {name: a, command: sleep 1, depends_on: [b]}\n  - {name: b, command: sleep 1, depends_on: [a]}\n".into(),
            "4:46: depends_on: a -> b -> a is a cycle (no process in it could start first)",
        ),
        (
            "processes:\n  - {name: a, command: x, depends_on: [a]}\n".into(),
            "3:40: depends_on: a -> a is a cycle (no process in it could start first)",
        ),
        (
            "processes:\n  - {name: a, command: x}\n  - {name: b, command: x, depends_on: [a, d]}\n  - {name: c, command: x, depends_on: [b]}\n  - {name: d, command: x, depends_on: [c]}\n".into(),
            "5:40: depends_on: b -> d -> c -> b is a cycle (no process in it could start first)",
        ),
        // Limits above the container's.
        (
            "resources: {max_memory: 1GB}\nprocesses:\n  - {name: a, command: sleep 1, limits: {memory: 2GB}}\n".into(),
            "4:50: limits.memory of process 'a' (2 GiB) is above the container's resources.max_memory (1 GiB, at line 2, column 25)",
        ),
        // Other values of a process.
        (
            "processes:\n  - {name: a, command: sleep 1, priority: 20}\n".into(),
            "3:43: priority: expected a nice value from -20 to 19, found '20'",
        ),
        (
            "processes:\n  - {name: a, command: sleep 1, priority: -21}\n".into(),
            "3:43: priority: expected a nice value from -20 to 19, found '-21'",
        ),
        (
            "processes:\n  - {name: a, command: sleep 1, restart: sometimes}\n".into(),
            "3:42: restart: expected no, always, on-failure or on-failure:N (N a whole number of at least 1), found 'sometimes'",
        ),
        (
            "processes:\n  - {name: a, command: sleep 1, volumes: ['cache:/c']}\n".into(),
            "3:43: volumes: volume 'cache' is not declared under the top-level volumes (no volumes are declared)",
        ),
        (
            "volumes: [{name: data, size: 1M}]\nprocesses:\n  - {name: a, command: sleep 1, volumes: ['/srv:/c']}\n".into(),
            "4:43: volumes: volume '/srv' is not declared under the top-level volumes (declared: data)",
        ),
        (
            "volumes: [{name: data, size: 1M}]\nprocesses:\n  - {name: a, command: sleep 1, volumes: ['data:c']}\n".into(),
            "4:43: volumes: expected an absolute path to mount 'data' on, found 'c'",
        ),
        (
            "volumes: [{name: data, size: 1M}]\nprocesses:\n  - {name: a, command: sleep 1, volumes: ['data:/c:rx']}\n".into(),
            "4:43: volumes: expected VOLUME:/path or VOLUME:/path:ro, found 'data:/c:rx'",
        ),
        (
            "volumes: [{name: data}]\nprocesses:\n  - {name: a, command: sleep 1}\n".into(),
            "2:11: missing key `size` (the size of volume 'data', such as 64MB)",
        ),
        (
            "processes:\n  - {name: a, command: sleep 1, workdir: app}\n".into(),
            "3:42: workdir: expected an absolute path, found 'app'",
        ),
        (
            "processes:\n  - {name: a, command: sleep 1, read_only: maybe}\n".into(),
            "3:44: read_only: expected true or false, found 'maybe'",
        ),
        (
            "processes:\n  - {name: a, command: sleep 1, user: 'x:'}\n".into(),
            "3:39: user: invalid user 'x:' (expected UID[:GID] or a user name from the image's /etc/passwd)",
        ),
        (
            "processes:\n  - {name: a, command: a, env: {1A: x}}\n".into(),
            "3:33: env: invalid variable name '1A' (expected letters, digits and '_', not starting with a digit)",
        ),
        (
            "processes:\n  - {name: a, command: a, env: [A=1, B=2, A=3]}\n".into(),
            "3:43: env: A is set twice (first at line 3, column 33)",
        ),
        (
            "processes:\n  - {name: a, command: a, env: {A: 1, A: 2}}\n".into(),
            "3:39: key `A` appears twice in this mapping",
        ),
        (
            "processes:\n  - {name: a, command: \"sh -c 'x\"}\n".into(),
            "3:24: command: the single quote opened at character 7 is never closed",
        ),
        (
            "processes:\n  - {name: a, command: \"a\\0b\"}\n".into(),
            "3:24: command: the command contains a NUL character",
        ),
        (
            "processes:\n  - {name: a, command: ''}\n".into(),
            "3:24: command: expected a program to run, found an empty command",
        ),
        (
            "processes:\n  - {name: a, command: []}\n".into(),
            "3:24: command: expected a program to run, found an empty command",
        ),
        (
            "processes:\n  - name: a\n    command: x\n    healthcheck: {command: x, interval: 5}\n".into(),
            "5:41: healthcheck.interval: invalid duration '5' (expected a number with a unit h, m, s or ms, such as 30s, 500ms or 1m30s)",
        ),
        (
            "processes:\n  - name: a\n    command: x\n    healthcheck: {command: x, timeout: 0s}\n".into(),
            "5:40: healthcheck.timeout: expected a duration greater than zero, found '0s'",
        ),
        (
            "processes:\n  - name: a\n    command: x\n    healthcheck: {interval: 5s}\n".into(),
            "5:18: missing key `command` (the command that checks the process's health)",
        ),
        // processes
        (
            "processes: []\n".into(),
            "2:12: processes: expected a list of at least one process, found an empty list",
        ),
        (
            "".into(),
            "1:1: missing key `processes` (a list of at least one process to run)",
        ),
        // Security.
        (
            format!("security: {{encryption: rsa}}\n{p}"),
            "2:24: encryption: expected one of none, aes, kyber_aes, found 'rsa'",
        ),
        (
            format!("security: {{security_level: paranoid}}\n{p}"),
            "2:28: security_level: expected one of minimal, standard, strict, found 'paranoid'",
        ),
        // IPC values.
        (
            format!("ipc:\n  channels:\n    - {{name: q, capacity: 0}}\n{p}"),
            "4:27: capacity: expected a number of messages from 1 to 1048576, found '0'",
        ),
        (
            format!("ipc:\n  channels:\n    - {{name: q, capacity: 2000000}}\n{p}"),
            "4:27: capacity: expected a number of messages from 1 to 1048576, found '2000000'",
        ),
        (
            format!("ipc:\n  channels:\n    - {{name: q, max_message: 32MB}}\n{p}"),
            "4:30: max_message: expected a size from 1B to 16MiB, found '32MB'",
        ),
        (
            format!("ipc:\n  channels:\n    - {{name: q}}\n    - {{name: q}}\n{p}"),
            "5:14: duplicate channel name 'q' (first defined at line 4, column 14)",
        ),
        (
            format!("ipc:\n  channels:\n    - {{name: q, reply: maybe}}\n{p}"),
            "4:24: reply: expected true or false, found 'maybe'",
        ),
        (
            format!("ipc:\n  channels:\n    - {{name: q, replies: true}}\n{p}"),
            "4:17: unknown key `replies` (expected one of: name, capacity, max_message, senders, receivers, reply)",
        ),
        // Two ipc objects announced in one environment variable.
        (
            format!("ipc:\n  channels:\n    - {{name: a-b}}\n    - {{name: a_b}}\n{p}"),
            "5:14: channel name 'a_b' clashes with channel 'a-b' (at line 4, column 14): both would be announced in HYDRA_IPC_A_B",
        ),
        (
            format!("ipc:\n  channels:\n    - {{name: Q}}\n  shared_memory:\n    - {{name: q, size: 1MB}}\n{p}"),
            "6:14: shared memory name 'q' clashes with channel 'Q' (at line 4, column 14): both would be announced in HYDRA_IPC_Q",
        ),
        (
            format!("ipc:\n  shared_memory:\n    - {{name: m.x, size: 1MB}}\n    - {{name: m-x, size: 1MB}}\n{p}"),
            "5:14: shared memory name 'm-x' clashes with shared memory 'm.x' (at line 4, column 14): both would be announced in HYDRA_IPC_M_X",
        ),
        (
            format!("ipc:\n  channels:\n    - {{name: jobs, reply: true}}\n    - {{name: jobs_reply}}\n{p}"),
            "5:14: channel name 'jobs_reply' clashes with channel 'jobs' (at line 4, column 14): HYDRA_IPC_JOBS_REPLY is one of the reply variables of channel 'jobs' (reply: true)",
        ),
        (
            format!("ipc:\n  channels:\n    - {{name: jobs, reply: yes}}\n  shared_memory:\n    - {{name: jobs.reply.12, size: 1MB}}\n{p}"),
            "6:14: shared memory name 'jobs.reply.12' clashes with channel 'jobs' (at line 4, column 14): HYDRA_IPC_JOBS_REPLY_12 is one of the reply variables of channel 'jobs' (reply: true)",
        ),
        (
            format!("ipc:\n  channels:\n    - {{name: jobs-clients}}\n    - {{name: jobs, reply: true}}\n{p}"),
            "5:14: channel name 'jobs' clashes with channel 'jobs-clients' (at line 4, column 14): HYDRA_IPC_JOBS_CLIENTS would be one of the reply variables of channel 'jobs' (reply: true)",
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(body, expected)| {
            let got = fail(body);
            (got != *expected).then(|| format!("{HEAD}{body}---\n got: {got}\nwant: {expected}\n"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Errors in `container:` (the line `HEAD` supplies in the other tests).
#[test]
fn container_errors() {
    let p = "processes:\n  - {name: a, command: sleep 1}\n";
    for (container, expected) in [
        (
            "container: {name: app, rootfs: /r, path: /x.hcon}",
            "1:42: container: expected either path (a .hcon image) or rootfs (a directory), found both",
        ),
        (
            "container: {name: app}",
            "1:12: missing key `path` or `rootfs` (the container's .hcon image or root directory)",
        ),
        (
            "container: {rootfs: /r}",
            "1:12: missing key `name` (the container's name)",
        ),
        (
            "container: {name: 'a b', rootfs: /r}",
            "1:19: container.name: invalid name 'a b' (use letters, digits, '_', '.', '-'; start with a letter or digit; at most 63 characters)",
        ),
        (
            "container: {name: app, image: x}",
            "1:24: unknown key `image` (expected one of: name, path, rootfs)",
        ),
        (
            "container: {name: app, rootfs: /r",
            "2:10: while parsing a flow mapping, did not find expected ',' or '}'",
        ),
    ] {
        assert_eq!(fail_whole(&format!("{container}\n{p}")), expected, "{container}");
    }
    assert_eq!(
        fail_whole(p),
        "1:1: missing key `container` (the container's name and its path or rootfs)"
    );
    assert_eq!(
        fail_whole("# nothing\n"),
        "1:1: the file is empty (expected a mapping with at least `container` and `processes`)"
    );
}
