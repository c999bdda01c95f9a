//! `hydra info`: what this host offers hydra.

use std::path::Path;

use clap::Args;
use serde::Serialize;

use crate::cgroups::mode;
use crate::security::landlock;

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct Info {
    pub version: &'static str,
    pub kernel: String,
    pub cgroup_mode: mode::CgroupMode,
    pub namespaces: std::collections::BTreeMap<&'static str, bool>,
    pub user_namespaces: bool,
    pub seccomp: bool,
    pub landlock_abi: u32,
    pub overlayfs: bool,
    pub nft: bool,
    pub newuidmap: bool,
    pub rootless: bool,
    pub state_dir: String,
}

const NAMESPACES: [&str; 8] = ["mnt", "pid", "net", "ipc", "uts", "cgroup", "user", "time"];

fn on_path(binary: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    path.split(':')
        .any(|dir| Path::new(dir).join(binary).is_file())
}

fn seccomp_available() -> bool {
    // PR_GET_SECCOMP answers 0/1/2 where the kernel has seccomp, EINVAL where it has not.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 }
}

pub fn collect() -> Info {
    let uname = nix::sys::utsname::uname().ok();
    let kernel = uname.map_or_else(String::new, |u| u.release().to_string_lossy().into_owned());
    let namespaces = NAMESPACES
        .iter()
        .map(|ns| (*ns, Path::new("/proc/self/ns").join(ns).exists()))
        .collect();
    let max_userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    Info {
        version: env!("CARGO_PKG_VERSION"),
        kernel,
        cgroup_mode: mode::detect(),
        namespaces,
        user_namespaces: max_userns > 0,
        seccomp: seccomp_available(),
        landlock_abi: landlock::abi_version(),
        overlayfs: filesystems
            .lines()
            .any(|l| l.trim_end().ends_with("overlay")),
        nft: on_path("nft"),
        newuidmap: on_path("newuidmap"),
        rootless: crate::process::rootless(),
        state_dir: crate::kernel::state::base_dir().display().to_string(),
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

pub fn run(args: InfoArgs) -> anyhow::Result<i32> {
    let info = collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(0);
    }
    let namespaces: Vec<&str> = info
        .namespaces
        .iter()
        .filter(|(_, on)| **on)
        .map(|(n, _)| *n)
        .collect();
    println!("hydra {}", info.version);
    println!("kernel:          {}", info.kernel);
    println!("cgroups:         {}", info.cgroup_mode.name());
    println!("namespaces:      {}", namespaces.join(" "));
    println!("user namespaces: {}", yes(info.user_namespaces));
    println!("seccomp:         {}", yes(info.seccomp));
    println!(
        "landlock:        {}",
        if info.landlock_abi > 0 {
            format!("ABI {}", info.landlock_abi)
        } else {
            "no".into()
        }
    );
    println!("overlayfs:       {}", yes(info.overlayfs));
    println!("nft:             {}", yes(info.nft));
    println!("newuidmap:       {}", yes(info.newuidmap));
    println!("rootless:        {}", yes(info.rootless));
    println!("state:           {}", info.state_dir);
    Ok(0)
}
