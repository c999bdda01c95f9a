//! User-namespace id maps for rootless runs: the invoking user becomes uid 0 inside (a single-id
//! map an unprivileged process may write for its own child).

use std::io::Write;

use nix::unistd::{Gid, Pid, Uid};

/// Writes `/proc/PID/{uid_map,setgroups,gid_map}`. setgroups is denied first, as the kernel
/// requires for an unprivileged gid map (and so dropping groups cannot gain access,
/// CVE-2014-8989).
pub fn write_single_maps(pid: Pid, uid: Uid, gid: Gid) -> std::io::Result<()> {
    let write = |file: &str, text: String| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{pid}/{file}"))?;
        f.write_all(text.as_bytes())
    };
    write("uid_map", format!("0 {uid} 1\n"))?;
    write("setgroups", "deny\n".to_string())?;
    write("gid_map", format!("0 {gid} 1\n"))
}
