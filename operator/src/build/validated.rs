//! A FileStore checked once for what the CRD's schema cannot say, into the shape the builders
//! consume: each backend either managed (its settings) or external (its Secret), and one way
//! of verifying tokens. The spec says the same with a `mode` beside an `Option`, which every
//! builder would otherwise have to re-check and fall back on; here that question is answered
//! once, and an answer the spec leaves open is a refusal before anything is built.
use std::collections::BTreeSet;

use super::{BuildError, Owner};
use crate::crd::{
    ExternalService, FileStore, FileStoreSpec, ManagedDatabase, Provisioning, QueueSpec, Stage,
};

/// A backend the operator runs (`M`, its settings), or one run elsewhere.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backend<'a, M> {
    Managed(&'a M),
    External(&'a ExternalService),
}

impl<'a, M> Backend<'a, M> {
    /// The settings of a managed backend.
    pub fn managed(&self) -> Option<&'a M> {
        match self {
            Backend::Managed(m) => Some(m),
            Backend::External(_) => None,
        }
    }
}

/// How the API verifies bearer tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKeys<'a> {
    /// The identity provider's key set (`auth.jwksUrl`), configured through the settings.
    Jwks,
    /// A PEM public key in the Secret named here (`auth.keySecret`).
    PublicKey(&'a str),
    /// An HS256 development secret the operator generates.
    Generated,
}

/// What the builders build from: the FileStore, its owner metadata and its spec, with every
/// choice the spec makes already checked and resolved.
#[derive(Debug, Clone)]
pub struct ValidatedFileStore<'a> {
    /// The resource as read, for what the builders do not look at (status, generation).
    pub resource: &'a FileStore,
    pub owner: Owner,
    pub spec: &'a FileStoreSpec,
    pub database: Backend<'a, ManagedDatabase>,
    pub queue: Backend<'a, QueueSpec>,
    pub token_keys: TokenKeys<'a>,
}

fn invalid<T>(message: String) -> Result<T, BuildError> {
    Err(BuildError::InvalidSpec(message))
}

/// Checks `fs` before anything is built or applied. Worker pools: every stage run by one, names
/// unique, `minReplicas <= maxReplicas` (so that clamping to the range is always defined).
/// Backends: an external one names its Secret, a managed database has more instances than
/// synchronous standbys. Then the owner: a namespace and a uid.
pub fn validate(fs: &FileStore) -> Result<ValidatedFileStore<'_>, BuildError> {
    let spec = &fs.spec;
    for stage in Stage::ALL {
        if !spec.workers.iter().any(|p| p.stages.contains(&stage)) {
            return invalid(format!(
                "no worker pool runs the {} stage",
                stage.pipeline().name()
            ));
        }
    }
    let mut names = BTreeSet::new();
    for pool in &spec.workers {
        if !names.insert(pool.name.as_str()) {
            return invalid(format!("worker pool {:?} is named twice", pool.name));
        }
        if pool.min_replicas > pool.max_replicas {
            return invalid(format!(
                "worker pool {:?}: minReplicas {} exceeds maxReplicas {}",
                pool.name, pool.min_replicas, pool.max_replicas
            ));
        }
    }
    let db = &spec.database;
    let database = match (db.mode, &db.external) {
        (Provisioning::External, Some(external)) => Backend::External(external),
        (Provisioning::External, None) => {
            return invalid("database.mode is External but database.external is not set".into());
        }
        (Provisioning::Managed, _) if db.managed.synchronous_standbys >= db.managed.instances => {
            return invalid(format!(
                "database.managed.synchronousStandbys ({}) must be fewer than instances ({})",
                db.managed.synchronous_standbys, db.managed.instances
            ));
        }
        (Provisioning::Managed, _) => Backend::Managed(&db.managed),
    };
    let queue = match (spec.queue.mode, &spec.queue.external) {
        (Provisioning::External, Some(external)) => Backend::External(external),
        (Provisioning::External, None) => {
            return invalid("queue.mode is External but queue.external is not set".into());
        }
        (Provisioning::Managed, _) => Backend::Managed(&spec.queue),
    };
    let token_keys = match (&spec.auth.jwks_url, &spec.auth.key_secret) {
        (Some(_), _) => TokenKeys::Jwks,
        (None, Some(secret)) => TokenKeys::PublicKey(secret),
        (None, None) => TokenKeys::Generated,
    };
    Ok(ValidatedFileStore {
        resource: fs,
        owner: Owner::of(fs)?,
        spec,
        database,
        queue,
        token_keys,
    })
}
