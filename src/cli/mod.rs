//! The command line: clap definitions and dispatch. Errors become one line on stderr and exit
//! code 125 (hydra's own failure), as `docker run` does.

pub mod exec;
pub mod gc;
pub mod info;
pub mod lifecycle;
pub mod logs;
pub mod ports;
pub mod run;
pub mod stats;
pub mod up;

use clap::{Parser, Subcommand};

/// hydra: isolated virtual processes, started in milliseconds.
#[derive(Debug, Parser)]
#[command(name = "hydra", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one command as an isolated virtual process.
    Run(Box<run::RunArgs>),
    /// Show what this host offers hydra.
    Info(info::InfoArgs),
    /// Run the application a YAML file describes.
    Up(up::UpArgs),
    /// List the processes of running containers.
    Ps(lifecycle::PsArgs),
    /// Show a container's (or one process's) output.
    Logs(logs::LogsArgs),
    /// CPU, memory, pids, OOM kills, restarts and block I/O of running containers.
    Stats(stats::StatsArgs),
    /// Run a command inside a running process (its namespaces, cgroup, user, security).
    Exec(exec::ExecArgs),
    /// A container's port mappings and their traffic.
    Ports(ports::PortsArgs),
    /// Stop a container's processes (or one) without restarting them.
    Stop(lifecycle::StopArgs),
    /// Stop a container and remove every kernel object it used.
    Down(lifecycle::DownArgs),
    /// Remove what crashed hydra processes left behind (cgroups, state).
    Gc(gc::GcArgs),
}

/// Exit code for hydra's own failures.
pub const EXIT_HYDRA_FAILED: i32 = 125;

/// Parses the arguments and runs the command; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Info(args) => info::run(args),
        Command::Up(args) => up::run(args),
        Command::Ps(args) => lifecycle::ps(args),
        Command::Logs(args) => logs::run(args),
        Command::Stats(args) => stats::run(args),
        Command::Exec(args) => exec::run(args),
        Command::Ports(args) => ports::run(args),
        Command::Stop(args) => lifecycle::stop(args),
        Command::Down(args) => lifecycle::down(args),
        Command::Gc(args) => gc::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hydra: {e:#}");
            EXIT_HYDRA_FAILED
        }
    }
}

/// `--help`/`--version` print as usual; a usage error is one line, exit 125.
fn usage_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            0
        }
        _ => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.trim_start_matches("error: ");
            eprintln!("hydra: error: {first}");
            EXIT_HYDRA_FAILED
        }
    }
}
