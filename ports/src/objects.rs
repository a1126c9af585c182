//! The object store port: raw uploads and chunk objects.
use std::io;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use sha2::{Digest, Sha256};
use tokio::io::AsyncRead;

pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;
pub type ObjectReader = Pin<Box<dyn AsyncRead + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("object {0} does not exist")]
    NotFound(String),
    #[error("object key {0:?} is not allowed")]
    InvalidKey(String),
    #[error("the body is larger than the declared {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the body has {got} bytes; {expected} were declared")]
    SizeMismatch { expected: u64, got: u64 },
    #[error("reading the request body failed: {0}")]
    Source(io::Error),
    #[error("object storage is unavailable: {0}")]
    Unavailable(String),
    #[error("object storage I/O failed: {0}")]
    Io(#[from] io::Error),
}

/// A multipart upload a client sends straight to storage, part by part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedMultipart {
    pub upload_id: String,
    /// One presigned PUT URL per part, part 1 first.
    pub part_urls: Vec<String>,
}

/// What a streamed upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    pub size: u64,
    pub sha256_hex: String,
    /// CRC-64/NVME of the bytes received (the checksum S3 uses for whole objects): cheap
    /// enough for a client to compute while sending, so it can prove the transfer without a
    /// second SHA-256 pass.
    pub crc64nvme: u64,
}

/// What a streamed body has amounted to so far: its size, bounded by `limit`, and its digests.
pub struct Tally {
    sha256: Sha256,
    crc: crc_fast::Digest,
    size: u64,
    limit: u64,
}

impl Tally {
    pub fn new(limit: u64) -> Self {
        Self {
            sha256: Sha256::new(),
            crc: crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme),
            size: 0,
            limit,
        }
    }

    /// The outcome of a whole body held in memory.
    pub fn whole(bytes: &[u8]) -> PutOutcome {
        let mut tally = Self::new(bytes.len() as u64);
        tally.count(bytes);
        tally.outcome()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Counts and hashes `data`; refuses it when the body grows past the limit.
    pub fn add(&mut self, data: &[u8]) -> Result<(), ObjectError> {
        if self.size + data.len() as u64 > self.limit {
            return Err(ObjectError::TooLarge { limit: self.limit });
        }
        self.count(data);
        Ok(())
    }

    fn count(&mut self, data: &[u8]) {
        self.size += data.len() as u64;
        self.sha256.update(data);
        self.crc.update(data);
    }

    pub fn outcome(self) -> PutOutcome {
        PutOutcome {
            size: self.size,
            sha256_hex: hex::encode(self.sha256.finalize()),
            crc64nvme: self.crc.finalize(),
        }
    }
}

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Stores the stream under `key`, durably, replacing any previous object atomically; fails
    /// without storing anything when the stream yields more than `limit` bytes or errors.
    async fn put_stream(
        &self,
        key: &str,
        body: ByteStream,
        limit: u64,
    ) -> Result<PutOutcome, ObjectError>;

    /// Like `put_stream`, for a body of exactly `size` bytes: a shorter or longer body fails and
    /// leaves nothing stored. Backends that can stream a known length in one request do.
    async fn put_stream_exact(
        &self,
        key: &str,
        body: ByteStream,
        size: u64,
    ) -> Result<PutOutcome, ObjectError> {
        put_exact_in_parts(self, key, body, size).await
    }

    /// `put_stream_exact` of a body already in memory (a small file of a bundle).
    async fn put_exact_bytes(&self, key: &str, bytes: Bytes) -> Result<PutOutcome, ObjectError> {
        let size = bytes.len() as u64;
        let body = futures::stream::iter([Ok::<_, io::Error>(bytes)]);
        self.put_stream_exact(key, Box::pin(body), size).await
    }

    /// Stores a whole object durably. Chunk objects are content-addressed, so a repeat is a no-op.
    async fn put_bytes(&self, key: &str, bytes: Bytes) -> Result<(), ObjectError>;

    /// Size of the object, or `None` when it does not exist.
    async fn head(&self, key: &str) -> Result<Option<u64>, ObjectError>;

    async fn get_bytes(&self, key: &str) -> Result<Bytes, ObjectError>;

    /// A reader over the whole object, for streaming consumers with bounded memory.
    async fn open(&self, key: &str) -> Result<ObjectReader, ObjectError>;

    /// Removes the object; removing a missing one is not an error.
    async fn delete(&self, key: &str) -> Result<(), ObjectError>;

    /// Every object whose key starts with `prefix`, with its size (for audits and sweeps).
    async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, ObjectError>;

    /// A URL that lets its holder GET the object straight from storage until it expires, where
    /// the backend can issue one; `None` means clients go through the API.
    async fn presign_get(
        &self,
        _key: &str,
        _expires_in: Duration,
    ) -> Result<Option<String>, ObjectError> {
        Ok(None)
    }

    /// Starts a multipart upload of `parts` parts under `key` and presigns a PUT URL for each,
    /// where the backend can; the client completes it through [`ObjectStore::complete_multipart`].
    async fn presign_multipart(
        &self,
        _key: &str,
        _parts: u32,
        _expires_in: Duration,
    ) -> Result<Option<PresignedMultipart>, ObjectError> {
        Ok(None)
    }

    /// Completes a multipart upload from its parts' numbers and ETags.
    async fn complete_multipart(
        &self,
        key: &str,
        _upload_id: &str,
        _parts: &[(i32, String)],
    ) -> Result<(), ObjectError> {
        Err(ObjectError::InvalidKey(format!(
            "{key}: this object store takes no direct multipart uploads"
        )))
    }

    /// A URL that lets its holder PUT the object straight into storage until it expires, where
    /// the backend can issue one.
    async fn presign_put(
        &self,
        _key: &str,
        _expires_in: Duration,
    ) -> Result<Option<String>, ObjectError> {
        Ok(None)
    }
}

/// `put_exact` on top of `put_stream`: store, then remove what turned out shorter than declared.
pub async fn put_exact_in_parts<S: ObjectStore + ?Sized>(
    store: &S,
    key: &str,
    body: ByteStream,
    size: u64,
) -> Result<PutOutcome, ObjectError> {
    let out = store.put_stream(key, body, size).await?;
    if out.size != size {
        store.delete(key).await?;
        return Err(ObjectError::SizeMismatch {
            expected: size,
            got: out.size,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_gives_the_standard_check_values() {
        let mut tally = Tally::new(9);
        tally.add(b"1234").unwrap();
        tally.add(b"56789").unwrap();
        let out = tally.outcome();
        assert_eq!(out.size, 9);
        // The catalogued check values of SHA-256 and CRC-64/NVME for "123456789".
        assert_eq!(
            out.sha256_hex,
            "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225"
        );
        assert_eq!(out.crc64nvme, 0xae8b_1486_0a79_9888);
    }

    #[test]
    fn a_tally_refuses_a_byte_past_its_limit() {
        let mut tally = Tally::new(3);
        tally.add(b"abc").unwrap();
        assert!(matches!(
            tally.add(b"d"),
            Err(ObjectError::TooLarge { limit: 3 })
        ));
    }
}
