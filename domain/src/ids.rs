//! Identifiers. Each has one canonical text form and rejects everything else.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("not a file id: expected a UUID")]
    BadFileId,
    #[error("not a chunk id: expected 64 lowercase hex digits")]
    BadChunkId,
    #[error("not an owner id: 1 to 128 characters of [A-Za-z0-9._@-]")]
    BadOwner,
}

/// A file's identity; UUIDv7 so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FileId(uuid::Uuid);

/// Where every object the service stores lives: raw uploads under `raw/`, chunks under
/// `chunks/`. The sweeps tell the two apart by these prefixes alone.
pub const RAW_KEY_PREFIX: &str = "raw/";
pub const CHUNK_KEY_PREFIX: &str = "chunks/";

impl FileId {
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }

    /// The raw key a file is registered with; each upload attempt then records a key of its
    /// own ([`FileId::attempt_key`]), and a multipart upload completes at this one.
    pub fn raw_key(&self) -> String {
        format!("{RAW_KEY_PREFIX}{self}")
    }

    /// The object key of one upload attempt of this file. Each attempt gets its own object
    /// (`nonce` tells them apart), so a slow concurrent PUT can never overwrite bytes that
    /// another attempt recorded and finalize verified.
    pub fn attempt_key(&self, nonce: u64) -> String {
        format!("{RAW_KEY_PREFIX}{self}.{nonce:016x}")
    }
}

impl Default for FileId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for FileId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::try_parse(s)
            .map(Self)
            .map_err(|_| IdError::BadFileId)
    }
}

impl TryFrom<String> for FileId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<FileId> for String {
    fn from(id: FileId) -> Self {
        id.to_string()
    }
}

/// A stored chunk's name: HMAC of the tenant secret over the plaintext hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// Object-store key of the chunk; the two-character fan-out keeps directories small.
    pub fn object_key(&self) -> String {
        let hex = self.to_string();
        format!("{CHUNK_KEY_PREFIX}{}/{}", &hex[..2], hex)
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({self})")
    }
}

impl FromStr for ChunkId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(IdError::BadChunkId);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| IdError::BadChunkId)?;
        Ok(Self(out))
    }
}

impl TryFrom<String> for ChunkId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ChunkId> for String {
    fn from(id: ChunkId) -> Self {
        id.to_string()
    }
}

/// The user a token names (`sub`); the unit of ownership and of dedupe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OwnerId(String);

impl OwnerId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for OwnerId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::BadOwner)
        }
    }
}

impl TryFrom<String> for OwnerId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<OwnerId> for String {
    fn from(id: OwnerId) -> Self {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_ids_round_trip_and_reject_garbage() {
        let id = FileId::new();
        assert_eq!(id.to_string().parse::<FileId>(), Ok(id));
        assert_eq!(
            "../../etc/passwd".parse::<FileId>(),
            Err(IdError::BadFileId)
        );
    }

    #[test]
    fn chunk_ids_accept_only_lowercase_hex_of_32_bytes() {
        let hex = "ab".repeat(32);
        let id: ChunkId = hex.parse().expect("valid");
        assert_eq!(id.to_string(), hex);
        assert_eq!(id.object_key(), format!("chunks/ab/{hex}"));
        assert!("AB".repeat(32).parse::<ChunkId>().is_err());
        assert!("ab".repeat(31).parse::<ChunkId>().is_err());
        assert!("zz".repeat(32).parse::<ChunkId>().is_err());
    }

    #[test]
    fn owners_are_plain_names() {
        assert!("alice@example.com".parse::<OwnerId>().is_ok());
        assert!("".parse::<OwnerId>().is_err());
        assert!("a/b".parse::<OwnerId>().is_err());
        assert!("x".repeat(129).parse::<OwnerId>().is_err());
    }
}
