//! Key hierarchy (DESIGN §4): a master key (with a key id, for rotation) wraps one random secret
//! per tenant; the tenant secret derives every chunk's id and key from the chunk's plaintext hash.
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::ids::{ChunkId, OwnerId};

type HmacSha256 = Hmac<Sha256>;

pub const KEY_LEN: usize = 32;
const WRAP_NONCE_LEN: usize = 12;
const WRAP_CONTEXT: &[u8] = b"filestore-tenant-secret-v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("a key must be {KEY_LEN} bytes (64 hex digits), got {0} bytes")]
    BadLength(usize),
    #[error("key is not hex: {0}")]
    NotHex(String),
    #[error("key id must be 1 to 64 characters of [A-Za-z0-9._-]")]
    BadKeyId,
    #[error("no master key with id {0:?} is configured")]
    UnknownKeyId(String),
    #[error("wrapped tenant secret does not decrypt: wrong master key or tampered record")]
    Unwrap,
}

/// 32 secret bytes that never show in Debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| KeyError::BadLength(bytes.len()))?;
        Ok(Self(arr))
    }

    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode(text.trim()).map_err(|e| KeyError::NotHex(e.to_string()))?;
        Self::from_bytes(&bytes)
    }

    pub fn random() -> Self {
        let mut k = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    pub(crate) fn hmac(&self, parts: &[&[u8]]) -> [u8; 32] {
        // HMAC accepts keys of any length, so this cannot fail for a 32-byte key.
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// A master key and the id stored beside everything it wraps.
#[derive(Debug, Clone)]
pub struct MasterKey {
    pub id: String,
    pub key: SecretKey,
}

impl MasterKey {
    pub fn new(id: &str, key: SecretKey) -> Result<Self, KeyError> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(KeyError::BadKeyId);
        }
        Ok(Self {
            id: id.to_owned(),
            key,
        })
    }
}

/// The active master key plus retired ones still needed to unwrap older tenant secrets.
#[derive(Debug, Clone)]
pub struct Keyring {
    active: MasterKey,
    retired: Vec<MasterKey>,
}

/// A tenant secret as stored: which master key wrapped it, and nonce || ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedSecret {
    pub key_id: String,
    pub blob: Vec<u8>,
}

impl Keyring {
    pub fn new(active: MasterKey, retired: Vec<MasterKey>) -> Self {
        Self { active, retired }
    }

    pub fn active_id(&self) -> &str {
        &self.active.id
    }

    fn aad(key_id: &str, owner: &OwnerId) -> Vec<u8> {
        [
            WRAP_CONTEXT,
            b"\0",
            key_id.as_bytes(),
            b"\0",
            owner.as_str().as_bytes(),
        ]
        .concat()
    }

    pub fn wrap(&self, owner: &OwnerId, secret: &TenantSecret) -> WrappedSecret {
        let mut nonce = [0u8; WRAP_NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let cipher = Aes256Gcm::new(self.active.key.as_bytes().into());
        let aad = Self::aad(&self.active.id, owner);
        // Encryption of 32 bytes under a valid key cannot fail.
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.0.as_bytes(),
                    aad: &aad,
                },
            )
            .unwrap_or_else(|_| unreachable!());
        WrappedSecret {
            key_id: self.active.id.clone(),
            blob: [nonce.as_slice(), &ct].concat(),
        }
    }

    pub fn unwrap(
        &self,
        owner: &OwnerId,
        wrapped: &WrappedSecret,
    ) -> Result<TenantSecret, KeyError> {
        let master = std::iter::once(&self.active)
            .chain(&self.retired)
            .find(|k| k.id == wrapped.key_id)
            .ok_or_else(|| KeyError::UnknownKeyId(wrapped.key_id.clone()))?;
        if wrapped.blob.len() < WRAP_NONCE_LEN {
            return Err(KeyError::Unwrap);
        }
        let (nonce, ct) = wrapped.blob.split_at(WRAP_NONCE_LEN);
        let cipher = Aes256Gcm::new(master.key.as_bytes().into());
        let aad = Self::aad(&master.id, owner);
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| KeyError::Unwrap)?;
        SecretKey::from_bytes(&plain)
            .map(TenantSecret)
            .map_err(|_| KeyError::Unwrap)
    }
}

/// One tenant's secret: per-tenant dedupe and content-derived chunk keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSecret(pub SecretKey);

impl TenantSecret {
    pub fn random() -> Self {
        Self(SecretKey::random())
    }

    /// `id = HMAC-SHA256(tenant, "id" || SHA-256(P))`
    pub fn chunk_id(&self, plain_sha256: &[u8; 32]) -> ChunkId {
        ChunkId(self.0.hmac(&[b"id", plain_sha256]))
    }

    /// `key = HMAC-SHA256(tenant, "key" || SHA-256(P))`
    pub fn chunk_key(&self, plain_sha256: &[u8; 32]) -> SecretKey {
        SecretKey(self.0.hmac(&[b"key", plain_sha256]))
    }
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(s: &str) -> OwnerId {
        s.parse().unwrap()
    }

    fn keyring(id: &str, byte: u8) -> Keyring {
        Keyring::new(MasterKey::new(id, SecretKey([byte; 32])).unwrap(), vec![])
    }

    #[test]
    fn a_wrapped_secret_unwraps_only_for_its_owner() {
        let ring = keyring("k1", 1);
        let secret = TenantSecret::random();
        let w = ring.wrap(&owner("alice"), &secret);
        assert_eq!(ring.unwrap(&owner("alice"), &w), Ok(secret));
        assert_eq!(ring.unwrap(&owner("bob"), &w), Err(KeyError::Unwrap));
    }

    #[test]
    fn rotation_keeps_old_secrets_readable() {
        let old = keyring("k1", 1);
        let secret = TenantSecret::random();
        let w = old.wrap(&owner("alice"), &secret);
        let rotated = Keyring::new(
            MasterKey::new("k2", SecretKey([2; 32])).unwrap(),
            vec![MasterKey::new("k1", SecretKey([1; 32])).unwrap()],
        );
        assert_eq!(rotated.unwrap(&owner("alice"), &w), Ok(secret.clone()));
        assert_eq!(rotated.wrap(&owner("alice"), &secret).key_id, "k2");
        assert_eq!(
            keyring("k3", 3).unwrap(&owner("alice"), &w),
            Err(KeyError::UnknownKeyId("k1".into()))
        );
    }

    #[test]
    fn ids_and_keys_differ_per_tenant_and_per_purpose() {
        let h = sha256(b"hello");
        let (a, b) = (TenantSecret::random(), TenantSecret::random());
        assert_ne!(a.chunk_id(&h), b.chunk_id(&h));
        assert_ne!(a.chunk_id(&h).0, *a.chunk_key(&h).as_bytes());
        assert_eq!(a.chunk_id(&h), a.chunk_id(&h));
    }

    #[test]
    fn keys_parse_from_hex_only_at_full_length() {
        assert!(SecretKey::from_hex(&"00".repeat(32)).is_ok());
        assert_eq!(SecretKey::from_hex("00"), Err(KeyError::BadLength(1)));
        assert!(matches!(
            SecretKey::from_hex("zz"),
            Err(KeyError::NotHex(_))
        ));
        assert_eq!(format!("{:?}", SecretKey([9; 32])), "SecretKey(..)");
    }
}
