//! A small typed client of the v1 API.
use std::path::Path;

use bytes::Bytes;
use filestore_api::dto::tree::{ChangesMade, ChangesPage, EntryInfo, ListingPage};
use filestore_api::dto::{BundleResult, BundleResults, Descriptor, FileMetadata, FinalizeResponse};
use filestore_domain::bundle::{self, BundleItem};
use filestore_domain::{FileId, FileStatus};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{status} {code}: {detail}")]
    Api {
        status: u16,
        code: String,
        detail: String,
    },
    #[error("cannot reach the server: {0}")]
    Http(#[from] reqwest::Error),
    #[error("reading {0}: {1}")]
    Io(String, std::io::Error),
}

impl ClientError {
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// `req` carrying `plain`, or its zstd form `packed` when there is one; and the bytes that
/// go on the wire.
fn with_body(
    req: reqwest::RequestBuilder,
    plain: Vec<u8>,
    packed: Option<Vec<u8>>,
) -> (reqwest::RequestBuilder, u64) {
    match packed {
        Some(packed) => {
            let sent = packed.len() as u64;
            let req = req.header(reqwest::header::CONTENT_ENCODING, "zstd");
            (req.body(packed), sent)
        }
        None => {
            let sent = plain.len() as u64;
            (req.body(plain), sent)
        }
    }
}

/// The server stored other bytes than `what` sent.
fn transfer_corrupted(what: &str) -> ClientError {
    ClientError::Api {
        status: 0,
        code: "transfer_corrupted".into(),
        detail: format!("the server stored other bytes than were sent for {what}"),
    }
}

/// The server's receipt for `what` lacks the `digest` it must name.
fn bad_receipt(what: &str, digest: &str) -> ClientError {
    ClientError::Api {
        status: 0,
        code: "bad_receipt".into(),
        detail: format!("the server's receipt for {what} names no {digest}"),
    }
}

/// Bytes read from a file per request-body frame: large reads keep syscalls and wake-ups few.
const READ_BLOCK: usize = 1 << 20;

/// Reads `file` to its end into `tx`, block by block, and returns its CRC-64/NVME and the
/// bytes read. A read error is also sent down `tx`, so the request it feeds fails instead of
/// ending short. Stops early once `stop` is set or nobody takes the blocks any more.
fn read_into(
    mut file: std::fs::File,
    tx: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    stop: &std::sync::atomic::AtomicBool,
    on_progress: impl Fn(u64),
) -> std::io::Result<(u64, u64)> {
    use std::io::Read;
    let mut crc = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme);
    let mut read = 0u64;
    loop {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok((crc.finalize(), read));
        }
        let mut block = bytes::BytesMut::zeroed(READ_BLOCK);
        let n = match file.read(&mut block) {
            Ok(0) => return Ok((crc.finalize(), read)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::new(e.kind(), e.to_string())));
                return Err(e);
            }
        };
        block.truncate(n);
        crc.update(&block);
        read += n as u64;
        on_progress(n as u64);
        if tx.blocking_send(Ok(block.freeze())).is_err() {
            // The request gave up; its own error says why.
            return Ok((crc.finalize(), read));
        }
    }
}

#[derive(Debug, Deserialize)]
struct ProblemBody {
    code: Option<String>,
    detail: Option<String>,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// A batch registration result for one file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    pub index: usize,
    pub file_id: Option<FileId>,
    pub location: Option<String>,
    pub error: Option<Value>,
}

