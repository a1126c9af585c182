//! Request and response bodies of the v1 API (camelCase JSON).
use filestore_domain::{ChunkId, FileId, FileStatus};
use filestore_ports::{FileRecord, Usage};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{
    AllOfBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::error::Problem;

pub mod rules;
pub mod tree;
pub mod whole;

use rules::FilePath;

/// One file to upload.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterFile {
    /// Where the file lives in the user's tree, `/`-separated.
    #[schema(value_type = FilePath)]
    pub path: String,
    /// Exact size in bytes, a whole number; over the server's limit per file answers 413
    /// `file_too_large`.
    #[schema(value_type = u64, minimum = 0, maximum = 1099511627776_i64)]
    pub size: serde_json::Number,
    /// Optional SHA-256 (hex) the upload must match.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub sha256: Option<String>,
    /// MIME type; `application/octet-stream` when absent.
    #[schema(max_length = 255, pattern = "^[ -~]*/[ -~]*$", example = "text/plain")]
    pub content_type: Option<String>,
    /// The revision of the path this upload edits: finalize answers 409 `rev_conflict` if the
    /// path moved on meanwhile. `0`: the path must be free. Absent: the upload becomes the head
    /// whatever is there (the previous head stays as a version).
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    #[serde(default, deserialize_with = "whole::option_i64")]
    pub parent_rev: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct RegisterBatch {
    /// 1 to the server's batch limit (`--max-batch`) files.
    #[schema(min_items = 1, max_items = 1000, value_type = Vec<BatchFile>)]
    pub files: Vec<RegisterFile>,
}

/// One file of a batch as the request must hold it. Its values are checked file by file, as
/// `POST /v1/file` checks them (see `RegisterFile`): a file that fails gets its problem in its
/// result and the others are registered.
pub struct BatchFile;

impl PartialSchema for BatchFile {
    fn schema() -> RefOr<Schema> {
        let text =
            || ObjectBuilder::new().schema_type(SchemaType::Array(vec![Type::String, Type::Null]));
        ObjectBuilder::new()
            .property("path", ObjectBuilder::new().schema_type(Type::String))
            .required("path")
            .property("size", ObjectBuilder::new().schema_type(Type::Number))
            .required("size")
            .property("sha256", text())
            .property("contentType", text())
            .property(
                "parentRev",
                ObjectBuilder::new()
                    .schema_type(SchemaType::Array(vec![Type::Integer, Type::Null]))
                    .minimum(Some(i64::MIN))
                    .maximum(Some(i64::MAX)),
            )
            .description(Some(
                "A file to register, checked on its own as `RegisterFile` states; a refused \
                 file gets its problem in its result.",
            ))
            .into()
    }
}

impl ToSchema for BatchFile {}

/// Where and how to send the bytes of a registered file.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    #[schema(value_type = String)]
    pub file_id: FileId,
    #[schema(value_type = String)]
    pub status: FileStatus,
    /// URL to send the raw bytes to.
    pub location: String,
    pub upload_method: String,
    /// Where the object store takes the bytes directly, bypassing the API (S3 backends only);
    /// finalize then verifies what arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_upload: Option<DirectUpload>,
}

/// Presigned URLs into object storage: one PUT for the whole file, or one per part of a
/// multipart upload (then finalize carries `multipart` with each part's ETag).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectUpload {
    /// The whole file's PUT URL (absent for a multipart upload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub method: String,
    /// Unix seconds after which the URLs stop working.
    pub expires_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<DirectPart>,
}

/// One part of a direct multipart upload: bytes `offset..offset+length` of the file.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectPart {
    pub number: u32,
    pub offset: u64,
    pub length: u64,
    pub url: String,
}

/// The parts a client sent straight to storage, to complete the multipart upload.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompletedUpload {
    pub upload_id: String,
    #[schema(min_items = 1, max_items = 10000)]
    pub parts: Vec<CompletedUploadPart>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompletedUploadPart {
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(deserialize_with = "whole::u32")]
    pub number: u32,
    /// The ETag storage answered the part's PUT with.
    pub etag: String,
}

/// One file of a batch registration: registered (its upload details, `error` null) or
/// refused (`error` says why).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItem {
    pub index: usize,
    #[serde(flatten)]
    pub registered: Option<Registered>,
    pub error: Option<Problem>,
}

// Written by hand: the derived schema of a flattened `Option` demanded the registration's
// fields of a refused item too.
impl utoipa::PartialSchema for BatchItem {
    fn schema() -> RefOr<Schema> {
        let index = || {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .description(Some("The file's position in the request."))
        };
        let registered = AllOfBuilder::new()
            .item(Ref::from_schema_name("Registered"))
            .item(
                ObjectBuilder::new()
                    .property("index", index())
                    .required("index")
                    .property("error", ObjectBuilder::new().schema_type(Type::Null)),
            );
        let refused = ObjectBuilder::new()
            .property("index", index())
            .required("index")
            .property("error", Ref::from_schema_name("Problem"))
            .required("error");
        OneOfBuilder::new()
            .item(registered)
            .item(refused)
            .description(Some(
                "A registered file (its upload details) or a refused one (`error`).",
            ))
            .into()
    }
}

