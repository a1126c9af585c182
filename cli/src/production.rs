//! The production roles: `filestore api` and `filestore worker`, each on PostgreSQL, RabbitMQ
//! and S3, scaled on their own. The handlers and stages are the embedded deployment's; only
//! the adapters differ.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use filestore_adapters::relay::OutboxRelay;
use filestore_adapters::s3::ChecksumMode;
use filestore_adapters::{
    MetadataStore, ObjectStore, PostgresOptions, PostgresStore, Queue, RabbitOptions, RabbitQueue,
    S3Options, S3Store, TenantKeys,
};
use filestore_api::config::ListenerLimits;
use filestore_api::{ApiConfig, AppState, Inner};
use filestore_domain::keys::{Keyring, MasterKey, SecretKey};
use filestore_domain::signing::UrlSigner;
use filestore_worker::clamd::{ClamdAddress, ClamdScanner};
use filestore_worker::scanner::Scanner;
use filestore_worker::sweeper::{SweepReport, sweep_chunks};
use filestore_worker::{Pipeline, WorkerConfig, spawn_stages};

use crate::embedded::{builtin_scanner, metrics_handle, verifier};

/// Where the metadata database and the object storage are: all a maintenance command needs.
#[derive(Debug, Clone, Args)]
pub struct StorageConfig {
    /// PostgreSQL URL of the primary (read-write) service.
    #[arg(long, env = "FILESTORE_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// PostgreSQL URL of a streaming replica, for reads that tolerate lag.
    #[arg(long, env = "FILESTORE_DATABASE_REPLICA_URL", hide_env_values = true)]
    pub database_replica_url: Option<String>,
    /// Connections this process keeps to the database at most.
    #[arg(long, env = "FILESTORE_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,
    /// Seconds a request waits for a database connection before it is answered 503.
    #[arg(long, env = "FILESTORE_DATABASE_ACQUIRE_TIMEOUT", default_value_t = 5)]
    pub database_acquire_timeout: u64,
    /// S3 endpoint (any S3-compatible service); AWS's own when absent.
    #[arg(long, env = "FILESTORE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    #[arg(long, env = "FILESTORE_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    #[arg(long, env = "FILESTORE_S3_ACCESS_KEY", hide_env_values = true)]
    pub s3_access_key: String,
    #[arg(long, env = "FILESTORE_S3_SECRET_KEY", hide_env_values = true)]
    pub s3_secret_key: String,
    /// Bucket for raw uploads (short-lived, private).
    #[arg(long, env = "FILESTORE_S3_RAW_BUCKET", default_value = "filestore-raw")]
    pub s3_raw_bucket: String,
    /// Bucket for encrypted chunks (immutable, cacheable).
    #[arg(
        long,
        env = "FILESTORE_S3_CHUNK_BUCKET",
        default_value = "filestore-chunks"
    )]
    pub s3_chunk_bucket: String,
    /// Virtual-hosted-style addressing instead of path-style.
    #[arg(long, env = "FILESTORE_S3_VIRTUAL_HOSTED", default_value_t = false)]
    pub s3_virtual_hosted: bool,
    /// When to send request checksums (`when-required` for Garage and older servers).
    #[arg(
        long,
        env = "FILESTORE_S3_CHECKSUMS",
        value_enum,
        default_value = "when-supported"
    )]
    pub s3_checksums: ChecksumMode,
    /// Server-side encryption header on every write (`AES256`, `aws:kms`).
    #[arg(long, env = "FILESTORE_S3_SSE")]
    pub s3_sse: Option<String>,
    /// Multipart part size in MiB (at least 5).
    #[arg(long, env = "FILESTORE_S3_PART_MIB", default_value_t = 8)]
    pub s3_part_mib: usize,
    /// Parts of one upload in flight at once.
    #[arg(long, env = "FILESTORE_S3_PARTS_IN_FLIGHT", default_value_t = 4)]
    pub s3_parts_in_flight: usize,
    /// Create the buckets at start-up when they do not exist.
    #[arg(long, env = "FILESTORE_S3_CREATE_BUCKETS", default_value_t = false)]
    pub s3_create_buckets: bool,
}

/// Where the production backends are and how to reach them.
#[derive(Debug, Clone, Args)]
pub struct BackendConfig {
    #[command(flatten)]
    pub storage: StorageConfig,
    /// RabbitMQ URL (amqp:// or amqps://, with the vhost).
    #[arg(long, env = "FILESTORE_AMQP_URL", hide_env_values = true)]
    pub amqp_url: String,
    /// Unacked messages each consumer holds at once.
    #[arg(long, env = "FILESTORE_AMQP_PREFETCH", default_value_t = 2)]
    pub amqp_prefetch: u16,
    /// Id of the master key that wraps tenants' secrets.
    #[arg(long, env = "FILESTORE_MASTER_KEY_ID", default_value = "env-1")]
    pub master_key_id: String,
    /// The master key, 64 hex digits.
    #[arg(long, env = "FILESTORE_MASTER_KEY", hide_env_values = true)]
    pub master_key: String,
}

