//! Keys: the hybrid X25519 + ML-KEM-768 key pair (X-Wing) of `hydra keygen`, the 32-byte AES key
//! files of `--encrypt aes`, their key ids and their file formats (docs/hcon-format.md, "Keys").

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use thiserror::Error;
use x_wing::{Decapsulator, KeyExport, TryDecapsulate};
use zeroize::Zeroizing;

use super::hex;

/// Bytes of an X-Wing public (encapsulation) key: ML-KEM-768's 1184 then X25519's 32.
pub const PUBLIC_KEY_LEN: usize = x_wing::ENCAPSULATION_KEY_SIZE;
/// Bytes of an X-Wing private key: the 32-byte seed both halves are expanded from.
pub const PRIVATE_KEY_LEN: usize = x_wing::DECAPSULATION_KEY_SIZE;
/// Bytes of an X-Wing ciphertext (ML-KEM-768's 1088 then the ephemeral X25519 key).
pub const KEM_CIPHERTEXT_LEN: usize = x_wing::CIPHERTEXT_SIZE;
/// Bytes of an AES key file's key.
pub const AES_KEY_LEN: usize = 32;
/// A key file larger than this is not a key file.
const MAX_KEY_FILE: u64 = 64 * 1024;

const PUBLIC_LABEL: &str = "HYDRA X-WING PUBLIC KEY";
const PRIVATE_LABEL: &str = "HYDRA X-WING PRIVATE KEY";
const AES_ID_CONTEXT: &[u8] = b"hcon-v1 aes key id";

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: not a hydra key file ({reason})", path.display())]
    Format { path: PathBuf, reason: String },
    #[error(
        "{}: the key does not match its Key-Id {stated} (it is {actual}): the file is corrupted",
        path.display()
    )]
    IdMismatch {
        path: PathBuf,
        stated: KeyId,
        actual: KeyId,
    },
    #[error("{}: is a public key; opening an image needs the private key", path.display())]
    PublicNotPrivate { path: PathBuf },
    #[error("{}: is a private key; a recipient is given by its public key ({}.pub)", path.display(), path.display())]
    PrivateNotPublic { path: PathBuf },
    #[error("{} already exists", path.display())]
    Exists { path: PathBuf },
    #[error("the system's random number generator failed: {0}")]
    Random(getrandom::Error),
}

/// The first 8 bytes of the SHA-256 of a public key (X-Wing) or of a domain-separated hash of
/// the key (AES); shown as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct KeyId(pub [u8; 8]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl KeyId {
    fn of(parts: &[&[u8]]) -> KeyId {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p);
        }
        let digest = h.finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }
}

/// An X-Wing public key: what `--recipient` names.
#[derive(Clone)]
pub struct PublicKey {
    key: x_wing::EncapsulationKey,
    id: KeyId,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

impl PublicKey {
    pub fn from_bytes(bytes: &[u8]) -> Option<PublicKey> {
        let key = x_wing::EncapsulationKey::try_from(bytes).ok()?;
        Some(PublicKey {
            key,
            id: KeyId::of(&[bytes]),
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.key.to_bytes().to_vec()
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    /// A fresh shared secret and the ciphertext that carries it to the private key's holder.
    pub(crate) fn encapsulate(&self) -> Result<(Vec<u8>, Zeroizing<[u8; 32]>), KeyError> {
        // x-wing draws its randomness through getrandom and panics if that fails; ask the
        // system generator once first so that a failing one is an error rather than a panic.
        let mut probe = [0u8; 1];
        getrandom::fill(&mut probe).map_err(KeyError::Random)?;
        let (ct, ss) = x_wing::Encapsulate::encapsulate(&self.key);
        let mut secret = Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(&ss);
        Ok((ct.to_vec(), secret))
    }

    pub fn load(path: &Path) -> Result<PublicKey, KeyError> {
        let text = read_key_file(path)?;
        let text = std::str::from_utf8(&text).map_err(|_| format_error(path, "not text"))?;
        if text.contains(PRIVATE_LABEL) {
            return Err(KeyError::PrivateNotPublic { path: path.into() });
        }
        let (stated, bytes) =
            parse_armored(text, PUBLIC_LABEL).map_err(|r| format_error(path, r))?;
        let key = PublicKey::from_bytes(&bytes)
            .ok_or_else(|| format_error(path, "the public key is invalid"))?;
        if key.id != stated {
            return Err(KeyError::IdMismatch {
                path: path.into(),
                stated,
                actual: key.id,
            });
        }
        Ok(key)
    }

    pub fn to_text(&self) -> String {
        armor(PUBLIC_LABEL, self.id, &self.to_bytes())
    }
}

/// An X-Wing private key (its 32-byte seed) and the public key it expands to.
pub struct PrivateKey {
    seed: Zeroizing<[u8; PRIVATE_KEY_LEN]>,
    key: x_wing::DecapsulationKeyRejectNonContrib,
    public: PublicKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.public.id)
    }
}

impl PrivateKey {
    /// A new random key pair.
    pub fn generate() -> Result<PrivateKey, KeyError> {
        let mut seed = Zeroizing::new([0u8; PRIVATE_KEY_LEN]);
        getrandom::fill(seed.as_mut()).map_err(KeyError::Random)?;
        Ok(PrivateKey::from_seed(*seed))
    }

