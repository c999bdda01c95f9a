//! `hydra image unpack`: verify and decrypt an image while writing its tree into a temporary
//! directory next to the target, and rename it into place only once everything verified (the
//! last chunk, the trailer, the digest, the totals). On any failure the temporary directory is
//! removed and the target never appears.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};

use super::archive::{ArchiveError, ArchiveReader};
use super::chunk::{ChunkError, ChunkReader, Sealer};
use super::envelope;
use super::fswrite::Materializer;
use super::header::Header;
use super::keys::UnlockKey;
use super::wire::read_full;
use super::{hex, Digest, ImageError, Progress};

/// zstd windows above 32 MiB are refused (hydra writes 8 MiB at most), bounding the memory an
/// image can make the decoder take.
const WINDOW_LOG_MAX: u32 = 25;

/// Unpacks `file` into `dir` (which must not exist), opening it with the key file `key` if it
/// is encrypted. Returns the image's digest.
pub fn unpack(file: &Path, dir: &Path, key: Option<&Path>) -> Result<Digest, ImageError> {
    let key = key.map(UnlockKey::load).transpose()?;
    unpack_with(file, dir, key.as_ref(), None)
}

/// Counts the image bytes read for the progress callback.
struct Counting<'q, R> {
    inner: R,
    done: u64,
    total: u64,
    progress: Option<Progress<'q>>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if let Some(p) = self.progress.as_mut() {
            p(self.done, self.total.max(self.done));
        }
        Ok(n)
    }
}

/// The temporary directory, removed unless renamed into place.
struct TempDir {
    path: PathBuf,
    kept: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.kept {
            remove_tree(&self.path);
        }
    }
}

/// Removes a tree, first making directories writable if a plain removal fails (a non-root
/// unpack may have restored read-only directories).
fn remove_tree(path: &Path) {
    if fs::remove_dir_all(path).is_ok() {
        return;
    }
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
        if let Ok(listing) = fs::read_dir(&dir) {
            for entry in listing.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(entry.path());
                }
            }
        }
    }
    let _ = fs::remove_dir_all(path);
}

/// Like [`unpack`] with a loaded key and an optional progress callback (image bytes read).
pub fn unpack_with(
    file: &Path,
    dir: &Path,
    key: Option<&UnlockKey>,
    progress: Option<Progress>,
) -> Result<Digest, ImageError> {
    if fs::symlink_metadata(dir).is_ok() {
        return Err(ImageError::Exists(dir.into()));
    }
    let reading = |source| ImageError::Io {
        what: format!("reading {}", file.display()),
        source,
    };
    let image = File::open(file).map_err(reading)?;
    let total = image.metadata().map_err(reading)?.len();
    let mut src = Counting {
        inner: BufReader::with_capacity(256 * 1024, image),
        done: 0,
        total,
        progress,
    };
    let (header, raw_header, header_hash) = Header::read_from(&mut src)?;
    let payload_key = envelope::unlock(&header, key)?;

    let name = dir
        .file_name()
        .ok_or_else(|| ImageError::Usage(format!("{} is not a directory name", dir.display())))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let suffix = hex::encode(&envelope::random_id()?[..4]);
    let mut temp = TempDir {
        path: parent.join(format!(
            ".{}.hcon-{}-{suffix}",
            name.to_string_lossy(),
            std::process::id()
        )),
        kept: false,
    };
    let creating = |source| ImageError::Io {
        what: format!("creating {}", dir.display()),
        source,
    };
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&temp.path)
        .map_err(|e| {
            // Nothing was created: nothing to remove.
            creating(e)
        })?;

    let chunks = ChunkReader::new(
        src,
        &raw_header,
        header_hash,
        Sealer::new(payload_key.as_deref()),
        header.chunk_size,
    );
    let mut decoder = zstd::stream::read::Decoder::new(chunks).map_err(reading)?;
    decoder.window_log_max(WINDOW_LOG_MAX).map_err(reading)?;
    let decoder = decoder.single_frame();
    let mut archive = ArchiveReader::new(decoder).map_err(ImageError::from_archive)?;
    let mut tree = Materializer::new(&temp.path);
    while let Some(entry) = archive.next().map_err(ImageError::from_archive)? {
        tree.apply(&entry, &mut archive.data())?;
    }
    let (archive_bytes, entries) = (archive.bytes(), archive.entries());

    // Nothing may follow the archive in the compressed stream, nor the stream in the payload;
    // draining the payload reads the last chunk and the trailer and checks the digest.
    let mut decoder = archive.into_inner();
    let mut probe = [0u8; 1];
    if read_full(&mut decoder, &mut probe).map_err(|e| ImageError::from_read(e, "decompressing"))?
        != 0
    {
        return Err(ArchiveError::Corrupted("data after the archive's end".into()).into());
    }
    decoder
        .finish_frame()
        .map_err(|e| ImageError::from_read(e, "decompressing"))?;
    let mut rest = decoder.into_inner();
    if read_full(&mut rest, &mut probe).map_err(|e| ImageError::from_read(e, "reading"))? != 0 {
        return Err(ImageError::Compression(
            "data after the end of the compressed stream".into(),
        ));
    }
    let chunks = rest.into_inner();
    let trailer = *chunks
        .trailer()
        .ok_or_else(|| ChunkError::Truncated("before the last chunk".into()))?;
    if trailer.totals.archive_bytes != archive_bytes || trailer.totals.entries != entries {
        return Err(ChunkError::Totals.into());
    }

    tree.finish()?;
    renameat2(
        AT_FDCWD,
        temp.path.as_path(),
        AT_FDCWD,
        dir,
        RenameFlags::RENAME_NOREPLACE,
    )
    .map_err(|errno| match errno {
        nix::errno::Errno::EEXIST => ImageError::Exists(dir.into()),
        other => creating(io::Error::from(other)),
    })?;
    temp.kept = true;
    Ok(Digest(trailer.digest))
}

/// Verifies (and decrypts, with the key file `key`) every chunk of `file` and its trailer,
/// writing nothing: what `hydra image verify` does, and the decrypt + verify cost by itself.
/// Returns the digest.
pub fn verify(file: &Path, key: Option<&Path>) -> Result<Digest, ImageError> {
    let key = key.map(UnlockKey::load).transpose()?;
    let reading = |source| ImageError::Io {
        what: format!("reading {}", file.display()),
        source,
    };
    let mut src = BufReader::with_capacity(256 * 1024, File::open(file).map_err(reading)?);
    let (header, raw_header, header_hash) = Header::read_from(&mut src)?;
    let payload_key = envelope::unlock(&header, key.as_ref())?;
    let mut chunks = ChunkReader::new(
        src,
        &raw_header,
        header_hash,
        Sealer::new(payload_key.as_deref()),
        header.chunk_size,
    );
    io::copy(&mut chunks, &mut io::sink()).map_err(|e| ImageError::from_read(e, "reading"))?;
    let trailer = *chunks
        .trailer()
        .ok_or_else(|| ChunkError::Truncated("before the last chunk".into()))?;
    Ok(Digest(trailer.digest))
}
