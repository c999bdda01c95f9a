//! Named volumes: a tmpfs created detached (fsopen/fsmount), never attached in the host's mount
//! namespace. The supervisor holds its fd; each process that names the volume clones it into its
//! own root. When the supervisor goes, so does the volume: nothing to unmount on the host, even
//! after a crash.

use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;

fn owned(ret: libc::c_long) -> Result<OwnedFd, Errno> {
    if ret < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the syscall returned a new fd we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as libc::c_int) })
}

fn set_string(fs: &OwnedFd, key: &str, value: &str) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    let key = CString::new(key).map_err(|_| Errno::EINVAL)?;
    let value = CString::new(value).map_err(|_| Errno::EINVAL)?;
    // SAFETY: key and value are NUL-terminated and live across the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// A detached tmpfs of `size` bytes (mode 1777, nosuid, nodev).
pub fn tmpfs(size: u64) -> Result<OwnedFd, Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: fsopen with a constant name.
    let fs = owned(unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), FSOPEN_CLOEXEC) })?;
    set_string(&fs, "size", &size.to_string())?;
    set_string(&fs, "mode", "1777")?;
    // SAFETY: integer arguments only.
    let created = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if created < 0 {
        return Err(Errno::last());
    }
    // SAFETY: integer arguments only.
    owned(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        )
    })
}
