//! The payload: the compressed stream cut into fixed-size chunks, each sealed on its own
//! (AES-256-GCM, or a SHA-256 check for unencrypted images) with associated data that binds it
//! to its header, its position and whether it is the last; then the trailer. [`ChunkWriter`]
//! and [`ChunkReader`] stream: one chunk in memory at a time.

use std::io::{self, Read, Write};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::Aes256Gcm;
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use super::header::{HeaderError, Totals, Trailer, TRAILER_LEN};
use super::wire::read_full;

pub const GCM_TAG_LEN: usize = 16;
pub const CHECK_LEN: usize = 32;
/// flags (1 byte) and body length (4 bytes).
pub const RECORD_HEAD_LEN: usize = 5;
const FLAG_LAST: u8 = 1;
const CHECK_CONTEXT: &[u8] = b"hcon-v1 chunk";

#[derive(Debug, Error)]
pub enum ChunkError {
    #[error(
        "chunk {index} does not verify: the image is corrupted, its chunks were reordered, or \
         they come from another image"
    )]
    Auth { index: u64 },
    #[error("truncated: the file ends {0}")]
    Truncated(String),
    #[error("corrupted chunk {index}: {reason}")]
    Record { index: u64, reason: String },
    #[error(transparent)]
    Trailer(#[from] HeaderError),
    #[error("corrupted image: the trailer's totals do not match the payload")]
    Totals,
    #[error("corrupted image: data after the trailer")]
    Trailing,
    #[error("corrupted image: the digest does not match its content")]
    Digest,
    #[error("sealing chunk {0} failed")]
    Seal(u64),
    #[error("reading the image: {0}")]
    Io(#[source] io::Error),
}

/// How chunks are sealed: AES-256-GCM with the payload key, or a SHA-256 check.
pub enum Sealer {
    Check,
    Gcm(Box<Aes256Gcm>),
}

impl Sealer {
    pub fn new(payload_key: Option<&[u8; 32]>) -> Sealer {
        match payload_key {
            Some(key) => Sealer::Gcm(Box::new(Aes256Gcm::new(key.into()))),
            None => Sealer::Check,
        }
    }

    pub fn tag_len(&self) -> usize {
        match self {
            Sealer::Check => CHECK_LEN,
            Sealer::Gcm(_) => GCM_TAG_LEN,
        }
    }

    /// Encrypts `body` in place (GCM) and returns the tag or the check.
    fn seal(&self, index: u64, ad: &[u8], body: &mut [u8]) -> Result<Vec<u8>, ChunkError> {
        match self {
            Sealer::Check => Ok(check(ad, body).to_vec()),
            Sealer::Gcm(cipher) => cipher
                .encrypt_inout_detached(&nonce(index).into(), ad, body.into())
                .map(|tag| tag.to_vec())
                .map_err(|_| ChunkError::Seal(index)),
        }
    }

    /// Verifies (and decrypts in place) `body` against `tag`.
    fn open(&self, index: u64, ad: &[u8], body: &mut [u8], tag: &[u8]) -> bool {
        match self {
            Sealer::Check => {
                // Not secret: a plain comparison is fine.
                check(ad, body)[..] == *tag
            }
            Sealer::Gcm(cipher) => {
                let Ok(tag) = aes_gcm::Tag::try_from(tag) else {
                    return false;
                };
                cipher
                    .decrypt_inout_detached(&nonce(index).into(), ad, body.into(), &tag)
                    .is_ok()
            }
        }
    }
}

/// The 96-bit GCM nonce of chunk `index`: the index, big-endian.
fn nonce(index: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&index.to_be_bytes());
    n
}

fn check(ad: &[u8], body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CHECK_CONTEXT);
    h.update(ad);
    h.update(body);
    h.finalize().into()
}

