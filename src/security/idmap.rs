//! User-namespace id maps for rootless runs. The invoking user always becomes uid/gid 0 inside.
//! With subordinate ranges in /etc/subuid and /etc/subgid (what `useradd` gives a user), ids
//! 1..=count map onto that range through the setuid helpers newuidmap/newgidmap, as podman does,
//! so `--user` and files of other owners work; without them a single-id map is written directly.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use nix::unistd::{Gid, Pid, Uid};

/// Where ids 1.. go on the host: `start` for as many as `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u32,
    pub count: u32,
}

/// The rootless id mapping of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// Only 0 ↔ the invoking user.
    Single,
    /// 0 ↔ the user, 1..=count ↔ the subordinate ranges.
    Ranges { uids: Range, gids: Range },
}

impl Mapping {
    /// The highest uid (and gid) that exists inside.
    pub fn highest_id(self) -> u32 {
        match self {
            Mapping::Single => 0,
            Mapping::Ranges { uids, gids } => uids.count.min(gids.count),
        }
    }
}

/// The first `user:start:count` (or `uid:start:count`) line of a subid file for this user.
fn range_in(text: &str, user: &str, id: u32) -> Option<Range> {
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
        if owner != user && owner.parse::<u32>().ok() != Some(id) {
            return None;
        }
        let range = Range {
            start: start.parse().ok()?,
            count: count.parse().ok()?,
        };
        (range.count > 0).then_some(range)
    })
}

fn on_path(binary: &str) -> bool {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"]
        .iter()
        .any(|d| Path::new(d).join(binary).is_file())
}

/// The mapping the calling user gets: ranges when both subid files name it and the helpers are
/// installed, else a single id.
pub fn for_current_user() -> Mapping {
    let uid = Uid::effective();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default();
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let uids = range_in(&read("/etc/subuid"), &name, uid.as_raw());
    let gids = range_in(&read("/etc/subgid"), &name, uid.as_raw());
    match (uids, gids) {
        (Some(uids), Some(gids)) if on_path("newuidmap") && on_path("newgidmap") => {
            Mapping::Ranges { uids, gids }
        }
        _ => Mapping::Single,
    }
}

/// Writes the child's maps.
pub fn write(pid: Pid, mapping: Mapping) -> std::io::Result<()> {
    let (uid, gid) = (Uid::effective(), Gid::effective());
    match mapping {
        Mapping::Single => write_single_maps(pid, uid, gid),
        Mapping::Ranges { uids, gids } => {
            helper("newuidmap", pid, uid.as_raw(), uids)?;
            helper("newgidmap", pid, gid.as_raw(), gids)
        }
    }
}

fn helper(binary: &str, pid: Pid, own: u32, range: Range) -> std::io::Result<()> {
    let out = Command::new(binary)
        .args([pid.to_string(), "0".into(), own.to_string(), "1".into()])
        .args(["1".into(), range.start.to_string(), range.count.to_string()])
        .output()?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    Err(std::io::Error::other(format!("{binary}: {}", text.trim())))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subid_lines_match_by_name_or_uid() {
        let text = "alice:100000:65536\n1001:200000:1000\nbob:300000:0\n";
        assert_eq!(
            range_in(text, "alice", 1000),
            Some(Range {
                start: 100000,
                count: 65536
            })
        );
        assert_eq!(
            range_in(text, "carol", 1001),
            Some(Range {
                start: 200000,
                count: 1000
            })
        );
        assert_eq!(range_in(text, "bob", 7), None, "an empty range is no range");
        assert_eq!(range_in(text, "dave", 9), None);
    }
}
