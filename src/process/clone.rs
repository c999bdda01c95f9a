//! clone3(2) without CLONE_VM: fork semantics (the child gets a copy of the address space and
//! returns from the call), plus new namespaces, a pidfd and, on cgroup v2, birth inside the
//! process's cgroup.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::unistd::Pid;

/// clone3's CLONE_INTO_CGROUP (the libc crate's constant is an overflowing c_int).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The parent's view of the new child.
#[derive(Debug)]
pub struct Child {
    pub pid: Pid,
    pub pidfd: OwnedFd,
}

/// Which side of the clone this is.
pub enum Side {
    Parent(Child),
    Child,
}

/// Clones the calling process with `flags` (CLONE_NEW*), into the cgroup `cgroup_fd` if given.
///
/// # Safety
/// The child must only call async-signal-safe code (no allocation, no locks) until it execs or
/// exits with `_exit`.
pub unsafe fn clone3(flags: u64, cgroup_fd: Option<RawFd>) -> Result<Side, Errno> {
    let mut pidfd: RawFd = -1;
    // SAFETY: clone_args is plain data; zero is valid for every field.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = flags | libc::CLONE_PIDFD as u64;
    args.pidfd = &mut pidfd as *mut RawFd as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: args is a valid clone_args of the size passed; without CLONE_VM the child runs on
    // its own copy of this stack.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match ret {
        r if r < 0 => Err(Errno::last()),
        0 => Ok(Side::Child),
        pid => Ok(Side::Parent(Child {
            pid: Pid::from_raw(pid as i32),
            // SAFETY: CLONE_PIDFD stored a new fd we now own.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        })),
    }
}