/// header hash ‖ chunk index (u64 LE) ‖ last flag (u8), and for the last chunk the totals.
fn associated_data(header_hash: &[u8; 32], index: u64, totals: Option<&Totals>) -> Vec<u8> {
    let mut ad = Vec::with_capacity(32 + 8 + 1 + 32);
    ad.extend_from_slice(header_hash);
    ad.extend_from_slice(&index.to_le_bytes());
    ad.push(u8::from(totals.is_some()));
    if let Some(t) = totals {
        ad.extend_from_slice(&t.to_bytes());
    }
    ad
}

/// A writer that hashes what passes through it.
pub struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> HashWriter<W> {
        HashWriter {
            inner,
            hasher: Sha256::new(),
        }
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hasher.update(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Cuts what is written into chunks and writes them sealed; [`ChunkWriter::finish`] seals the
/// last one and writes the trailer.
pub struct ChunkWriter<W: Write> {
    out: HashWriter<W>,
    sealer: Sealer,
    header_hash: [u8; 32],
    chunk_size: usize,
    buf: Vec<u8>,
    index: u64,
    stream_bytes: u64,
}

impl<W: Write> ChunkWriter<W> {
    /// `out` has already received the header (and hashed it).
    pub fn new(
        out: HashWriter<W>,
        sealer: Sealer,
        header_hash: [u8; 32],
        chunk_size: u32,
    ) -> ChunkWriter<W> {
        let chunk_size = chunk_size as usize;
        ChunkWriter {
            out,
            sealer,
            header_hash,
            chunk_size,
            buf: Vec::with_capacity(chunk_size + GCM_TAG_LEN.max(CHECK_LEN)),
            index: 0,
            stream_bytes: 0,
        }
    }

    fn emit(&mut self, totals: Option<&Totals>) -> io::Result<()> {
        let ad = associated_data(&self.header_hash, self.index, totals);
        let tag = self
            .sealer
            .seal(self.index, &ad, &mut self.buf)
            .map_err(io::Error::other)?;
        let body_len = u32::try_from(self.buf.len() + tag.len()).map_err(io::Error::other)?;
        let flags = if totals.is_some() { FLAG_LAST } else { 0 };
        self.out.write_all(&[flags])?;
        self.out.write_all(&body_len.to_le_bytes())?;
        self.out.write_all(&self.buf)?;
        self.out.write_all(&tag)?;
        self.stream_bytes += self.buf.len() as u64;
        self.index += 1;
        self.buf.clear();
        Ok(())
    }

    /// Seals the last chunk and writes the trailer; returns the output and the trailer.
    pub fn finish(mut self, archive_bytes: u64, entries: u64) -> Result<(W, Trailer), ChunkError> {
        if self.buf.is_empty() {
            return Err(ChunkError::Record {
                index: self.index,
                reason: "the compressed stream is empty".into(),
            });
        }
        let totals = Totals {
            chunks: self.index + 1,
            stream_bytes: self.stream_bytes + self.buf.len() as u64,
            archive_bytes,
            entries,
        };
        self.emit(Some(&totals)).map_err(ChunkError::Io)?;
        let HashWriter { mut inner, hasher } = self.out;
        let trailer = Trailer {
            totals,
            digest: hasher.finalize().into(),
        };
        inner
            .write_all(&trailer.to_bytes(&self.header_hash))
            .map_err(ChunkError::Io)?;
        Ok((inner, trailer))
    }
}

impl<W: Write> Write for ChunkWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            if self.buf.len() == self.chunk_size {
                // More data follows, so the full chunk is not the last one.
                self.emit(None)?;
            }
            let take = (self.chunk_size - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Reads sealed chunks and yields their verified plaintext; reads the trailer with the last
/// chunk and checks the totals, that nothing follows, and the digest. Errors reach the caller
/// as `io::Error`s that carry a [`ChunkError`] (see [`ChunkError::from_io`]).
pub struct ChunkReader<R: Read> {
    src: R,
    hasher: Sha256,
    sealer: Sealer,
    header_hash: [u8; 32],
    chunk_size: usize,
    buf: Vec<u8>,
    pos: usize,
    index: u64,
    stream_bytes: u64,
    trailer: Option<Trailer>,
    failed: bool,
}

impl<R: Read> ChunkReader<R> {
    /// `src` is positioned after the header; `header` is its raw bytes.
    pub fn new(
        src: R,
        header: &[u8],
        header_hash: [u8; 32],
        sealer: Sealer,
        chunk_size: u32,
    ) -> ChunkReader<R> {
        let mut hasher = Sha256::new();
        hasher.update(header);
        ChunkReader {
            src,
            hasher,
            sealer,
            header_hash,
            chunk_size: chunk_size as usize,
            buf: Vec::new(),
            pos: 0,
            index: 0,
            stream_bytes: 0,
            trailer: None,
            failed: false,
        }
    }

    /// The trailer, once the last chunk and the trailer have been read and verified.
    pub fn trailer(&self) -> Option<&Trailer> {
        self.trailer.as_ref()
    }

    fn record_error(&self, reason: impl Into<String>) -> ChunkError {
        ChunkError::Record {
            index: self.index,
            reason: reason.into(),
        }
    }

    fn next_chunk(&mut self) -> Result<(), ChunkError> {
        let index = self.index;
        let mut head = [0u8; RECORD_HEAD_LEN];
        let n = read_full(&mut self.src, &mut head).map_err(ChunkError::Io)?;
        if n == 0 {
            return Err(ChunkError::Truncated(if index == 0 {
                "after the header".into()
            } else {
                format!("after chunk {} and before the last chunk", index - 1)
            }));
        }
        if n < head.len() {
            return Err(ChunkError::Truncated(format!("inside chunk {index}")));
        }
        let flags = head[0];
        if flags & !FLAG_LAST != 0 {
            return Err(self.record_error(format!("unknown flags {flags:#04x}")));
        }
        let last = flags & FLAG_LAST != 0;
        let body_len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let tag_len = self.sealer.tag_len();
        let plain_len = body_len.saturating_sub(tag_len);
        let fits = body_len > tag_len
            && plain_len <= self.chunk_size
            && (last || plain_len == self.chunk_size);
        if !fits {
            return Err(self.record_error(format!("length {body_len} is out of range")));
        }
        self.buf.resize(body_len, 0);
        let got = read_full(&mut self.src, &mut self.buf).map_err(ChunkError::Io)?;
        if got < body_len {
            return Err(ChunkError::Truncated(format!("inside chunk {index}")));
        }
        self.hasher.update(head);
        self.hasher.update(&self.buf);
        let trailer = if last {
            let mut bytes = [0u8; TRAILER_LEN];
            let got = read_full(&mut self.src, &mut bytes).map_err(ChunkError::Io)?;
            if got < TRAILER_LEN {
                return Err(ChunkError::Truncated("inside the trailer".into()));
            }
            Some(Trailer::parse(&bytes, &self.header_hash)?)
        } else {
            None
        };
        let ad = associated_data(
            &self.header_hash,
            index,
            trailer.as_ref().map(|t| &t.totals),
        );
        let (body, tag) = self.buf.split_at_mut(plain_len);
        if !self.sealer.open(index, &ad, body, tag) {
            return Err(ChunkError::Auth { index });
        }
        self.buf.truncate(plain_len);
        self.pos = 0;
        self.index += 1;
        self.stream_bytes += plain_len as u64;
        if let Some(trailer) = trailer {
            if trailer.totals.chunks != self.index
                || trailer.totals.stream_bytes != self.stream_bytes
            {
                return Err(ChunkError::Totals);
            }
            let mut extra = [0u8; 1];
            if read_full(&mut self.src, &mut extra).map_err(ChunkError::Io)? != 0 {
                return Err(ChunkError::Trailing);
            }
            let digest: [u8; 32] = self.hasher.clone().finalize().into();
            if digest != trailer.digest {
                return Err(ChunkError::Digest);
            }
            self.trailer = Some(trailer);
        }
        Ok(())
    }
}

impl<R: Read> Read for ChunkReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("the image failed verification"));
        }
        while self.pos == self.buf.len() {
            if self.trailer.is_some() {
                return Ok(0);
            }
            if let Err(e) = self.next_chunk() {
                self.failed = true;
                self.buf.clear();
                self.pos = 0;
                return Err(io::Error::other(e));
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl ChunkError {
    /// The [`ChunkError`] an `io::Error` from a [`ChunkReader`] carries, if it carries one.
    pub fn from_io(e: io::Error) -> Result<ChunkError, io::Error> {
        if e.get_ref().is_some_and(|inner| inner.is::<ChunkError>()) {
            if let Some(inner) = e.into_inner() {
                if let Ok(chunk) = inner.downcast::<ChunkError>() {
                    return Ok(*chunk);
                }
            }
            return Err(io::Error::other("the image failed verification"));
        }
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::header::MIN_CHUNK_SIZE;
    use crate::image::testutil::XorShift;

    const CHUNK: u32 = MIN_CHUNK_SIZE;
    const HEADER: &[u8] = b"a header";

    fn header_hash(header: &[u8]) -> [u8; 32] {
        Sha256::digest(header).into()
    }

    /// The header then the sealed payload of `data` and the trailer.
    fn seal(key: Option<&[u8; 32]>, header: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = HashWriter::new(Vec::new());
        out.write_all(header).unwrap();
        let mut w = ChunkWriter::new(out, Sealer::new(key), header_hash(header), CHUNK);
        w.write_all(data).unwrap();
        w.finish(data.len() as u64 * 2, 7).unwrap().0
    }

    fn open(key: Option<&[u8; 32]>, header: &[u8], file: &[u8]) -> Result<Vec<u8>, ChunkError> {
        let rest = file.get(header.len()..).unwrap_or(&[]);
        let mut r = ChunkReader::new(rest, header, header_hash(header), Sealer::new(key), CHUNK);
        let mut out = Vec::new();
        match r.read_to_end(&mut out) {
            Ok(_) => {
                assert!(r.trailer().is_some());
                Ok(out)
            }
            Err(e) => Err(ChunkError::from_io(e).expect("a chunk error")),
        }
    }

    fn data() -> Vec<u8> {
        XorShift::new(42).bytes(CHUNK as usize * 2 + 100)
    }

    /// Offsets of the records in a sealed file.
    fn records(file: &[u8], tag: usize) -> Vec<(usize, usize)> {
        let mut at = HEADER.len();
        let mut out = Vec::new();
        loop {
            let len = u32::from_le_bytes(file[at + 1..at + 5].try_into().unwrap()) as usize;
            out.push((at, RECORD_HEAD_LEN + len));
            let last = file[at] & FLAG_LAST != 0;
            at += RECORD_HEAD_LEN + len;
            if last {
                assert_eq!(at + TRAILER_LEN, file.len());
                assert_eq!(len, 100 + tag);
                return out;
            }
        }
    }

    #[test]
    fn payloads_round_trip_in_both_modes() {
        let key = [3u8; 32];
        for k in [None, Some(&key)] {
            for len in [
                1,
                100,
                CHUNK as usize,
                CHUNK as usize + 1,
                3 * CHUNK as usize,
            ] {
                let d = XorShift::new(len as u64).bytes(len);
                assert_eq!(open(k, HEADER, &seal(k, HEADER, &d)).unwrap(), d, "{len}");
            }
        }
        let file = seal(Some(&key), HEADER, &data());
        assert_eq!(records(&file, GCM_TAG_LEN).len(), 3);
        // Encrypted: the plaintext does not appear.
        assert!(!file.windows(64).any(|w| w == &data()[..64]));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let key = [3u8; 32];
        for k in [None, Some(&key)] {
            let file = seal(k, HEADER, &data());
            // Every byte of record heads, tags and trailer, and a spread of body bytes.
            for i in (HEADER.len()..file.len()).filter(|i| i % 7 == 0 || *i > file.len() - 200) {
                let mut f = file.clone();
                f[i] ^= 0x10;
                assert!(
                    open(k, HEADER, &f).is_err(),
                    "byte {i} (key {})",
                    k.is_some()
                );
            }
        }
    }

    #[test]
    fn truncation_reordering_splicing_and_wrong_keys_are_detected() {
        let key = [3u8; 32];
        for k in [None, Some(&key)] {
            let tag = Sealer::new(k).tag_len();
            let file = seal(k, HEADER, &data());
            let recs = records(&file, tag);
            // Truncated anywhere, including exactly between records.
            for cut in [
                HEADER.len(),
                recs[1].0,
                recs[2].0,
                recs[2].0 + 3,
                file.len() - 1,
            ] {
                let err = open(k, HEADER, &file[..cut]).unwrap_err();
                assert!(matches!(err, ChunkError::Truncated(_)), "cut {cut}: {err}");
            }
            // The first two chunks swapped.
            let (a, b) = (recs[0], recs[1]);
            let mut swapped = file[..a.0].to_vec();
            swapped.extend_from_slice(&file[b.0..b.0 + b.1]);
            swapped.extend_from_slice(&file[a.0..a.0 + a.1]);
            swapped.extend_from_slice(&file[b.0 + b.1..]);
            let err = open(k, HEADER, &swapped).unwrap_err();
            assert!(matches!(err, ChunkError::Auth { index: 0 }), "{err}");
            // A chunk dropped from the middle.
            let mut dropped = file[..b.0].to_vec();
            dropped.extend_from_slice(&file[b.0 + b.1..]);
            assert!(open(k, HEADER, &dropped).is_err());
            // The last flag set on the first chunk (and the rest cut).
            let mut early = file[..a.0 + a.1].to_vec();
            early[a.0] |= FLAG_LAST;
            early.extend_from_slice(&file[file.len() - TRAILER_LEN..]);
            assert!(open(k, HEADER, &early).is_err());
            // Another header (another image) in front of the same chunks.
            let other = b"b header";
            let mut spliced = other.to_vec();
            spliced.extend_from_slice(&file[HEADER.len()..]);
            assert!(open(k, other, &spliced).is_err());
            // A chunk from another image with the same key and header length.
            let file2 = seal(k, b"c header", &data());
            let mut mixed = file[..a.0].to_vec();
            mixed.extend_from_slice(&file2[a.0..a.0 + a.1]);
            mixed.extend_from_slice(&file[a.0 + a.1..]);
            let err = open(k, HEADER, &mixed).unwrap_err();
            assert!(matches!(err, ChunkError::Auth { index: 0 }), "{err}");
            // Bytes after the trailer.
            let mut longer = file.clone();
            longer.push(0);
            assert!(matches!(
                open(k, HEADER, &longer).unwrap_err(),
                ChunkError::Trailing
            ));
        }
        let file = seal(Some(&key), HEADER, &data());
        let err = open(Some(&[4u8; 32]), HEADER, &file).unwrap_err();
        assert!(matches!(err, ChunkError::Auth { index: 0 }), "{err}");
    }

    #[test]
    fn random_bytes_never_panic_the_reader() {
        let mut rng = XorShift::new(7);
        let key = [3u8; 32];
        let good = seal(Some(&key), HEADER, &data()[..5000]);
        for round in 0..2000 {
            let k = if round % 2 == 0 { None } else { Some(&key) };
            let mut file = HEADER.to_vec();
            if round % 3 == 0 {
                let mut f = good.clone();
                for _ in 0..1 + rng.below(3) {
                    let i = HEADER.len() + rng.below(f.len() - HEADER.len());
                    f[i] = rng.byte();
                }
                file = f;
            } else {
                // A record head that claims a plausible length, then noise.
                let len = rng.below(3 * CHUNK as usize);
                file.push(rng.byte() & 1);
                file.extend_from_slice(&(len as u32).to_le_bytes());
                let noise = rng.below(CHUNK as usize * 2);
                file.extend_from_slice(&rng.bytes(noise));
            }
            let _ = open(k, HEADER, &file);
        }
    }
}
