//! The header at the start of a `.hcon` file and the trailer at its end (byte layout in
//! docs/hcon-format.md). Both end in a SHA-256 check; the header's is the *header hash* that
//! every chunk's associated data carries.

use std::io::{self, Read};

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use super::keys::{KeyId, KEM_CIPHERTEXT_LEN};
use super::wire::{Fields, Short};

pub const MAGIC: &[u8; 4] = b"HCON";
pub const VERSION: u16 = 1;
/// Bytes before the recipient records.
const FIXED_LEN: usize = 36;
const CHECK_LEN: usize = 32;
pub const MIN_CHUNK_SIZE: u32 = 4 * 1024;
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
pub const DEFAULT_CHUNK_SIZE: u32 = 1024 * 1024;
pub const MAX_RECIPIENTS: usize = 64;
/// AES-256-GCM of a 32-byte data key: ciphertext and tag.
pub const WRAPPED_KEY_LEN: usize = 48;
const RECIPIENT_FIXED_LEN: usize = 1 + 8 + 2 + WRAPPED_KEY_LEN;
/// The largest header this version can write.
const MAX_HEADER_LEN: usize =
    FIXED_LEN + MAX_RECIPIENTS * (RECIPIENT_FIXED_LEN + KEM_CIPHERTEXT_LEN) + CHECK_LEN;
const COMPRESSION_ZSTD: u8 = 1;

pub const TRAILER_MAGIC: &[u8; 4] = b"HEND";
/// magic, four counters, the digest, the check.
pub const TRAILER_LEN: usize = 4 + 4 * 8 + 32 + 32;

#[derive(Debug, Error)]
pub enum HeaderError {
    #[error("not a .hcon image (no HCON magic at its start)")]
    NotAnImage,
    #[error("truncated: the file ends inside the header")]
    Truncated,
    #[error("corrupted header: {0}")]
    Corrupted(&'static str),
    #[error("unsupported .hcon format version {0} (this hydra reads version {VERSION})")]
    Version(u16),
    #[error("invalid header: {0}")]
    Invalid(String),
    #[error("truncated: the file ends before its trailer")]
    TrailerTruncated,
    #[error("corrupted trailer: {0}")]
    TrailerCorrupted(&'static str),
    #[error("reading the header: {0}")]
    Io(#[source] io::Error),
}

/// How the payload is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encryption {
    None,
    Aes,
    KyberAes,
}

impl Encryption {
    fn code(self) -> u8 {
        match self {
            Encryption::None => 0,
            Encryption::Aes => 1,
            Encryption::KyberAes => 2,
        }
    }

    fn from_code(code: u8) -> Option<Encryption> {
        match code {
            0 => Some(Encryption::None),
            1 => Some(Encryption::Aes),
            2 => Some(Encryption::KyberAes),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encryption::None => "none",
            Encryption::Aes => "aes",
            Encryption::KyberAes => "kyber_aes",
        }
    }
}

impl std::fmt::Display for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What kind of key a recipient record is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RecipientKind {
    #[serde(rename = "aes")]
    Aes,
    #[serde(rename = "x-wing")]
    XWing,
}

impl RecipientKind {
    pub fn code(self) -> u8 {
        match self {
            RecipientKind::Aes => 1,
            RecipientKind::XWing => 2,
        }
    }

    fn from_code(code: u8) -> Option<RecipientKind> {
        match code {
            1 => Some(RecipientKind::Aes),
            2 => Some(RecipientKind::XWing),
            _ => None,
        }
    }

    fn kem_len(self) -> usize {
        match self {
            RecipientKind::Aes => 0,
            RecipientKind::XWing => KEM_CIPHERTEXT_LEN,
        }
    }
}

/// The data key, wrapped for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub kind: RecipientKind,
    pub key_id: KeyId,
    /// The X-Wing ciphertext (empty for an AES key).
    pub kem_ciphertext: Vec<u8>,
    pub wrapped_key: [u8; WRAPPED_KEY_LEN],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub encryption: Encryption,
    /// Bytes of compressed stream per chunk (all but the last chunk hold exactly this many).
    pub chunk_size: u32,
    /// Random per image: binds the wrapped keys to this image.
    pub image_id: [u8; 16],
    pub recipients: Vec<Recipient>,
}

impl Header {
    /// The header's bytes, ending in its check, and the header hash (= that check).
    pub fn to_bytes(&self) -> (Vec<u8>, [u8; 32]) {
        let len = FIXED_LEN
            + self
                .recipients
                .iter()
                .map(|r| RECIPIENT_FIXED_LEN + r.kem_ciphertext.len())
                .sum::<usize>()
            + CHECK_LEN;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.push(self.encryption.code());
        out.push(COMPRESSION_ZSTD);
        out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&self.chunk_size.to_le_bytes());
        out.extend_from_slice(&self.image_id);
        let count = u16::try_from(self.recipients.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        for r in &self.recipients {
            out.push(r.kind.code());
            out.extend_from_slice(&r.key_id.0);
            let kem_len = u16::try_from(r.kem_ciphertext.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&kem_len.to_le_bytes());
            out.extend_from_slice(&r.kem_ciphertext);
            out.extend_from_slice(&r.wrapped_key);
        }
        let hash: [u8; 32] = Sha256::digest(&out).into();
        out.extend_from_slice(&hash);
        (out, hash)
    }

