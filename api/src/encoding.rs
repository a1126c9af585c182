//! Compressed request bodies. A client may send file and chunk content with
//! `Content-Encoding: zstd` so compressible data costs fewer bytes on the wire; the server
//! stores, hashes and bounds the decoded bytes, so a small compressed body can never expand
//! past the size the request is allowed to have.
use std::io::Read;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use futures::TryStreamExt;

use crate::error::{ApiError, ProblemCode};

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    Identity,
    Zstd,
}

impl BodyEncoding {
    /// The encoding `Content-Encoding` names; anything but `identity` and `zstd` is refused
    /// with `unsupported_encoding` rather than stored as if it were the content.
    pub fn of(headers: &HeaderMap) -> Result<Self, ApiError> {
        let Some(value) = headers.get(header::CONTENT_ENCODING) else {
            return Ok(Self::Identity);
        };
        let named = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
        match named.as_str() {
            "" | "identity" => Ok(Self::Identity),
            "zstd" => Ok(Self::Zstd),
            _ => Err(ApiError::new(
                ProblemCode::UnsupportedEncoding,
                format!(
                    "Content-Encoding {:?} is not accepted; send identity or zstd",
                    value.to_str().unwrap_or("(not text)")
                ),
            )),
        }
    }

    /// The decoded bytes of a whole body, refusing more than `limit` of them.
    pub fn decode(self, body: bytes::Bytes, limit: usize) -> Result<Vec<u8>, ApiError> {
        match self {
            Self::Identity if body.len() > limit => Err(too_large(limit)),
            Self::Identity => Ok(body.to_vec()),
            Self::Zstd => {
                let decoder = zstd::stream::read::Decoder::new(&body[..]).map_err(bad_encoding)?;
                let mut out = Vec::new();
                // One byte past the limit tells "too large" from "exactly the limit".
                decoder
                    .take(limit as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(bad_encoding)?;
                if out.len() > limit {
                    return Err(too_large(limit));
                }
                Ok(out)
            }
        }
    }

    /// The decoded byte stream of a body; its length is bounded by whoever consumes it.
    pub fn decode_stream(self, body: Body) -> filestore_ports::objects::ByteStream {
        let raw = body.into_data_stream().map_err(std::io::Error::other);
        match self {
            Self::Identity => Box::pin(raw),
            Self::Zstd => {
                let reader = tokio_util::io::StreamReader::new(raw);
                let decoder = async_compression::tokio::bufread::ZstdDecoder::new(reader);
                Box::pin(tokio_util::io::ReaderStream::with_capacity(
                    decoder,
                    256 * 1024,
                ))
            }
        }
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ProblemCode::BodyTooLarge,
        format!("the decoded body is larger than {limit} bytes"),
    )
}

fn bad_encoding(e: std::io::Error) -> ApiError {
    ApiError::new(
        ProblemCode::BadEncoding,
        format!("the body is not valid zstd data: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};

    fn headers(encoding: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_str(encoding).unwrap(),
        );
        h
    }

    #[test]
    fn no_header_and_identity_mean_plain_bytes() {
        assert_eq!(
            BodyEncoding::of(&HeaderMap::new()),
            Ok(BodyEncoding::Identity)
        );
        assert_eq!(
            BodyEncoding::of(&headers("identity")),
            Ok(BodyEncoding::Identity)
        );
        assert_eq!(BodyEncoding::of(&headers("ZSTD")), Ok(BodyEncoding::Zstd));
    }

    #[test]
    fn other_encodings_are_refused_with_a_stable_code() {
        let e = BodyEncoding::of(&headers("gzip")).unwrap_err();
        assert_eq!(
            (e.status(), e.code.as_str()),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding")
        );
    }

    #[test]
    fn a_zstd_body_decodes_to_what_was_compressed() {
        let data = b"hello hello hello hello hello".repeat(100);
        let packed = zstd::bulk::compress(&data, 3).unwrap();
        let out = BodyEncoding::Zstd
            .decode(packed.into(), data.len())
            .unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn a_small_body_that_expands_past_the_limit_is_refused() {
        let bomb = zstd::bulk::compress(&vec![0u8; 1 << 20], 3).unwrap();
        assert!(bomb.len() < 1024);
        let e = BodyEncoding::Zstd
            .decode(bomb.into(), 64 * 1024)
            .unwrap_err();
        assert_eq!(e.code, ProblemCode::BodyTooLarge);
    }

    #[test]
    fn garbage_sent_as_zstd_is_bad_encoding() {
        let e = BodyEncoding::Zstd
            .decode(bytes::Bytes::from_static(b"not zstd at all"), 1024)
            .unwrap_err();
        assert_eq!(e.code, ProblemCode::BadEncoding);
    }

    #[tokio::test]
    async fn a_zstd_stream_decodes_to_what_was_compressed() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let packed = zstd::bulk::compress(&data, 3).unwrap();
        let stream = BodyEncoding::Zstd.decode_stream(Body::from(packed));
        let parts: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
        assert_eq!(parts.concat(), data);
    }

    #[tokio::test]
    async fn a_stalled_body_is_still_recognised_through_the_zstd_decoder() {
        let packed = zstd::bulk::compress(&vec![7u8; 1 << 20], 3).unwrap();
        let half = bytes::Bytes::copy_from_slice(&packed[..packed.len() / 2]);
        let stalled = crate::server::BodyIdleTimeout(std::time::Duration::from_secs(1));
        let body = Body::from_stream(futures::stream::iter([Ok(half), Err(stalled)]));
        let mut stream = BodyEncoding::Zstd.decode_stream(body);
        let err = loop {
            match futures::StreamExt::next(&mut stream).await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => break e,
                None => panic!("the stream ended without the body's error"),
            }
        };
        assert!(crate::server::is_body_timeout(&err), "{err}");
        assert_eq!(ApiError::body_read(&err).code, ProblemCode::RequestTimeout);
    }
}
