//! `hydra exec NAME/PROC -- CMD`: run a command inside a running virtual process.

use anyhow::anyhow;
use clap::Args;

use crate::kernel::control::{self, Request};
use crate::kernel::state::base_dir;
use crate::process::join;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// NAME/PROCESS.
    pub target: String,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn run(args: ExecArgs) -> anyhow::Result<i32> {
    let Some((name, process)) = args.target.split_once('/') else {
        return Err(anyhow!(
            "error: exec needs NAME/PROCESS, got '{}'",
            args.target
        ));
    };
    let dir = base_dir().join(name);
    let request = Request::Inspect {
        process: process.to_string(),
    };
    let reply = control::request(name, &dir, &request)?;
    let info = reply
        .exec
        .ok_or_else(|| anyhow!("{name}: no exec information for {process}"))?;
    join::exec(&info, &args.command).map_err(|e| anyhow!("{name}/{process}: {e}"))
}