    /// Reads a header from the start of a stream: the header, its raw bytes and its hash.
    pub fn read_from(r: &mut impl Read) -> Result<(Header, Vec<u8>, [u8; 32]), HeaderError> {
        let mut raw = vec![0u8; 12];
        read_exactly(r, &mut raw)?;
        if &raw[..4] != MAGIC {
            return Err(HeaderError::NotAnImage);
        }
        let len = u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]) as usize;
        if !(FIXED_LEN + CHECK_LEN..=MAX_HEADER_LEN).contains(&len) {
            return Err(HeaderError::Corrupted("its length is out of range"));
        }
        raw.resize(len, 0);
        read_exactly(r, &mut raw[12..])?;
        let (header, hash) = Header::parse(&raw)?;
        Ok((header, raw, hash))
    }

    /// Parses a whole header (exactly its bytes): the check first, then every field.
    pub fn parse(bytes: &[u8]) -> Result<(Header, [u8; 32]), HeaderError> {
        if bytes.len() < 4 || &bytes[..4] != MAGIC {
            return Err(HeaderError::NotAnImage);
        }
        if bytes.len() < FIXED_LEN + CHECK_LEN {
            return Err(HeaderError::Truncated);
        }
        let (body, check) = bytes.split_at(bytes.len() - CHECK_LEN);
        let hash: [u8; 32] = Sha256::digest(body).into();
        if hash[..] != check[..] {
            return Err(HeaderError::Corrupted("checksum mismatch"));
        }
        let short = |_: Short| HeaderError::Invalid("a field runs past its end".into());
        let mut f = Fields::new(body);
        f.take(4).map_err(short)?;
        let version = f.u16().map_err(short)?;
        if version != VERSION {
            return Err(HeaderError::Version(version));
        }
        let enc_code = f.u8().map_err(short)?;
        let encryption = Encryption::from_code(enc_code)
            .ok_or_else(|| HeaderError::Invalid(format!("unknown encryption {enc_code}")))?;
        let compression = f.u8().map_err(short)?;
        if compression != COMPRESSION_ZSTD {
            return Err(HeaderError::Invalid(format!(
                "unknown compression {compression}"
            )));
        }
        let len = f.u32().map_err(short)? as usize;
        if len != bytes.len() {
            return Err(HeaderError::Invalid("its length field is wrong".into()));
        }
        let chunk_size = f.u32().map_err(short)?;
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(HeaderError::Invalid(format!(
                "chunk size {chunk_size} is out of range"
            )));
        }
        let image_id = f.array::<16>().map_err(short)?;
        let count = usize::from(f.u16().map_err(short)?);
        if f.u16().map_err(short)? != 0 {
            return Err(HeaderError::Invalid("reserved bytes are not zero".into()));
        }
        if count > MAX_RECIPIENTS {
            return Err(HeaderError::Invalid(format!("{count} recipients")));
        }
        let mut recipients: Vec<Recipient> = Vec::with_capacity(count);
        for _ in 0..count {
            let code = f.u8().map_err(short)?;
            let kind = RecipientKind::from_code(code)
                .ok_or_else(|| HeaderError::Invalid(format!("unknown recipient kind {code}")))?;
            let key_id = KeyId(f.array().map_err(short)?);
            let kem_len = usize::from(f.u16().map_err(short)?);
            if kem_len != kind.kem_len() {
                return Err(HeaderError::Invalid(format!(
                    "a recipient's ciphertext has {kem_len} bytes"
                )));
            }
            let kem_ciphertext = f.take(kem_len).map_err(short)?.to_vec();
            let wrapped_key = f.array().map_err(short)?;
            if recipients.iter().any(|r| r.key_id == key_id) {
                return Err(HeaderError::Invalid(format!(
                    "key {key_id} is listed twice"
                )));
            }
            recipients.push(Recipient {
                kind,
                key_id,
                kem_ciphertext,
                wrapped_key,
            });
        }
        if f.remaining() != 0 {
            return Err(HeaderError::Invalid("bytes after the recipients".into()));
        }
        let kinds_fit = match encryption {
            Encryption::None => recipients.is_empty(),
            Encryption::Aes => recipients.len() == 1 && recipients[0].kind == RecipientKind::Aes,
            Encryption::KyberAes => {
                !recipients.is_empty() && recipients.iter().all(|r| r.kind == RecipientKind::XWing)
            }
        };
        if !kinds_fit {
            return Err(HeaderError::Invalid(format!(
                "the recipients do not fit encryption {encryption}"
            )));
        }
        let header = Header {
            encryption,
            chunk_size,
            image_id,
            recipients,
        };
        Ok((header, hash))
    }
}

