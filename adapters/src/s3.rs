//! The production object store: any S3-compatible service through aws-sdk-s3.
//!
//! Raw uploads and chunk objects live in separate buckets (raw uploads are short-lived and
//! private; chunks are immutable and cacheable). A streamed upload becomes a multipart upload
//! with a few parts in flight, so memory stays bounded by `part_size * (parts_in_flight + 1)`
//! whatever the file's size; an upload that fails or overruns its limit is aborted, so no
//! partial object is ever visible.
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use bytes::{Bytes, BytesMut};
use filestore_domain::ids::CHUNK_KEY_PREFIX;
use futures::StreamExt;
use futures::stream::FuturesOrdered;

use crate::objects::{
    ByteStream, ObjectError, ObjectReader, ObjectStore, PresignedMultipart, PutOutcome, Tally,
    put_exact_in_parts,
};

/// Chunk objects never change once written: caches and CDNs may keep them for a year.
pub const CHUNK_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";
/// S3's smallest part (bar the last) is 5 MiB.
const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChecksumMode {
    /// Send checksums whenever the SDK can (its default; some servers reject the trailer).
    WhenSupported,
    /// Send checksums only where the S3 API requires them (Garage, older servers).
    WhenRequired,
}

#[derive(Debug, Clone)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub raw_bucket: String,
    pub chunk_bucket: String,
    pub path_style: bool,
    pub checksums: ChecksumMode,
    /// `AES256` or `aws:kms`, sent on every write when set.
    pub server_side_encryption: Option<String>,
    pub part_size: usize,
    pub parts_in_flight: usize,
}

impl S3Options {
    pub fn new(endpoint: Option<String>, raw_bucket: &str, chunk_bucket: &str) -> Self {
        Self {
            endpoint,
            region: "us-east-1".into(),
            access_key: String::new(),
            secret_key: String::new(),
            raw_bucket: raw_bucket.into(),
            chunk_bucket: chunk_bucket.into(),
            path_style: true,
            checksums: ChecksumMode::WhenSupported,
            server_side_encryption: None,
            part_size: 8 * 1024 * 1024,
            parts_in_flight: 4,
        }
    }
}

#[derive(Clone)]
pub struct S3Store {
    client: Client,
    opts: S3Options,
}

/// Maps an SDK failure onto the port's errors: "not there", "try again later", or I/O.
fn classify<E, R>(key: &str, e: SdkError<E, R>) -> ObjectError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let status = match &e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or_default();
            if matches!(code, "NoSuchKey" | "NotFound" | "NoSuchUpload") {
                return ObjectError::NotFound(key.to_owned());
            }
            format!("{code}: {}", se.err().message().unwrap_or_default())
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            return ObjectError::Unavailable(format!("{key}: {}", error_chain(&e)));
        }
        _ => error_chain(&e),
    };
    let retryable = status.starts_with("SlowDown")
        || status.starts_with("ServiceUnavailable")
        || status.starts_with("InternalError");
    if retryable {
        ObjectError::Unavailable(format!("{key}: {status}"))
    } else {
        ObjectError::Io(std::io::Error::other(format!("{key}: {status}")))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn presigning(expires_in: Duration) -> Result<PresigningConfig, ObjectError> {
    PresigningConfig::expires_in(expires_in).map_err(|e| ObjectError::Io(std::io::Error::other(e)))
}

/// S3's largest single PUT.
const SINGLE_PUT_MAX: u64 = 5 * 1024 * 1024 * 1024;

/// A request body fed through a bounded channel, so a body stream that is not `Sync` can
/// become the SDK's body, which must be.
struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    size: u64,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|next| next.map(|item| item.map(http_body::Frame::data)))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.size)
    }
}

