//! Serving the router: HTTPS with rustls when a certificate is configured; plain HTTP only on
//! loopback unless explicitly allowed (behind a TLS-terminating ingress).
//!
//! The accept loop is our own (hyper-util's connection builder over a tokio listener) so that a
//! slow or greedy client cannot hold the server: a global bound on connections (further ones
//! wait in the kernel's backlog), a per-address bound (one past it is closed at once), a
//! deadline for each request's headers and for idle keep-alive connections (a watchdog per
//! connection, see [`Activity`]), and a request body that must keep arriving (see
//! [`IdleTimeoutBody`]).
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

use crate::config::{ApiConfig, ListenerLimits};

/// Concurrent requests on one HTTP/2 connection (hyper's default is 200).
const H2_MAX_STREAMS: u32 = 32;
/// How often an HTTP/2 connection is pinged to prove the client is there.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
/// How long connections get to finish their requests once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often a busy connection's watchdog looks again (a busy connection has no deadline of
/// its own: its body and its handler bound it).
const WATCHDOG_TICK: Duration = Duration::from_secs(1);

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

/// The error a request body yields when no byte arrived for the configured time. Handlers
/// find it in an error's source chain (see [`is_body_timeout`]) and answer 408.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived too slowly (window {0:?})")]
pub struct BodyIdleTimeout(pub Duration);

/// Whether `err`, or anything in its source chain, is a stalled request body.
pub fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<BodyIdleTimeout>() {
            return true;
        }
        // `io::Error::other(e)` hides `e` behind get_ref, not behind source.
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && is_body_timeout(inner)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// Serves until `shutdown` resolves. `listener` is already bound (so callers can use port 0).
pub async fn serve(
    app: Router,
    listener: std::net::TcpListener,
    config: &ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener.local_addr()?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => {
            if !plain_http_allowed(&addr, config) {
                return Err(ServeError::PlainHttpRefused(addr));
            }
            None
        }
    };
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tracing::info!(%addr, tls = tls.is_some(), "serving HTTP");
    accept_loop(app, listener, tls, config.limits, shutdown).await;
    Ok(())
}

fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls_err = |e: &dyn std::fmt::Display| ServeError::Tls(std::io::Error::other(e.to_string()));
    // Several crates link rustls; name the provider once. A second call is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_err(&format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| tls_err(&format!("{}: {e}", key.display())))?;
    let mut server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_err(&e))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

/// Connections per client address, bounded.
struct PerAddress {
    max: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in [`PerAddress`], given back on drop.
struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn claim(table: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let ip = client_key(ip);
        if table.max > 0 {
            let mut held = table.held.lock().unwrap_or_else(PoisonError::into_inner);
            let n = held.entry(ip).or_insert(0);
            if *n >= table.max {
                return None;
            }
            *n += 1;
        }
        Some(AddressSlot {
            table: table.clone(),
            ip,
        })
    }
}

/// The client an address stands for: an IPv4 address (however a dual-stack socket writes it),
/// or an IPv6 /64, the block one subscriber's network is given and can use every address of.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if self.table.max == 0 {
            return;
        }
        let mut held = self
            .table
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

