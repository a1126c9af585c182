//! The settings every Filestore process reads from its environment (`envFrom`), as one
//! ConfigMap. Secrets never go here; pods carry a hash of it so a change rolls them.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};

use super::Owner;
use super::names;
use crate::crd::{ChecksumMode, FileStoreSpec};

pub fn settings(owner: &Owner, spec: &FileStoreSpec) -> ConfigMap {
    let storage = &spec.object_storage;
    let mut data = BTreeMap::from([
        ("FILESTORE_S3_REGION", storage.region.clone()),
        ("FILESTORE_S3_RAW_BUCKET", storage.raw_bucket.clone()),
        ("FILESTORE_S3_CHUNK_BUCKET", storage.chunk_bucket.clone()),
        (
            "FILESTORE_S3_VIRTUAL_HOSTED",
            storage.virtual_hosted.to_string(),
        ),
        (
            "FILESTORE_S3_CHECKSUMS",
            match storage.checksums {
                ChecksumMode::WhenSupported => "when-supported",
                ChecksumMode::WhenRequired => "when-required",
            }
            .to_owned(),
        ),
    ]);
    let mut optional = |key, value: &Option<String>| {
        if let Some(v) = value {
            data.insert(key, v.clone());
        }
    };
    optional("FILESTORE_S3_ENDPOINT", &storage.endpoint);
    optional("FILESTORE_JWKS_URL", &spec.auth.jwks_url);
    optional("FILESTORE_JWT_ISSUER", &spec.auth.issuer);
    optional("FILESTORE_JWT_AUDIENCE", &spec.auth.audience);
    optional("FILESTORE_CLAMD", &spec.scanner.clamd);
    if let Some(ingress) = &spec.api.ingress {
        let scheme = if ingress.tls_secret.is_some() {
            "https"
        } else {
            "http"
        };
        data.insert(
            "FILESTORE_PUBLIC_URL",
            format!("{scheme}://{}", ingress.host),
        );
    }
    ConfigMap {
        metadata: owner.meta(names::config(&owner.name), "config"),
        data: Some(data.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
        ..ConfigMap::default()
    }
}

/// A short digest of a ConfigMap's data, for a pod-template annotation.
pub fn hash(config: &ConfigMap) -> String {
    let mut digest = Sha256::new();
    for (k, v) in config.data.iter().flatten() {
        digest.update(k.as_bytes());
        digest.update([0]);
        digest.update(v.as_bytes());
        digest.update([0]);
    }
    hex::encode(&digest.finalize()[..8])
}