impl S3Store {
    pub fn new(opts: S3Options) -> Self {
        let creds = Credentials::new(
            &opts.access_key,
            &opts.secret_key,
            None,
            None,
            "filestore-config",
        );
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(opts.region.clone()))
            .credentials_provider(creds)
            .force_path_style(opts.path_style);
        if let Some(endpoint) = &opts.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        builder = match opts.checksums {
            ChecksumMode::WhenSupported => builder
                .request_checksum_calculation(RequestChecksumCalculation::WhenSupported)
                .response_checksum_validation(ResponseChecksumValidation::WhenSupported),
            ChecksumMode::WhenRequired => builder
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired),
        };
        Self {
            client: Client::from_conf(builder.build()),
            opts: S3Options {
                part_size: opts.part_size.max(MIN_PART_SIZE),
                parts_in_flight: opts.parts_in_flight.max(1),
                ..opts
            },
        }
    }

    /// Creates both buckets unless they exist (for tests and first start-up).
    pub async fn ensure_buckets(&self) -> Result<(), ObjectError> {
        for bucket in [&self.opts.raw_bucket, &self.opts.chunk_bucket] {
            if self
                .client
                .head_bucket()
                .bucket(bucket)
                .send()
                .await
                .is_ok()
            {
                continue;
            }
            if let Err(e) = self.client.create_bucket().bucket(bucket).send().await {
                let owned = e.as_service_error().is_some_and(|se| {
                    se.is_bucket_already_owned_by_you() || se.is_bucket_already_exists()
                });
                if !owned {
                    return Err(classify(bucket, e));
                }
            }
        }
        Ok(())
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bucket an object key lives in.
    pub fn bucket_of(&self, key: &str) -> &str {
        if key.starts_with(CHUNK_KEY_PREFIX) {
            &self.opts.chunk_bucket
        } else {
            &self.opts.raw_bucket
        }
    }

    fn sse(&self) -> Option<ServerSideEncryption> {
        self.opts
            .server_side_encryption
            .as_deref()
            .map(ServerSideEncryption::from)
    }

    async fn put_single(&self, key: &str, bytes: Bytes) -> Result<(), ObjectError> {
        let mut req = self
            .client
            .put_object()
            .bucket(self.bucket_of(key))
            .key(key)
            .set_server_side_encryption(self.sse())
            .body(S3Body::from(bytes));
        if key.starts_with(CHUNK_KEY_PREFIX) {
            req = req.cache_control(CHUNK_CACHE_CONTROL);
        }
        req.send().await.map_err(|e| classify(key, e))?;
        Ok(())
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        bytes: Bytes,
    ) -> Result<CompletedPart, ObjectError> {
        let out = self
            .client
            .upload_part()
            .bucket(self.bucket_of(key))
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(S3Body::from(bytes))
            .send()
            .await
            .map_err(|e| classify(key, e))?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag().map(str::to_owned))
            .build())
    }

    async fn abort(&self, key: &str, upload_id: &str) {
        let aborted = self
            .client
            .abort_multipart_upload()
            .bucket(self.bucket_of(key))
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
        if let Err(e) = aborted {
            // A lifecycle rule on the raw bucket removes abandoned parts eventually.
            tracing::warn!(key, error = %classify(key, e), "could not abort a multipart upload");
        }
    }

    /// Streams the rest of `body` as parts of an already created multipart upload.
    async fn put_parts(
        &self,
        key: &str,
        upload_id: &str,
        first: Bytes,
        body: &mut ByteStream,
        tally: &mut Tally,
    ) -> Result<(), ObjectError> {
        let mut in_flight = FuturesOrdered::new();
        let mut done = Vec::new();
        let mut number = 1;
        let mut buf = BytesMut::with_capacity(self.opts.part_size);
        in_flight.push_back(self.upload_part(key, upload_id, number, first));
        let mut finished = false;
        while !finished {
            match body.next().await {
                Some(Ok(data)) => {
                    tally.add(&data)?;
                    buf.extend_from_slice(&data);
                }
                Some(Err(e)) => return Err(ObjectError::Source(e)),
                None => finished = true,
            }
            let full = buf.len() >= self.opts.part_size;
            if full || (finished && !buf.is_empty()) {
                number += 1;
                let part = buf.split().freeze();
                if in_flight.len() >= self.opts.parts_in_flight
                    && let Some(r) = in_flight.next().await
                {
                    done.push(r?);
                }
                in_flight.push_back(self.upload_part(key, upload_id, number, part));
            }
        }
        while let Some(r) = in_flight.next().await {
            done.push(r?);
        }
        self.client
            .complete_multipart_upload()
            .bucket(self.bucket_of(key))
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify(key, e))?;
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put_stream(
        &self,
        key: &str,
        mut body: ByteStream,
        limit: u64,
    ) -> Result<PutOutcome, ObjectError> {
        let mut tally = Tally::new(limit);
        let mut buf = BytesMut::with_capacity(self.opts.part_size.min(1 << 20));
        // Small bodies go up in one PUT; a body that fills a part becomes a multipart upload.
        while buf.len() < self.opts.part_size {
            match body.next().await {
                Some(Ok(data)) => {
                    tally.add(&data)?;
                    buf.extend_from_slice(&data);
                }
                Some(Err(e)) => return Err(ObjectError::Source(e)),
                None => {
                    self.put_single(key, buf.freeze()).await?;
                    return Ok(tally.outcome());
                }
            }
        }
        let created = self
            .client
            .create_multipart_upload()
            .bucket(self.bucket_of(key))
            .key(key)
            .set_server_side_encryption(self.sse())
            .send()
            .await
            .map_err(|e| classify(key, e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| ObjectError::Unavailable("the server returned no upload id".into()))?
            .to_owned();
        let uploaded = self
            .put_parts(key, &upload_id, buf.freeze(), &mut body, &mut tally)
            .await;
        if let Err(e) = uploaded {
            self.abort(key, &upload_id).await;
            return Err(e);
        }
        Ok(tally.outcome())
    }

    async fn put_stream_exact(
        &self,
        key: &str,
        mut body: ByteStream,
        size: u64,
    ) -> Result<PutOutcome, ObjectError> {
        if size > SINGLE_PUT_MAX {
            return put_exact_in_parts(self, key, body, size).await;
        }
        // One streaming PUT of a known length: no part assembly, memory bounded by the channel.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let feeder = tokio::spawn(async move {
            let mut tally = Tally::new(size);
            let failure = loop {
                match body.next().await {
                    Some(Ok(data)) => {
                        if let Err(e) = tally.add(&data) {
                            break Some(e);
                        }
                        if tx.send(Ok(data)).await.is_err() {
                            // The request gave up; its own error says why.
                            return (tally, None);
                        }
                    }
                    Some(Err(e)) => break Some(ObjectError::Source(e)),
                    None if tally.size() < size => {
                        break Some(ObjectError::SizeMismatch {
                            expected: size,
                            got: tally.size(),
                        });
                    }
                    None => break None,
                }
            };
            if let Some(e) = &failure {
                // Poisons the request body, so storage never sees a complete object.
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
            }
            (tally, failure)
        });
        let sent = self
            .client
            .put_object()
            .bucket(self.bucket_of(key))
            .key(key)
            .content_length(i64::try_from(size).unwrap_or(i64::MAX))
            .set_server_side_encryption(self.sse())
            .body(S3Body::from_body_1_x(ChannelBody { rx, size }))
            .customize()
            // The body is hashed here already; signing it would hash it a second time. A
            // per-request checksum is redundant too: the chunk stage re-reads the raw object
            // and refuses it unless its SHA-256 is the one recorded here.
            .disable_payload_signing()
            .config_override(
                aws_sdk_s3::config::Builder::default()
                    .request_checksum_calculation(RequestChecksumCalculation::WhenRequired),
            )
            .send()
            .await;
        let (tally, failure) = feeder
            .await
            .map_err(|e| ObjectError::Io(std::io::Error::other(e)))?;
        if let Some(e) = failure {
            if sent.is_ok() {
                self.delete(key).await?;
            }
            return Err(e);
        }
        sent.map_err(|e| classify(key, e))?;
        Ok(tally.outcome())
    }

    async fn put_bytes(&self, key: &str, bytes: Bytes) -> Result<(), ObjectError> {
        self.put_single(key, bytes).await
    }

    async fn head(&self, key: &str) -> Result<Option<u64>, ObjectError> {
        match self
            .client
            .head_object()
            .bucket(self.bucket_of(key))
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
            )),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_not_found()) => Ok(None),
            Err(e) => match classify(key, e) {
                ObjectError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn get_bytes(&self, key: &str) -> Result<Bytes, ObjectError> {
        let out = self
            .client
            .get_object()
            .bucket(self.bucket_of(key))
            .key(key)
            .send()
            .await
            .map_err(|e| classify(key, e))?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| ObjectError::Unavailable(format!("{key}: {e}")))?;
        Ok(body.into_bytes())
    }

    async fn open(&self, key: &str) -> Result<ObjectReader, ObjectError> {
        let out = self
            .client
            .get_object()
            .bucket(self.bucket_of(key))
            .key(key)
            .send()
            .await
            .map_err(|e| classify(key, e))?;
        Ok(Box::pin(out.body.into_async_read()))
    }

    async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        match self
            .client
            .delete_object()
            .bucket(self.bucket_of(key))
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match classify(key, e) {
                ObjectError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn presign_get(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> Result<Option<String>, ObjectError> {
        let req = self
            .client
            .get_object()
            .bucket(self.bucket_of(key))
            .key(key)
            // The object is immutable, but this URL is a grant that ends: no shared cache may
            // keep the answer, and the client's own no longer than the URL is valid.
            .response_cache_control(format!("private, max-age={}", expires_in.as_secs()))
            .presigned(presigning(expires_in)?)
            .await
            .map_err(|e| classify(key, e))?;
        Ok(Some(req.uri().to_owned()))
    }

    async fn presign_put(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> Result<Option<String>, ObjectError> {
        let req = self
            .client
            .put_object()
            .bucket(self.bucket_of(key))
            .key(key)
            .presigned(presigning(expires_in)?)
            .await
            .map_err(|e| classify(key, e))?;
        Ok(Some(req.uri().to_owned()))
    }

    async fn presign_multipart(
        &self,
        key: &str,
        parts: u32,
        expires_in: Duration,
    ) -> Result<Option<PresignedMultipart>, ObjectError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(self.bucket_of(key))
            .key(key)
            .set_server_side_encryption(self.sse())
            .send()
            .await
            .map_err(|e| classify(key, e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| ObjectError::Unavailable("the server returned no upload id".into()))?
            .to_owned();
        let mut part_urls = Vec::with_capacity(parts as usize);
        for number in 1..=parts {
            let number = i32::try_from(number)
                .map_err(|_| ObjectError::InvalidKey(format!("{key}: too many parts")))?;
            let req = self
                .client
                .upload_part()
                .bucket(self.bucket_of(key))
                .key(key)
                .upload_id(&upload_id)
                .part_number(number)
                .presigned(presigning(expires_in)?)
                .await
                .map_err(|e| classify(key, e))?;
            part_urls.push(req.uri().to_owned());
        }
        Ok(Some(PresignedMultipart {
            upload_id,
            part_urls,
        }))
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<(), ObjectError> {
        let parts = parts
            .iter()
            .map(|(n, etag)| CompletedPart::builder().part_number(*n).e_tag(etag).build())
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(self.bucket_of(key))
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify(key, e))?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, ObjectError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(self.bucket_of(prefix))
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(prefix, e))?;
            for o in page.contents() {
                if let Some(k) = o.key() {
                    let size = o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
                    out.push((k.to_owned(), size));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::ObjectStore;

    #[tokio::test]
    async fn a_presigned_get_asks_for_private_caching_while_it_is_valid() {
        let mut opts = S3Options::new(Some("http://127.0.0.1:9".into()), "raw", "chunks");
        opts.access_key = "key".into();
        opts.secret_key = "secret".into();
        let url = S3Store::new(opts)
            .presign_get("chunks/ab/abcd", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert!(
            url.contains("response-cache-control=private%2C%20max-age%3D60"),
            "{url}"
        );
    }
}
