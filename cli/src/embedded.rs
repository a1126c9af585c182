//! The embedded default deployment: API and workers in one process over SQLite, a local
//! directory and the database-backed queue. Same code paths as production, other adapters.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use filestore_adapters::relay::OutboxRelay;
use filestore_adapters::{
    LocalDirStore, MetadataStore, ObjectStore, Queue, SqliteQueue, SqliteStore, TenantKeys,
};
use filestore_api::auth::Verifier;
use filestore_api::{ApiConfig, AppState, Inner};
use filestore_domain::keys::{Keyring, MasterKey};
use filestore_domain::signing::UrlSigner;
use filestore_worker::{BuiltinScanner, Pipeline, WorkerConfig, spawn_stages};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::secrets;

/// How long a consumer's claim on a message lasts without renewal.
const QUEUE_LEASE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    pub worker: WorkerConfig,
    /// `(key id, hex)` of the master key; generated into the data directory when absent.
    pub master_key: Option<(String, String)>,
}

pub struct Running {
    pub addr: SocketAddr,
    /// Where /metrics is served, when `--metrics-listen` asked for it.
    pub metrics_addr: Option<SocketAddr>,
    pub jwt_secret: String,
    pub queue: SqliteQueue,
    pub store: Arc<dyn MetadataStore>,
    tls: bool,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<anyhow::Result<()>>,
    background: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops serving and the workers; in-flight messages come back on the next start.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        for h in &self.background {
            h.abort();
        }
        let _ = self.shutdown.send(true);
        (&mut self.server).await.context("server task")?
    }

    /// Waits until the server stops on its own (an error), SIGINT or SIGTERM.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = &mut self.server => r.context("server task")?,
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupted; shutting down");
                self.stop().await
            }
            _ = term.recv() => {
                tracing::info!("terminated; shutting down");
                self.stop().await
            }
        }
    }
}

/// One recorder per process: the first service started installs it, later ones share it.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
}

pub fn verifier(api: &ApiConfig, jwt_secret: &str) -> anyhow::Result<Verifier> {
    let (iss, aud) = (api.jwt_issuer.as_str(), api.jwt_audience.as_str());
    if let Some(url) = &api.jwks_url {
        return Ok(Verifier::jwks(url, iss, aud));
    }
    if let Some(path) = &api.jwt_public_key {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(Verifier::public_key_pem(&pem, iss, aud)?);
    }
    let secret = api.jwt_secret.as_deref().unwrap_or(jwt_secret);
    Ok(Verifier::hs256(secret.as_bytes(), iss, aud))
}

/// The built-in EICAR scanner with the worker's blocklist, if it has one.
pub fn builtin_scanner(worker: &WorkerConfig) -> anyhow::Result<BuiltinScanner> {
    Ok(match &worker.blocklist {
        Some(path) => BuiltinScanner::from_blocklist_text(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading blocklist {}", path.display()))?,
        ),
        None => BuiltinScanner::default(),
    })
}

