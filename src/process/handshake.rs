//! The parent/child channel: a SOCK_SEQPACKET socketpair. The parent sends one "go" byte once
//! the child may proceed (id maps written, cgroup joined); the child sends a `StepError` when a
//! step fails. Both ends are close-on-exec, so a successful exec shows the parent an EOF.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use super::stage::StepError;

const GO: u8 = 0x47;
/// The one-byte message that carries the pty master.
pub const TERMINAL_TAG: u8 = 0x54;

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
#[derive(Debug)]
pub enum Received {
    /// The child (or the command it forked) failed a step.
    Failure(StepError),
    /// The master of the pty the child opened in its own devpts.
    Terminal(OwnedFd),
    /// Every child-side end is closed: the command was exec'd (or the child died).
    Closed,
    /// Nothing to read now, or a message that does not parse.
    Nothing,
}

pub fn receive(parent: &OwnedFd) -> Received {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 16];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC;
    let msg = match recvmsg::<()>(parent.as_raw_fd(), &mut iov, Some(&mut space), flags) {
        Ok(msg) => msg,
        Err(Errno::EAGAIN | Errno::EINTR) => return Received::Nothing,
        Err(_) => return Received::Closed,
    };
    let mut passed = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for cmsg in cmsgs {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for fd in fds {
                    // SAFETY: SCM_RIGHTS delivered a new fd we now own.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    passed = passed.or(Some(owned));
                }
            }
        }
    }
    let len = msg.bytes;
    match (len, passed) {
        (0, _) => Received::Closed,
        (1, Some(fd)) if buf[0] == TERMINAL_TAG => Received::Terminal(fd),
        (n, _) => match StepError::decode(&buf[..n]) {
            Some(e) => Received::Failure(e),
            None => Received::Nothing,
        },
    }
}
