//! The image cache: an image is verified (and decrypted) completely once, into a directory
//! named by its digest under a cache only its owner can enter; every process and container
//! using that image shares it read-only as the lower layer of its root (each gets its own
//! writable layer on top). A cached image is reused, not decrypted again, but an encrypted one
//! still needs a key that opens its header: having the file is not enough.

use std::fs::{self, File};
use std::io::BufReader;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::header::Header;
use super::{envelope, inspect, unpack_with, Encryption, ImageError, UnlockKey};

/// Where verified images live: `$HYDRA_IMAGE_CACHE`, else `/var/cache/hydra/images` as root,
/// `$XDG_CACHE_HOME/hydra/images` (or `~/.cache/hydra/images`) otherwise.
pub fn root() -> PathBuf {
    if let Some(dir) = std::env::var_os("HYDRA_IMAGE_CACHE") {
        return PathBuf::from(dir);
    }
    if crate::process::rootless() {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        return base.join("hydra/images");
    }
    PathBuf::from("/var/cache/hydra/images")
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> ImageError {
    move |source| ImageError::Io { what, source }
}

/// The verified root filesystem of image `file`, unpacking it into the cache first if it is
/// not there yet (with the key file `key` for an encrypted image). With `required`, an image
/// not encrypted so is refused before any of it is read past its header.
pub fn prepare(
    file: &Path,
    key: Option<&Path>,
    required: Option<Encryption>,
) -> Result<PathBuf, ImageError> {
    let info = inspect(file)?;
    if let Some(required) = required.filter(|&r| r != info.encryption) {
        return Err(ImageError::NotEncryptedAs {
            required,
            actual: info.encryption,
        });
    }
    // The name comes from the file: only a plain SHA-256 hex digest may become a path.
    let name = info
        .digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| ImageError::Io {
            what: format!("reading {}", file.display()),
            source: std::io::Error::other("the image's digest is malformed"),
        })?
        .to_ascii_lowercase();
    let key = key.map(UnlockKey::load).transpose()?;
    let cache = root();
    fs::create_dir_all(&cache).map_err(io(format!("creating {}", cache.display())))?;
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o700))
        .map_err(io(format!("securing {}", cache.display())))?;
    // One unpacker at a time (the others then find the image done), locked on the cache
    // directory itself so that a failure leaves no file behind.
    let lock = File::open(&cache).map_err(io(format!("opening {}", cache.display())))?;
    // SAFETY: flock on an fd we own; released when `lock` closes.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io(format!("locking {}", cache.display()))(
            std::io::Error::last_os_error(),
        ));
    }
    let dir = cache.join(&name);
    if dir.is_dir() {
        let reading = io(format!("reading {}", file.display()));
        let mut f = BufReader::new(File::open(file).map_err(reading)?);
        let (header, _, _) = Header::read_from(&mut f)?;
        envelope::unlock(&header, key.as_ref())?;
        return Ok(dir);
    }
    let digest = unpack_with(file, &dir, key.as_ref(), None)?;
    if digest.to_string() != format!("sha256:{name}") {
        let _ = fs::remove_dir_all(&dir);
        return Err(super::ChunkError::Digest.into());
    }
    Ok(dir)
}
