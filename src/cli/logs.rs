//! `hydra logs [-f] NAME[/PROC]`: a container's process output, from the bounded log files in
//! its state directory.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;

use crate::kernel::logs;
use crate::kernel::state::base_dir;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container goes away.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// NAME or NAME/PROCESS.
    pub target: String,
}

/// (process, log files) to show.
fn sources(dir: &std::path::Path, process: Option<&str>) -> Vec<(String, Vec<PathBuf>)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.strip_suffix(".log").map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .filter(|n| process.is_none_or(|p| p == n || n.starts_with(&format!("{p}."))))
        .map(|n| {
            let files = logs::files(dir, &n);
            (n, files)
        })
        .collect()
}

pub fn run(args: LogsArgs) -> anyhow::Result<i32> {
    let (name, process) = match args.target.split_once('/') {
        Some((c, p)) => (c, Some(p)),
        None => (args.target.as_str(), None),
    };
    let container = base_dir().join(name);
    let dir = container.join("logs");
    if !dir.is_dir() {
        return Err(anyhow!(
            "no container named '{name}' (its logs go with it at down)"
        ));
    }
    let shown = sources(&dir, process);
    if shown.is_empty() {
        return Err(anyhow!(
            "{name}: no process named '{}'",
            process.unwrap_or("")
        ));
    }
    let prefix = shown.len() > 1;
    let mut out = std::io::stdout().lock();
    let mut offsets = Vec::new();
    for (proc_name, files) in &shown {
        let mut end = 0;
        for file in files {
            let text = std::fs::read(file).unwrap_or_default();
            print_lines(&mut out, prefix.then_some(proc_name.as_str()), &text)?;
            end = text.len() as u64;
        }
        offsets.push((proc_name.clone(), dir.join(format!("{proc_name}.log")), end));
    }
    out.flush()?;
    while args.follow && container.exists() {
        std::thread::sleep(Duration::from_millis(200));
        for (proc_name, path, offset) in &mut offsets {
            let Ok(mut file) = std::fs::File::open(&*path) else {
                continue;
            };
            let len = file.metadata().map_or(0, |m| m.len());
            if len < *offset {
                *offset = 0; // rotated
            }
            file.seek(SeekFrom::Start(*offset))?;
            let mut text = Vec::new();
            file.read_to_end(&mut text)?;
            *offset += text.len() as u64;
            print_lines(&mut out, prefix.then_some(proc_name.as_str()), &text)?;
        }
        out.flush()?;
    }
    Ok(0)
}

fn print_lines(out: &mut impl Write, prefix: Option<&str>, text: &[u8]) -> std::io::Result<()> {
    match prefix {
        None => out.write_all(text),
        Some(p) => {
            for line in text.split_inclusive(|&b| b == b'\n') {
                write!(out, "{p} | ")?;
                out.write_all(line)?;
            }
            Ok(())
        }
    }
}
