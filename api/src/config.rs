//! API settings: flags with environment fallbacks.
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct ApiConfig {
    /// Address to listen on.
    #[arg(long, env = "FILESTORE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM); with --tls-key, the API serves HTTPS.
    #[arg(long, env = "FILESTORE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "FILESTORE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (only behind a TLS-terminating ingress).
    #[arg(long, env = "FILESTORE_ALLOW_PLAIN_HTTP", default_value_t = false)]
    pub allow_plain_http: bool,
    /// Expected `iss` of bearer tokens.
    #[arg(long, env = "FILESTORE_JWT_ISSUER", default_value = "filestore")]
    pub jwt_issuer: String,
    /// Expected `aud` of bearer tokens.
    #[arg(long, env = "FILESTORE_JWT_AUDIENCE", default_value = "filestore")]
    pub jwt_audience: String,
    /// HS256 secret (development); `filestore dev` generates one.
    #[arg(long, env = "FILESTORE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key (RSA or EC) that signs tokens (RS256/ES256).
    #[arg(long, env = "FILESTORE_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// JWKS URL of the identity provider (RS256/ES256, selected by `kid`).
    #[arg(long, env = "FILESTORE_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// Largest file a client may register, bytes.
    #[arg(long, env = "FILESTORE_MAX_FILE_SIZE", default_value_t = 1 << 40)]
    pub max_file_size: u64,
    /// Most files in one batch request.
    #[arg(long, env = "FILESTORE_MAX_BATCH", default_value_t = 1000)]
    pub max_batch: usize,
    /// Public base URL of the API (behind an ingress or CDN); signed chunk URLs are absolute
    /// under it. Without it they are relative to the API.
    #[arg(long, env = "FILESTORE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// How long signed chunk URLs stay valid, seconds.
    #[arg(long, env = "FILESTORE_SIGNED_URL_TTL", default_value_t = 900)]
    pub signed_url_ttl: u64,
    /// Files larger than this many MiB get presigned part URLs (a direct multipart upload)
    /// instead of one presigned PUT, where the object store offers direct uploads.
    #[arg(long, env = "FILESTORE_DIRECT_PART_MIB", default_value_t = 64)]
    pub direct_part_mib: u64,
    /// Address for /metrics (Prometheus text format) and /healthz, away from the public
    /// listener; 127.0.0.1:0 takes any free port.
    #[arg(
        long,
        env = "FILESTORE_METRICS_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub metrics_listen: Option<SocketAddr>,
    /// Bytes one user may have registered and not yet finalized (declared sizes of files in
    /// `uploading`); a registration past it is answered 507 `upload_budget_exceeded`.
    #[arg(long, env = "FILESTORE_MAX_PENDING_UPLOAD_BYTES", default_value_t = 1 << 40)]
    pub max_pending_upload_bytes: u64,
    /// Chunk references one `assemble` request may name.
    #[arg(long, env = "FILESTORE_MAX_ASSEMBLE_CHUNKS", default_value_t = 100_000)]
    pub max_assemble_chunks: usize,
    #[command(flatten)]
    pub limits: ListenerLimits,
}

/// Timeouts and connection bounds of a listener: what a slow or greedy client may hold.
#[derive(Debug, Clone, Copy, Args)]
pub struct ListenerLimits {
    /// Seconds a client has to send a request's headers (counted from its first byte, or from
    /// the connection's start for the first request, TLS handshake included).
    #[arg(long, env = "FILESTORE_HEADER_READ_TIMEOUT", default_value_t = 30)]
    pub header_read_timeout: u64,
    /// Seconds a request body may go without a byte arriving (and the window of
    /// --body-min-rate); then the request is answered 408 `request_timeout` and the
    /// connection closed.
    #[arg(long, env = "FILESTORE_BODY_IDLE_TIMEOUT", default_value_t = 60)]
    pub body_idle_timeout: u64,
    /// Bytes per second a request body must average over each --body-idle-timeout window
    /// the server spends waiting for it, so a body trickled a byte at a time ends too.
    #[arg(long, env = "FILESTORE_BODY_MIN_RATE", default_value_t = 256)]
    pub body_min_rate: u64,
    /// Seconds an idle keep-alive connection stays open between requests.
    #[arg(long, env = "FILESTORE_KEEP_ALIVE_TIMEOUT", default_value_t = 60)]
    pub keep_alive_timeout: u64,
    /// Connections served at once; further ones wait in the listen backlog.
    #[arg(long, env = "FILESTORE_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Connections one client address (an IPv6 client: its /64) may hold at once (0: no
    /// bound); one past it is closed at once. Behind a proxy every client has the proxy's
    /// address: raise it or set 0.
    #[arg(long, env = "FILESTORE_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: 30,
            body_idle_timeout: 60,
            body_min_rate: 256,
            keep_alive_timeout: 60,
            max_connections: 4096,
            max_connections_per_ip: 256,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_cert: None,
            tls_key: None,
            allow_plain_http: false,
            jwt_issuer: "filestore".into(),
            jwt_audience: "filestore".into(),
            jwt_secret: None,
            jwt_public_key: None,
            jwks_url: None,
            max_file_size: 1 << 40,
            max_batch: 1000,
            public_url: None,
            signed_url_ttl: 900,
            direct_part_mib: 64,
            // No metrics listener unless asked for: tests and embedders run many services.
            metrics_listen: None,
            max_pending_upload_bytes: 1 << 40,
            max_assemble_chunks: 100_000,
            limits: ListenerLimits::default(),
        }
    }
}
