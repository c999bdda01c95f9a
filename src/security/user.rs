//! The identity a process runs as: resolved against the image's /etc/passwd and /etc/group
//! (read inside the rootfs, never following a link out of it), applied in the child.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use thiserror::Error;

use crate::config::UserSpec;
use crate::fs::syscalls::openat2;

#[derive(Debug, Error)]
pub enum UserError {
    #[error("user '{0}' not found in the image's /etc/passwd")]
    UnknownUser(String),
    #[error("group '{0}' not found in the image's /etc/group")]
    UnknownGroup(String),
    #[error("user {0} does not exist inside: rootless hydra maps ids 0..={1} (add subordinate ids to /etc/subuid and /etc/subgid for more)")]
    Unmapped(String, u32),
}

/// Who the process is.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (set only where setgroups is allowed).
    pub groups: Vec<libc::gid_t>,
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

fn read_in_root(rootfs: &Path, rel: &std::ffi::CStr) -> String {
    let Ok(dir) = std::fs::File::open(rootfs) else {
        return String::new();
    };
    use std::os::fd::AsRawFd;
    let flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
    let resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    let Ok(fd) = openat2(dir.as_raw_fd(), rel, flags, resolve) else {
        return String::new();
    };
    // SAFETY: openat2 returned a new fd we now own.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut text = String::new();
    // An image may lack or garble these files; ids then stay numeric.
    let _ = file.take(1 << 20).read_to_string(&mut text);
    text
}

fn passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

/// (name, gid, members) of each /etc/group line.
fn groups(text: &str) -> Vec<(String, u32, Vec<String>)> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            let members = f[3]
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            Some((f[0].to_string(), f[2].parse().ok()?, members))
        })
        .collect()
}

/// Resolves the spec (default: root) against the image. `highest_id` is the largest id that
/// exists inside a rootless user namespace (`None` as root: every id does).
pub fn resolve(
    rootfs: &Path,
    spec: Option<&UserSpec>,
    highest_id: Option<u32>,
) -> Result<Identity, UserError> {
    let users = passwd(&read_in_root(rootfs, c"etc/passwd"));
    let group_list = groups(&read_in_root(rootfs, c"etc/group"));
    let (uid, explicit_gid, entry) = match spec {
        None => (0, None, users.iter().find(|u| u.uid == 0)),
        Some(UserSpec::Ids { uid, gid }) => {
            let gid = gid.map(|g| g.to_string());
            (*uid, gid, users.iter().find(|u| u.uid == *uid))
        }
        Some(UserSpec::Name { user, group }) => {
            let entry = users
                .iter()
                .find(|u| &u.name == user)
                .ok_or_else(|| UserError::UnknownUser(user.clone()))?;
            (entry.uid, group.clone(), Some(entry))
        }
    };
    let gid = match explicit_gid {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_list
                .iter()
                .find(|(name, _, _)| *name == g)
                .map(|(_, gid, _)| *gid)
                .ok_or(UserError::UnknownGroup(g))?,
        },
        None => entry.map_or(uid, |e| e.gid),
    };
    let mapped = |id: u32| highest_id.is_none_or(|h| id <= h);
    if !mapped(uid) || !mapped(gid) {
        return Err(UserError::Unmapped(
            format!("{uid}:{gid}"),
            highest_id.unwrap_or(0),
        ));
    }
    let mut supplementary = vec![gid];
    if let Some(e) = entry {
        for (_, g, members) in &group_list {
            if members.contains(&e.name) && !supplementary.contains(g) && mapped(*g) {
                supplementary.push(*g);
            }
        }
    }
    let home = entry.map_or_else(|| "/".to_string(), |e| e.home.clone());
    Ok(Identity {
        uid,
        gid,
        groups: supplementary,
        home,
    })
}

impl Identity {
    /// Switches the calling process to this identity. Supplementary groups are set only where
    /// the kernel allows it (not in a rootless user namespace, where setgroups is denied).
    ///
    /// Raw system calls, not libc's wrappers: those broadcast the change to every thread libc
    /// believes the process has, and a child cloned from a multithreaded hydra (a supervisor
    /// with forwarder threads) still believes in its parent's threads, so they would wait
    /// forever.
    pub fn apply(&self, set_groups: bool) -> Result<(), (crate::process::stage::Stage, Errno)> {
        use crate::process::stage::Stage;
        if set_groups {
            // SAFETY: the groups vector was prepared before clone and is only read.
            let ret = unsafe {
                libc::syscall(libc::SYS_setgroups, self.groups.len(), self.groups.as_ptr())
            };
            if ret < 0 {
                return Err((Stage::Groups, Errno::last()));
            }
        }
        // SAFETY: integer arguments only.
        if unsafe { libc::syscall(libc::SYS_setresgid, self.gid, self.gid, self.gid) } < 0 {
            return Err((Stage::SetGid, Errno::last()));
        }
        // SAFETY: integer arguments only.
        if unsafe { libc::syscall(libc::SYS_setresuid, self.uid, self.uid, self.uid) } < 0 {
            return Err((Stage::SetUid, Errno::last()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempdir::Dir {
        tempdir::Dir::new(
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
            "root:x:0:\napp:x:1000:\nwheel:x:10:app\n",
        )
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new(passwd: &str, group: &str) -> Self {
                let n = std::sync::atomic::AtomicU32::new(0);
                let path = std::env::temp_dir().join(format!(
                    "hydra-user-test-{}-{}",
                    std::process::id(),
                    n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                ));
                std::fs::create_dir_all(path.join("etc")).unwrap();
                std::fs::write(path.join("etc/passwd"), passwd).unwrap();
                std::fs::write(path.join("etc/group"), group).unwrap();
                Dir(path)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn resolves_names_ids_and_groups() {
        let dir = rootfs();
        let app = resolve(&dir.0, Some(&UserSpec::parse("app").unwrap()), None).unwrap();
        assert_eq!(
            (app.uid, app.gid, app.home.as_str()),
            (1000, 1000, "/home/app")
        );
        assert_eq!(app.groups, vec![1000, 10]);
        let ids = resolve(&dir.0, Some(&UserSpec::parse("1000:10").unwrap()), None).unwrap();
        assert_eq!((ids.uid, ids.gid), (1000, 10));
        let unknown = resolve(&dir.0, Some(&UserSpec::parse("4242").unwrap()), None).unwrap();
        assert_eq!(
            (unknown.uid, unknown.gid, unknown.home.as_str()),
            (4242, 4242, "/")
        );
        let root = resolve(&dir.0, None, None).unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        assert!(resolve(&dir.0, Some(&UserSpec::parse("nobody").unwrap()), None).is_err());
        assert!(resolve(&dir.0, Some(&UserSpec::parse("app:nogroup").unwrap()), None).is_err());
        assert!(matches!(
            resolve(&dir.0, Some(&UserSpec::parse("app").unwrap()), Some(0)),
            Err(UserError::Unmapped(..))
        ));
        // With subordinate ranges, 1000 exists inside; groups beyond the range are left out.
        let mapped = resolve(&dir.0, Some(&UserSpec::parse("app").unwrap()), Some(65536)).unwrap();
        assert_eq!((mapped.uid, mapped.groups.clone()), (1000, vec![1000, 10]));
        let narrow = resolve(
            &dir.0,
            Some(&UserSpec::parse("app:10").unwrap()),
            Some(1000),
        )
        .unwrap();
        assert_eq!(narrow.groups, vec![10]);
    }
}
