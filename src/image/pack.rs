//! `hydra image pack`: a directory tree → archive → zstd → sealed chunks → a `.hcon` file,
//! streamed (one chunk and one file buffer in memory), written to a temporary file next to the
//! output and renamed over it at the end.

use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::archive::ArchiveWriter;
use super::chunk::{ChunkWriter, HashWriter, Sealer};
use super::envelope;
use super::fsread::{self, Walker};
use super::header::{Encryption, Header, Totals, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};
use super::keys::{AesKey, PublicKey};
use super::{hex, ArchiveError, Digest, ImageError, Progress, DEFAULT_CHUNK_SIZE, MAX_RECIPIENTS};

/// How an image is protected.
#[derive(Debug)]
pub enum Protection {
    /// No encryption; a SHA-256 check per chunk and the digest.
    None,
    /// AES-256-GCM; the data key wrapped with a 32-byte key file's key.
    Aes(AesKey),
    /// AES-256-GCM; the data key wrapped for each X-Wing public key.
    KyberAes(Vec<PublicKey>),
}

pub struct PackOptions<'a> {
    pub protection: Protection,
    /// Bytes of compressed stream per chunk.
    pub chunk_size: u32,
    /// zstd level.
    pub level: i32,
    pub progress: Option<Progress<'a>>,
}

impl<'a> PackOptions<'a> {
    pub fn new(protection: Protection) -> PackOptions<'a> {
        PackOptions {
            protection,
            chunk_size: DEFAULT_CHUNK_SIZE,
            level: 3,
            progress: None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PackSummary {
    pub digest: Digest,
    pub totals: Totals,
    /// Size of the image file.
    pub file_bytes: u64,
}

/// The output's temporary file, removed unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    kept: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Counts the bytes of packed files for the progress callback.
struct Counting<'p, 'q, R> {
    inner: R,
    done: &'p mut u64,
    total: u64,
    progress: &'p mut Option<Progress<'q>>,
}

impl<R: Read> Read for Counting<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        *self.done += n as u64;
        if let Some(p) = self.progress.as_mut() {
            p(*self.done, self.total.max(*self.done));
        }
        Ok(n)
    }
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Packs `dir` into the image file `out` (replaced if it exists).
pub fn pack(dir: &Path, out: &Path, mut opts: PackOptions) -> Result<PackSummary, ImageError> {
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&opts.chunk_size) {
        return Err(ImageError::Usage(format!(
            "chunk size {} is out of range ({MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE})",
            opts.chunk_size
        )));
    }
    let mut walker = Walker::new(dir)?;
    let out_dir = parent_of(out);
    let canonical = |p: &Path| {
        fs::canonicalize(p).map_err(|source| ImageError::Io {
            what: p.display().to_string(),
            source,
        })
    };
    if canonical(out_dir)?.starts_with(canonical(dir)?) {
        return Err(ImageError::Usage(format!(
            "the image {} would be inside the directory it packs",
            out.display()
        )));
    }

    let image_id = envelope::random_id()?;
    let (encryption, recipients, payload_key) = match &opts.protection {
        Protection::None => (Encryption::None, Vec::new(), None),
        Protection::Aes(key) => {
            let data_key = envelope::random_key()?;
            let r = envelope::wrap_for_aes_key(key, &image_id, &data_key)?;
            (
                Encryption::Aes,
                vec![r],
                Some(envelope::payload_key(&data_key)?),
            )
        }
        Protection::KyberAes(keys) => {
            if keys.is_empty() || keys.len() > MAX_RECIPIENTS {
                return Err(ImageError::Usage(format!(
                    "kyber_aes takes 1 to {MAX_RECIPIENTS} recipients, not {}",
                    keys.len()
                )));
            }
            let data_key = envelope::random_key()?;
            let mut rs: Vec<super::header::Recipient> = Vec::new();
            for key in keys {
                if rs.iter().any(|r| r.key_id == key.id()) {
                    continue;
                }
                rs.push(envelope::wrap_for_public_key(key, &image_id, &data_key)?);
            }
            (
                Encryption::KyberAes,
                rs,
                Some(envelope::payload_key(&data_key)?),
            )
        }
    };
    let header = Header {
        encryption,
        chunk_size: opts.chunk_size,
        image_id,
        recipients,
    };
    let (header_bytes, header_hash) = header.to_bytes();

    let name = out
        .file_name()
        .ok_or_else(|| ImageError::Usage(format!("{} is not a file name", out.display())))?;
    let suffix = hex::encode(&envelope::random_id()?[..4]);
    let mut temp = TempFile {
        path: out_dir.join(format!(
            ".{}.tmp-{}-{suffix}",
            name.to_string_lossy(),
            std::process::id()
        )),
        kept: false,
    };
    let writing = |source| ImageError::Io {
        what: format!("writing {}", out.display()),
        source,
    };
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&temp.path)
        .map_err(writing)?;
    let mut sink = HashWriter::new(BufWriter::with_capacity(256 * 1024, file));
    sink.write_all(&header_bytes).map_err(writing)?;
    let chunks = ChunkWriter::new(
        sink,
        Sealer::new(payload_key.as_deref()),
        header_hash,
        opts.chunk_size,
    );
    let compressor = zstd::stream::write::Encoder::new(chunks, opts.level).map_err(writing)?;
    let archive_error = |e: ArchiveError| match e {
        ArchiveError::Io(source) => writing(source),
        other => ImageError::Archive(other),
    };
    let mut archive = ArchiveWriter::new(compressor).map_err(writing)?;

    let total = if opts.progress.is_some() {
        fsread::file_bytes(dir)
    } else {
        0
    };
    let mut done = 0u64;
    while let Some(item) = walker.next()? {
        match item.file {
            Some(file) => {
                let mut counting = Counting {
                    inner: file,
                    done: &mut done,
                    total,
                    progress: &mut opts.progress,
                };
                archive.write(&item.entry, Some(&mut counting))
            }
            None => archive.write(&item.entry, None),
        }
        .map_err(archive_error)?;
    }
    let (compressor, archive_bytes, entries) = archive.finish().map_err(writing)?;
    let chunks = compressor.finish().map_err(writing)?;
    let (buffered, trailer) = chunks.finish(archive_bytes, entries)?;
    let file = buffered.into_inner().map_err(|e| writing(e.into_error()))?;
    file.sync_all().map_err(writing)?;
    let file_bytes = file.metadata().map_err(writing)?.len();
    fs::rename(&temp.path, out).map_err(writing)?;
    temp.kept = true;
    if let Some(p) = opts.progress.as_mut() {
        p(done, done);
    }
    Ok(PackSummary {
        digest: Digest(trailer.digest),
        totals: trailer.totals,
        file_bytes,
    })
}
