//! The parent/child channel: a SOCK_SEQPACKET socketpair. The parent sends one "go" byte once
//! the child may proceed (id maps written, cgroup joined); the child sends a `StepError` when a
//! step fails. Both ends are close-on-exec, so a successful exec shows the parent an EOF.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use super::stage::StepError;

const GO: u8 = 0x47;

/// Creates the pair: (parent end, child end).
pub fn pair() -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    let ret = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    // SAFETY: socketpair returned two new fds we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Parent: let the child go on.
pub fn send_go(parent: &OwnedFd) -> Result<(), Errno> {
    let byte = [GO];
    // SAFETY: sending one byte from a stack buffer.
    let ret = unsafe {
        libc::send(
            parent.as_raw_fd(),
            byte.as_ptr().cast(),
            1,
            libc::MSG_NOSIGNAL,
        )
    };
    if ret != 1 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Child: wait for the parent's go. Any other outcome (EOF: the parent died) is an error.
pub fn wait_go(child: RawFd) -> Result<(), Errno> {
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: receiving into a stack buffer of the given length.
        let ret = unsafe { libc::recv(child, byte.as_mut_ptr().cast(), 1, 0) };
        match ret {
            1 if byte[0] == GO => return Ok(()),
            0 | 1 => return Err(Errno::EPIPE),
            _ if Errno::last() == Errno::EINTR => continue,
            _ => return Err(Errno::last()),
        }
    }
}

/// Child: report a failed step. Best effort: if the parent is gone nobody listens anyway.
pub fn report(child: RawFd, error: &StepError) {
    let buf = error.encode();
    // SAFETY: sending a stack buffer of the given length.
    unsafe { libc::send(child, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
}

/// Parent: what one readable event on the channel brought.
#[derive(Debug, PartialEq)]
pub enum Received {
    /// The child (or the command it forked) failed a step.
    Failure(StepError),
    /// Every child-side end is closed: the command was exec'd (or the child died).
    Closed,
    /// Nothing to read now, or a message that does not parse.
    Nothing,
}

pub fn receive(parent: &OwnedFd) -> Received {
    let mut buf = [0u8; 16];
    // SAFETY: receiving into a stack buffer of the given length, without blocking.
    let ret = unsafe {
        libc::recv(
            parent.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    match ret {
        0 => Received::Closed,
        n if n > 0 => match StepError::decode(&buf[..n as usize]) {
            Some(e) => Received::Failure(e),
            None => Received::Nothing,
        },
        _ => match Errno::last() {
            Errno::EAGAIN | Errno::EINTR => Received::Nothing,
            _ => Received::Closed,
        },
    }
}
