//! `hydra run`: one command as a virtual process.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;

use crate::config::spec::{check_hostname, check_name, parse_env};
use crate::config::units::{parse_cpus, parse_size};
use crate::config::{Limits, ProcessSpec, UserSpec, Volume};
use crate::net::ports::PortMapping;
use crate::net::NetMode;
use crate::process;
use crate::security::SecurityLevel;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Root filesystem directory (read-only lower layer).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "image",
        conflicts_with = "image"
    )]
    pub rootfs: Option<PathBuf>,
    /// A `.hcon` image: verified (and decrypted) whole into hydra's image cache before any of
    /// it is used, then the read-only lower layer like --rootfs.
    #[arg(long, value_name = "FILE.hcon")]
    pub image: Option<PathBuf>,
    /// The key file that opens an encrypted --image.
    #[arg(long, value_name = "KEY", requires = "image")]
    pub key: Option<PathBuf>,
    /// Name of the process (and its container); default run-XXXXXX.
    #[arg(long)]
    pub name: Option<String>,
    /// Network isolation: none (host network), partial (own link, reachable through -p only),
    /// complete (only lo; the default unless -p is given).
    #[arg(long, value_enum)]
    pub net: Option<NetMode>,
    /// Publish a port: [IP:]HOST:CONTAINER[/udp] (implies --net partial).
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "[IP:]HOST:CONTAINER[/udp]"
    )]
    pub publish: Vec<String>,
    /// Let a partial process open connections to the host and beyond.
    #[arg(long)]
    pub egress: bool,
    /// Memory limit (512M, 1G; binary units).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory: Option<u64>,
    /// CPU limit in CPUs (0.5 = half of one CPU).
    #[arg(long, value_name = "N", value_parser = parse_cpus)]
    pub cpus: Option<u64>,
    /// Maximum number of tasks.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub pids: Option<u64>,
    /// Maximum open files (RLIMIT_NOFILE).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_files: Option<u64>,
    /// Maximum size of a written file (RLIMIT_FSIZE).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_file_size: Option<u64>,
    /// Environment variable KEY=VALUE (or KEY to pass hydra's own value).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside (created if missing).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Hostname (default: the name).
    #[arg(long)]
    pub hostname: Option<String>,
    /// User: UID[:GID] or a name from the image's /etc/passwd.
    #[arg(long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Security level.
    #[arg(long, value_enum, default_value_t = SecurityLevel::Standard)]
    pub security_level: SecurityLevel,
    /// Bind mount SRC:DST[:ro].
    #[arg(long = "volume", short = 'v', value_name = "SRC:DST[:ro]")]
    pub volumes: Vec<String>,
    /// Read-only root filesystem.
    #[arg(long)]
    pub read_only: bool,
    /// Make the command pid 1 (no init in front of it).
    #[arg(long)]
    pub no_init: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn random_name() -> String {
    let mut bytes = [0u8; 3];
    // getrandom never fails for 3 bytes on Linux ≥ 3.17; fall back to the pid anyway.
    if nix::errno::Errno::result(unsafe {
        // SAFETY: bytes is a valid buffer of its length.
        libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0)
    })
    .is_err()
    {
        bytes = (std::process::id() as u32).to_le_bytes()[..3]
            .try_into()
            .unwrap_or([0; 3]);
    }
    format!("run-{:02x}{:02x}{:02x}", bytes[0], bytes[1], bytes[2])
}

impl RunArgs {
    /// The mode asked for; `-p` alone means `partial`.
    fn net_mode(&self, publishing: bool) -> anyhow::Result<NetMode> {
        let net = match self.net {
            Some(mode) => mode,
            None if publishing => NetMode::Partial,
            None => NetMode::default(),
        };
        if publishing && net != NetMode::Partial {
            return Err(anyhow!(
                "-p needs --net partial (the process has no link to map ports to in {} mode)",
                net.name()
            ));
        }
        if self.egress && net != NetMode::Partial {
            return Err(anyhow!("--egress needs --net partial"));
        }
        if self.egress && process::rootless() {
            return Err(anyhow!(
                "--egress needs root: a rootless partial process has no link of its own, only its port mappings"
            ));
        }
        Ok(net)
    }

    /// The process spec these flags describe.
    /// The lower layer: --rootfs, or --image once verified into the cache.
    fn root_dir(&self) -> anyhow::Result<PathBuf> {
        match (&self.rootfs, &self.image) {
            (Some(dir), _) => Ok(dir.clone()),
            (None, Some(image)) => crate::image::cache::prepare(image, self.key.as_deref(), None)
                .with_context(|| format!("image {}", image.display())),
            (None, None) => Err(anyhow!("--rootfs or --image is needed")),
        }
    }

    pub fn spec(&self) -> anyhow::Result<ProcessSpec> {
        let name = self.name.clone().unwrap_or_else(random_name);
        check_name(&name)?;
        let hostname = self.hostname.clone().unwrap_or_else(|| name.clone());
        check_hostname(&hostname)?;
        let ports = self
            .publish
            .iter()
            .map(|p| PortMapping::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        let net = self.net_mode(!ports.is_empty())?;
        let mut env = Vec::new();
        for item in &self.env {
            if let Some(pair) = parse_env(item)? {
                env.push(pair);
            }
        }
        let volumes = self
            .volumes
            .iter()
            .map(|v| Volume::parse(v))
            .collect::<Result<Vec<_>, _>>()?;
        let user = self.user.as_deref().map(UserSpec::parse).transpose()?;
        Ok(ProcessSpec {
            container: name.clone(),
            name,
            hostname,
            rootfs: self.root_dir()?,
            command: self.command.clone(),
            env,
            workdir: self.workdir.clone(),
            user,
            net,
            egress: self.egress,
            ports,
            security: self.security_level,
            read_only: self.read_only,
            init: !self.no_init,
            volumes,
            limits: Limits {
                memory: self.memory,
                cpu_millis: self.cpus,
                pids: self.pids,
                max_files: self.max_files,
                max_file_size: self.max_file_size,
            },
        })
    }
}

/// Runs the process; returns its exit code.
pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let spec = args.spec().context("error")?;
    let name = spec.name.clone();
    let mut warn = |w: &str| eprintln!("hydra: warning: {w}");
    let outcome = process::run(&spec, &mut warn).with_context(|| name.clone())?;
    for message in &outcome.messages {
        eprintln!("hydra: {name}: {message}");
    }
    Ok(outcome.code)
}
