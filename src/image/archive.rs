//! The archive inside the compressed stream: a sequence of filesystem entries (path, kind,
//! mode, owner, mtime, xattrs, and a regular file's bytes), then an end marker with the entry
//! count. Directories come after their contents, the root (".") last. Pure encoding: what is
//! read from or written to disk is `fsread`'s and `fswrite`'s concern.

use std::io::{self, Read, Write};

use thiserror::Error;

use super::wire::{read_array, read_i64, read_u16, read_u32, read_u64, read_u8, read_vec};
use super::wire::{write_u16, write_u32, write_u64};

const MAGIC: &[u8; 4] = b"HCAR";
const VERSION: u16 = 1;
/// Longest path or link target (PATH_MAX less the NUL).
pub const MAX_PATH: usize = 4095;
pub const MAX_XATTRS: usize = 1024;
pub const MAX_XATTR_NAME: usize = 255;
pub const MAX_XATTR_VALUE: usize = 64 * 1024;
/// All of one entry's xattr values together.
pub const MAX_XATTR_TOTAL: usize = 1024 * 1024;

#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error("corrupted archive: {0}")]
    Corrupted(String),
    #[error("archive entry {path:?}: {reason}")]
    BadEntry { path: String, reason: String },
    #[error("unsupported archive version {0}")]
    Version(u16),
    #[error("reading {path}: {source}")]
    Source { path: String, source: io::Error },
    #[error("the archive ends early")]
    Truncated,
    #[error(transparent)]
    Io(io::Error),
}

impl From<io::Error> for ArchiveError {
    fn from(e: io::Error) -> ArchiveError {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => ArchiveError::Truncated,
            _ => ArchiveError::Io(e),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File {
        size: u64,
    },
    Symlink {
        target: Vec<u8>,
    },
    /// Another name for an earlier entry (its path).
    HardLink {
        target: Vec<u8>,
    },
    CharDev {
        major: u32,
        minor: u32,
    },
    BlockDev {
        major: u32,
        minor: u32,
    },
    Fifo,
    Socket,
}

impl Kind {
    fn code(&self) -> u8 {
        match self {
            Kind::Dir => 1,
            Kind::File { .. } => 2,
            Kind::Symlink { .. } => 3,
            Kind::HardLink { .. } => 4,
            Kind::CharDev { .. } => 5,
            Kind::BlockDev { .. } => 6,
            Kind::Fifo => 7,
            Kind::Socket => 8,
        }
    }
}

/// What an entry's inode carries (hard links carry none of their own).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits with setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Relative, '/'-separated, no "." or ".." components; "." is the root.
    pub path: Vec<u8>,
    pub kind: Kind,
    pub meta: Meta,
}

/// Why `path` cannot be an entry's path (None if it can).
pub fn path_problem(path: &[u8]) -> Option<&'static str> {
    if path == b"." {
        return None;
    }
    if path.is_empty() {
        return Some("empty path");
    }
    if path.len() > MAX_PATH {
        return Some("path too long");
    }
    if path.contains(&0) {
        return Some("NUL in path");
    }
    if path[0] == b'/' {
        return Some("absolute path");
    }
    if path
        .split(|b| *b == b'/')
        .any(|c| c.is_empty() || c == b"." || c == b"..")
    {
        return Some("empty, '.' or '..' path component");
    }
    None
}

fn bad(path: &[u8], reason: impl Into<String>) -> ArchiveError {
    ArchiveError::BadEntry {
        path: String::from_utf8_lossy(path).into_owned(),
        reason: reason.into(),
    }
}

