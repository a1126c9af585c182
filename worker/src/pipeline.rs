//! What every stage works with: the ports, the scanner and the settings, shared by the consumer
//! loops (`runner`) and the stages they run.
use std::sync::Arc;

use filestore_domain::chunking::ChunkParams;
use filestore_domain::codec::CodecOptions;
use filestore_ports::{MetadataStore, ObjectStore, Queue, TenantKeys};

use crate::config::WorkerConfig;
use crate::scanner::Scanner;

/// Everything the stages work with.
pub struct Pipeline {
    pub store: Arc<dyn MetadataStore>,
    pub objects: Arc<dyn ObjectStore>,
    pub queue: Arc<dyn Queue>,
    pub tenants: Arc<TenantKeys>,
    pub scanner: Arc<dyn Scanner>,
    pub params: ChunkParams,
    pub codec: CodecOptions,
    pub config: WorkerConfig,
}
