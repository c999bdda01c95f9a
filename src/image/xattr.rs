//! Extended attributes of a path, never following a final symlink (llistxattr, lgetxattr,
//! lsetxattr).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Not carried into images: a label of the packing host's security policy.
const SKIPPED: &[&[u8]] = &[b"security.selinux"];

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

/// Calls `f(buf, len)` with a buffer that grows until the value fits.
fn sized(mut f: impl FnMut(*mut libc::c_char, usize) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let want = f(std::ptr::null_mut(), 0);
        if want < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; want as usize];
        let got = f(buf.as_mut_ptr().cast(), buf.len());
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
        // It grew between the two calls: ask again.
    }
}

/// The extended attributes of `path` (name, value), sorted by name; none where the filesystem
/// has none.
pub fn list(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let c = c_path(path)?;
    // SAFETY: `c` is a NUL-terminated path; the kernel writes at most `len` bytes to `buf`.
    let names = sized(|buf, len| unsafe { libc::llistxattr(c.as_ptr(), buf, len) });
    let names = match names {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if SKIPPED.contains(&name) {
            continue;
        }
        let cname = CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "NUL in xattr name"))?;
        // SAFETY: both strings are NUL-terminated; the kernel writes at most `len` bytes.
        let value = sized(|buf, len| unsafe {
            libc::lgetxattr(c.as_ptr(), cname.as_ptr(), buf.cast(), len)
        });
        match value {
            Ok(v) => out.push((name.to_vec(), v)),
            // Removed since it was listed.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

/// Sets one extended attribute of `path` (a symlink itself, not its target).
pub fn set(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let c = c_path(path)?;
    let cname = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in xattr name"))?;
    // SAFETY: both strings are NUL-terminated; `value` is valid for `value.len()` bytes.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
