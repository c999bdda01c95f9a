//! `hydra image inspect`: what an image's header and trailer say, without a key and without
//! reading the payload. Both are checked (their SHA-256 checks) and the file's size must match
//! what they describe; the chunks themselves are verified by unpack.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde::Serialize;

use super::chunk::{CHECK_LEN, GCM_TAG_LEN, RECORD_HEAD_LEN};
use super::header::{
    Header, HeaderError, RecipientKind, Trailer, TRAILER_LEN, TRAILER_MAGIC, VERSION,
};
use super::{hex, Digest, Encryption, ImageError};

#[derive(Debug, Clone, Serialize)]
pub struct RecipientInfo {
    pub kind: RecipientKind,
    pub key_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Info {
    pub format_version: u16,
    pub encryption: Encryption,
    pub compression: &'static str,
    pub image_id: String,
    pub recipients: Vec<RecipientInfo>,
    pub chunk_size: u32,
    pub chunks: u64,
    /// Bytes of the compressed stream.
    pub compressed_bytes: u64,
    /// Bytes of the uncompressed archive.
    pub archive_bytes: u64,
    pub entries: u64,
    pub header_bytes: u64,
    pub file_bytes: u64,
    /// `sha256:<hex>`, as recorded (unpack verifies it).
    pub digest: String,
}

pub fn inspect(file: &Path) -> Result<Info, ImageError> {
    let reading = |source| ImageError::Io {
        what: format!("reading {}", file.display()),
        source,
    };
    let mut f = BufReader::new(File::open(file).map_err(reading)?);
    let (header, raw, hash) = Header::read_from(&mut f)?;
    let file_bytes = f.get_ref().metadata().map_err(reading)?.len();
    let header_bytes = raw.len() as u64;
    if file_bytes < header_bytes + TRAILER_LEN as u64 {
        return Err(HeaderError::TrailerTruncated.into());
    }
    f.seek(SeekFrom::End(-(TRAILER_LEN as i64)))
        .map_err(reading)?;
    let mut bytes = [0u8; TRAILER_LEN];
    f.read_exact(&mut bytes).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ImageError::Header(HeaderError::TrailerTruncated),
        _ => reading(e),
    })?;
    if &bytes[..4] != TRAILER_MAGIC {
        return Err(HeaderError::TrailerCorrupted(
            "no trailer at the end of the file (truncated or damaged)",
        )
        .into());
    }
    let trailer = Trailer::parse(&bytes, &hash)?;
    let t = trailer.totals;
    let tag_len = if header.encryption == Encryption::None {
        CHECK_LEN
    } else {
        GCM_TAG_LEN
    } as u64;
    let expected = t
        .chunks
        .checked_mul(RECORD_HEAD_LEN as u64 + tag_len)
        .and_then(|n| n.checked_add(t.stream_bytes))
        .and_then(|n| n.checked_add(header_bytes + TRAILER_LEN as u64));
    if expected != Some(file_bytes) {
        return Err(HeaderError::TrailerCorrupted(
            "the file's size does not match its header and trailer (truncated or padded)",
        )
        .into());
    }
    Ok(Info {
        format_version: VERSION,
        encryption: header.encryption,
        compression: "zstd",
        image_id: hex::encode(&header.image_id),
        recipients: header
            .recipients
            .iter()
            .map(|r| RecipientInfo {
                kind: r.kind,
                key_id: r.key_id.to_string(),
            })
            .collect(),
        chunk_size: header.chunk_size,
        chunks: t.chunks,
        compressed_bytes: t.stream_bytes,
        archive_bytes: t.archive_bytes,
        entries: t.entries,
        header_bytes,
        file_bytes,
        digest: Digest(trailer.digest).to_string(),
    })
}
