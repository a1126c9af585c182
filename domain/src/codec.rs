//! The stored chunk format (docs/chunk-format.md is the normative description).
//!
//! ```text
//! offset size field
//! 0      4    magic "FSCK"
//! 4      1    format version (1)
//! 5      1    flags: bit 0 = payload is zstd-compressed; other bits must be 0
//! 6      2    reserved, must be 0
//! 8      12   nonce = HMAC-SHA256(key, "nonce" || flags [|| payload if compressed])[0..12]
//! 20     ..   AES-256-GCM(key, nonce, payload, AAD = chunk id || header[0..20]) with 16-byte tag
//! ```
//!
//! The key is unique to the plaintext, and a compressed payload's nonce is derived from its exact
//! bytes, so the same chunk always encodes to the same bytes and a different payload under the
//! same key (a different zstd build, say) never reuses a nonce.
use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::ids::ChunkId;
use crate::keys::{SecretKey, TenantSecret, sha256};

pub const MAGIC: [u8; 4] = *b"FSCK";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 20;
pub const TAG_LEN: usize = 16;
pub const FLAG_ZSTD: u8 = 0b0000_0001;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("chunk is shorter than its header and tag")]
    Truncated,
    #[error("chunk does not start with the FSCK magic")]
    BadMagic,
    #[error("chunk format version {0} is not supported")]
    UnsupportedVersion(u8),
    #[error("chunk header has unknown flags or reserved bits set")]
    BadFlags,
    #[error("chunk failed authentication: it was altered, or the id or key is wrong")]
    Authentication,
    #[error("chunk payload does not decompress to its declared length")]
    Decompress,
    #[error("chunk plaintext does not match its SHA-256")]
    Digest,
}

/// How hard to try compressing, and when it is worth it.
#[derive(Debug, Clone, Copy)]
pub struct CodecOptions {
    pub zstd_level: i32,
}

impl Default for CodecOptions {
    fn default() -> Self {
        Self { zstd_level: 1 }
    }
}

/// A chunk ready to store, with what the index needs to find and open it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedChunk {
    pub id: ChunkId,
    pub plain_sha256: [u8; 32],
    pub plain_len: usize,
    pub bytes: Vec<u8>,
}

/// The id and key a chunk will have, from its plaintext; cheap, so dedupe is decided before
/// any compression or encryption happens.
pub fn identify(tenant: &TenantSecret, plain: &[u8]) -> ([u8; 32], ChunkId) {
    let h = sha256(plain);
    (h, tenant.chunk_id(&h))
}

pub fn encode(tenant: &TenantSecret, plain: &[u8], opts: CodecOptions) -> EncodedChunk {
    let (h, _) = identify(tenant, plain);
    encode_hashed(tenant, plain, h, opts)
}

/// [`encode`] for a caller that already hashed the plaintext (to decide dedupe first).
pub fn encode_hashed(
    tenant: &TenantSecret,
    plain: &[u8],
    h: [u8; 32],
    opts: CodecOptions,
) -> EncodedChunk {
    let id = tenant.chunk_id(&h);
    let key = tenant.chunk_key(&h);
    let compressed = worth_compressing(plain)
        .then(|| zstd::bulk::compress(plain, opts.zstd_level).ok())
        .flatten();
    // Keep compression only when it saves more than 1/32: decompressing costs time on every read.
    let bytes = match compressed {
        Some(c) if c.len() < plain.len() - plain.len() / 32 => seal(&id, &key, FLAG_ZSTD, &c),
        _ => seal(&id, &key, 0, plain),
    };
    EncodedChunk {
        id,
        plain_sha256: h,
        plain_len: plain.len(),
        bytes,
    }
}

const SAMPLE: usize = 64 * 1024;

/// Whether a whole-chunk compression attempt can pay off, judged on a fast-compressed sample of
/// its start: media, archives and encrypted data are most of many corpora, and trying to
/// compress them costs as much as everything else a chunk goes through. Deterministic, so the
/// same chunk still encodes to the same bytes.
fn worth_compressing(plain: &[u8]) -> bool {
    if plain.len() <= 2 * SAMPLE {
        return true;
    }
    let sample = &plain[..SAMPLE];
    zstd::bulk::compress(sample, 1).is_ok_and(|c| c.len() < SAMPLE - SAMPLE / 32)
}

/// Header, payload and tag in one buffer, encrypted in place: chunks are megabytes, and every
/// extra copy is memory the worker holds per chunk in flight.
fn seal(id: &ChunkId, key: &SecretKey, flags: u8, payload: &[u8]) -> Vec<u8> {
    // A raw payload is the plaintext itself, which the key already names; only a compressed
    // payload can differ for one key (another zstd build), so only it needs hashing here.
    let nonce_full = if flags & FLAG_ZSTD != 0 {
        key.hmac(&[b"nonce", &[flags], payload])
    } else {
        key.hmac(&[b"nonce", &[flags]])
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + TAG_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, flags, 0, 0]);
    out.extend_from_slice(&nonce_full[..12]);
    let aad = [id.0.as_slice(), &out[..HEADER_LEN]].concat();
    out.extend_from_slice(payload);
    let cipher = Aes256Gcm::new(key.as_bytes().into());
    let (header, body) = out.split_at_mut(HEADER_LEN);
    // AES-GCM fails only past 64 GiB per message; chunks are at most 16 MiB.
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(&header[8..20]), &aad, body)
        .unwrap_or_else(|_| unreachable!());
    out.extend_from_slice(&tag);
    out
}

