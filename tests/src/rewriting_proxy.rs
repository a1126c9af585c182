//! A hostile HTTP proxy for tests: it forwards every request to the real server and rewrites
//! JSON strings in the answers (`"escape.txt"` to `"../escape.txt"`), as a compromised server or
//! anything between client and server could.
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

struct Upstream {
    base: String,
    http: reqwest::Client,
    /// JSON string literals and what replaces them, both already encoded as JSON.
    rewrites: Vec<(String, String)>,
}

/// A running proxy; stops when dropped.
pub struct RewritingProxy {
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RewritingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RewritingProxy {
    /// Proxies `upstream`, replacing each string value `from` with `to` in JSON answers.
    pub async fn start(upstream: &str, rewrites: &[(&str, &str)]) -> RewritingProxy {
        let json = |s: &str| serde_json::to_string(s).expect("a string encodes");
        let state = Arc::new(Upstream {
            base: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            rewrites: rewrites.iter().map(|(f, t)| (json(f), json(t))).collect(),
        });
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let base = format!("http://{}", listener.local_addr().expect("proxy address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RewritingProxy { base, task }
    }
}

const HOP_BY_HOP: [&str; 5] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "accept-encoding",
];

async fn forward(State(up): State<Arc<Upstream>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut sent = up
        .http
        .request(parts.method.clone(), format!("{}{target}", up.base))
        .body(body);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            sent = sent.header(name, value);
        }
    }
    let Ok(answer) = sent.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = answer.status();
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            headers.insert(name.clone(), value.clone());
        }
    }
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    let Ok(bytes) = answer.bytes().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let bytes = if is_json {
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        for (from, to) in &up.rewrites {
            text = text.replace(from.as_str(), to);
        }
        Bytes::from(text)
    } else {
        bytes
    };
    (status, headers, bytes).into_response()
}
