//! The kernel example (examples/kernel-example, what `make demo` runs) as a test: its image is
//! built and encrypted by the example's own build.sh, its hydra.yaml runs unchanged but for the
//! container's name (unique per test run), and each part `make demo` narrates is checked here:
//! every client gets right answers from the server over IPC, the web server's page arrives
//! through 127.0.0.1:18080 and shows its own pid namespace, the mapping counts the connection, the
//! workers' cgroups carry their CPU quota and `stats` counts their CPU time, and `down` leaves the
//! host clean.

mod common;

use common::*;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/kernel-example");
const WORKERS: [&str; 4] = ["worker.0", "worker.1", "worker.2", "worker.3"];

/// The example in a temp dir: its image and key pair built by build.sh, its hydra.yaml with a
/// unique container name, and an image cache of its own (removed with the dir).
fn example() -> App {
    require_root();
    let name = unique_name("kernel-example");
    let dir = TempDir::new("kernel-example");
    let build = Command::new(Path::new(EXAMPLE).join("build.sh"))
        .arg(dir.join(""))
        .env("HYDRA", hydra_bin())
        .env("HYDRA_ROOTFS", rootfs())
        .output()
        .expect("running build.sh");
    assert!(
        build.status.success(),
        "build.sh failed: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    let yaml = fs::read_to_string(Path::new(EXAMPLE).join("hydra.yaml")).expect("hydra.yaml");
    let named = "  name: my_application\n";
    assert!(yaml.contains(named), "the example's container name moved");
    fs::write(
        dir.join("hydra.yaml"),
        yaml.replace(named, &format!("  name: {name}\n")),
    )
    .expect("writing hydra.yaml");
    App { name, dir }
}

fn up(app: &App) {
    Hydra::bare()
        .env(
            "HYDRA_IMAGE_CACHE",
            &app.dir.join("cache").display().to_string(),
        )
        .args(["up", "-d", "-f"])
        .arg(app.file())
        .output()
        .assert_ok();
}

/// Waits (bounded) until `process` has logged `n` answers, and returns its log lines.
fn answers(app: &App, process: &str, n: usize) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Hydra::bare()
            .args(["logs", &format!("{}/{process}", app.name)])
            .output();
        out.assert_ok();
        let lines: Vec<String> = out
            .lines()
            .iter()
            .filter(|l| l.contains(" = "))
            .map(|l| l.to_string())
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < end,
            "{process} got {} answers\n{out}",
            lines.len()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// `client K: sum of 1..N = S (answered by server)`: checks the sum and returns (K, N).
fn checked_answer(line: &str) -> (u64, u64) {
    let parse = || -> Option<(u64, u64, u64, &str)> {
        let rest = line.strip_prefix("client ")?;
        let (k, rest) = rest.split_once(": sum of 1..")?;
        let (n, rest) = rest.split_once(" = ")?;
        let (sum, by) = rest.split_once(' ')?;
        Some((k.parse().ok()?, n.parse().ok()?, sum.parse().ok()?, by))
    };
    let (k, n, sum, by) = parse().unwrap_or_else(|| panic!("not an answer: {line:?}"));
    assert_eq!(sum, n * (n + 1) / 2, "wrong answer: {line}");
    assert_eq!(by, "(answered by server)", "{line}");
    (k, n)
}

/// GET / at 127.0.0.1:18080 (retrying while httpd starts); the body.
fn page() -> String {
    let mut s = connect_retrying(SocketAddr::from((Ipv4Addr::LOCALHOST, 18080)));
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .expect("sending the request");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("reading the page");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    assert!(
        head.starts_with("HTTP/1.") && head.split(' ').nth(1) == Some("200"),
        "{head}"
    );
    body.to_string()
}

fn field<'a>(page: &'a str, key: &str) -> &'a str {
    page.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key:?} on the page:\n{page}"))
}

#[test]
fn the_kernel_example_runs_end_to_end_from_its_encrypted_image() {
    let app = example();
    up(&app);
    let all = ["server", "client.0", "client.1", "web_server"];
    app.wait_for("all 8 processes running", |ps| {
        all.iter().chain(WORKERS.iter()).all(|n| {
            ps.iter()
                .any(|p| p["process"] == *n && p["state"] == "running")
        })
    });

    // IPC: each client asks for the sum of 1..100(k+1)+i and gets the right answer, in order.
    let mut clients = Vec::new();
    for process in ["client.0", "client.1"] {
        let lines = answers(&app, process, 3);
        let asked: Vec<(u64, u64)> = lines.iter().map(|l| checked_answer(l)).collect();
        let k = asked[0].0;
        let want: Vec<(u64, u64)> = (1..=asked.len() as u64)
            .map(|i| (k, 100 * (k + 1) + i))
            .collect();
        assert_eq!(
            asked, want,
            "{process}'s questions and answers:\n{lines:#?}"
        );
        clients.push(k);
    }
    clients.sort();
    assert_eq!(
        clients,
        [0, 1],
        "each client instance has its own reply queue"
    );

    // The page through the mapping: the web server's own hostname, pid namespace and link.
    let body = page();
    assert_eq!(field(&body, "hostname:"), "web_server", "{body}");
    assert_eq!(field(&body, "interfaces:"), "lo eth0", "{body}");
    let pids: Vec<u32> = body
        .lines()
        .skip_while(|l| !l.starts_with("processes:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(
        pids.contains(&1) && pids.len() < 20 && pids.iter().all(|&p| p < 100),
        "the web server sees more than its own pid namespace:\n{body}"
    );
    let host_pids = fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .count();
    assert!(
        pids.len() < host_pids,
        "{} of the host's {host_pids}",
        pids.len()
    );
    assert!(
        body.contains("open files: at most 1000"),
        "max_files not applied:\n{body}"
    );

    // The mapping counted that connection.
    let ports = ports(&app.name);
    let web = ports
        .iter()
        .find(|p| p["host_port"] == 18080)
        .unwrap_or_else(|| panic!("no mapping for 18080: {ports:#?}"));
    assert_eq!(web["process"], "web_server");
    assert!(web["connections"].as_u64() >= Some(1), "{web:#}");

    // The workers' cgroups carry their quota (0.1 CPU), the container its 0.5, and stats counts
    // each worker's CPU time.
    for w in WORKERS {
        assert_eq!(
            cpu_quota(&format!("{}/{w}", app.name)),
            "10000 100000",
            "{w}"
        );
    }
    assert_eq!(cpu_quota(&app.name), "50000 100000");
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = app.stats();
        let busy = WORKERS.iter().all(|w| {
            rows.iter()
                .any(|r| r["process"] == *w && r["cpu_ns"].as_u64() > Some(0))
        });
        if busy {
            break;
        }
        assert!(
            Instant::now() < end,
            "no worker CPU time in stats: {rows:#?}"
        );
        thread::sleep(Duration::from_millis(100));
    }

    app.down().assert_ok();
    assert_host_clean(&app.name, Path::new("/run/hydra"));
}
