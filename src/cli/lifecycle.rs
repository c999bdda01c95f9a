//! `hydra ps`, `hydra stop`, `hydra down`: ask running supervisors through their control
//! sockets.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::Args;

use crate::kernel::control::{self, ProcessStatus, Request};
use crate::kernel::supervisor::GRACE;

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// NAME or NAME/PROCESS (a process name, or a `count` group such as `worker`).
    pub target: String,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// The container; default: the one `hydra.yaml` (or `-f FILE`) describes.
    pub name: Option<String>,
    #[arg(short = 'f', long = "file", default_value = "hydra.yaml")]
    pub file: PathBuf,
}

fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once('/') {
        Some((c, p)) => (c, Some(p)),
        None => (target, None),
    }
}

fn uptime(secs: Option<u64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 60 => format!("{s}s"),
        Some(s) if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        Some(s) => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

pub fn ps(args: PsArgs) -> anyhow::Result<i32> {
    let mut all: Vec<ProcessStatus> = Vec::new();
    for (name, dir) in control::running_containers() {
        // A supervisor that went away between listing and asking is simply not shown.
        if let Ok(reply) = control::request(&name, &dir, &Request::Ps) {
            all.extend(reply.processes);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(0);
    }
    println!(
        "{:<20} {:<20} {:>8} {:<12} {:>8} {:<8} {:>8}",
        "CONTAINER", "PROCESS", "PID", "STATE", "RESTARTS", "HEALTH", "UPTIME"
    );
    for p in all {
        let pid = p.pid.map_or_else(|| "-".to_string(), |p| p.to_string());
        println!(
            "{:<20} {:<20} {:>8} {:<12} {:>8} {:<8} {:>8}",
            p.container,
            p.process,
            pid,
            p.state,
            p.restarts,
            p.health,
            uptime(p.uptime_secs)
        );
    }
    Ok(0)
}

pub fn stop(args: StopArgs) -> anyhow::Result<i32> {
    let (name, process) = split_target(&args.target);
    let dir = control::container_dir(name)?;
    let request = Request::Stop {
        process: process.map(str::to_string),
    };
    control::request(name, &dir, &request)?;
    Ok(0)
}

fn wait_gone(dir: &Path, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if !dir.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !dir.exists()
}

pub fn down(args: DownArgs) -> anyhow::Result<i32> {
    let name = match args.name {
        Some(n) => n,
        None => {
            crate::config::load(&args.file)
                .map_err(|e| anyhow!("{e}"))?
                .container
                .name
        }
    };
    let dir = control::container_dir(&name)?;
    control::request(&name, &dir, &Request::Down)?;
    if !wait_gone(&dir, GRACE + Duration::from_secs(10)) {
        return Err(anyhow!(
            "{name}: still being torn down after {}s",
            GRACE.as_secs() + 10
        ));
    }
    println!("{name}: down");
    Ok(0)
}
