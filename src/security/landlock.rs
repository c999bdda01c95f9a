//! Landlock at the `strict` level: writes are allowed only beneath the writable paths (the /tmp
//! tmpfs, /dev, read-write volumes). Hand-written over the three syscalls because the child must
//! apply it after pivot_root without allocating, which the `landlock` crate's builder does.

use std::ffi::CString;

use nix::errno::Errno;

const CREATE_RULESET_VERSION: libc::c_uint = 1;
const RULE_PATH_BENEATH: libc::c_int = 1;

const WRITE_FILE: u64 = 1 << 1;
const REMOVE_DIR: u64 = 1 << 4;
const REMOVE_FILE: u64 = 1 << 5;
const MAKE_ANY: u64 = 0b111_1111 << 6; // char, dir, reg, sock, fifo, block, sym
const REFER: u64 = 1 << 13;
const TRUNCATE: u64 = 1 << 14;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
}

#[repr(C, packed)]
struct PathBeneath {
    allowed_access: u64,
    parent_fd: i32,
}

/// The Landlock ABI version of the running kernel; 0 when Landlock is unavailable.
pub fn abi_version() -> u32 {
    // SAFETY: the version query takes no pointers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if ret < 0 {
        0
    } else {
        ret as u32
    }
}

/// The write rights this ABI can restrict.
fn write_rights(abi: u32) -> u64 {
    let mut rights = WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_ANY;
    if abi >= 2 {
        rights |= REFER;
    }
    if abi >= 3 {
        rights |= TRUNCATE;
    }
    rights
}

/// Prepared before clone: which write rights are handled and where they stay allowed.
#[derive(Debug)]
pub struct LandlockPlan {
    handled: u64,
    writable: Vec<CString>,
}

impl LandlockPlan {
    /// `None` when the kernel has no Landlock (the caller warns).
    pub fn new(writable: Vec<CString>) -> Option<Self> {
        let abi = abi_version();
        if abi == 0 {
            return None;
        }
        Some(LandlockPlan {
            handled: write_rights(abi),
            writable,
        })
    }

    /// Restricts the calling process (and everything it starts). Needs no_new_privs first.
    pub fn apply(&self) -> Result<(), Errno> {
        let attr = RulesetAttr {
            handled_access_fs: self.handled,
        };
        // SAFETY: attr lives across the call; its size is passed.
        let ruleset = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                std::mem::size_of::<RulesetAttr>(),
                0,
            )
        };
        if ruleset < 0 {
            return Err(Errno::last());
        }
        let ruleset = ruleset as libc::c_int;
        let result = self.add_rules(ruleset).and_then(|()| restrict(ruleset));
        // SAFETY: closing the ruleset fd created above.
        unsafe { libc::close(ruleset) };
        result
    }

    fn add_rules(&self, ruleset: libc::c_int) -> Result<(), Errno> {
        for path in &self.writable {
            // SAFETY: path is NUL-terminated.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
            if fd < 0 {
                if Errno::last() == Errno::ENOENT {
                    continue;
                }
                return Err(Errno::last());
            }
            let result = add_rule(ruleset, fd, self.handled);
            // SAFETY: closing the fd opened above.
            unsafe { libc::close(fd) };
            result?;
        }
        Ok(())
    }
}

fn add_rule(ruleset: libc::c_int, fd: libc::c_int, handled: u64) -> Result<(), Errno> {
    // SAFETY: stat is plain data filled in by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid out-pointer.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(Errno::last());
    }
    // A rule on a file may only carry file rights.
    let allowed = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        handled
    } else {
        handled & (WRITE_FILE | TRUNCATE)
    };
    let beneath = PathBeneath {
        allowed_access: allowed,
        parent_fd: fd,
    };
    // SAFETY: beneath lives across the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset,
            RULE_PATH_BENEATH,
            &beneath as *const PathBeneath,
            0,
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

fn restrict(ruleset: libc::c_int) -> Result<(), Errno> {
    // SAFETY: integer arguments only.
    if unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_grow_with_the_abi() {
        assert_eq!(write_rights(1) & (REFER | TRUNCATE), 0);
        assert_ne!(write_rights(2) & REFER, 0);
        assert_ne!(write_rights(3) & TRUNCATE, 0);
    }
}
