//! The credentials the operator generates: created once, kept as they are on every later
//! reconcile, never rotated by accident. A key is only ever added (when the spec starts to
//! need it), never changed or removed: losing the master key would lose every file.
use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rand::RngCore;

use super::Owner;
use super::names;
use crate::crd::{FileStoreSpec, Provisioning};

pub const DATABASE_PASSWORD: &str = "databasePassword";
pub const REPLICATION_PASSWORD: &str = "replicationPassword";
pub const SUPERUSER_PASSWORD: &str = "superuserPassword";
pub const QUEUE_PASSWORD: &str = "queuePassword";
pub const ERLANG_COOKIE: &str = "erlangCookie";
pub const MASTER_KEY: &str = "masterKey";
pub const MASTER_KEY_ID: &str = "masterKeyId";
pub const JWT_SECRET: &str = "jwtSecret";
pub const URL_SIGNING_KEY: &str = "urlSigningKey";
/// The id the generated master key is known by (the key material is what matters).
pub const GENERATED_MASTER_KEY_ID: &str = "generated-1";

/// Generated credentials by key, as stored in the `<name>-generated` Secret: bytes, exactly as
/// stored, so that writing them back can never change one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials(pub BTreeMap<String, Vec<u8>>);

impl Credentials {
    pub fn from_secret(secret: &Secret) -> Self {
        let data = secret.data.iter().flatten();
        Self(data.map(|(k, v)| (k.clone(), v.0.clone())).collect())
    }

    /// The value of `key`, if it is there and is text.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// These credentials with every key `spec` needs, generating the missing ones; returns the
    /// names of the keys it generated (empty when nothing had to change).
    pub fn complete(
        &self,
        spec: &FileStoreSpec,
        rng: &mut impl RngCore,
    ) -> (Credentials, Vec<&'static str>) {
        let mut out = self.clone();
        let mut generated = Vec::new();
        for key in required_keys(spec) {
            if out.0.contains_key(key) {
                continue;
            }
            let value = if key == MASTER_KEY_ID {
                GENERATED_MASTER_KEY_ID.to_owned()
            } else {
                random_hex(rng)
            };
            out.0.insert(key.to_owned(), value.into_bytes());
            generated.push(key);
        }
        (out, generated)
    }
}

/// 32 random bytes as 64 hex digits: a valid master or signing key, and a password that needs
/// no escaping in a URL or a config file.
fn random_hex(rng: &mut impl RngCore) -> String {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The generated keys a FileStore with `spec` needs.
pub fn required_keys(spec: &FileStoreSpec) -> Vec<&'static str> {
    let mut keys = vec![URL_SIGNING_KEY];
    if spec.database.mode == Provisioning::Managed {
        keys.extend([DATABASE_PASSWORD, REPLICATION_PASSWORD, SUPERUSER_PASSWORD]);
    }
    if spec.queue.mode == Provisioning::Managed {
        keys.extend([QUEUE_PASSWORD, ERLANG_COOKIE]);
    }
    if spec.encryption.master_key_secret.is_none() {
        keys.extend([MASTER_KEY, MASTER_KEY_ID]);
    }
    if spec.auth.jwks_url.is_none() && spec.auth.key_secret.is_none() {
        keys.push(JWT_SECRET);
    }
    keys
}

pub fn generated_secret(owner: &Owner, credentials: &Credentials) -> Secret {
    let mut meta = owner.meta(names::generated_secret(&owner.name), "credentials");
    // Deleting the FileStore must not take the master key with it: without it the chunks
    // already stored cannot be read.
    meta.owner_references = None;
    Secret {
        metadata: meta,
        type_: Some("Opaque".into()),
        data: Some(
            credentials
                .0
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// Where a process finds the master key: the user's Secret, or the generated one.
pub fn master_key_source(
    owner: &Owner,
    spec: &FileStoreSpec,
) -> (String, &'static str, &'static str) {
    match &spec.encryption.master_key_secret {
        Some(secret) => (secret.clone(), "masterKey", "keyId"),
        None => (
            names::generated_secret(&owner.name),
            MASTER_KEY,
            MASTER_KEY_ID,
        ),
    }
}
