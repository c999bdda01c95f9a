//! `hydra stats [NAME] [--no-stream] [--json]`: CPU, memory, pids, OOM kills, restarts and block
//! I/O per process and per container, read from the cgroups, like `docker stats`. A container
//! with IPC channels also gets their counters (a second table; `ipc` in its JSON row).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use super::ipc::{self, ChannelRow};
use crate::cgroups::stats::{self, Sample};
use crate::config::units::format_size;
use crate::kernel::control::{self, Request};

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// One container; default: every running one.
    pub name: Option<String>,
    /// Print one reading and exit.
    #[arg(long)]
    pub no_stream: bool,
    /// One reading as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A row: a container (process `None`) or one of its processes, and where its counters are.
struct Target {
    container: String,
    process: Option<String>,
    restarts: u32,
    dirs: Vec<PathBuf>,
    /// The processes whose network counters make up the row.
    pids: Vec<i32>,
    /// The container's state directory (container rows only): where its channels are found.
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Row {
    container: String,
    process: Option<String>,
    cpu_percent: f64,
    /// CPU time used since the cgroup was made (all its tasks, user and system).
    cpu_ns: u64,
    memory_bytes: u64,
    memory_limit_bytes: Option<u64>,
    pids: u64,
    oom_kills: u64,
    restarts: u32,
    io_read_bytes: u64,
    io_write_bytes: u64,
    /// Bytes received and sent on the process's own interfaces (`None`: host network).
    net_rx_bytes: Option<u64>,
    net_tx_bytes: Option<u64>,
    /// The container's IPC queues (container rows of containers that declare any).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ipc: Vec<ChannelRow>,
}

fn containers(name: Option<&str>) -> anyhow::Result<Vec<(String, PathBuf)>> {
    match name {
        Some(n) => Ok(vec![(n.to_string(), control::container_dir(n)?)]),
        None => Ok(control::running_containers()),
    }
}

fn targets(name: Option<&str>) -> anyhow::Result<Vec<Target>> {
    let mut all = Vec::new();
    for (container, dir) in containers(name)? {
        // A supervisor that went away between listing and asking is simply not shown, unless
        // it is the one asked for.
        let reply = match control::request(&container, &dir, &Request::Ps) {
            Ok(reply) => reply,
            Err(e) if name.is_some() => return Err(e.into()),
            Err(_) => continue,
        };
        // The container's cgroup is the parent of each process's, in every hierarchy.
        let mut parents: Vec<PathBuf> = Vec::new();
        for p in &reply.processes {
            for d in p.cgroups.iter().filter_map(|d| d.parent()) {
                if !parents.iter().any(|x| x == d) {
                    parents.push(d.to_path_buf());
                }
            }
        }
        all.push(Target {
            container: container.clone(),
            process: None,
            restarts: reply.processes.iter().map(|p| p.restarts).sum(),
            dirs: parents,
            pids: reply.processes.iter().filter_map(|p| p.pid).collect(),
            state_dir: Some(dir.clone()),
        });
        all.extend(reply.processes.into_iter().map(|p| Target {
            container: container.clone(),
            process: Some(p.process),
            restarts: p.restarts,
            dirs: p.cgroups,
            pids: p.pid.into_iter().collect(),
            state_dir: None,
        }));
    }
    Ok(all)
}

/// Two readings `gap` apart give CPU %.
fn rows(targets: &[Target], before: &[Sample], gap: Duration) -> Vec<Row> {
    targets
        .iter()
        .zip(before)
        .map(|(t, b)| {
            let now = stats::read(&t.dirs);
            let cpu = now.cpu_ns.saturating_sub(b.cpu_ns) as f64;
            let traffic: Vec<(u64, u64)> = t
                .pids
                .iter()
                .filter_map(|&pid| crate::net::traffic::of_pid(pid))
                .collect();
            let (rx, tx) = traffic.iter().fold((0, 0), |(r, s), (a, b)| (r + a, s + b));
            let own_net = !traffic.is_empty();
            Row {
                container: t.container.clone(),
                process: t.process.clone(),
                cpu_percent: (cpu / gap.as_nanos().max(1) as f64 * 1000.0).round() / 10.0,
                cpu_ns: now.cpu_ns,
                memory_bytes: now.memory_bytes,
                memory_limit_bytes: now.memory_limit,
                pids: now.pids,
                oom_kills: now.oom_kills,
                restarts: t.restarts,
                io_read_bytes: now.io_read_bytes,
                io_write_bytes: now.io_write_bytes,
                net_rx_bytes: own_net.then_some(rx),
                net_tx_bytes: own_net.then_some(tx),
                // Counters that cannot be read (the supervisor just went) are not shown; `hydra
                // ipc stats NAME` says why.
                ipc: t
                    .state_dir
                    .as_deref()
                    .and_then(|d| ipc::container_channels(d).ok())
                    .unwrap_or_default(),
            }
        })
        .collect()
}

fn sample(targets: &[Target], gap: Duration) -> Vec<Row> {
    let before: Vec<Sample> = targets.iter().map(|t| stats::read(&t.dirs)).collect();
    let start = Instant::now();
    std::thread::sleep(gap);
    rows(targets, &before, start.elapsed())
}

fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<20} {:<16} {:>7} {:>22} {:>6} {:>4} {:>8} {:>21} {:>21}\n",
        "CONTAINER",
        "PROCESS",
        "CPU %",
        "MEM USAGE / LIMIT",
        "PIDS",
        "OOM",
        "RESTARTS",
        "BLOCK I/O",
        "NET I/O"
    );
    for r in rows {
        let limit = r
            .memory_limit_bytes
            .map_or_else(|| "no limit".to_string(), format_size);
        out.push_str(&format!(
            "{:<20} {:<16} {:>6.1}% {:>22} {:>6} {:>4} {:>8} {:>21} {:>21}\n",
            r.container,
            r.process.as_deref().unwrap_or("(container)"),
            r.cpu_percent,
            format!("{} / {limit}", format_size(r.memory_bytes)),
            r.pids,
            r.oom_kills,
            r.restarts,
            format!(
                "{} / {}",
                format_size(r.io_read_bytes),
                format_size(r.io_write_bytes)
            ),
            match (r.net_rx_bytes, r.net_tx_bytes) {
                (Some(rx), Some(tx)) => format!("{} / {}", format_size(rx), format_size(tx)),
                _ => "host".to_string(),
            },
        ));
    }
    let channels: Vec<(Option<&str>, &ChannelRow)> = rows
        .iter()
        .flat_map(|r| r.ipc.iter().map(|c| (Some(r.container.as_str()), c)))
        .collect();
    if !channels.is_empty() {
        out.push('\n');
        out.push_str(&ipc::table(&channels));
    }
    out
}

pub fn run(args: StatsArgs) -> anyhow::Result<i32> {
    if args.json || args.no_stream {
        let rows = sample(&targets(args.name.as_deref())?, Duration::from_millis(500));
        if args.json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else {
            print!("{}", table(&rows));
        }
        return Ok(0);
    }
    // Live: a fresh reading every second until Ctrl-C or until nothing runs any more (the
    // container asked for went down).
    let mut current = targets(args.name.as_deref())?;
    while !current.is_empty() {
        let rows = sample(&current, Duration::from_secs(1));
        // A reader that goes away (`hydra stats | head`) ends it: SIGPIPE (see cli::main).
        let mut out = std::io::stdout().lock();
        write!(out, "\x1b[2J\x1b[H{}", table(&rows)).and_then(|()| out.flush())?;
        drop(out);
        current = targets(args.name.as_deref()).unwrap_or_default();
    }
    Ok(0)
}
