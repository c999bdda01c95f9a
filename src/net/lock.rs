//! The network lock: one `flock` on `<state base>/net.lock` serialises subnet allocation, port
//! claims and changes to hydra's nftables table across every hydra process of the user.

use std::fs::File;
use std::os::fd::AsRawFd;

/// Held while it lives; released on drop (or when the process dies).
pub struct NetLock {
    _file: Option<File>,
}

impl NetLock {
    /// Takes the lock, waiting for it. Without a state directory to lock in, nothing is locked:
    /// the caller fails a moment later on the state directory itself, with a clearer error.
    pub fn take() -> NetLock {
        let base = crate::kernel::state::base_dir();
        let _ = std::fs::create_dir_all(&base);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(base.join("net.lock"))
            .ok();
        if let Some(f) = &file {
            // SAFETY: flock on an fd we own; EINTR just leaves it unlocked, which we retry.
            while unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0
                && nix::errno::Errno::last() == nix::errno::Errno::EINTR
            {}
        }
        NetLock { _file: file }
    }
}