fn read_exactly(r: &mut impl Read, buf: &mut [u8]) -> Result<(), HeaderError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => HeaderError::Truncated,
        _ => HeaderError::Io(e),
    })
}

/// What the payload holds; the last chunk's associated data carries these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub chunks: u64,
    /// Bytes of the compressed stream (the chunks' plaintext).
    pub stream_bytes: u64,
    /// Bytes of the uncompressed archive.
    pub archive_bytes: u64,
    /// Filesystem entries in the archive.
    pub entries: u64,
}

impl Totals {
    pub fn to_bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (slot, v) in out.chunks_exact_mut(8).zip([
            self.chunks,
            self.stream_bytes,
            self.archive_bytes,
            self.entries,
        ]) {
            slot.copy_from_slice(&v.to_le_bytes());
        }
        out
    }
}

/// The end of the file: the totals and the image digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    pub totals: Totals,
    /// SHA-256 of the file from its first byte up to the trailer.
    pub digest: [u8; 32],
}

impl Trailer {
    pub fn to_bytes(self, header_hash: &[u8; 32]) -> [u8; TRAILER_LEN] {
        let mut out = [0u8; TRAILER_LEN];
        out[..4].copy_from_slice(TRAILER_MAGIC);
        out[4..36].copy_from_slice(&self.totals.to_bytes());
        out[36..68].copy_from_slice(&self.digest);
        let check = trailer_check(header_hash, &out[..68]);
        out[68..].copy_from_slice(&check);
        out
    }

    pub fn parse(
        bytes: &[u8; TRAILER_LEN],
        header_hash: &[u8; 32],
    ) -> Result<Trailer, HeaderError> {
        if trailer_check(header_hash, &bytes[..68])[..] != bytes[68..] {
            return Err(HeaderError::TrailerCorrupted(
                "checksum mismatch (or it belongs to another image)",
            ));
        }
        if &bytes[..4] != TRAILER_MAGIC {
            return Err(HeaderError::TrailerCorrupted("no HEND magic"));
        }
        let mut f = Fields::new(&bytes[4..68]);
        let short = |_: Short| HeaderError::TrailerCorrupted("a field runs past its end");
        let totals = Totals {
            chunks: f.u64().map_err(short)?,
            stream_bytes: f.u64().map_err(short)?,
            archive_bytes: f.u64().map_err(short)?,
            entries: f.u64().map_err(short)?,
        };
        let digest = f.array().map_err(short)?;
        Ok(Trailer { totals, digest })
    }
}

