//! `hydra ports NAME [--json]`: a container's port mappings with new connections, live
//! connections, and packets and bytes in both directions.

use anyhow::anyhow;
use clap::Args;

use crate::config::units::format_size;
use crate::kernel::state;
use crate::net::portstats::{self, PortStat};
use crate::net::redirect::SocketRedirect;
use crate::net::setup::{self, host_port_text};

#[derive(Debug, Args)]
pub struct PortsArgs {
    /// The container (a `hydra up` name or a `hydra run --name`).
    pub name: String,
    /// As JSON.
    #[arg(long)]
    pub json: bool,
}

fn table(stats: &[PortStat]) -> String {
    let mut out = format!(
        "{:<22} {:<16} {:<24} {:>6} {:>6} {:>18} {:>18}\n",
        "HOST", "PROCESS", "TARGET", "CONNS", "ACTIVE", "IN (PKTS/BYTES)", "OUT (PKTS/BYTES)"
    );
    for s in stats {
        let targets: Vec<String> = s
            .targets
            .iter()
            .map(|t| format!("{}:{}", t.address, s.port))
            .collect();
        out.push_str(&format!(
            "{:<22} {:<16} {:<24} {:>6} {:>6} {:>18} {:>18}\n",
            host_port_text(s.protocol, s.host_ip, s.host_port),
            s.process,
            targets.join(","),
            s.connections,
            s.active,
            format!("{} / {}", s.received.packets, format_size(s.received.bytes)),
            format!("{} / {}", s.sent.packets, format_size(s.sent.bytes)),
        ));
    }
    out
}

pub fn run(args: PortsArgs) -> anyhow::Result<i32> {
    crate::config::spec::check_name(&args.name)?;
    let dir = state::base_dir().join(&args.name);
    if !dir.is_dir() || !state::owner_alive(&dir) {
        return Err(anyhow!("no running container named {}", args.name));
    }
    let stats = match setup::load(&dir) {
        Some(net) => portstats::read(&net, &dir)?,
        None => Vec::new(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else if stats.is_empty() {
        println!("{} publishes no ports", args.name);
    } else {
        print!("{}", table(&stats));
        match SocketRedirect::state(&dir) {
            Some(Ok(())) => {
                println!("local TCP clients go straight to the processes (socket redirect)")
            }
            Some(Err(why)) => println!(
                "local TCP clients go through DNAT: the socket redirect is not linked: {why}"
            ),
            None => {}
        }
    }
    Ok(0)
}
