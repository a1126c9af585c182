//! Tenant secrets: created on first use, wrapped by the master key, cached unwrapped in memory.
use std::collections::HashMap;
use std::sync::Arc;

use filestore_domain::OwnerId;
use filestore_domain::keys::{KeyError, Keyring, TenantSecret};
use tokio::sync::RwLock;

use crate::meta::{MetadataStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum TenantKeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("tenant secret cannot be opened: {0}")]
    Key(#[from] KeyError),
}

pub struct TenantKeys {
    keyring: Keyring,
    store: Arc<dyn MetadataStore>,
    cache: RwLock<HashMap<OwnerId, TenantSecret>>,
}

impl TenantKeys {
    pub fn new(keyring: Keyring, store: Arc<dyn MetadataStore>) -> Self {
        Self {
            keyring,
            store,
            cache: RwLock::new(HashMap::new()),
        }
    }

    pub async fn secret_for(&self, owner: &OwnerId) -> Result<TenantSecret, TenantKeyError> {
        if let Some(s) = self.cache.read().await.get(owner) {
            return Ok(s.clone());
        }
        let wrapped = match self.store.tenant_secret(owner).await? {
            Some(w) => w,
            None => {
                let fresh = self.keyring.wrap(owner, &TenantSecret::random());
                // Another process may have won the race; the store returns whichever is kept.
                self.store.insert_tenant_secret(owner, fresh).await?
            }
        };
        let secret = self.keyring.unwrap(owner, &wrapped)?;
        self.cache
            .write()
            .await
            .insert(owner.clone(), secret.clone());
        Ok(secret)
    }
}
