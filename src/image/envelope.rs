//! The data key: drawn per image, wrapped for each recipient (X-Wing or an AES key file), and
//! turned into the payload key. Algorithms in docs/hcon-format.md, "Keys and wrapping".

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::Aes256Gcm;
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::header::{Encryption, Header, Recipient, RecipientKind, WRAPPED_KEY_LEN};
use super::keys::{AesKey, KeyError, KeyId, PublicKey, UnlockKey};
use super::ImageError;

pub type SecretKey = Zeroizing<[u8; 32]>;

const WRAP_INFO_XWING: &[u8] = b"hcon-v1 wrap x-wing";
const WRAP_INFO_AES: &[u8] = b"hcon-v1 wrap aes";
const PAYLOAD_INFO: &[u8] = b"hcon payload";

/// A fresh random 256-bit key.
pub fn random_key() -> Result<SecretKey, ImageError> {
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(key.as_mut()).map_err(KeyError::Random)?;
    Ok(key)
}

/// A fresh random image id.
pub fn random_id() -> Result<[u8; 16], ImageError> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(KeyError::Random)?;
    Ok(id)
}

/// HKDF-SHA256 to 32 bytes.
fn hkdf(salt: Option<&[u8]>, ikm: &[u8], info: &[&[u8]]) -> Result<SecretKey, ImageError> {
    let mut okm = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(salt, ikm)
        .expand_multi_info(info, okm.as_mut())
        .map_err(|_| ImageError::Crypto("HKDF expansion failed"))?;
    Ok(okm)
}

/// The key the chunks are sealed with.
pub fn payload_key(data_key: &[u8; 32]) -> Result<SecretKey, ImageError> {
    hkdf(None, data_key, &[PAYLOAD_INFO])
}

fn wrapping_key(
    kind: RecipientKind,
    secret: &[u8; 32],
    image_id: &[u8; 16],
    key_id: KeyId,
) -> Result<SecretKey, ImageError> {
    let info = match kind {
        RecipientKind::XWing => WRAP_INFO_XWING,
        RecipientKind::Aes => WRAP_INFO_AES,
    };
    hkdf(Some(image_id), secret, &[info, image_id, &key_id.0])
}

/// The associated data of a wrapped key: the image, the kind and the key it is for.
fn wrap_ad(image_id: &[u8; 16], kind: RecipientKind, key_id: KeyId) -> [u8; 25] {
    let mut ad = [0u8; 25];
    ad[..16].copy_from_slice(image_id);
    ad[16] = kind.code();
    ad[17..].copy_from_slice(&key_id.0);
    ad
}

fn seal_key(
    wrapping: &[u8; 32],
    ad: &[u8],
    data_key: &[u8; 32],
) -> Result<[u8; WRAPPED_KEY_LEN], ImageError> {
    let cipher = Aes256Gcm::new(wrapping.into());
    let mut out = [0u8; WRAPPED_KEY_LEN];
    let (body, tag_out) = out.split_at_mut(32);
    body.copy_from_slice(data_key);
    // The wrapping key is used once (fresh per image and recipient): a zero nonce is safe.
    let tag = cipher
        .encrypt_inout_detached(&Default::default(), ad, body.into())
        .map_err(|_| ImageError::Crypto("wrapping the data key failed"))?;
    tag_out.copy_from_slice(&tag);
    Ok(out)
}

fn open_key(wrapping: &[u8; 32], ad: &[u8], wrapped: &[u8; WRAPPED_KEY_LEN]) -> Option<SecretKey> {
    let cipher = Aes256Gcm::new(wrapping.into());
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&wrapped[..32]);
    let tag = aes_gcm::Tag::try_from(&wrapped[32..]).ok()?;
    cipher
        .decrypt_inout_detached(&Default::default(), ad, key.as_mut_slice().into(), &tag)
        .ok()?;
    Some(key)
}

/// The data key wrapped for an X-Wing public key.
pub fn wrap_for_public_key(
    key: &PublicKey,
    image_id: &[u8; 16],
    data_key: &[u8; 32],
) -> Result<Recipient, ImageError> {
    let (kem_ciphertext, shared) = key.encapsulate()?;
    let kind = RecipientKind::XWing;
    let wrapping = wrapping_key(kind, &shared, image_id, key.id())?;
    let wrapped_key = seal_key(&wrapping, &wrap_ad(image_id, kind, key.id()), data_key)?;
    Ok(Recipient {
        kind,
        key_id: key.id(),
        kem_ciphertext,
        wrapped_key,
    })
}

/// The data key wrapped for an AES key file.
pub fn wrap_for_aes_key(
    key: &AesKey,
    image_id: &[u8; 16],
    data_key: &[u8; 32],
) -> Result<Recipient, ImageError> {
    let kind = RecipientKind::Aes;
    let wrapping = wrapping_key(kind, key.secret(), image_id, key.id())?;
    let wrapped_key = seal_key(&wrapping, &wrap_ad(image_id, kind, key.id()), data_key)?;
    Ok(Recipient {
        kind,
        key_id: key.id(),
        kem_ciphertext: Vec::new(),
        wrapped_key,
    })
}

