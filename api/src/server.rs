//! Serving the router: HTTPS with rustls when a certificate is configured; plain HTTP only on
//! loopback unless explicitly allowed (behind a TLS-terminating ingress).
use std::future::Future;
use std::net::SocketAddr;

use axum::Router;

use crate::config::ApiConfig;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing plain HTTP on non-loopback address {0}: configure --tls-cert/--tls-key, or pass --allow-plain-http behind a TLS ingress"
    )]
    PlainHttpRefused(SocketAddr),
    #[error("loading the TLS certificate or key: {0}")]
    Tls(std::io::Error),
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
}

/// Where a listener may go without TLS.
pub fn plain_http_allowed(addr: &SocketAddr, config: &ApiConfig) -> bool {
    addr.ip().is_loopback() || config.allow_plain_http
}

/// Serves until `shutdown` resolves. `listener` is already bound (so callers can use port 0).
pub async fn serve(
    app: Router,
    listener: std::net::TcpListener,
    config: &ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener.local_addr()?;
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            // Several crates link rustls; name the provider once. A second call is harmless.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(ServeError::Tls)?;
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                stopper.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
            });
            tracing::info!(%addr, "serving HTTPS");
            axum_server::from_tcp_rustls(listener, tls)
                .handle(handle)
                .serve(app.into_make_service())
                .await?;
        }
        _ => {
            if !plain_http_allowed(&addr, config) {
                return Err(ServeError::PlainHttpRefused(addr));
            }
            tracing::info!(%addr, "serving HTTP");
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_for_loopback_unless_allowed() {
        let mut cfg = ApiConfig::default();
        assert!(plain_http_allowed(&"127.0.0.1:80".parse().unwrap(), &cfg));
        assert!(plain_http_allowed(&"[::1]:80".parse().unwrap(), &cfg));
        assert!(!plain_http_allowed(&"0.0.0.0:80".parse().unwrap(), &cfg));
        cfg.allow_plain_http = true;
        assert!(plain_http_allowed(&"0.0.0.0:80".parse().unwrap(), &cfg));
    }
}