    pub fn from_seed(seed: [u8; PRIVATE_KEY_LEN]) -> PrivateKey {
        let key = x_wing::DecapsulationKeyRejectNonContrib::from(seed);
        let ek = key.encapsulation_key().clone();
        let id = KeyId::of(&[&ek.to_bytes()]);
        PrivateKey {
            seed: Zeroizing::new(seed),
            key,
            public: PublicKey { key: ek, id },
        }
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn id(&self) -> KeyId {
        self.public.id
    }

    /// The shared secret a ciphertext carries; None for a malformed ciphertext or one whose
    /// X25519 part is non-contributory.
    pub(crate) fn decapsulate(&self, ciphertext: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
        let ct = x_wing::Ciphertext::try_from(ciphertext).ok()?;
        let ss = self.key.try_decapsulate(&ct).ok()?;
        let mut secret = Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(&ss);
        Some(secret)
    }

    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(armor(PRIVATE_LABEL, self.id(), self.seed.as_ref()))
    }

    /// Parses a private key file's text.
    fn parse(path: &Path, text: &str) -> Result<PrivateKey, KeyError> {
        let (stated, bytes) =
            parse_armored(text, PRIVATE_LABEL).map_err(|r| format_error(path, r))?;
        let bytes = Zeroizing::new(bytes);
        let seed: [u8; PRIVATE_KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| format_error(path, "the private key is not 32 bytes"))?;
        let key = PrivateKey::from_seed(seed);
        if key.id() != stated {
            return Err(KeyError::IdMismatch {
                path: path.into(),
                stated,
                actual: key.id(),
            });
        }
        Ok(key)
    }

    /// Writes `path` (mode 0600) and `path.pub`; neither may exist yet.
    pub fn write_pair(&self, path: &Path) -> Result<PathBuf, KeyError> {
        let public_path = public_path(path);
        write_new(path, self.to_text().as_bytes(), 0o600)?;
        if let Err(e) = write_new(&public_path, self.public.to_text().as_bytes(), 0o644) {
            let _ = fs::remove_file(path);
            return Err(e);
        }
        Ok(public_path)
    }
}

/// `KEY.pub` for `KEY`.
pub fn public_path(private: &Path) -> PathBuf {
    let mut p = private.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// A 32-byte AES key (`--encrypt aes`).
pub struct AesKey {
    key: Zeroizing<[u8; AES_KEY_LEN]>,
    id: KeyId,
}

impl std::fmt::Debug for AesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AesKey({})", self.id)
    }
}

impl AesKey {
    pub fn from_bytes(key: [u8; AES_KEY_LEN]) -> AesKey {
        let id = KeyId::of(&[AES_ID_CONTEXT, &key]);
        AesKey {
            key: Zeroizing::new(key),
            id,
        }
    }

