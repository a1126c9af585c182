//! The operator's error: what a reconcile can fail with, a stable reason for metrics and logs,
//! and how soon to try again. Its own module, so that `metrics` and `reconcile` both depend on
//! it and not on each other.
use std::time::Duration;

use crate::build::BuildError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("conflict writing {kind} {name}: {message}")]
    Conflict {
        kind: String,
        name: String,
        message: String,
    },
    #[error("forbidden to write {kind} {name}: {message} (check the operator's RBAC)")]
    Forbidden {
        kind: String,
        name: String,
        message: String,
    },
    #[error("Kubernetes API error on {kind} {name}: {source}")]
    Api {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the FileStore cannot be built: {0}")]
    Build(#[from] BuildError),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("cannot serialize {kind} {name}: {message}")]
    Serialize {
        kind: String,
        name: String,
        message: String,
    },
}

impl Error {
    /// A short, stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Conflict { .. } => "conflict",
            Error::Forbidden { .. } => "forbidden",
            Error::Api { .. } => "api",
            Error::Build(_) => "build",
            Error::Finalizer(_) => "finalizer",
            Error::Serialize { .. } => "serialize",
        }
    }

    pub(crate) fn from_kube(kind: &str, name: &str, source: kube::Error) -> Self {
        let (kind, name) = (kind.to_owned(), name.to_owned());
        match &source {
            kube::Error::Api(e) if e.code == 409 => Error::Conflict {
                kind,
                name,
                message: e.message.clone(),
            },
            kube::Error::Api(e) if e.code == 403 => Error::Forbidden {
                kind,
                name,
                message: e.message.clone(),
            },
            _ => Error::Api { kind, name, source },
        }
    }

    /// How soon to try again: conflicts clear quickly, missing permissions do not.
    pub fn requeue_after(&self) -> Duration {
        match self {
            Error::Conflict { .. } => Duration::from_secs(2),
            Error::Forbidden { .. } => Duration::from_secs(60),
            _ => Duration::from_secs(15),
        }
    }
}
