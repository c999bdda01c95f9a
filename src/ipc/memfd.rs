//! Sealed memfds: the backing of every channel and shared-memory region. The size is fixed by
//! seals (no shrink, no grow, no further seals) before any process sees the fd, so no peer can
//! truncate the file under another's mapping (which would be SIGBUS there). Anyone mapping one
//! checks the seals first.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum MemfdError {
    #[error("creating the memfd for {name}: {source}")]
    Create {
        name: String,
        source: std::io::Error,
    },
    #[error("sizing the memfd for {name} to {size} bytes: {source}")]
    Size {
        name: String,
        size: u64,
        source: std::io::Error,
    },
    #[error("sealing the memfd for {name}: {source}")]
    Seal {
        name: String,
        source: std::io::Error,
    },
    #[error("fd {fd} is not a sealed hydra memfd (its size could change under the mapping)")]
    NotSealed { fd: i32 },
    #[error("mapping fd {fd}: {source}")]
    Map { fd: i32, source: std::io::Error },
}

/// The seals every hydra memfd carries.
const SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// A new zero-filled memfd of `size` bytes, sealed against any change of size. The fd is
/// close-on-exec; whoever passes it on dups it where it belongs.
pub fn create(name: &str, size: u64) -> Result<OwnedFd, MemfdError> {
    let c_name = CString::new(format!("hydra:{name}")).map_err(|_| MemfdError::Create {
        name: name.to_string(),
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })?;
    // SAFETY: memfd_create with a NUL-terminated name; the fd is owned at once.
    let fd =
        unsafe { libc::memfd_create(c_name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(MemfdError::Create {
            name: name.to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: fd was just created and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ftruncate and fcntl on our own fd with integer arguments.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } != 0 {
        return Err(MemfdError::Size {
            name: name.to_string(),
            size,
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } != 0 {
        return Err(MemfdError::Seal {
            name: name.to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(fd)
}

/// The size of `fd` if it carries hydra's seals (its size can then never change).
pub fn sealed_size(fd: BorrowedFd<'_>) -> Result<u64, MemfdError> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl with an integer command on a borrowed fd.
    let seals = unsafe { libc::fcntl(raw, libc::F_GET_SEALS) };
    if seals < 0 || seals & (libc::F_SEAL_SHRINK | libc::F_SEAL_GROW) == 0 {
        return Err(MemfdError::NotSealed { fd: raw });
    }
    if seals & (libc::F_SEAL_SHRINK | libc::F_SEAL_GROW)
        != (libc::F_SEAL_SHRINK | libc::F_SEAL_GROW)
    {
        return Err(MemfdError::NotSealed { fd: raw });
    }
    // SAFETY: fstat fills the zeroed struct on this stack.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(raw, &mut st) } != 0 {
        return Err(MemfdError::NotSealed { fd: raw });
    }
    Ok(st.st_size as u64)
}

/// A shared mapping of a whole sealed memfd, unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; every access to it goes through raw pointers and
// atomics, never through references that assume exclusive access.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `fd` whole, read-write or (`writable == false`) read-only.
    pub fn new(fd: BorrowedFd<'_>, writable: bool) -> Result<Mapping, MemfdError> {
        let len = sealed_size(fd)? as usize;
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh shared mapping of a file whose size is sealed, so every byte of it
        // stays backed for the mapping's life.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len.max(1),
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(MemfdError::Map {
                fd: fd.as_raw_fd(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }

    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len.max(1)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_hydra_memfd_cannot_change_size() {
        let fd = create("t", 8192).unwrap();
        assert_eq!(sealed_size(fd.as_fd()).unwrap(), 8192);
        // SAFETY: ftruncate on our own fd.
        assert_ne!(unsafe { libc::ftruncate(fd.as_raw_fd(), 4096) }, 0);
        assert_ne!(unsafe { libc::ftruncate(fd.as_raw_fd(), 16384) }, 0);
        let map = Mapping::new(fd.as_fd(), true).unwrap();
        assert_eq!(map.len(), 8192);
    }

    #[test]
    fn an_unsealed_memfd_is_refused() {
        // SAFETY: memfd_create with a literal name; owned at once.
        let fd = unsafe {
            OwnedFd::from_raw_fd(libc::memfd_create(c"plain".as_ptr(), libc::MFD_CLOEXEC))
        };
        assert!(matches!(
            sealed_size(fd.as_fd()),
            Err(MemfdError::NotSealed { .. })
        ));
    }
}
