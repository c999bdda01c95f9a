//! Reads a directory tree as archive entries: depth first, names in byte order, a directory
//! after its contents and the root last, hard links as links to the first name seen. Holds one
//! directory listing per level of the current path, never the whole tree.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::archive::{Entry, Kind, Meta, MAX_PATH};
use super::xattr;
use super::ImageError;

/// One entry, and for a regular file the file opened for reading.
pub struct Item {
    pub entry: Entry,
    pub file: Option<File>,
}

struct Frame {
    rel: Vec<u8>,
    names: Vec<OsString>,
    next: usize,
    meta: Metadata,
}

pub struct Walker {
    root: PathBuf,
    stack: Vec<Frame>,
    /// (device, inode) of files with more than one link → the first path packed.
    links: HashMap<(u64, u64), Vec<u8>>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        what: path.display().to_string(),
        source,
    }
}

fn list(path: &Path) -> Result<Vec<OsString>, ImageError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(path).map_err(io_error(path))? {
        names.push(entry.map_err(io_error(path))?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

fn meta_of(path: &Path, m: &Metadata) -> Result<Meta, ImageError> {
    Ok(Meta {
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime: m.mtime(),
        mtime_nsec: u32::try_from(m.mtime_nsec()).unwrap_or(0),
        xattrs: xattr::list(path).map_err(|source| ImageError::Io {
            what: format!("reading the xattrs of {}", path.display()),
            source,
        })?,
    })
}

impl Walker {
    pub fn new(root: &Path) -> Result<Walker, ImageError> {
        // The root itself may be named through a symlink; nothing below it is followed.
        let meta = fs::metadata(root).map_err(io_error(root))?;
        if !meta.is_dir() {
            return Err(ImageError::NotADirectory(root.into()));
        }
        let names = list(root)?;
        Ok(Walker {
            root: root.into(),
            stack: vec![Frame {
                rel: Vec::new(),
                names,
                next: 0,
                meta,
            }],
            links: HashMap::new(),
        })
    }

    fn full(&self, rel: &[u8]) -> PathBuf {
        self.root.join(std::ffi::OsStr::from_bytes(rel))
    }

    pub fn next(&mut self) -> Result<Option<Item>, ImageError> {
        loop {
            let Some(top) = self.stack.last_mut() else {
                return Ok(None);
            };
            if top.next == top.names.len() {
                let Some(frame) = self.stack.pop() else {
                    return Ok(None);
                };
                let path = if frame.rel.is_empty() {
                    b".".to_vec()
                } else {
                    frame.rel
                };
                let full = self.full(if path == b"." { b"" } else { &path });
                let meta = meta_of(&full, &frame.meta)?;
                return Ok(Some(Item {
                    entry: Entry {
                        path,
                        kind: Kind::Dir,
                        meta,
                    },
                    file: None,
                }));
            }
            let name = top.names[top.next].clone();
            top.next += 1;
            let mut rel = top.rel.clone();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(&name.into_vec());
            let full = self.full(&rel);
            if rel.len() > MAX_PATH {
                return Err(ImageError::Unsupported(format!(
                    "{}: path longer than {MAX_PATH} bytes",
                    full.display()
                )));
            }
            let m = match fs::symlink_metadata(&full) {
                Ok(m) => m,
                // Removed since the directory was listed.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&full)(e)),
            };
            if m.is_dir() {
                let names = list(&full)?;
                self.stack.push(Frame {
                    rel,
                    names,
                    next: 0,
                    meta: m,
                });
                continue;
            }
            return self.item(rel, &full, &m).map(Some);
        }
    }

    fn item(&mut self, rel: Vec<u8>, full: &Path, m: &Metadata) -> Result<Item, ImageError> {
        if m.nlink() > 1 {
            let key = (m.dev(), m.ino());
            if let Some(first) = self.links.get(&key) {
                return Ok(Item {
                    entry: Entry {
                        path: rel,
                        kind: Kind::HardLink {
                            target: first.clone(),
                        },
                        meta: Meta::default(),
                    },
                    file: None,
                });
            }
            self.links.insert(key, rel.clone());
        }
        let ft = m.file_type();
        let dev = |rdev: u64| {
            (
                nix::sys::stat::major(rdev) as u32,
                nix::sys::stat::minor(rdev) as u32,
            )
        };
        let mut file = None;
        let kind = if ft.is_file() {
            let f = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(full)
                .map_err(io_error(full))?;
            let opened = f.metadata().map_err(io_error(full))?;
            if opened.ino() != m.ino() || opened.dev() != m.dev() {
                return Err(ImageError::Unsupported(format!(
                    "{}: replaced while it was packed",
                    full.display()
                )));
            }
            file = Some(f);
            Kind::File { size: m.len() }
        } else if ft.is_symlink() {
            let target = fs::read_link(full).map_err(io_error(full))?;
            Kind::Symlink {
                target: target.into_os_string().into_vec(),
            }
        } else if ft.is_char_device() {
            let (major, minor) = dev(m.rdev());
            Kind::CharDev { major, minor }
        } else if ft.is_block_device() {
            let (major, minor) = dev(m.rdev());
            Kind::BlockDev { major, minor }
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_socket() {
            Kind::Socket
        } else {
            return Err(ImageError::Unsupported(format!(
                "{}: unknown file type",
                full.display()
            )));
        };
        let meta = meta_of(full, m)?;
        Ok(Item {
            entry: Entry {
                path: rel,
                kind,
                meta,
            },
            file,
        })
    }
}

/// Bytes of the regular files under `root` (for a progress bar; errors count as nothing).
pub fn file_bytes(root: &Path) -> u64 {
    let mut total = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(listing) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in listing.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => dirs.push(entry.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}
