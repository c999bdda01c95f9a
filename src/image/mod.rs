//! `.hcon` images: a root filesystem packed into one file, compressed, cut into chunks that are
//! each authenticated (and encrypted with `aes` or `kyber_aes`), so that nothing from an image
//! is used before it verified. The byte layout, the algorithms and the threat model are in
//! docs/hcon-format.md.
//!
//! One concern per file: `keys` (key pairs, key files, key ids), `header` (header and trailer
//! bytes), `envelope` (the data key and its wrapping per recipient), `chunk` (sealing and
//! opening chunks), `archive` (filesystem entries as bytes), `fsread`/`fswrite` (entries from
//! and to a directory tree), `pack`, `unpack`, `inspect`, `cache` (verified images shared by runs).

mod archive;
pub mod cache;
mod chunk;
mod envelope;
mod fsread;
mod fswrite;
mod header;
mod hex;
mod inspect;
pub mod keys;
mod pack;
mod unpack;
mod wire;
mod xattr;

#[cfg(test)]
mod testutil;

use std::io;
use std::path::PathBuf;

use thiserror::Error;

pub use archive::ArchiveError;
pub use chunk::ChunkError;
pub use header::{
    Encryption, HeaderError, RecipientKind, Totals, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE,
    MAX_RECIPIENTS, MIN_CHUNK_SIZE,
};
pub use inspect::{inspect, Info, RecipientInfo};
pub use keys::{AesKey, KeyError, KeyId, PrivateKey, PublicKey, UnlockKey};
pub use pack::{pack, PackOptions, PackSummary, Protection};
pub use unpack::{unpack, unpack_with, verify};

/// Called with (bytes done, bytes in all) as work proceeds.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// An image's digest: SHA-256 of the file from its first byte up to the trailer (header and
/// chunk records), as the trailer records it. Identifies an image file's exact content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Digest(pub [u8; 32]);

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", hex::encode(&self.0))
    }
}

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("corrupted compressed stream: {0}")]
    Compression(String),
    #[error("the image is encrypted ({encryption}) for key {recipients}: a key is needed")]
    KeyMissing {
        encryption: Encryption,
        recipients: String,
    },
    #[error("the image is encrypted with {encryption}, and the key given is {given}")]
    KeyKind {
        encryption: Encryption,
        given: &'static str,
    },
    #[error("wrong key: the image is not encrypted for key {key_id} (it is for {recipients})")]
    NotARecipient { key_id: KeyId, recipients: String },
    #[error("key {key_id} does not open the image's data key (a forged or damaged header)")]
    Unwrap { key_id: KeyId },
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("{0} already exists")]
    Exists(PathBuf),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Usage(String),
    #[error("it is encrypted with {actual}, not {required} as declared")]
    NotEncryptedAs {
        required: Encryption,
        actual: Encryption,
    },
    #[error("{0}")]
    Crypto(&'static str),
}

impl ImageError {
    /// An error from reading the payload: what the chunk reader found, a damaged compressed
    /// stream, or a plain I/O error while doing `what`.
    pub(crate) fn from_read(e: io::Error, what: &str) -> ImageError {
        match ChunkError::from_io(e) {
            Ok(chunk) => ImageError::Chunk(chunk),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                ImageError::Archive(ArchiveError::Truncated)
            }
            // zstd reports a damaged stream as `Other` with its own message.
            Err(e) if e.kind() == io::ErrorKind::Other => ImageError::Compression(e.to_string()),
            Err(source) => ImageError::Io {
                what: what.into(),
                source,
            },
        }
    }

    /// An archive error whose I/O part may carry a chunk or compression error.
    pub(crate) fn from_archive(e: ArchiveError) -> ImageError {
        match e {
            ArchiveError::Io(io) => ImageError::from_read(io, "reading the archive"),
            other => ImageError::Archive(other),
        }
    }
}
