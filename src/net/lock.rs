//! The network lock: one `flock` on the state base directory itself (`/run/hydra`, or the
//! user's) serialises subnet allocation, port claims and changes to hydra's nftables table
//! across every hydra process of the user. Locking the directory rather than a lock file inside
//! it leaves nothing behind (a lock file could not be removed safely: a waiter may hold it).

use std::fs::File;
use std::os::fd::AsRawFd;

/// Held while it lives; released on drop (or when the process dies).
pub struct NetLock {
    _dir: Option<File>,
}

impl NetLock {
    /// Takes the lock, waiting for it. Without a state directory to lock, nothing is locked:
    /// the caller fails a moment later on the state directory itself, with a clearer error.
    pub fn take() -> NetLock {
        let base = crate::kernel::state::base_dir();
        let _ = std::fs::create_dir_all(&base);
        let dir = File::open(&base).ok();
        if let Some(d) = &dir {
            // SAFETY: flock on an fd we own; EINTR just leaves it unlocked, which we retry.
            while unsafe { libc::flock(d.as_raw_fd(), libc::LOCK_EX) } != 0
                && nix::errno::Errno::last() == nix::errno::Errno::EINTR
            {}
        }
        NetLock { _dir: dir }
    }
}