/// Writes entries to a stream; counts entries and bytes.
pub struct ArchiveWriter<W: Write> {
    out: W,
    bytes: u64,
    entries: u64,
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(out: W) -> io::Result<ArchiveWriter<W>> {
        let mut w = ArchiveWriter {
            out,
            bytes: 0,
            entries: 0,
        };
        w.put(MAGIC)?;
        w.put(&VERSION.to_le_bytes())?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    fn put_bytes16(&mut self, path: &[u8], bytes: &[u8]) -> Result<(), ArchiveError> {
        let len = u16::try_from(bytes.len()).map_err(|_| bad(path, "name too long"))?;
        let mut head = Vec::with_capacity(2);
        write_u16(&mut head, len)?;
        self.put(&head)?;
        self.put(bytes)?;
        Ok(())
    }

    /// Writes one entry; a regular file's `size` bytes come from `data`.
    pub fn write(
        &mut self,
        entry: &Entry,
        data: Option<&mut dyn Read>,
    ) -> Result<(), ArchiveError> {
        let path = &entry.path;
        if let Some(problem) = path_problem(path) {
            return Err(bad(path, problem));
        }
        if path == b"." && entry.kind != Kind::Dir {
            return Err(bad(path, "the root is not a directory"));
        }
        self.put(&[entry.kind.code()])?;
        self.put_bytes16(path, path)?;
        if !matches!(entry.kind, Kind::HardLink { .. }) {
            let m = &entry.meta;
            let mut fixed = Vec::with_capacity(24);
            write_u32(&mut fixed, m.mode & 0o7777)?;
            write_u32(&mut fixed, m.uid)?;
            write_u32(&mut fixed, m.gid)?;
            fixed.extend_from_slice(&m.mtime.to_le_bytes());
            write_u32(&mut fixed, m.mtime_nsec)?;
            let count = u16::try_from(m.xattrs.len())
                .ok()
                .filter(|n| usize::from(*n) <= MAX_XATTRS)
                .ok_or_else(|| bad(path, "too many xattrs"))?;
            write_u16(&mut fixed, count)?;
            if m.xattrs.iter().map(|(_, v)| v.len()).sum::<usize>() > MAX_XATTR_TOTAL {
                return Err(bad(path, "xattr values too long"));
            }
            self.put(&fixed)?;
            for (name, value) in &m.xattrs {
                if name.is_empty() || name.len() > MAX_XATTR_NAME || value.len() > MAX_XATTR_VALUE {
                    return Err(bad(path, "xattr name or value too long"));
                }
                let mut head = vec![name.len() as u8];
                head.extend_from_slice(name);
                write_u32(&mut head, value.len() as u32)?;
                self.put(&head)?;
                self.put(value)?;
            }
        }
        match &entry.kind {
            Kind::File { size } => {
                let mut head = Vec::with_capacity(8);
                write_u64(&mut head, *size)?;
                self.put(&head)?;
                let data = data.ok_or_else(|| bad(path, "no data for a regular file"))?;
                let mut buf = vec![0u8; 64 * 1024];
                let mut left = *size;
                while left > 0 {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = match data.read(&mut buf[..want]) {
                        Ok(0) => return Err(bad(path, "the file shrank while it was packed")),
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(source) => {
                            return Err(ArchiveError::Source {
                                path: String::from_utf8_lossy(path).into_owned(),
                                source,
                            })
                        }
                    };
                    self.put(&buf[..n])?;
                    left -= n as u64;
                }
            }
            Kind::Symlink { target } | Kind::HardLink { target } => {
                if target.is_empty() || target.len() > MAX_PATH || target.contains(&0) {
                    return Err(bad(path, "invalid link target"));
                }
                self.put_bytes16(path, target)?;
            }
            Kind::CharDev { major, minor } | Kind::BlockDev { major, minor } => {
                let mut dev = Vec::with_capacity(8);
                write_u32(&mut dev, *major)?;
                write_u32(&mut dev, *minor)?;
                self.put(&dev)?;
            }
            Kind::Dir | Kind::Fifo | Kind::Socket => {}
        }
        self.entries += 1;
        Ok(())
    }

    /// Writes the end marker; returns the stream and the totals (archive bytes, entries).
    pub fn finish(mut self) -> io::Result<(W, u64, u64)> {
        self.put(&[0])?;
        let count = self.entries.to_le_bytes();
        self.put(&count)?;
        Ok((self.out, self.bytes, self.entries))
    }
}

/// A reader that counts what it reads.
pub struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Reads entries; a regular file's bytes are read with [`ArchiveReader::data`] before the next
/// entry (or skipped).
pub struct ArchiveReader<R: Read> {
    inp: Counted<R>,
    entries: u64,
    pending: u64,
    ended: bool,
}

impl<R: Read> ArchiveReader<R> {
    pub fn new(inner: R) -> Result<ArchiveReader<R>, ArchiveError> {
        let mut inp = Counted { inner, count: 0 };
        let magic: [u8; 4] = read_array(&mut inp)?;
        if &magic != MAGIC {
            return Err(ArchiveError::Corrupted("no HCAR magic".into()));
        }
        let version = read_u16(&mut inp)?;
        if version != VERSION {
            return Err(ArchiveError::Version(version));
        }
        Ok(ArchiveReader {
            inp,
            entries: 0,
            pending: 0,
            ended: false,
        })
    }