    pub fn generate() -> Result<AesKey, KeyError> {
        let mut key = Zeroizing::new([0u8; AES_KEY_LEN]);
        getrandom::fill(key.as_mut()).map_err(KeyError::Random)?;
        Ok(AesKey::from_bytes(*key))
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    pub(crate) fn secret(&self) -> &[u8; AES_KEY_LEN] {
        &self.key
    }

    /// A key file: exactly 32 bytes, or 64 hex digits (surrounding white space allowed).
    pub fn load(path: &Path) -> Result<AesKey, KeyError> {
        let bytes = Zeroizing::new(read_key_file(path)?);
        AesKey::parse(path, &bytes)
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<AesKey, KeyError> {
        if let Ok(raw) = <[u8; AES_KEY_LEN]>::try_from(bytes) {
            return Ok(AesKey::from_bytes(raw));
        }
        let decoded = std::str::from_utf8(bytes)
            .ok()
            .and_then(|t| hex::decode(t.trim()))
            .map(Zeroizing::new);
        match decoded.as_deref().map(|d| <[u8; AES_KEY_LEN]>::try_from(d.as_slice())) {
            Some(Ok(raw)) => Ok(AesKey::from_bytes(raw)),
            _ => Err(format_error(
                path,
                format!(
                    "an AES key file holds exactly 32 bytes or 64 hex digits; this one has {} bytes",
                    bytes.len()
                ),
            )),
        }
    }

    /// Writes the key as 32 raw bytes to `path` (mode 0600), which must not exist yet.
    pub fn write(&self, path: &Path) -> Result<(), KeyError> {
        write_new(path, self.key.as_ref(), 0o600)
    }
}

/// The key that opens an image: an X-Wing private key or an AES key.
#[derive(Debug)]
pub enum UnlockKey {
    XWing(Box<PrivateKey>),
    Aes(AesKey),
}

impl UnlockKey {
    /// Reads a key file of either kind (told apart by its content).
    pub fn load(path: &Path) -> Result<UnlockKey, KeyError> {
        let bytes = Zeroizing::new(read_key_file(path)?);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            if text.contains(PUBLIC_LABEL) {
                return Err(KeyError::PublicNotPrivate { path: path.into() });
            }
            if text.contains(PRIVATE_LABEL) {
                return PrivateKey::parse(path, text).map(|k| UnlockKey::XWing(Box::new(k)));
            }
        }
        AesKey::parse(path, &bytes)
            .map(UnlockKey::Aes)
            .map_err(|_| {
                format_error(
                    path,
                    "neither an X-Wing private key from `hydra keygen` nor a 32-byte AES key",
                )
            })
    }

    pub fn id(&self) -> KeyId {
        match self {
            UnlockKey::XWing(k) => k.id(),
            UnlockKey::Aes(k) => k.id(),
        }
    }

    /// "an X-Wing private key" / "an AES key".
    pub fn kind(&self) -> &'static str {
        match self {
            UnlockKey::XWing(_) => "an X-Wing private key",
            UnlockKey::Aes(_) => "an AES key",
        }
    }
}

fn format_error(path: &Path, reason: impl Into<String>) -> KeyError {
    KeyError::Format {
        path: path.into(),
        reason: reason.into(),
    }
}

fn read_key_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    let io = |source| KeyError::Io {
        path: path.into(),
        source,
    };
    let file = fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(format_error(path, "larger than 64 KiB"));
    }
    Ok(bytes)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => KeyError::Exists { path: path.into() },
            _ => KeyError::Io {
                path: path.into(),
                source,
            },
        })?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    written.map_err(|source| {
        let _ = fs::remove_file(path);
        KeyError::Io {
            path: path.into(),
            source,
        }
    })
}

/// The text form of a key:
///
/// ```text
/// -----BEGIN <LABEL>-----
/// Version: 1
/// Key-Id: <16 hex digits>
///
/// <the key in hex, 64 digits a line>
/// -----END <LABEL>-----
/// ```
fn armor(label: &str, id: KeyId, bytes: &[u8]) -> String {
    let digits = hex::encode(bytes);
    let mut s = format!("-----BEGIN {label}-----\nVersion: 1\nKey-Id: {id}\n\n");
    for line in digits.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(line));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// The stated key id and the key bytes of an armored key; the error says what is wrong.