/// The backends a production process works with.
pub struct Backends {
    pub store: Arc<dyn MetadataStore>,
    pub objects: Arc<dyn ObjectStore>,
    pub queue: Arc<dyn Queue>,
    pub tenants: Arc<TenantKeys>,
}

/// Retries `connect` until it succeeds: in a cluster the database or broker may start after us.
async fn with_retries<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    mut connect: impl FnMut() -> F,
) -> T {
    let mut delay = Duration::from_millis(200);
    loop {
        match connect().await {
            Ok(v) => return v,
            Err(e) => {
                tracing::warn!(error = %e, ?delay, "cannot reach the {what} yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

impl StorageConfig {
    /// The metadata store, once the database answers.
    pub async fn connect_store(&self) -> PostgresStore {
        let pg = PostgresOptions {
            url: self.database_url.clone(),
            replica_url: self.database_replica_url.clone(),
            max_connections: self.database_max_connections,
            acquire_timeout: Duration::from_secs(self.database_acquire_timeout.max(1)),
        };
        with_retries("database", || PostgresStore::connect(&pg)).await
    }

    /// The object store, with its buckets created first when asked to.
    pub async fn connect_objects(&self) -> S3Store {
        let objects = S3Store::new(S3Options {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            access_key: self.s3_access_key.clone(),
            secret_key: self.s3_secret_key.clone(),
            raw_bucket: self.s3_raw_bucket.clone(),
            chunk_bucket: self.s3_chunk_bucket.clone(),
            path_style: !self.s3_virtual_hosted,
            checksums: self.s3_checksums,
            server_side_encryption: self.s3_sse.clone(),
            part_size: self.s3_part_mib.saturating_mul(1024 * 1024),
            parts_in_flight: self.s3_parts_in_flight,
        });
        if self.s3_create_buckets {
            with_retries("object store", || objects.ensure_buckets()).await;
        }
        objects
    }
}

impl BackendConfig {
    pub async fn connect(&self) -> anyhow::Result<Backends> {
        let master = SecretKey::from_hex(&self.master_key)
            .context("FILESTORE_MASTER_KEY must be 64 hex digits")?;
        let store: Arc<dyn MetadataStore> = Arc::new(self.storage.connect_store().await);
        let rabbit = RabbitOptions {
            url: self.amqp_url.clone(),
            prefetch: self.amqp_prefetch,
        };
        let queue = with_retries("broker", || RabbitQueue::connect(rabbit.clone())).await;
        let objects = self.storage.connect_objects().await;
        let keyring = Keyring::new(MasterKey::new(&self.master_key_id, master)?, vec![]);
        Ok(Backends {
            tenants: Arc::new(TenantKeys::new(keyring, store.clone())),
            store,
            objects: Arc::new(objects),
            queue: Arc::new(queue),
        })
    }
}

/// `filestore sweep`: one chunk sweep over the production storage, then a report.
#[derive(Debug, Clone, Args)]
pub struct SweepCommandConfig {
    #[command(flatten)]
    pub storage: StorageConfig,
    /// Chunks used within this many seconds are kept.
    #[arg(long, env = "FILESTORE_SWEEP_GRACE", default_value_t = 3600)]
    pub grace_secs: u64,
}

pub async fn run_sweep(cfg: SweepCommandConfig) -> anyhow::Result<SweepReport> {
    let store = cfg.storage.connect_store().await;
    let objects = cfg.storage.connect_objects().await;
    Ok(sweep_chunks(&store, &objects, Duration::from_secs(cfg.grace_secs)).await?)
}

#[derive(Debug, Clone, Args)]
pub struct ApiRoleConfig {
    #[command(flatten)]
    pub backends: BackendConfig,
    #[command(flatten)]
    pub api: ApiConfig,
    /// Key (64 hex digits) that signs chunk URLs served through the API.
    #[arg(long, env = "FILESTORE_URL_SIGNING_KEY", hide_env_values = true)]
    pub url_signing_key: String,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerRoleConfig {
    #[command(flatten)]
    pub backends: BackendConfig,
    #[command(flatten)]
    pub worker: WorkerConfig,
    /// clamd address (tcp://host:port or unix:///path); the built-in EICAR/blocklist scanner
    /// when absent.
    #[arg(long, env = "FILESTORE_CLAMD")]
    pub clamd: Option<ClamdAddress>,
    /// Bytes of one object sent to clamd at most (keep at or below clamd's StreamMaxLength).
    #[arg(long, env = "FILESTORE_CLAMD_MAX_STREAM", default_value_t = 4_000 * 1024 * 1024)]
    pub clamd_max_stream: u64,
    /// Seconds one scan may take.
    #[arg(long, env = "FILESTORE_CLAMD_TIMEOUT", default_value_t = 600)]
    pub clamd_timeout: u64,
    /// Address for /metrics and /healthz.
    #[arg(
        long,
        env = "FILESTORE_METRICS_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub metrics_listen: SocketAddr,
    #[command(flatten)]
    pub limits: ListenerLimits,
}

/// Serves `app` (and `ops` on its own listener) until SIGINT or SIGTERM.
async fn serve_until_signal(
    app: axum::Router,
    listener: std::net::TcpListener,
    ops: Option<(std::net::TcpListener, axum::Router)>,
    api: &ApiConfig,
) -> anyhow::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        // A dropped sender stops the servers too, so this task holds it until they are done.
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "no SIGTERM handler; stopping on SIGINT only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        tracing::info!("shutting down");
        let _ = tx.send(true);
        tx.closed().await;
    });
    crate::embedded::serve_both(app, listener, ops, api.clone(), rx).await
}

pub async fn run_api(cfg: ApiRoleConfig) -> anyhow::Result<()> {
    let url_key = SecretKey::from_hex(&cfg.url_signing_key)
        .context("FILESTORE_URL_SIGNING_KEY must be 64 hex digits")?;
    let b = cfg.backends.connect().await?;
    let relay = OutboxRelay::new(b.store.clone(), b.queue.clone());
    let state = AppState::new(Inner {
        store: b.store.clone(),
        objects: b.objects.clone(),
        tenants: b.tenants.clone(),
        signer: UrlSigner::new(url_key),
        verifier: Arc::new(verifier(&cfg.api, "")?),
        outbox_wake: relay.waker(),
        tree_wake: Arc::default(),
        metrics: metrics_handle(),
        chunk_params: filestore_domain::chunking::ChunkParams::DEFAULT,
        config: cfg.api.clone(),
    });
    tokio::spawn(relay.run());
    let listener = std::net::TcpListener::bind(cfg.api.listen)
        .with_context(|| format!("binding {}", cfg.api.listen))?;
    let ops = match cfg.api.metrics_listen {
        Some(at) => {
            let l = std::net::TcpListener::bind(at)
                .with_context(|| format!("binding the metrics listener {at}"))?;
            tracing::info!(metrics = %l.local_addr()?, "serving /metrics");
            Some((l, filestore_api::metrics_router(state.clone())))
        }
        None => None,
    };
    tracing::info!(addr = %listener.local_addr()?, "filestore api is serving");
    serve_until_signal(filestore_api::router(state), listener, ops, &cfg.api).await
}

fn scanner(cfg: &WorkerRoleConfig) -> anyhow::Result<Arc<dyn Scanner>> {
    if let Some(addr) = &cfg.clamd {
        return Ok(Arc::new(ClamdScanner::new(
            addr.clone(),
            cfg.clamd_max_stream,
            Duration::from_secs(cfg.clamd_timeout.max(1)),
        )));
    }
    Ok(Arc::new(builtin_scanner(&cfg.worker)?))
}

pub async fn run_worker(cfg: WorkerRoleConfig) -> anyhow::Result<()> {
    let scanner = scanner(&cfg)?;
    let b = cfg.backends.connect().await?;
    let pipeline = Arc::new(Pipeline {
        store: b.store.clone(),
        objects: b.objects.clone(),
        queue: b.queue.clone(),
        tenants: b.tenants,
        scanner,
        params: cfg.worker.chunk_params()?,
        codec: cfg.worker.codec(),
        config: cfg.worker.clone(),
    });
    let mut tasks = spawn_stages(pipeline);
    // Workers relay too, so announcements go out even while every API replica is down.
    tasks.push(tokio::spawn(
        OutboxRelay::new(b.store.clone(), b.queue).run(),
    ));
    tasks.push(tokio::spawn(filestore_worker::janitor::run(
        b.store.clone(),
        b.objects.clone(),
        Duration::from_secs(cfg.worker.upload_expiry_secs),
        Duration::from_secs(cfg.worker.janitor_interval_secs.max(1)),
    )));
    tasks.push(tokio::spawn(filestore_worker::sweeper::run(
        b.store.clone(),
        b.objects.clone(),
        cfg.worker.sweep_grace(),
        cfg.worker.sweep_every(),
    )));
    let listener = std::net::TcpListener::bind(cfg.metrics_listen)
        .with_context(|| format!("binding {}", cfg.metrics_listen))?;
    tracing::info!(
        stages = ?cfg.worker.stages,
        metrics = %listener.local_addr()?,
        "filestore worker is running"
    );
    let ops = worker_ops(b.store, metrics_handle());
    let plain = ApiConfig {
        allow_plain_http: true,
        limits: cfg.limits,
        ..ApiConfig::default()
    };
    let served = serve_until_signal(ops, listener, None, &plain).await;
    for t in &tasks {
        t.abort();
    }
    served
}

/// The worker's own small HTTP face: liveness, readiness (the database answers) and metrics.
fn worker_ops(
    store: Arc<dyn MetadataStore>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> axum::Router {
    use axum::http::StatusCode;
    use axum::routing::get;
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let store = store.clone();
                async move {
                    match store.ping().await {
                        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
                        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let rendered = metrics.as_ref().map(|h| h.render()).unwrap_or_default();
                async move { rendered }
            }),
        )
}
