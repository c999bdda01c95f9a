//! Thin wrappers over the mount and path-resolution system calls the child uses between clone
//! and exec. Each wraps one raw call, allocates nothing and returns the errno on failure.

use std::ffi::CStr;
use std::os::fd::RawFd;

use nix::errno::Errno;

// The new mount API's constants (linux/mount.h); the libc crate does not carry them all.
pub const OPEN_TREE_CLONE: libc::c_uint = 1;
pub const AT_RECURSIVE: libc::c_uint = 0x8000;
pub const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
pub const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;

/// struct open_how of openat2(2) (the libc crate's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// A `/proc/self/fd/N` path in a stack buffer: how the child names an fd to mount(2).
pub struct FdPath {
    buf: [u8; 32],
}

impl FdPath {
    pub fn new(fd: RawFd) -> Self {
        const PREFIX: &[u8] = b"/proc/self/fd/";
        let mut buf = [0u8; 32];
        buf[..PREFIX.len()].copy_from_slice(PREFIX);
        let mut digits = [0u8; 12];
        let mut n = fd.unsigned_abs();
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in 0..len {
            buf[PREFIX.len() + i] = digits[len - 1 - i];
        }
        FdPath { buf }
    }

    pub fn as_cstr(&self) -> &CStr {
        // The buffer always holds a NUL after the digits (32 > 14 + 10 digits).
        CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"/proc/self/fd/")
    }
}

/// openat2(2) relative to `dirfd` with `resolve` flags (RESOLVE_IN_ROOT etc.).
pub fn openat2(dirfd: RawFd, path: &CStr, flags: u64, resolve: u64) -> Result<RawFd, Errno> {
    let how = OpenHow {
        flags,
        mode: 0,
        resolve,
    };
    // SAFETY: path is NUL-terminated; how lives across the call; size matches the struct.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    check(ret).map(|fd| fd as RawFd)
}

/// open_tree(2): a detached copy of the mount tree at `dirfd`/`path`.
pub fn open_tree(dirfd: RawFd, path: &CStr, flags: libc::c_uint) -> Result<RawFd, Errno> {
    // SAFETY: path is NUL-terminated; the kernel returns a new fd or an error.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags) };
    check(ret).map(|fd| fd as RawFd)
}

/// move_mount(2) of the detached tree `from` onto the object `to` refers to.
pub fn move_mount_fd(from: RawFd, to: RawFd) -> Result<(), Errno> {
    // SAFETY: both paths are empty C strings; the fds are owned by the caller.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from,
            c"".as_ptr(),
            to,
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    check(ret).map(drop)
}

/// mount_setattr(2) on the whole tree `fd` refers to.
pub fn set_tree_attr(fd: RawFd, attr_set: u64) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: attr lives across the call and its size is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH as libc::c_uint) | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(ret).map(drop)
}

/// mount(2) with C strings; `data` may be absent.
pub fn mount(
    source: &CStr,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    let fstype = fstype.map_or(std::ptr::null(), CStr::as_ptr);
    let data = data.map_or(std::ptr::null(), |d| d.as_ptr().cast());
    // SAFETY: every pointer is a NUL-terminated string or null, as mount(2) allows.
    let ret = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype, flags, data) };
    check(ret.into()).map(drop)
}

/// close(2), ignoring errors: used on fds the child opened itself.
pub fn close(fd: RawFd) {
    // SAFETY: the caller owns fd and does not use it afterwards.
    unsafe { libc::close(fd) };
}

/// mkdirat(2); an existing entry is not an error.
pub fn mkdirat(dirfd: RawFd, name: &CStr, mode: libc::mode_t) -> Result<(), Errno> {
    // SAFETY: name is NUL-terminated.
    let ret = unsafe { libc::mkdirat(dirfd, name.as_ptr(), mode) };
    match check(ret.into()) {
        Ok(_) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates an empty regular file (a bind-mount target); an existing entry is not an error.
pub fn touch_at(dirfd: RawFd, name: &CStr) -> Result<(), Errno> {
    let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: name is NUL-terminated; the fd is closed right away.
    let fd = unsafe { libc::openat(dirfd, name.as_ptr(), flags, 0o644) };
    if fd >= 0 {
        close(fd);
        return Ok(());
    }
    match Errno::last() {
        Errno::EEXIST => Ok(()),
        e => Err(e),
    }
}

/// symlinkat(2); an existing entry is not an error.
pub fn symlink_at(target: &CStr, dirfd: RawFd, name: &CStr) -> Result<(), Errno> {
    // SAFETY: both strings are NUL-terminated.
    let ret = unsafe { libc::symlinkat(target.as_ptr(), dirfd, name.as_ptr()) };
    match check(ret.into()) {
        Ok(_) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// fstat(2) of an fd: (file type bits, rdev).
pub fn file_type(fd: RawFd) -> Result<(libc::mode_t, libc::dev_t), Errno> {
    // SAFETY: stat is plain data filled in by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid out-pointer.
    let ret = unsafe { libc::fstat(fd, &mut st) };
    check(ret.into())?;
    Ok((st.st_mode & libc::S_IFMT, st.st_rdev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_paths() {
        assert_eq!(FdPath::new(0).as_cstr(), c"/proc/self/fd/0");
        assert_eq!(FdPath::new(7).as_cstr(), c"/proc/self/fd/7");
        assert_eq!(FdPath::new(1234567).as_cstr(), c"/proc/self/fd/1234567");
        assert_eq!(FdPath::new(i32::MAX).as_cstr(), c"/proc/self/fd/2147483647");
    }
}
