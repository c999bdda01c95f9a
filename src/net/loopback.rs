//! Bringing `lo` up inside a fresh network namespace. Runs in the child between clone and exec:
//! a socket and an ioctl on a stack buffer, nothing allocated.

use nix::errno::Errno;

/// Sets IFF_UP on `lo` in the calling process's network namespace.
pub fn bring_up() -> Result<(), Errno> {
    // SAFETY: plain socket(2); the fd is closed below on every path.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(Errno::last());
    }
    let result = set_up(sock);
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(sock) };
    result
}

fn set_up(sock: libc::c_int) -> Result<(), Errno> {
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads into the ifreq we own.
    if unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the union member ifru_flags is the one SIOCGIFFLAGS filled in.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    if unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}