pub async fn start(cfg: EmbeddedConfig) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let master = cfg
        .master_key
        .as_ref()
        .map(|(id, hex)| (id.as_str(), hex.as_str()));
    let secrets = secrets::load(&cfg.data_dir, master)?;
    let params = cfg.worker.chunk_params()?;

    let sqlite = SqliteStore::open(&cfg.data_dir.join("metadata.db")).await?;
    let store: Arc<dyn MetadataStore> = Arc::new(sqlite.clone());
    let objects: Arc<dyn ObjectStore> =
        Arc::new(LocalDirStore::open(cfg.data_dir.join("objects")).await?);
    let sqlite_queue = SqliteQueue::new(sqlite, QUEUE_LEASE);
    // This process is the data directory's only consumer: whatever was in flight died with
    // the previous process and is handed out again now.
    let released = sqlite_queue.release_all_leases().await?;
    if released > 0 {
        tracing::info!(
            released,
            "resuming messages left in flight by the previous run"
        );
    }
    let queue: Arc<dyn Queue> = Arc::new(sqlite_queue.clone());

    let keyring = Keyring::new(
        MasterKey::new(&secrets.master_key_id, secrets.master_key.clone())?,
        vec![],
    );
    let tenants = Arc::new(TenantKeys::new(keyring, store.clone()));
    let relay = OutboxRelay::new(store.clone(), queue.clone());

    let scanner = builtin_scanner(&cfg.worker)?;

    let state = AppState::new(Inner {
        store: store.clone(),
        objects: objects.clone(),
        tenants: tenants.clone(),
        signer: UrlSigner::new(secrets.url_key.clone()),
        verifier: Arc::new(verifier(&cfg.api, &secrets.jwt_secret)?),
        outbox_wake: relay.waker(),
        tree_wake: Arc::default(),
        metrics: metrics_handle(),
        chunk_params: params,
        config: cfg.api.clone(),
    });

    let pipeline = Arc::new(Pipeline {
        store: store.clone(),
        objects,
        queue,
        tenants,
        scanner: Arc::new(scanner),
        params,
        codec: cfg.worker.codec(),
        config: cfg.worker.clone(),
    });
    let janitor = filestore_worker::janitor::run(
        store.clone(),
        pipeline.objects.clone(),
        Duration::from_secs(cfg.worker.upload_expiry_secs),
        Duration::from_secs(cfg.worker.janitor_interval_secs.max(1)),
    );
    let sweeper = filestore_worker::sweeper::run(
        store.clone(),
        pipeline.objects.clone(),
        cfg.worker.sweep_grace(),
        cfg.worker.sweep_every(),
    );
    let mut background = spawn_stages(pipeline);
    background.push(tokio::spawn(janitor));
    background.push(tokio::spawn(sweeper));
    background.push(tokio::spawn(relay.run()));

    let listener = std::net::TcpListener::bind(cfg.api.listen)
        .with_context(|| format!("binding {}", cfg.api.listen))?;
    let addr = listener.local_addr()?;
    let ops = match cfg.api.metrics_listen {
        Some(at) => {
            let l = std::net::TcpListener::bind(at)
                .with_context(|| format!("binding the metrics listener {at}"))?;
            Some((l, filestore_api::metrics_router(state.clone())))
        }
        None => None,
    };
    let metrics_addr = ops.as_ref().map(|(l, _)| l.local_addr()).transpose()?;
    let (tx, rx) = watch::channel(false);
    let app = filestore_api::router(state);
    let api_cfg = cfg.api.clone();
    let server = tokio::spawn(serve_both(app, listener, ops, api_cfg, rx));
    Ok(Running {
        addr,
        metrics_addr,
        jwt_secret: cfg.api.jwt_secret.clone().unwrap_or(secrets.jwt_secret),
        queue: sqlite_queue,
        store,
        tls: cfg.api.tls_cert.is_some(),
        shutdown: tx,
        server,
        background,
    })
}

/// Resolves once `stop` says so, or its sender is gone.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves the API, and the operations router on its own listener when there is one, until
/// `stop`; either failing ends both.
pub async fn serve_both(
    app: axum::Router,
    listener: std::net::TcpListener,
    ops: Option<(std::net::TcpListener, axum::Router)>,
    api: ApiConfig,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let public = filestore_api::server::serve(app, listener, &api, stopped(stop.clone()));
    let Some((ops_listener, ops_app)) = ops else {
        return Ok(public.await?);
    };
    // Metrics are scraped over plain HTTP; the address is the operator's choice (loopback
    // unless told otherwise).
    let ops_cfg = ApiConfig {
        tls_cert: None,
        tls_key: None,
        allow_plain_http: true,
        ..api.clone()
    };
    let ops = filestore_api::server::serve(ops_app, ops_listener, &ops_cfg, stopped(stop));
    tokio::try_join!(public, ops)?;
    Ok(())
}
