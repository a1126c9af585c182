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
        }
    }
}
