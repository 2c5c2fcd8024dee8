//! Serving a registry: the `GET /metrics` reply (format from `Accept`), and the
//! plain-HTTP listener of `--metrics-addr` (meant for loopback or a private network,
//! as dockerd's: it has no authentication).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;

use crate::exposition::{Format, encode};

/// The reply to a scrape with `headers`.
pub fn reply(registry: &Registry, headers: &HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let body = encode(registry, format);
    (StatusCode::OK, [(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

/// A router with only `GET /metrics`.
pub fn router(registry: Arc<Registry>) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: HeaderMap| {
            let registry = registry.clone();
            async move { reply(&registry, &headers) }
        }),
    )
}

/// Why the metrics listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics scrapes on {addr}: is the address this machine's and free?")]
pub struct ListenError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// The system's reason.
    #[source]
    pub source: std::io::Error,
}

/// The `--metrics-addr` listener: plain HTTP, `GET /metrics` only.
#[derive(Debug)]
pub struct MetricsServer {
    /// The address bound (with the port picked, if 0 was asked).
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Serves `registry` on `addr` until [`stop`](Self::stop).
    pub async fn start(addr: SocketAddr, registry: Arc<Registry>) -> Result<MetricsServer, ListenError> {
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|source| ListenError { addr, source })?;
        let bound = listener.local_addr().map_err(|source| ListenError { addr, source })?;
        let app = router(registry);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
        Ok(MetricsServer { addr: bound, task })
    }

    /// Stops the listener.
    pub fn stop(self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::gauge::Gauge;

    async fn get(addr: SocketAddr, path: &str, accept: &str) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn the_listener_serves_both_formats_with_their_content_types() {
        let mut registry = Registry::default();
        let g: Gauge = Gauge::default();
        g.set(3);
        registry.register("shoal_answer", "An answer", g);
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(registry)).await.unwrap();
        let text = get(server.addr, "/metrics", "*/*").await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"), "{text}");
        assert!(text.ends_with("shoal_answer 3\n"), "{text}");
        let om = get(server.addr, "/metrics", "application/openmetrics-text;version=1.0.0").await;
        assert!(om.contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n"));
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(get(server.addr, "/other", "*/*").await.starts_with("HTTP/1.1 404"));
        server.stop();
    }
}