fn parse_armored(text: &str, label: &str) -> Result<(KeyId, Vec<u8>), String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut lines = text.lines().map(str::trim_end).skip_while(|l| l.is_empty());
    if lines.next() != Some(begin.as_str()) {
        return Err(format!("expected the line {begin}"));
    }
    let (mut version, mut id) = (None, None);
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("expected `Name: value`, found {line:?}"))?;
        match (name, value.trim()) {
            ("Version", v) => version = Some(v.to_owned()),
            ("Key-Id", v) => {
                let bytes = hex::decode(v).and_then(|b| <[u8; 8]>::try_from(b).ok());
                id = Some(KeyId(bytes.ok_or("Key-Id is not 16 hex digits")?));
            }
            ("Comment", _) => {}
            (other, _) => return Err(format!("unknown field {other:?}")),
        }
    }
    match version.as_deref() {
        Some("1") => {}
        Some(v) => return Err(format!("unsupported key file version {v:?}")),
        None => return Err("no Version field".into()),
    }
    let id = id.ok_or("no Key-Id field")?;
    let mut digits = String::new();
    let mut ended = false;
    for line in lines.by_ref() {
        if line == end {
            ended = true;
            break;
        }
        digits.push_str(line.trim());
    }
    if !ended {
        return Err(format!("no line {end}"));
    }
    if lines.any(|l| !l.is_empty()) {
        return Err(format!("text after {end}"));
    }
    let bytes = hex::decode(&digits).ok_or("the key is not hex")?;
    Ok((id, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "hydra-keys-{label}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_key_pair_round_trips_through_its_files() {
        let dir = temp("pair");
        let key = PrivateKey::generate().unwrap();
        let path = dir.join("k");
        let public_path = key.write_pair(&path).unwrap();
        assert_eq!(public_path, dir.join("k.pub"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let public = PublicKey::load(&public_path).unwrap();
        assert_eq!(public.id(), key.id());
        assert_eq!(public.to_bytes(), key.public().to_bytes());
        let UnlockKey::XWing(loaded) = UnlockKey::load(&path).unwrap() else {
            panic!("not an X-Wing key")
        };
        assert_eq!(loaded.id(), key.id());

        let (ct, ss) = public.encapsulate().unwrap();
        assert_eq!(ct.len(), KEM_CIPHERTEXT_LEN);
        assert_eq!(loaded.decapsulate(&ct).unwrap(), ss);
        assert!(loaded.decapsulate(&ct[1..]).is_none());

        // Existing files are not overwritten.
        assert!(matches!(
            key.write_pair(&path),
            Err(KeyError::Exists { .. })
        ));
        // The wrong kind of file is named as such.
        assert!(matches!(
            UnlockKey::load(&public_path),
            Err(KeyError::PublicNotPrivate { .. })
        ));
        assert!(matches!(
            PublicKey::load(&path),
            Err(KeyError::PrivateNotPublic { .. })
        ));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_corrupted_key_file_is_refused() {
        let dir = temp("corrupt");
        let key = PrivateKey::generate().unwrap();
        let text = key.to_text();
        // Change one hex digit of the seed: the key no longer matches its id.
        let at = text.find("\n\n").unwrap() + 2;
        let mut bytes = text.as_bytes().to_vec();
        bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
        let path = dir.join("k");
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            UnlockKey::load(&path),
            Err(KeyError::IdMismatch { .. })
        ));
        fs::write(&path, text.replace("Version: 1", "Version: 2")).unwrap();
        let err = UnlockKey::load(&path).unwrap_err().to_string();
        assert!(err.contains("version"), "{err}");
        fs::write(&path, b"hello").unwrap();
        let err = UnlockKey::load(&path).unwrap_err().to_string();
        assert!(err.contains("not a hydra key file"), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn aes_key_files_are_raw_or_hex() {
        let dir = temp("aes");
        let raw = dir.join("raw");
        let key = AesKey::generate().unwrap();
        key.write(&raw).unwrap();
        assert_eq!(AesKey::load(&raw).unwrap().id(), key.id());
        let hexed = dir.join("hex");
        fs::write(&hexed, format!("{}\n", hex::encode(key.secret()))).unwrap();
        assert_eq!(AesKey::load(&hexed).unwrap().id(), key.id());
        let UnlockKey::Aes(k) = UnlockKey::load(&hexed).unwrap() else {
            panic!("not an AES key")
        };
        assert_eq!(k.id(), key.id());
        fs::write(&hexed, [0u8; 31]).unwrap();
        assert!(AesKey::load(&hexed).is_err());
        fs::remove_dir_all(dir).unwrap();
    }
}