impl Client {
    pub fn new(base: &str, token: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(32)
            // Under the server's keep-alive timeout (60 s by default), so an idle connection is
            // dropped here before the server closes it under a request just sent.
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    /// Absolute URL of an API path or a server-relative signed URL.
    pub fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_owned()
        } else {
            format!("{}{}", self.base, path_or_url)
        }
    }

    async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let problem: Option<ProblemBody> = serde_json::from_str(&text).ok();
        Err(ClientError::Api {
            status,
            code: problem
                .as_ref()
                .and_then(|p| p.code.clone())
                .unwrap_or_else(|| "http_error".into()),
            detail: problem.and_then(|p| p.detail).unwrap_or(text),
        })
    }

    pub async fn register_batch(&self, files: &[Value]) -> Result<Vec<Registered>, ClientError> {
        #[derive(Deserialize)]
        struct Results {
            results: Vec<Registered>,
        }
        let resp = self
            .http
            .post(self.url("/v1/files"))
            .bearer_auth(&self.token)
            .json(&json!({ "files": files }))
            .send()
            .await?;
        Ok(Self::check(resp).await?.json::<Results>().await?.results)
    }

    /// Streams a local file as the content of `location` and returns the SHA-256 (hex) the
    /// server computed of what it stored, once the transfer is proven: the file is read once,
    /// on one blocking thread, and CRC-64/NVME'd on the way, and the server's CRC of the stored
    /// bytes must match. The server hashes with SHA-256 anyway, so a second SHA-256 here would
    /// only cost the client a core.
    pub async fn put_file(
        &self,
        location: &str,
        path: &Path,
        size: u64,
        on_progress: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<String, ClientError> {
        let shown = path.display().to_string();
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ClientError::Io(shown.clone(), e))?
            .into_std()
            .await;
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_reading = stop.clone();
        let reader =
            tokio::task::spawn_blocking(move || read_into(file, &tx, &stop_reading, on_progress));
        let body = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let resp = self
            .http
            .put(self.url(location))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await;
        if resp.as_ref().is_ok_and(|r| !r.status().is_success()) {
            // Refused before the whole body went (a 4xx does not wait for it): read no further.
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let read = reader
            .await
            .map_err(|e| ClientError::Io(shown.clone(), std::io::Error::other(e)))?;
        // A local read error also broke the request; it is the better explanation.
        let (crc, sent) = read.map_err(|e| ClientError::Io(shown.clone(), e))?;
        let receipt: Value = Self::check(resp?).await?.json().await?;
        if sent != size {
            return Err(ClientError::Io(
                shown,
                std::io::Error::other(format!(
                    "the file changed while it was sent ({sent} bytes read, {size} declared)"
                )),
            ));
        }
        let Some(stored_crc) = receipt["crc64nvme"].as_str() else {
            return Err(bad_receipt(&shown, "CRC-64/NVME"));
        };
        if stored_crc != format!("{crc:016x}") {
            return Err(transfer_corrupted(&shown));
        }
        match receipt["sha256"].as_str() {
            Some(sha) if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(sha.to_ascii_lowercase())
            }
            _ => Err(bad_receipt(&shown, "SHA-256")),
        }
    }

    /// Uploads a small file's bytes held in memory, compressed on the way when that pays and
    /// the location is this API (a presigned storage URL takes the bytes as they are).
    /// Returns the SHA-256 the server confirmed and the bytes that went over the wire.
    pub async fn put_content_bytes(
        &self,
        location: &str,
        data: Vec<u8>,
    ) -> Result<(String, u64), ClientError> {
        let ours = self.url(location).starts_with(&self.base);
        let (sha, packed, data) = tokio::task::spawn_blocking(move || {
            let sha = hex::encode(filestore_domain::keys::sha256(&data));
            let packed = if ours {
                crate::wire::compress(&data)
            } else {
                None
            };
            (sha, packed, data)
        })
        .await
        .map_err(|e| ClientError::Io(location.to_owned(), std::io::Error::other(e)))?;
        let req = self
            .http
            .put(self.url(location))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream");
        let (req, sent) = with_body(req, data, packed);
        let receipt: Value = Self::check(req.send().await?).await?.json().await?;
        if receipt["sha256"].as_str() != Some(sha.as_str()) {
            return Err(transfer_corrupted(location));
        }
        Ok((sha, sent))
    }

    pub async fn finalize(
        &self,
        id: &FileId,
        sha256_hex: &str,
        size: u64,
    ) -> Result<FileStatus, ClientError> {
        Ok(self.finalize_rev(id, sha256_hex, size).await?.0)
    }

    /// An authenticated GET of a JSON resource.
    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.get_query(path, &[]).await
    }

    pub async fn metadata(&self, id: &str) -> Result<FileMetadata, ClientError> {
        self.get_json(&format!("/v1/files/{id}/metadata")).await
    }

    /// The metadata as the server sent it, for printing.
    pub async fn metadata_json(&self, id: &str) -> Result<Value, ClientError> {
        self.get_json(&format!("/v1/files/{id}/metadata")).await
    }

    pub async fn descriptor(&self, id: &str) -> Result<Descriptor, ClientError> {
        self.get_json(&format!("/v1/file/{id}")).await
    }

    /// A stored chunk by its signed URL (no bearer token: the signature is the permission).
    pub async fn fetch_chunk(&self, url: &str) -> Result<Bytes, ClientError> {
        let resp = self.http.get(self.url(url)).send().await?;
        Ok(Self::check(resp).await?.bytes().await?)
    }

    pub async fn usage(&self) -> Result<Value, ClientError> {
        self.get_json("/v1/usage").await
    }

    /// Finalize, and the revision the file became at its path.
    pub async fn finalize_rev(
        &self,
        id: &FileId,
        sha256_hex: &str,
        size: u64,
    ) -> Result<(FileStatus, Option<i64>), ClientError> {
        let resp = self
            .http
            .post(self.url(&format!("/v1/files/{id}/finalize")))
            .bearer_auth(&self.token)
            .json(&json!({ "checksum": format!("sha256-{sha256_hex}"), "size": size }))
            .send()
            .await?;
        let done: FinalizeResponse = Self::check(resp).await?.json().await?;
        Ok((done.status, done.rev))
    }

    async fn get_query<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let resp = self
            .http
            .get(self.url(path))
            .query(query)
            .bearer_auth(&self.token)
            .send()
            .await?;
        Ok(Self::check(resp).await?.json().await?)
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, ClientError> {
        let resp = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        Ok(Self::check(resp).await?.json().await?)
    }

    /// One page of the live tree under `prefix`.
    pub async fn list_tree(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<ListingPage, ClientError> {
        let mut query = vec![("prefix", prefix.to_owned()), ("limit", limit.to_string())];
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        self.get_query("/v1/tree", &query).await
    }

    /// The changes after `cursor`; waits up to `timeout_secs` for one.
    pub async fn changes(
        &self,
        cursor: i64,
        limit: u32,
        timeout_secs: u64,
    ) -> Result<ChangesPage, ClientError> {
        let query = [
            ("cursor", cursor.to_string()),
            ("limit", limit.to_string()),
            ("timeout", timeout_secs.to_string()),
        ];
        self.get_query("/v1/changes", &query).await
    }

    /// The head of `path`, if it has one.
    pub async fn entry(&self, path: &str) -> Result<Option<EntryInfo>, ClientError> {
        match self
            .get_query("/v1/entry", &[("path", path.to_owned())])
            .await
        {
            Ok(e) => Ok(Some(e)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn move_path(
        &self,
        from: &str,
        to: &str,
        parent_rev: Option<i64>,
    ) -> Result<ChangesMade, ClientError> {
        let body = json!({ "from": from, "to": to, "parentRev": parent_rev });
        self.post("/v1/tree/move", &body).await
    }

    pub async fn delete_path(
        &self,
        path: &str,
        parent_rev: Option<i64>,
    ) -> Result<ChangesMade, ClientError> {
        let body = json!({ "path": path, "parentRev": parent_rev });
        self.post("/v1/tree/delete", &body).await
    }

    /// The server's chunking parameters: `(min, avg, max)` bytes.
    pub async fn chunking(&self) -> Result<(u32, u32, u32), ClientError> {
        let v: Value = self.get_json("/v1/chunking").await?;
        let n = |k: &str| {
            v[k].as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0)
        };
        Ok((n("minSize"), n("avgSize"), n("maxSize")))
    }

    /// Which of these chunk hashes the server lacks.
    pub async fn missing_chunks(&self, sha256: &[String]) -> Result<Vec<String>, ClientError> {
        let v: Value = self
            .post("/v1/chunks/missing", &json!({ "sha256": sha256 }))
            .await?;
        Ok(v["sha256"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|h| h.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Uploads and finalizes several small registered files in one request (compressed on the
    /// way when that pays); one result per file, and the bytes that went over the wire.
    pub async fn upload_bundle(
        &self,
        files: Vec<(BundleItem, Vec<u8>)>,
    ) -> Result<(Vec<BundleResult>, u64), ClientError> {
        let (packed, plain) = tokio::task::spawn_blocking(move || {
            let refs: Vec<(BundleItem, &[u8])> = files
                .iter()
                .map(|(item, bytes)| (item.clone(), bytes.as_slice()))
                .collect();
            let plain = bundle::encode(&refs);
            (crate::wire::compress_mixed(&plain), plain)
        })
        .await
        .map_err(|e| ClientError::Io("a bundle".into(), std::io::Error::other(e)))?;
        let req = self
            .http
            .post(self.url("/v1/files/bundle"))
            .bearer_auth(&self.token)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/vnd.filestore.bundle",
            );
        let (req, sent) = with_body(req, plain, packed);
        let done: BundleResults = Self::check(req.send().await?).await?.json().await?;
        Ok((done.results, sent))
    }

    /// Stores one chunk, compressed on the way when that pays; returns the bytes sent.
    pub async fn put_chunk(&self, sha256: &str, bytes: Vec<u8>) -> Result<u64, ClientError> {
        let req = self
            .http
            .put(self.url(&format!("/v1/chunks/{sha256}/content")))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream");
        let (packed, bytes) =
            tokio::task::spawn_blocking(move || (crate::wire::compress(&bytes), bytes))
                .await
                .map_err(|e| ClientError::Io(sha256.to_owned(), std::io::Error::other(e)))?;
        let (req, sent) = with_body(req, bytes, packed);
        Self::check(req.send().await?).await?;
        Ok(sent)
    }

    /// Has the server build file `id` from its chunks; returns the SHA-256 it stored.
    pub async fn assemble(
        &self,
        id: &FileId,
        chunks: &[(String, u32)],
    ) -> Result<String, ClientError> {
        let list: Vec<Value> = chunks
            .iter()
            .map(|(sha, length)| json!({ "sha256": sha, "length": length }))
            .collect();
        let v: Value = self
            .post(
                &format!("/v1/files/{id}/assemble"),
                &json!({ "chunks": list }),
            )
            .await?;
        Ok(v["sha256"].as_str().unwrap_or_default().to_owned())
    }

    /// Descriptors of several files in one request; each either a descriptor or a problem.
    pub async fn descriptors(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, Result<Descriptor, Value>)>, ClientError> {
        #[derive(Deserialize)]
        struct Item {
            id: String,
            descriptor: Option<Descriptor>,
            error: Option<Value>,
        }
        #[derive(Deserialize)]
        struct Batch {
            files: Vec<Item>,
        }
        let batch: Batch = self
            .get_query("/v1/files", &[("id", ids.join(","))])
            .await?;
        Ok(batch
            .files
            .into_iter()
            .map(|i| {
                let got = i.descriptor.ok_or_else(|| i.error.unwrap_or(Value::Null));
                (i.id, got)
            })
            .collect())
    }
}