async fn accept_loop(
    app: Router,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let global = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_address = Arc::new(PerAddress {
        max: limits.max_connections_per_ip,
        held: Mutex::default(),
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Our watchdog keeps the header deadline: hyper's own would also close idle keep-alive
    // connections after it (it runs while waiting for the next request's first byte).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    // An HTTP/2 client could otherwise hold a connection's streams open forever with a flow
    // window of zero (nothing is ever written, so no write stalls): few streams per
    // connection, and pings the client must answer within the keep-alive timeout.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .keep_alive_interval(Some(H2_PING_INTERVAL))
        .keep_alive_timeout(Duration::from_secs(limits.keep_alive_timeout.max(1)));
    let builder = Arc::new(builder);
    let mut connections = JoinSet::new();
    let mut stopping = stop_rx.clone();
    loop {
        // A permit first: past the bound, connections wait in the backlog, unaccepted.
        let permit = tokio::select! {
            p = global.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopping.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopping.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, say: wait a moment rather than spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = PerAddress::claim(&per_address, peer.ip()) else {
            metrics::counter!("filestore_http_connections_refused_total", "reason" => "per_address")
                .increment(1);
            tracing::debug!(%peer, "too many connections from this address; closing");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            app: app.clone(),
            builder: builder.clone(),
            limits,
            stop: stop_rx.clone(),
        };
        let tls = tls.clone();
        let open = OpenConnection::new();
        connections.spawn(async move {
            conn.run(stream, tls).await;
            drop((permit, slot, open));
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len(),
            "connections still open after the shutdown grace; closing them"
        );
    }
    connections.shutdown().await;
}

/// One connection in `filestore_http_connections_open`, for as long as it lives (aborted at
/// shutdown included).
struct OpenConnection;

impl OpenConnection {
    fn new() -> Self {
        metrics::gauge!("filestore_http_connections_open").increment(1.0);
        Self
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("filestore_http_connections_open").decrement(1.0);
    }
}

struct Conn {
    app: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: ListenerLimits,
    stop: watch::Receiver<bool>,
}

impl Conn {
    async fn run(self, stream: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) {
        let activity = Arc::new(Activity::new(&self.limits));
        match tls {
            None => {
                self.serve(Tracked::new(stream, activity.clone()), activity)
                    .await
            }
            Some(acceptor) => {
                // The handshake counts against the first request's header deadline.
                let handshake = tokio::time::timeout(
                    activity.header_timeout,
                    acceptor.accept(Tracked::new(stream, activity.clone())),
                )
                .await;
                match handshake {
                    Ok(Ok(tls)) => self.serve(tls, activity).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => {
                        metrics::counter!("filestore_http_connections_timed_out_total", "phase" => "handshake")
                            .increment(1);
                    }
                }
            }
        }
    }

    async fn serve<IO>(mut self, io: IO, activity: Arc<Activity>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = ConnService {
            app: self.app.clone(),
            activity: activity.clone(),
            pace: BodyPace::from_limits(&self.limits),
        };
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        tokio::pin!(conn);
        let mut draining = false;
        loop {
            let wake = activity
                .deadline()
                .map_or(Instant::now() + WATCHDOG_TICK, |d| {
                    d.min(Instant::now() + WATCHDOG_TICK)
                });
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = tokio::time::sleep_until(wake) => {
                    if let Some(phase) = activity.expired() {
                        metrics::counter!("filestore_http_connections_timed_out_total", "phase" => phase)
                            .increment(1);
                        tracing::debug!(phase, "closing a connection past its deadline");
                        // Dropping the connection closes the socket: an idle one loses
                        // nothing, a half-sent request was never going to be answered.
                        return;
                    }
                }
                _ = self.stop.wait_for(|s| *s), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// What one connection is doing, for its watchdog: requests in flight (until their response
/// body is dropped), and when it last became idle and received a byte since.
struct Activity {
    header_timeout: Duration,
    keep_alive: Duration,
    /// How long a response may wait for the client to take any of it.
    send_stall: Duration,
    state: Mutex<ActivityState>,
}

struct ActivityState {
    in_flight: usize,
    served: u64,
    idle_since: Instant,
    first_byte_since_idle: Option<Instant>,
    /// Since when a write has been waiting for the client to read (its buffers are full).
    write_blocked_since: Option<Instant>,
}

impl Activity {
    fn new(limits: &ListenerLimits) -> Self {
        Self {
            header_timeout: Duration::from_secs(limits.header_read_timeout.max(1)),
            keep_alive: Duration::from_secs(limits.keep_alive_timeout.max(1)),
            send_stall: Duration::from_secs(limits.body_idle_timeout.max(1)),
            state: Mutex::new(ActivityState {
                in_flight: 0,
                served: 0,
                idle_since: Instant::now(),
                first_byte_since_idle: None,
                write_blocked_since: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the connection must be closed unless something changes, and why. A request in
    /// flight has none unless its response waits on a client that stopped reading: its body
    /// and its handler bound it otherwise.
    fn deadline_and_phase(&self) -> Option<(Instant, &'static str)> {
        let s = self.lock();
        if s.in_flight > 0 {
            return s.write_blocked_since.map(|t| (t + self.send_stall, "send"));
        }
        Some(match s.first_byte_since_idle {
            // A request has begun: its headers must be complete in time.
            Some(first) => (first + self.header_timeout, "headers"),
            // A new connection owes its first request's headers.
            None if s.served == 0 => (s.idle_since + self.header_timeout, "headers"),
            None => (s.idle_since + self.keep_alive, "keep_alive"),
        })
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline_and_phase().map(|(d, _)| d)
    }

    /// The phase whose deadline has passed, if one has.
    fn expired(&self) -> Option<&'static str> {
        self.deadline_and_phase()
            .filter(|(d, _)| *d <= Instant::now())
            .map(|(_, phase)| phase)
    }

    fn bytes_read(&self) {
        let mut s = self.lock();
        if s.in_flight == 0 && s.first_byte_since_idle.is_none() {
            s.first_byte_since_idle = Some(Instant::now());
        }
    }

    fn write_polled(&self, blocked: bool) {
        let mut s = self.lock();
        if blocked {
            s.write_blocked_since.get_or_insert_with(Instant::now);
        } else {
            s.write_blocked_since = None;
        }
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        let mut s = self.lock();
        s.in_flight += 1;
        s.served += 1;
        s.first_byte_since_idle = None;
        InFlight(self.clone())
    }
}

/// A request in flight; dropped with its response body (sent or abandoned).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
            s.first_byte_since_idle = None;
        }
    }
}

/// A connection's byte stream that tells its [`Activity`] when bytes arrive.
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Tracked<T> {
    fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.activity.write_polled(polled.is_pending());
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.write_polled(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The router as one connection's hyper service: each request's body must keep arriving, and
/// the request counts as in flight until its response body is gone.
#[derive(Clone)]
struct ConnService {
    app: Router,
    activity: Arc<Activity>,
    pace: BodyPace,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Response<Body>, std::convert::Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        use tower::Service;
        let in_flight = self.activity.request_started();
        let pace = self.pace;
        let req = req.map(|body| Body::new(IdleTimeoutBody::new(body, pace)));
        let mut app = self.app.clone();
        Box::pin(async move {
            let resp = app.call(req).await?;
            Ok(resp.map(|body| {
                Body::new(Guarded {
                    inner: body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// How slowly a request body may arrive: in each `window` of time the handler spends waiting
/// for it, at least `min_bytes` (and at least one byte) must come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPace {
    pub window: Duration,
    pub min_bytes: u64,
}

impl BodyPace {
    pub fn from_limits(limits: &ListenerLimits) -> Self {
        let window = limits.body_idle_timeout.max(1);
        Self {
            window: Duration::from_secs(window),
            min_bytes: limits.body_min_rate.saturating_mul(window).max(1),
        }
    }
}

/// A request body that fails with [`BodyIdleTimeout`] when it arrives slower than its
/// [`BodyPace`]. Only time the handler spends waiting for the body counts: a handler busy
/// writing what it has (slow storage) never makes the client look slow.
pub struct IdleTimeoutBody<B> {
    inner: B,
    pace: BodyPace,
    /// Waiting time in the current window, not counting the wait in progress.
    waited: Duration,
    /// Bytes received in the current window.
    received: u64,
    waiting_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> IdleTimeoutBody<B> {
    pub fn new(inner: B, pace: BodyPace) -> Self {
        Self {
            inner,
            pace,
            waited: Duration::ZERO,
            received: 0,
            waiting_since: None,
            timer: None,
        }
    }

    /// Ends the window if it is used up: `false` when too little arrived in it.
    fn close_window(&mut self) -> bool {
        if self.waited < self.pace.window {
            return true;
        }
        let enough = self.received >= self.pace.min_bytes;
        self.waited = Duration::ZERO;
        self.received = 0;
        enough
    }
}

impl<B> HttpBody for IdleTimeoutBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(frame) => {
                    if let Some(since) = this.waiting_since.take() {
                        this.waited += since.elapsed();
                    }
                    this.timer = None;
                    if let Some(Ok(f)) = &frame
                        && let Some(data) = f.data_ref()
                    {
                        this.received += data.len() as u64;
                    }
                    if !this.close_window() && frame.is_some() {
                        return Poll::Ready(Some(Err(this.stalled())));
                    }
                    return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
                }
                Poll::Pending => {
                    let now = Instant::now();
                    let since = *this.waiting_since.get_or_insert(now);
                    let due = since + this.pace.window.saturating_sub(this.waited);
                    let timer = this
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    // The window is used up while waiting.
                    this.waited += now.saturating_duration_since(since);
                    this.waited = this.waited.max(this.pace.window);
                    this.waiting_since = None;
                    this.timer = None;
                    if !this.close_window() {
                        return Poll::Ready(Some(Err(this.stalled())));
                    }
                    // Enough came in the window: a new one starts; poll again to arm it.
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> IdleTimeoutBody<B> {
    fn stalled(&self) -> Box<dyn std::error::Error + Send + Sync> {
        metrics::counter!("filestore_http_connections_timed_out_total", "phase" => "body")
            .increment(1);
        Box::new(BodyIdleTimeout(self.pace.window))
    }
}

/// A response body that holds its request's [`InFlight`] until it is sent or dropped.
struct Guarded {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
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

    #[test]
    fn an_address_holds_at_most_its_bound_and_gets_slots_back() {
        let table = Arc::new(PerAddress {
            max: 2,
            held: Mutex::default(),
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let first = PerAddress::claim(&table, a).unwrap();
        let _second = PerAddress::claim(&table, mapped).unwrap();
        assert!(
            PerAddress::claim(&table, a).is_none(),
            "the same client twice"
        );
        assert!(PerAddress::claim(&table, "10.0.0.2".parse().unwrap()).is_some());
        drop(first);
        assert!(PerAddress::claim(&table, a).is_some());
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_net: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other_net: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(one), client_key(same_net));
        assert_ne!(client_key(one), client_key(other_net));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(client_key(v4), v4);
        assert_eq!(client_key("::ffff:192.0.2.7".parse().unwrap()), v4);
    }

    #[test]
    fn a_stalled_body_is_found_behind_io_and_axum_errors() {
        let stalled = BodyIdleTimeout(Duration::from_secs(1));
        let wrapped = std::io::Error::other(axum::Error::new(stalled));
        assert!(is_body_timeout(&wrapped));
        let other = std::io::Error::other("connection reset");
        assert!(!is_body_timeout(&other));
    }

    #[test]
    fn a_connection_owes_headers_then_may_idle_for_the_keep_alive() {
        let limits = ListenerLimits {
            header_read_timeout: 2,
            keep_alive_timeout: 5,
            ..ListenerLimits::default()
        };
        let activity = Arc::new(Activity::new(&limits));
        let opened = activity.lock().idle_since;
        assert_eq!(activity.deadline(), Some(opened + Duration::from_secs(2)));
        let request = activity.request_started();
        assert_eq!(
            activity.deadline(),
            None,
            "a request in flight has no deadline"
        );
        activity.write_polled(true);
        let blocked = activity.lock().write_blocked_since.unwrap();
        assert_eq!(
            activity.deadline(),
            Some(blocked + Duration::from_secs(60)),
            "unless the client stops reading its response"
        );
        activity.write_polled(false);
        assert_eq!(activity.deadline(), None);
        drop(request);
        let idle = activity.lock().idle_since;
        assert_eq!(activity.deadline(), Some(idle + Duration::from_secs(5)));
        activity.bytes_read();
        let first = activity.lock().first_byte_since_idle.unwrap();
        assert_eq!(
            activity.deadline(),
            Some(first + Duration::from_secs(2)),
            "a begun request's headers are due within the header timeout"
        );
        assert_eq!(activity.expired(), None);
        activity.lock().first_byte_since_idle = Instant::now().checked_sub(Duration::from_secs(3));
        assert_eq!(activity.expired(), Some("headers"));
    }

    fn paced(every: Duration, piece: &'static [u8], pieces: usize) -> Body {
        let stream = futures::stream::unfold(0, move |n| async move {
            if n == pieces {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(piece)), n + 1))
        });
        Body::from_stream(stream)
    }

    async fn drain(body: IdleTimeoutBody<Body>) -> Result<usize, String> {
        use futures::StreamExt;
        let mut frames = axum::body::Body::new(body).into_data_stream();
        let mut got = 0;
        while let Some(f) = frames.next().await {
            got += f
                .map_err(|e| {
                    assert!(is_body_timeout(&e), "{e}");
                    e.to_string()
                })?
                .len();
        }
        Ok(got)
    }

    #[tokio::test]
    async fn a_body_trickled_below_the_pace_ends_and_a_steady_one_completes() {
        let pace = BodyPace {
            window: Duration::from_millis(200),
            min_bytes: 10,
        };
        let trickle = paced(Duration::from_millis(50), b"x", 40);
        assert!(drain(IdleTimeoutBody::new(trickle, pace)).await.is_err());
        let steady = paced(Duration::from_millis(50), b"0123456789", 12);
        assert_eq!(drain(IdleTimeoutBody::new(steady, pace)).await, Ok(120));
        let stalled = paced(Duration::from_secs(3600), b"x", 1);
        assert!(drain(IdleTimeoutBody::new(stalled, pace)).await.is_err());
    }
}
