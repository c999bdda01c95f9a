//! The child's terminal: a pty allocated inside the process's own devpts, so `tty` and
//! `ttyname` work inside. The child opens /dev/ptmx after pivot_root, keeps the slave as its
//! stdio and passes the master to hydra over the set-up channel (SCM_RIGHTS), as runc's
//! console socket does. Runs between clone and exec: stack buffers only.

use std::os::fd::RawFd;

use nix::errno::Errno;

use super::handshake::TERMINAL_TAG;

/// TIOCGPTPEER: opens the slave of a master without a path (Linux ≥ 4.13).
const TIOCGPTPEER: libc::c_ulong = 0x5441;

/// Opens a pty in the process's devpts, sends the master to hydra and makes the slave fds 0–2.
pub fn open_inside(sock: RawFd) -> Result<(), Errno> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: open of a constant path.
    let master = unsafe { libc::open(c"/dev/ptmx".as_ptr(), flags) };
    if master < 0 {
        return Err(Errno::last());
    }
    let result = attach(master, sock);
    // SAFETY: the master now lives on in hydra; this copy goes.
    unsafe { libc::close(master) };
    result
}

fn attach(master: RawFd, sock: RawFd) -> Result<(), Errno> {
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int.
    if unsafe { libc::ioctl(master, libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(Errno::last());
    }
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd.
    let slave = unsafe { libc::ioctl(master, TIOCGPTPEER as _, libc::O_RDWR | libc::O_NOCTTY) };
    if slave < 0 {
        return Err(Errno::last());
    }
    let sent = send_fd(sock, master);
    let mut dup = Ok(());
    for fd in 0..3 {
        // SAFETY: dup2 of the slave onto stdio.
        if unsafe { libc::dup2(slave, fd) } < 0 {
            dup = Err(Errno::last());
        }
    }
    // SAFETY: closing our extra copy of the slave.
    unsafe { libc::close(slave) };
    sent.and(dup)
}

/// Sends `fd` with a one-byte tag over the seqpacket channel.
fn send_fd(sock: RawFd, fd: RawFd) -> Result<(), Errno> {
    #[repr(C, align(8))]
    struct Control([u8; 64]);
    let mut tag = [TERMINAL_TAG];
    let mut iov = libc::iovec {
        iov_base: tag.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = Control([0; 64]);
    // SAFETY: CMSG_SPACE/CMSG_LEN compute sizes only.
    let (space, len) = unsafe {
        (
            libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32),
            libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32),
        )
    };
    // SAFETY: msghdr is plain data; zeroed is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = space as usize;
    // SAFETY: the control buffer is large and aligned enough for one cmsghdr with one int.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = len as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
    }
    // SAFETY: msg points at live stack buffers.
    if unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}
