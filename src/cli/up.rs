//! `hydra up`: runs the application a YAML file describes, in the foreground (output prefixed
//! with process names, Ctrl-C brings it down) or detached (`-d`).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;

use crate::config;
use crate::kernel::plan;
use crate::kernel::supervisor::{Echo, Supervisor};

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The application file.
    #[arg(short = 'f', long = "file", default_value = "hydra.yaml")]
    pub file: PathBuf,
    /// Run the supervisor in the background and return once every process started.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// The private key of an encrypted container.path image (instead of security.key).
    #[arg(long, value_name = "KEY")]
    pub key: Option<PathBuf>,
}

fn load(file: &std::path::Path, key: Option<PathBuf>) -> anyhow::Result<plan::Plan> {
    let mut app = config::load(file).map_err(|e| anyhow!("{e}"))?;
    if key.is_some() {
        app.security.key = key;
    }
    plan::plan(&app).map_err(|e| anyhow!("{e}"))
}

pub fn run(args: UpArgs) -> anyhow::Result<i32> {
    let plan = load(&args.file, args.key)?;
    // What crashed supervisors left behind goes first (their names may be this one).
    crate::kernel::gc::collect_all();
    if args.detach {
        return detach(plan);
    }
    let name = plan.container.clone();
    let mut supervisor = Supervisor::new(plan, Echo::Prefixed).context(name.clone())?;
    for w in supervisor.warnings() {
        eprintln!("hydra: warning: {w}");
    }
    supervisor.start_all().context(name.clone())?;
    supervisor.run().context(name)?;
    Ok(0)
}

/// Forks the supervisor into its own session; the parent waits on a pipe until every process
/// started (or the start failed) and reports that.
fn detach(plan: plan::Plan) -> anyhow::Result<i32> {
    let name = plan.container.clone();
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: hydra is single-threaded here; the child only runs hydra's own code.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            drop(read_end);
            let mut report = std::fs::File::from(write_end);
            let _ = nix::unistd::setsid();
            quiet_stdio();
            let started = Supervisor::new(plan, Echo::None).and_then(|mut s| {
                s.start_all()?;
                Ok(s)
            });
            match started {
                Ok(supervisor) => {
                    for w in supervisor.warnings() {
                        let _ = writeln!(report, "warning: {w}");
                    }
                    let _ = report.write_all(b"ok\n");
                    drop(report);
                    let code = i32::from(supervisor.run().is_err());
                    std::process::exit(code)
                }
                Err(e) => {
                    let _ = writeln!(report, "{e}");
                    std::process::exit(125)
                }
            }
        }
        nix::unistd::ForkResult::Parent { .. } => {
            drop(write_end);
            let mut answer = String::new();
            std::fs::File::from(read_end).read_to_string(&mut answer)?;
            let mut lines: Vec<&str> = answer.lines().collect();
            let last = lines.pop().unwrap_or("");
            for warning in lines {
                eprintln!("hydra: {warning}");
            }
            match last {
                "ok" => {
                    println!("{name}");
                    Ok(0)
                }
                "" => Err(anyhow!("{name}: the supervisor died while starting")),
                message => Err(anyhow!("{name}: {message}")),
            }
        }
    }
}

/// Points the detached supervisor's stdio at /dev/null (its processes write to their logs).
fn quiet_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 of an fd we own onto stdio.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}
