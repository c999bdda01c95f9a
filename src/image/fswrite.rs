//! Writes archive entries into a fresh directory that only this process writes to. No entry is
//! created through a symlink or outside the directory: every parent component is checked to be
//! a real directory (lstat), the final component is created exclusively (O_EXCL, mkdir,
//! mknod, symlink, link never follow it), and a hard link's target is checked the same way.

use std::ffi::OsStr;
use std::fs::{self, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::archive::{Entry, Kind, Meta};
use super::xattr;
use super::ImageError;

pub struct Materializer {
    root: PathBuf,
    /// Owners are restored only by root (as tar does).
    restore_owners: bool,
    /// The parent directory the previous entry checked (most entries share it).
    checked_parent: Option<Vec<u8>>,
    /// The root's metadata, applied by [`Materializer::finish`].
    root_meta: Option<Meta>,
}

fn os(path: &[u8]) -> &OsStr {
    OsStr::from_bytes(path)
}

fn failed(what: String) -> impl FnOnce(io::Error) -> ImageError {
    move |source| ImageError::Io { what, source }
}

fn nix_failed(what: String) -> impl FnOnce(nix::Error) -> ImageError {
    move |errno| ImageError::Io {
        what,
        source: io::Error::from(errno),
    }
}

impl Materializer {
    /// `root` exists, is empty and is this process's own.
    pub fn new(root: &Path) -> Materializer {
        Materializer {
            root: root.into(),
            restore_owners: nix::unistd::geteuid().is_root(),
            checked_parent: None,
            root_meta: None,
        }
    }

    fn full(&self, rel: &[u8]) -> PathBuf {
        self.root.join(os(rel))
    }

    fn shown(rel: &[u8]) -> String {
        String::from_utf8_lossy(rel).into_owned()
    }

    /// Checks that every directory above `rel` is a real directory; creates missing ones
    /// (mode 0700 until their own entry comes) when `create`.
    fn parents(&mut self, rel: &[u8], create: bool) -> Result<(), ImageError> {
        let Some(cut) = rel.iter().rposition(|b| *b == b'/') else {
            return Ok(());
        };
        let parent = &rel[..cut];
        if self.checked_parent.as_deref() == Some(parent) {
            return Ok(());
        }
        for (i, _) in parent
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .chain(std::iter::once((parent.len(), &b'/')))
        {
            let prefix = &parent[..i];
            let full = self.full(prefix);
            match fs::symlink_metadata(&full) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(ImageError::Archive(super::ArchiveError::BadEntry {
                        path: Self::shown(rel),
                        reason: format!("{} is not a directory", Self::shown(prefix)),
                    }))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&full)
                        .map_err(failed(format!("creating {}", Self::shown(prefix))))?;
                }
                Err(e) => return Err(failed(format!("checking {}", Self::shown(prefix)))(e)),
            }
        }
        self.checked_parent = Some(parent.to_vec());
        Ok(())
    }

    /// Creates one entry (and restores its metadata); a regular file's bytes come from `data`.
    pub fn apply(&mut self, entry: &Entry, data: &mut dyn Read) -> Result<(), ImageError> {
        let rel = entry.path.as_slice();
        if rel == b"." {
            self.root_meta = Some(entry.meta.clone());
            return Ok(());
        }
        self.parents(rel, true)?;
        let full = self.full(rel);
        let what = || format!("creating {}", Self::shown(rel));
        match &entry.kind {
            Kind::Dir => match fs::DirBuilder::new().mode(0o700).create(&full) {
                Ok(()) => {}
                // Made earlier as a parent of its contents: it must be a real directory.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let m = fs::symlink_metadata(&full).map_err(failed(what()))?;
                    if !m.is_dir() {
                        return Err(failed(what())(e));
                    }
                }
                Err(e) => return Err(failed(what())(e)),
            },
            Kind::File { size } => {
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&full)
                    .map_err(failed(what()))?;
                copy_exact(data, &mut file, *size, &what())?;
            }
            Kind::Symlink { target } => {
                std::os::unix::fs::symlink(os(target), &full).map_err(failed(what()))?;
            }
            Kind::HardLink { target } => {
                self.parents(target, false)?;
                let target_full = self.full(target);
                let m = fs::symlink_metadata(&target_full).map_err(failed(format!(
                    "linking {} to {}",
                    Self::shown(rel),
                    Self::shown(target)
                )))?;
                if m.is_dir() {
                    return Err(ImageError::Archive(super::ArchiveError::BadEntry {
                        path: Self::shown(rel),
                        reason: "a hard link to a directory".into(),
                    }));
                }
                // link(2) does not follow a symlink target.
                fs::hard_link(&target_full, &full).map_err(failed(what()))?;
                // Checking the target may have moved the cached parent: check again next time.
                self.checked_parent = None;
                return Ok(());
            }
            Kind::CharDev { major, minor } | Kind::BlockDev { major, minor } => {
                let kind = if matches!(entry.kind, Kind::CharDev { .. }) {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                let dev = nix::sys::stat::makedev(u64::from(*major), u64::from(*minor));
                nix::sys::stat::mknod(&full, kind, Mode::from_bits_truncate(0o600), dev)
                    .map_err(nix_failed(what()))?;
            }
            Kind::Fifo | Kind::Socket => {
                let kind = if entry.kind == Kind::Fifo {
                    SFlag::S_IFIFO
                } else {
                    SFlag::S_IFSOCK
                };
                nix::sys::stat::mknod(&full, kind, Mode::from_bits_truncate(0o600), 0)
                    .map_err(nix_failed(what()))?;
            }
        }
        let symlink = matches!(entry.kind, Kind::Symlink { .. });
        self.restore(rel, &full, &entry.meta, symlink)
    }

    /// Owner, then mode (a chown clears setuid), xattrs, and the mtime last.
    fn restore(
        &self,
        rel: &[u8],
        full: &Path,
        meta: &Meta,
        symlink: bool,
    ) -> Result<(), ImageError> {
        let shown = Self::shown(if rel.is_empty() { b"." } else { rel });
        if self.restore_owners {
            std::os::unix::fs::lchown(full, Some(meta.uid), Some(meta.gid))
                .map_err(failed(format!("setting the owner of {shown}")))?;
        }
        if !symlink {
            fs::set_permissions(full, Permissions::from_mode(meta.mode & 0o7777))
                .map_err(failed(format!("setting the mode of {shown}")))?;
        }
        for (name, value) in &meta.xattrs {
            xattr::set(full, name, value).map_err(failed(format!(
                "setting xattr {} of {shown}",
                String::from_utf8_lossy(name)
            )))?;
        }
        let mtime = TimeSpec::new(meta.mtime, i64::from(meta.mtime_nsec));
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            full,
            &mtime,
            &mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(nix_failed(format!("setting the mtime of {shown}")))?;
        Ok(())
    }

    /// Applies the root's own metadata (kept for last: until then the directory stays 0700).
    pub fn finish(self) -> Result<(), ImageError> {
        match &self.root_meta {
            Some(meta) => self.restore(b"", &self.root, meta, false),
            None => Err(ImageError::Archive(super::ArchiveError::Corrupted(
                "no root entry".into(),
            ))),
        }
    }
}

/// Copies exactly `size` bytes; read errors are the image's, write errors the disk's.
fn copy_exact(
    data: &mut dyn Read,
    out: &mut fs::File,
    size: u64,
    what: &str,
) -> Result<(), ImageError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match data.read(&mut buf[..want]) {
            Ok(0) => return Err(ImageError::Archive(super::ArchiveError::Truncated)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ImageError::from_read(e, what)),
        };
        out.write_all(&buf[..n]).map_err(failed(what.to_owned()))?;
        left -= n as u64;
    }
    Ok(())
}