/// The key ids an image is encrypted for, comma-separated.
pub fn recipient_list(header: &Header) -> String {
    let ids: Vec<String> = header
        .recipients
        .iter()
        .map(|r| r.key_id.to_string())
        .collect();
    ids.join(", ")
}

/// The payload key of an image: None for an unencrypted one; for an encrypted one, the data
/// key unwrapped with `key` and derived.
pub fn unlock(header: &Header, key: Option<&UnlockKey>) -> Result<Option<SecretKey>, ImageError> {
    if header.encryption == Encryption::None {
        return Ok(None);
    }
    let Some(key) = key else {
        return Err(ImageError::KeyMissing {
            encryption: header.encryption,
            recipients: recipient_list(header),
        });
    };
    let fits = matches!(
        (header.encryption, key),
        (Encryption::Aes, UnlockKey::Aes(_)) | (Encryption::KyberAes, UnlockKey::XWing(_))
    );
    if !fits {
        return Err(ImageError::KeyKind {
            encryption: header.encryption,
            given: key.kind(),
        });
    }
    let id = key.id();
    let Some(recipient) = header.recipients.iter().find(|r| r.key_id == id) else {
        return Err(ImageError::NotARecipient {
            key_id: id,
            recipients: recipient_list(header),
        });
    };
    let secret = match key {
        UnlockKey::XWing(k) => k.decapsulate(&recipient.kem_ciphertext),
        UnlockKey::Aes(k) => Some(Zeroizing::new(*k.secret())),
    };
    let data_key = match secret {
        Some(secret) => {
            let wrapping = wrapping_key(recipient.kind, &secret, &header.image_id, id)?;
            let ad = wrap_ad(&header.image_id, recipient.kind, id);
            open_key(&wrapping, &ad, &recipient.wrapped_key)
        }
        None => None,
    };
    let data_key = data_key.ok_or(ImageError::Unwrap { key_id: id })?;
    payload_key(&data_key).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::header::DEFAULT_CHUNK_SIZE;
    use crate::image::keys::PrivateKey;

    fn header(encryption: Encryption, recipients: Vec<Recipient>, id: [u8; 16]) -> Header {
        Header {
            encryption,
            chunk_size: DEFAULT_CHUNK_SIZE,
            image_id: id,
            recipients,
        }
    }

    #[test]
    fn each_recipient_gets_the_same_payload_key_and_others_none() {
        let (a, b, stranger) = (
            PrivateKey::generate().unwrap(),
            PrivateKey::generate().unwrap(),
            PrivateKey::generate().unwrap(),
        );
        let id = random_id().unwrap();
        let data = random_key().unwrap();
        let recipients = vec![
            wrap_for_public_key(a.public(), &id, &data).unwrap(),
            wrap_for_public_key(b.public(), &id, &data).unwrap(),
        ];
        let h = header(Encryption::KyberAes, recipients, id);
        let expected = payload_key(&data).unwrap();
        for k in [a, b] {
            let got = unlock(&h, Some(&UnlockKey::XWing(Box::new(k))))
                .unwrap()
                .unwrap();
            assert_eq!(got, expected);
        }
        let err = unlock(&h, Some(&UnlockKey::XWing(Box::new(stranger)))).unwrap_err();
        assert!(matches!(err, ImageError::NotARecipient { .. }), "{err}");
        let err = unlock(&h, None).unwrap_err();
        assert!(matches!(err, ImageError::KeyMissing { .. }), "{err}");
        let aes = UnlockKey::Aes(AesKey::generate().unwrap());
        let err = unlock(&h, Some(&aes)).unwrap_err();
        assert!(matches!(err, ImageError::KeyKind { .. }), "{err}");
    }

    #[test]
    fn a_wrapped_key_moved_to_another_image_does_not_open() {
        let key = AesKey::generate().unwrap();
        let data = random_key().unwrap();
        let r = wrap_for_aes_key(&key, &[1; 16], &data).unwrap();
        let unlock_key = UnlockKey::Aes(AesKey::from_bytes(*key.secret()));
        let h = header(Encryption::Aes, vec![r.clone()], [1; 16]);
        assert!(unlock(&h, Some(&unlock_key)).is_ok());
        let h = header(Encryption::Aes, vec![r.clone()], [2; 16]);
        assert!(matches!(
            unlock(&h, Some(&unlock_key)),
            Err(ImageError::Unwrap { .. })
        ));
        let mut tampered = r;
        tampered.wrapped_key[40] ^= 1;
        let h = header(Encryption::Aes, vec![tampered], [1; 16]);
        assert!(matches!(
            unlock(&h, Some(&unlock_key)),
            Err(ImageError::Unwrap { .. })
        ));
    }
}
