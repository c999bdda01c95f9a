//! The command line: clap definitions and dispatch. Errors become one line on stderr and exit
//! code 125 (hydra's own failure), as `docker run` does.

pub mod exec;
pub mod gc;
pub mod image;
pub mod info;
pub mod ipc;
pub mod keygen;
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
    /// Messages on the channels the YAML declares: send, recv, request, serve (inside a
    /// process); a container's channel counters (stats, on the host).
    Ipc(ipc::IpcArgs),
    /// Pack, unpack or inspect .hcon images.
    Image(image::ImageArgs),
    /// Make a key pair for encrypted images (X25519 + ML-KEM-768).
    Keygen(keygen::KeygenArgs),
}

/// Exit code for hydra's own failures.
pub const EXIT_HYDRA_FAILED: i32 = 125;

/// Parses the arguments and runs the command; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    if cli.command.only_reports() {
        // A reader that goes away (`hydra ps | head`) ends a report quietly, as with any Unix
        // tool, instead of making println! panic. Commands that supervise keep SIGPIPE ignored.
        // SAFETY: resetting one signal's disposition to its default.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
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
        Command::Ipc(args) => ipc::run(args),
        Command::Image(args) => image::run(args),
        Command::Keygen(args) => keygen::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hydra: {}", one_line(&e));
            EXIT_HYDRA_FAILED
        }
    }
}

impl Command {
    /// Commands that only print what they read (no process of theirs to look after).
    fn only_reports(&self) -> bool {
        matches!(
            self,
            Command::Info(_)
                | Command::Ps(_)
                | Command::Logs(_)
                | Command::Ports(_)
                | Command::Stats(_)
        )
    }
}

/// An error and its causes on one line, leaving out a cause whose text the line already holds
/// (many errors carry their source in their own message too).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
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

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("opening the queue: {0}")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let e = anyhow::Error::new(Outer(std::io::Error::other("bad magic"))).context("up");
        assert_eq!(super::one_line(&e), "up: opening the queue: bad magic");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::one_line(&plain), "outer: inner");
    }
}
