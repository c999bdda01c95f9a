//! `hydra stats`: CPU, memory, its limit, pids, OOM kills and restarts per process and per
//! container, read from the cgroups of a running `hydra up` container.

mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// A busy loop, a process holding 40 MiB, one killed by its 32 MiB limit (not restarted) and,
/// through the busy one, a container that stays up to be read.
const LOAD: &str = "\
resources: {max_memory: 1GB}
processes:
  - {name: busy, command: sh -c 'while :; do :; done'}
  - {name: holder, command: hydra-probe alloc 40 hold}
  - {name: oomer, command: hydra-probe alloc 100, limits: {memory: 32MB}, restart: no}
";

fn row<'a>(rows: &'a [Value], process: Option<&str>) -> &'a Value {
    rows.iter()
        .find(|r| match process {
            Some(p) => r["process"] == p,
            None => r["process"].is_null(),
        })
        .unwrap_or_else(|| panic!("no row for {process:?}: {rows:#?}"))
}

fn num(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a count: {v}"))
}

#[test]
fn stats_show_cpu_memory_limits_and_oom_kills_per_process_and_container() {
    let app = App::new("stats", LOAD);
    app.up_detached();
    app.wait_for("oomer killed by its limit", |ps| {
        ps.iter()
            .any(|p| p["process"] == "oomer" && p["exit_code"] == 137)
    });
    // The holder needs a moment to touch its 40 MiB: poll (bounded) until every figure shows.
    let end = Instant::now() + Duration::from_secs(15);
    let rows = loop {
        let rows = app.stats();
        let cpu = row(&rows, Some("busy"))["cpu_percent"]
            .as_f64()
            .unwrap_or(0.0);
        let held = num(row(&rows, Some("holder")), "memory_bytes");
        let ooms = num(row(&rows, Some("oomer")), "oom_kills");
        if cpu > 0.0 && held > 30 * MIB && ooms >= 1 {
            break rows;
        }
        assert!(
            Instant::now() < end,
            "stats never showed the load: {rows:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        rows.len(),
        4,
        "one container row and three processes: {rows:#?}"
    );
    for r in &rows {
        assert_eq!(r["container"], app.name.as_str(), "{r}");
        assert_eq!(r["restarts"], 0, "{r}");
        for field in ["pids", "oom_kills", "io_read_bytes", "io_write_bytes"] {
            num(r, field);
        }
    }
    // Limits: the oomer's own, the container's for the others and the container itself.
    let gib = Value::from(1u64 << 30);
    assert_eq!(row(&rows, Some("oomer"))["memory_limit_bytes"], 32 * MIB);
    assert_eq!(row(&rows, Some("holder"))["memory_limit_bytes"], gib);
    assert_eq!(row(&rows, None)["memory_limit_bytes"], gib);
    // The container's row covers its processes.
    let container = row(&rows, None);
    let holder = row(&rows, Some("holder"));
    assert!(
        num(container, "memory_bytes") >= num(holder, "memory_bytes"),
        "{rows:#?}"
    );
    assert!(num(container, "oom_kills") >= 1, "{rows:#?}");
    assert!(
        container["cpu_percent"].as_f64().unwrap_or(0.0) > 0.0,
        "{rows:#?}"
    );
    // busy: sh and its init; holder: the probe and its init; oomer: gone.
    assert!(num(container, "pids") >= 4, "{rows:#?}");
    assert_eq!(num(row(&rows, Some("oomer")), "pids"), 0, "{rows:#?}");

    // The table: one line per row, human units.
    let table = Hydra::bare()
        .args(["stats", "--no-stream", &app.name])
        .output();
    table.assert_ok();
    let lines = table.lines();
    assert!(lines[0].starts_with("CONTAINER"), "{table}");
    assert_eq!(lines.len(), 5, "{table}");
    table.assert_stdout_contains("(container)");
    table.assert_stdout_contains("/ 32 MiB");
    table.assert_stdout_contains("/ 1 GiB");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("holder") && l.contains("MiB /")),
        "{table}"
    );

    // Without a name: every running container, this one among them.
    let all = Hydra::bare()
        .args(["stats", "--no-stream", "--json"])
        .output();
    all.assert_ok();
    let all: Vec<Value> = serde_json::from_str(&all.stdout).expect("stats --json");
    assert_eq!(
        all.iter()
            .filter(|r| r["container"] == app.name.as_str())
            .count(),
        4
    );

    app.down().assert_ok();
}

#[test]
fn live_stats_refresh_until_the_container_goes_down() {
    let app = App::new(
        "stats-live",
        "processes:\n  - {name: s, command: sleep 1000}\n",
    );
    app.up_detached();
    let live = Hydra::bare().args(["stats", &app.name]).spawn();
    // Two frames: each starts by clearing the screen.
    let end = Instant::now() + Duration::from_secs(15);
    while live.stdout_so_far().matches("\x1b[2J").count() < 2 {
        assert!(
            Instant::now() < end,
            "no second frame: {:?}",
            live.stdout_so_far()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(live.stdout_so_far().contains(&app.name));
    app.down().assert_ok();
    live.wait().assert_ok();
}

#[test]
fn stats_of_a_container_that_does_not_run_is_an_error() {
    require_root();
    let name = unique_name("stats-none");
    let out = Hydra::bare().args(["stats", "--no-stream", &name]).output();
    out.assert_code(125);
    assert!(
        out.one_stderr_line().contains("no running container"),
        "{out}"
    );
}