    /// The next entry, or None after the end marker.
    pub fn next(&mut self) -> Result<Option<Entry>, ArchiveError> {
        if self.ended {
            return Ok(None);
        }
        if self.pending > 0 {
            let skipped = io::copy(&mut (&mut self.inp).take(self.pending), &mut io::sink())?;
            if skipped != self.pending {
                return Err(ArchiveError::Truncated);
            }
            self.pending = 0;
        }
        let code = read_u8(&mut self.inp)?;
        if code == 0 {
            let count = read_u64(&mut self.inp)?;
            if count != self.entries {
                return Err(ArchiveError::Corrupted(format!(
                    "the end marker counts {count} entries, the archive has {}",
                    self.entries
                )));
            }
            self.ended = true;
            return Ok(None);
        }
        if code > 8 {
            return Err(ArchiveError::Corrupted(format!(
                "unknown entry type {code}"
            )));
        }
        let path_len = usize::from(read_u16(&mut self.inp)?);
        let path = read_vec(&mut self.inp, path_len)?;
        if let Some(problem) = path_problem(&path) {
            return Err(bad(&path, problem));
        }
        let meta = if code == 4 {
            Meta::default()
        } else {
            self.read_meta(&path)?
        };
        let inp = &mut self.inp;
        let kind = match code {
            1 => Kind::Dir,
            2 => {
                let size = read_u64(inp)?;
                self.pending = size;
                Kind::File { size }
            }
            3 | 4 => {
                let len = usize::from(read_u16(inp)?);
                if len == 0 || len > MAX_PATH {
                    return Err(bad(&path, "invalid link target length"));
                }
                let target = read_vec(inp, len)?;
                if target.contains(&0) {
                    return Err(bad(&path, "NUL in link target"));
                }
                if code == 3 {
                    Kind::Symlink { target }
                } else {
                    if let Some(problem) = path_problem(&target) {
                        return Err(bad(&path, format!("hard link target: {problem}")));
                    }
                    Kind::HardLink { target }
                }
            }
            5 | 6 => {
                let (major, minor) = (read_u32(inp)?, read_u32(inp)?);
                if code == 5 {
                    Kind::CharDev { major, minor }
                } else {
                    Kind::BlockDev { major, minor }
                }
            }
            7 => Kind::Fifo,
            _ => Kind::Socket,
        };
        if path == b"." && kind != Kind::Dir {
            return Err(bad(&path, "the root is not a directory"));
        }
        if matches!(&kind, Kind::HardLink { target } if target == b".") {
            return Err(bad(&path, "a hard link to the root"));
        }
        self.entries += 1;
        Ok(Some(Entry { path, kind, meta }))
    }

    fn read_meta(&mut self, path: &[u8]) -> Result<Meta, ArchiveError> {
        let inp = &mut self.inp;
        let mode = read_u32(inp)?;
        if mode & !0o7777 != 0 {
            return Err(bad(path, format!("invalid mode {mode:o}")));
        }
        let uid = read_u32(inp)?;
        let gid = read_u32(inp)?;
        let mtime = read_i64(inp)?;
        let mtime_nsec = read_u32(inp)?;
        if mtime_nsec >= 1_000_000_000 {
            return Err(bad(path, "invalid mtime"));
        }
        let count = usize::from(read_u16(inp)?);
        if count > MAX_XATTRS {
            return Err(bad(path, "too many xattrs"));
        }
        let mut xattrs = Vec::new();
        let mut total = 0;
        for _ in 0..count {
            let name_len = usize::from(read_u8(inp)?);
            let name = read_vec(inp, name_len)?;
            if name.is_empty() || name.contains(&0) {
                return Err(bad(path, "invalid xattr name"));
            }
            let value_len = read_u32(inp)? as usize;
            total += value_len;
            if value_len > MAX_XATTR_VALUE || total > MAX_XATTR_TOTAL {
                return Err(bad(path, "xattr value too long"));
            }
            xattrs.push((name, read_vec(inp, value_len)?));
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime,
            mtime_nsec,
            xattrs,
        })
    }

