//! hydra's own stdio.

/// Opens /dev/null on any of fds 0–2 that is closed, so no later fd (the set-up channel, a
/// cgroup fd) lands on a stdio number the child would hand to the command.
pub fn ensure_open() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the fd.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            // SAFETY: open returns the lowest free fd, which is this one.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
}