fn trailer_check(header_hash: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(header_hash);
    h.update(body);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testutil::XorShift;

    fn sample(encryption: Encryption) -> Header {
        let recipients = match encryption {
            Encryption::None => vec![],
            Encryption::Aes => vec![Recipient {
                kind: RecipientKind::Aes,
                key_id: KeyId([1; 8]),
                kem_ciphertext: vec![],
                wrapped_key: [7; WRAPPED_KEY_LEN],
            }],
            Encryption::KyberAes => (0..3)
                .map(|i| Recipient {
                    kind: RecipientKind::XWing,
                    key_id: KeyId([i; 8]),
                    kem_ciphertext: vec![i; KEM_CIPHERTEXT_LEN],
                    wrapped_key: [i + 1; WRAPPED_KEY_LEN],
                })
                .collect(),
        };
        Header {
            encryption,
            chunk_size: DEFAULT_CHUNK_SIZE,
            image_id: [9; 16],
            recipients,
        }
    }

    #[test]
    fn headers_round_trip() {
        for enc in [Encryption::None, Encryption::Aes, Encryption::KyberAes] {
            let header = sample(enc);
            let (bytes, hash) = header.to_bytes();
            assert_eq!(Header::parse(&bytes).unwrap(), (header.clone(), hash));
            let (read, raw, read_hash) = Header::read_from(&mut &bytes[..]).unwrap();
            assert_eq!((read, raw, read_hash), (header, bytes, hash));
        }
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_is_refused() {
        let (bytes, _) = sample(Encryption::Aes).to_bytes();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(
                    Header::read_from(&mut &b[..]).is_err(),
                    "byte {i} bit {bit}"
                );
            }
        }
        for n in 0..bytes.len() {
            let err = Header::read_from(&mut &bytes[..n]).unwrap_err();
            assert!(
                matches!(err, HeaderError::Truncated | HeaderError::NotAnImage),
                "{n}: {err}"
            );
        }
    }

    #[test]
    fn a_valid_check_does_not_make_bad_fields_valid() {
        // Re-seal a header whose fields are wrong: the check passes, the fields are refused.
        let reseal = |mut body: Vec<u8>| {
            body.truncate(body.len() - CHECK_LEN);
            let hash: [u8; 32] = Sha256::digest(&body).into();
            body.extend_from_slice(&hash);
            Header::parse(&body).unwrap_err().to_string()
        };
        let (bytes, _) = sample(Encryption::None).to_bytes();
        let mut b = bytes.clone();
        b[4] = 2;
        assert!(reseal(b).contains("version 2"));
        let mut b = bytes.clone();
        b[6] = 1; // aes without a recipient
        assert!(reseal(b).contains("do not fit"));
        let mut b = bytes.clone();
        b[12..16].copy_from_slice(&1u32.to_le_bytes());
        assert!(reseal(b).contains("chunk size"));
    }

    #[test]
    fn trailers_round_trip_and_belong_to_their_header() {
        let t = Trailer {
            totals: Totals {
                chunks: 3,
                stream_bytes: 2_500_000,
                archive_bytes: 9_000_000,
                entries: 294,
            },
            digest: [5; 32],
        };
        let bytes = t.to_bytes(&[1; 32]);
        assert_eq!(Trailer::parse(&bytes, &[1; 32]).unwrap(), t);
        assert!(Trailer::parse(&bytes, &[2; 32]).is_err());
        let mut b = bytes;
        b[10] ^= 1;
        assert!(Trailer::parse(&b, &[1; 32]).is_err());
    }

    #[test]
    fn random_bytes_never_panic_the_parser() {
        let mut rng = XorShift::new(0x5eed);
        let (good, _) = sample(Encryption::KyberAes).to_bytes();
        for round in 0..3000 {
            let bytes = if round % 2 == 0 {
                let len = rng.below(200);
                let mut b = rng.bytes(len);
                if round % 4 == 0 && b.len() >= 12 {
                    // Past the magic, so that the length and body paths are exercised too.
                    b[..4].copy_from_slice(MAGIC);
                }
                b
            } else {
                // A valid header with a few random bytes changed, sealed again or not.
                let mut b = good.clone();
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(b.len());
                    b[i] = rng.byte();
                }
                if round % 3 == 0 {
                    let body = b.len() - CHECK_LEN;
                    let hash: [u8; 32] = Sha256::digest(&b[..body]).into();
                    b[body..].copy_from_slice(&hash);
                }
                b
            };
            let _ = Header::read_from(&mut &bytes[..]);
            let _ = Header::parse(&bytes);
            if let Ok(t) = <[u8; TRAILER_LEN]>::try_from(&rng.bytes(TRAILER_LEN)[..]) {
                let _ = Trailer::parse(&t, &[0; 32]);
            }
        }
    }
}