/// Opens a stored chunk and proves it is the plaintext the index promised: authenticated by
/// AES-GCM, then checked against the plaintext SHA-256 and length.
pub fn decode(
    bytes: &[u8],
    id: &ChunkId,
    key: &SecretKey,
    plain_sha256: &[u8; 32],
    plain_len: usize,
) -> Result<Vec<u8>, CodecError> {
    let plain = decode_authenticated(bytes, id, key, plain_len)?;
    if &sha256(&plain) != plain_sha256 {
        return Err(CodecError::Digest);
    }
    Ok(plain)
}

/// [`decode`] without the plaintext digest: authenticated and length-checked only. For readers
/// that verify the content another way before anyone sees it (a download that checks the whole
/// file's SHA-256 before it moves the file into place).
pub fn decode_authenticated(
    bytes: &[u8],
    id: &ChunkId,
    key: &SecretKey,
    plain_len: usize,
) -> Result<Vec<u8>, CodecError> {
    if bytes.len() < HEADER_LEN + TAG_LEN {
        return Err(CodecError::Truncated);
    }
    let (header, ct) = bytes.split_at(HEADER_LEN);
    if header[..4] != MAGIC {
        return Err(CodecError::BadMagic);
    }
    if header[4] != VERSION {
        return Err(CodecError::UnsupportedVersion(header[4]));
    }
    let flags = header[5];
    if flags & !FLAG_ZSTD != 0 || header[6] != 0 || header[7] != 0 {
        return Err(CodecError::BadFlags);
    }
    let aad = [id.0.as_slice(), header].concat();
    let cipher = Aes256Gcm::new(key.as_bytes().into());
    let payload = cipher
        .decrypt(
            Nonce::from_slice(&header[8..20]),
            Payload { msg: ct, aad: &aad },
        )
        .map_err(|_| CodecError::Authentication)?;
    let plain = if flags & FLAG_ZSTD != 0 {
        zstd::bulk::decompress(&payload, plain_len).map_err(|_| CodecError::Decompress)?
    } else {
        payload
    };
    if plain.len() != plain_len {
        return Err(CodecError::Decompress);
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;
    use crate::testing::pseudo_random;

    fn tenant() -> TenantSecret {
        TenantSecret(SecretKey::from_bytes(&[7u8; 32]).unwrap())
    }

    fn open(t: &TenantSecret, e: &EncodedChunk, bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
        decode(
            bytes,
            &e.id,
            &t.chunk_key(&e.plain_sha256),
            &e.plain_sha256,
            e.plain_len,
        )
    }

    #[test]
    fn text_round_trips_compressed() {
        let t = tenant();
        let plain = b"all work and no play ".repeat(1000);
        let e = encode(&t, &plain, CodecOptions::default());
        assert_eq!(e.bytes[5], FLAG_ZSTD);
        assert!(e.bytes.len() < plain.len() / 10);
        assert_eq!(open(&t, &e, &e.bytes).unwrap(), plain);
    }

    #[test]
    fn incompressible_data_is_stored_raw() {
        let t = tenant();
        let plain = pseudo_random(4096, 0x9E37_79B9_7F4A_7C15);
        let e = encode(&t, &plain, CodecOptions::default());
        assert_eq!(e.bytes[5], 0);
        assert_eq!(e.bytes.len(), HEADER_LEN + plain.len() + TAG_LEN);
        assert_eq!(open(&t, &e, &e.bytes).unwrap(), plain);
    }

    #[test]
    fn large_incompressible_chunks_skip_the_compressor_and_text_does_not() {
        let t = tenant();
        let noise = pseudo_random(1 << 20, 7);
        assert!(!worth_compressing(&noise));
        assert_eq!(encode(&t, &noise, CodecOptions::default()).bytes[5], 0);
        let text = b"some words that repeat, ".repeat(50_000);
        assert!(worth_compressing(&text));
        assert_eq!(
            encode(&t, &text, CodecOptions::default()).bytes[5],
            FLAG_ZSTD
        );
    }

    #[test]
    fn encoding_is_deterministic() {
        let t = tenant();
        let a = encode(&t, b"same bytes", CodecOptions::default());
        let b = encode(&t, b"same bytes", CodecOptions::default());
        assert_eq!(a, b);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let t = tenant();
        let e = encode(&t, &b"abc".repeat(50), CodecOptions::default());
        for i in 0..e.bytes.len() {
            let mut bad = e.bytes.clone();
            bad[i] ^= 0x01;
            assert!(open(&t, &e, &bad).is_err(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn a_chunk_cannot_be_opened_under_another_id() {
        let t = tenant();
        let a = encode(&t, b"first", CodecOptions::default());
        let b = encode(&t, b"second", CodecOptions::default());
        let key = t.chunk_key(&a.plain_sha256);
        assert_eq!(
            decode(&a.bytes, &b.id, &key, &a.plain_sha256, a.plain_len),
            Err(CodecError::Authentication)
        );
    }

    #[test]
    fn header_errors_are_named() {
        let t = tenant();
        let e = encode(&t, b"x", CodecOptions::default());
        assert_eq!(open(&t, &e, &e.bytes[..10]), Err(CodecError::Truncated));
        let mut v = e.bytes.clone();
        v[4] = 9;
        assert_eq!(open(&t, &e, &v), Err(CodecError::UnsupportedVersion(9)));
        let mut f = e.bytes.clone();
        f[5] = 0x80;
        assert_eq!(open(&t, &e, &f), Err(CodecError::BadFlags));
        let mut m = e.bytes.clone();
        m[0] = b'X';
        assert_eq!(open(&t, &e, &m), Err(CodecError::BadMagic));
    }
}