impl ToSchema for BatchItem {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push(("Registered".into(), Registered::schema()));
        <Registered as ToSchema>::schemas(schemas);
        schemas.push(("Problem".into(), Problem::schema()));
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchRegistered {
    pub results: Vec<BatchItem>,
}

/// What became of one file of a bundle: finalized (its status and revision) or refused.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleResult {
    pub index: usize,
    pub file_id: String,
    #[schema(value_type = Option<String>)]
    pub status: Option<FileStatus>,
    pub rev: Option<i64>,
    pub error: Option<Problem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BundleResults {
    pub results: Vec<BundleResult>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadReceipt {
    #[schema(value_type = String)]
    pub file_id: FileId,
    pub size: u64,
    pub sha256: String,
    /// CRC-64/NVME of the bytes the server received and stored, 16 hex digits: lets a client
    /// check the transfer with a checksum it can compute while sending, far cheaper than a
    /// second SHA-256.
    pub crc64nvme: String,
}

impl UploadReceipt {
    pub fn new(file_id: FileId, stored: &filestore_ports::PutOutcome) -> Self {
        Self {
            file_id,
            size: stored.size,
            sha256: stored.sha256_hex.clone(),
            crc64nvme: format!("{:016x}", stored.crc64nvme),
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct FinalizeRequest {
    /// `sha256-<64 hex digits>` of the whole file.
    #[schema(pattern = "^sha256-[0-9a-fA-F]{64}$")]
    pub checksum: String,
    /// The size declared at registration, a whole number.
    #[schema(value_type = u64, minimum = 0, maximum = 1099511627776_i64)]
    pub size: serde_json::Number,
    /// For a direct multipart upload: its id and the parts' ETags.
    pub multipart: Option<CompletedUpload>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FinalizeResponse {
    #[schema(value_type = String)]
    pub file_id: FileId,
    #[schema(value_type = String)]
    pub status: FileStatus,
    /// The revision this file became at its path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rev: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileMetadata {
    #[schema(value_type = String)]
    pub file_id: FileId,
    pub path: String,
    pub size: u64,
    pub sha256: Option<String>,
    pub content_type: String,
    /// uploading, processing, ready, quarantined, failed or deleted.
    #[schema(value_type = String)]
    pub status: FileStatus,
    /// Why the file is quarantined or failed.
    pub reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

pub(crate) fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl From<&FileRecord> for FileMetadata {
    fn from(f: &FileRecord) -> Self {
        Self {
            file_id: f.id,
            path: f.path.clone(),
            size: f.size,
            sha256: f
                .uploaded_sha256
                .clone()
                .or_else(|| f.declared_sha256.clone()),
            content_type: f.content_type.clone(),
            status: f.status,
            reason: f.status_reason.clone(),
            created_at: rfc3339(f.created_at_ms),
            updated_at: rfc3339(f.updated_at_ms),
        }
    }
}

/// Everything a client needs to fetch, decrypt, verify and reassemble a file in parallel.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[schema(value_type = String)]
    pub file_id: FileId,
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub content_type: String,
    /// Unix seconds after which the chunk URLs stop working.
    pub expires_at: u64,
    pub chunks: Vec<ChunkLink>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChunkLink {
    pub index: u32,
    pub offset: u64,
    pub length: u32,
    /// Chunk id (hex); also the AAD of its encryption.
    #[schema(value_type = String)]
    pub id: ChunkId,
    /// Signed URL of the stored (encrypted) chunk; relative URLs resolve against the API.
    pub url: String,
    /// AES-256-GCM key of this chunk (hex).
    pub key: String,
    /// SHA-256 of the chunk's plaintext (hex).
    pub sha256: String,
    pub stored_size: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DescriptorItem {
    pub id: String,
    pub descriptor: Option<Descriptor>,
    pub error: Option<Problem>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DescriptorBatch {
    pub files: Vec<DescriptorItem>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct SignedQuery {
    pub exp: u64,
    pub sig: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IdsQuery {
    pub id: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageResponse {
    pub files: u64,
    pub logical_bytes: u64,
    pub chunks: u64,
    pub chunk_plain_bytes: u64,
    pub chunk_stored_bytes: u64,
}

impl From<Usage> for UsageResponse {
    fn from(u: Usage) -> Self {
        Self {
            files: u.files,
            logical_bytes: u.logical_bytes,
            chunks: u.chunks,
            chunk_plain_bytes: u.chunk_plain_bytes,
            chunk_stored_bytes: u.chunk_stored_bytes,
        }
    }
}