    /// The bytes of the regular file [`ArchiveReader::next`] just returned.
    pub fn data(&mut self) -> impl Read + '_ {
        let size = std::mem::take(&mut self.pending);
        (&mut self.inp).take(size)
    }

    /// Archive bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.inp.count
    }

    pub fn entries(&self) -> u64 {
        self.entries
    }

    pub fn into_inner(self) -> R {
        self.inp.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testutil::XorShift;

    fn meta(mode: u32) -> Meta {
        Meta {
            mode,
            uid: 1000,
            gid: 4242,
            mtime: 1_700_000_000,
            mtime_nsec: 123,
            xattrs: vec![(b"user.a".to_vec(), b"value".to_vec())],
        }
    }

    fn entries() -> Vec<(Entry, Vec<u8>)> {
        let e = |path: &str, kind: Kind, mode: u32| Entry {
            path: path.as_bytes().to_vec(),
            kind,
            meta: if mode == 0 {
                Meta::default()
            } else {
                meta(mode)
            },
        };
        vec![
            (e("d/f", Kind::File { size: 5 }, 0o4755), b"hello".to_vec()),
            (
                e(
                    "d/l",
                    Kind::HardLink {
                        target: b"d/f".to_vec(),
                    },
                    0,
                ),
                vec![],
            ),
            (
                e(
                    "d/s",
                    Kind::Symlink {
                        target: b"../x".to_vec(),
                    },
                    0o777,
                ),
                vec![],
            ),
            (
                e("d/c", Kind::CharDev { major: 1, minor: 3 }, 0o666),
                vec![],
            ),
            (
                e("d/b", Kind::BlockDev { major: 7, minor: 0 }, 0o660),
                vec![],
            ),
            (e("d/p", Kind::Fifo, 0o600), vec![]),
            (e("d/k", Kind::Socket, 0o755), vec![]),
            (e("d", Kind::Dir, 0o1777), vec![]),
            (e(".", Kind::Dir, 0o755), vec![]),
        ]
    }

    fn write_all(list: &[(Entry, Vec<u8>)]) -> Vec<u8> {
        let mut w = ArchiveWriter::new(Vec::new()).unwrap();
        for (e, data) in list {
            let mut d = &data[..];
            w.write(e, Some(&mut d)).unwrap();
        }
        let (out, bytes, count) = w.finish().unwrap();
        assert_eq!(bytes, out.len() as u64);
        assert_eq!(count, list.len() as u64);
        out
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<(Entry, Vec<u8>)>, ArchiveError> {
        let mut r = ArchiveReader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(e) = r.next()? {
            let mut data = Vec::new();
            r.data().read_to_end(&mut data)?;
            out.push((e, data));
        }
        Ok(out)
    }

    #[test]
    fn entries_round_trip() {
        let list = entries();
        assert_eq!(read_all(&write_all(&list)).unwrap(), list);
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for p in [
            "", "/etc", "a/../b", "..", "a//b", "a/", "./a", "a/.", "a\0b",
        ] {
            assert!(path_problem(p.as_bytes()).is_some(), "{p:?}");
        }
        for p in [".", "a", "a/b", "a/.b", "...", "a b/c"] {
            assert!(path_problem(p.as_bytes()).is_none(), "{p:?}");
        }
        // A reader refuses them even when a writer did not check.
        let mut bytes = write_all(&[(
            Entry {
                path: b"aa".to_vec(),
                kind: Kind::Fifo,
                meta: Meta::default(),
            },
            vec![],
        )]);
        bytes[9..11].copy_from_slice(b"..");
        let err = read_all(&bytes).unwrap_err().to_string();
        assert!(err.contains(".."), "{err}");
    }

    #[test]
    fn a_truncated_or_miscounted_archive_is_refused() {
        let bytes = write_all(&entries());
        for n in 0..bytes.len() {
            assert!(read_all(&bytes[..n]).is_err(), "{n}");
        }
        let mut b = bytes.clone();
        let at = b.len() - 8;
        b[at] += 1;
        assert!(read_all(&b).is_err());
    }

    #[test]
    fn random_bytes_never_panic_the_reader() {
        let mut rng = XorShift::new(99);
        let good = write_all(&entries());
        for _ in 0..3000 {
            let mut b = good.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(b.len());
                b[i] = rng.byte();
            }
            let _ = read_all(&b);
            let noise = rng.below(300);
            let mut n = good[..6].to_vec();
            n.extend(rng.bytes(noise));
            let _ = read_all(&n);
        }
    }
}
