//! What every handler shares.
use std::sync::Arc;

use axum::extract::FromRef;
use filestore_domain::chunking::ChunkParams;
use filestore_domain::signing::UrlSigner;
use filestore_ports::{MetadataStore, ObjectStore, TenantKeys};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Notify;

use crate::auth::Verifier;
use crate::config::ApiConfig;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Arc<dyn MetadataStore>,
    pub objects: Arc<dyn ObjectStore>,
    pub tenants: Arc<TenantKeys>,
    pub signer: UrlSigner,
    pub verifier: Arc<Verifier>,
    /// Wakes the outbox relay after a commit that announced something.
    pub outbox_wake: Arc<Notify>,
    /// Wakes the change feed's long-polls after a commit that changed a tree.
    pub tree_wake: Arc<Notify>,
    pub metrics: Option<PrometheusHandle>,
    pub chunk_params: ChunkParams,
    pub config: ApiConfig,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }
}

// How `auth::User` reaches the verifier without knowing this state.
impl FromRef<AppState> for Arc<Verifier> {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
