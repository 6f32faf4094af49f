//! The metrics and status server: `/metrics` (Prometheus text format), `/` (a self-contained
//! status page) and `/api/status` (the page's JSON).
//!
//! HTTP/1.1 through hyper: a correct parser and keep-alive for Prometheus' scrapes at the cost
//! of a small, widely used dependency, instead of a hand-written parser facing the network.
//! The server runs on a thread of its own with its own single-threaded runtime, so a slow or
//! hostile client never delays the event loop, and the event loop's bursts never delay a
//! scrape beyond the snapshot lock (held for microseconds).

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header,
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

use crate::metrics::Metrics;

/// The status page: HTML, CSS, JS and the chart's SVG in one file, no external assets.
const PAGE: &str = include_str!("page.html");
/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot listen on {addr} for metrics (--metrics-addr): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the metrics server thread: {0}")]
    Thread(std::io::Error),
}

/// Binds `addr` now (so that a busy port fails the start, before anything is attached) and
/// serves on a thread of its own until the process exits. Returns the bound address.
pub fn spawn(addr: SocketAddr, metrics: Metrics) -> Result<SocketAddr, StatusError> {
    let bind_err = |source| StatusError::Bind { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    std::thread::Builder::new()
        .name("nsdb-http".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "metrics server: cannot start its runtime");
                    return;
                }
            };
            rt.block_on(serve(listener, metrics));
        })
        .map_err(StatusError::Thread)?;
    tracing::info!(addr = %local, "serving /metrics and the status page");
    Ok(local)
}

async fn serve(listener: std::net::TcpListener, metrics: Metrics) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "metrics server: cannot use the socket");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "metrics server: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(route(&metrics, &req)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            // A client that stalls mid-response is cut off too.
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
            drop(permit);
        });
    }
}

fn response(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .header("x-content-type-options", "nosniff")
        .body(Full::new(body.into()))
        .expect("static headers are valid")
}

/// Answers one request.
pub fn route(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    route_parts(metrics, req.method(), req.uri().path())
}

fn route_parts(metrics: &Metrics, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = response(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" => response(
            StatusCode::OK,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            metrics.encode(),
        ),
        "/api/status" => response(
            StatusCode::OK,
            "application/json",
            metrics.status_json().to_string(),
        ),
        "/" | "/index.html" => {
            let mut r = response(StatusCode::OK, "text/html; charset=utf-8", PAGE);
            // Nothing but the page's own inline code and its own origin's JSON.
            r.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                header::HeaderValue::from_static(
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
                ),
            );
            r
        }
        _ => response(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try / or /metrics\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::RunInfo;

    fn m() -> Metrics {
        Metrics::new(RunInfo {
            mode: "enforce",
            ifaces: vec![],
            allow_capacity: 8,
            exceptions: 0,
        })
    }

    #[test]
    fn routes() {
        let m = m();
        assert_eq!(route_parts(&m, &Method::GET, "/metrics").status(), 200);
        assert_eq!(route_parts(&m, &Method::GET, "/").status(), 200);
        assert_eq!(route_parts(&m, &Method::GET, "/api/status").status(), 200);
        assert_eq!(route_parts(&m, &Method::GET, "/x").status(), 404);
        assert_eq!(route_parts(&m, &Method::POST, "/metrics").status(), 405);
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        // The SVG namespace is a name, not a location.
        let page = PAGE.replace("\"http://www.w3.org/2000/svg\"", "");
        for needle in [
            "http://",
            "https://",
            "src=",
            "href=",
            "@import",
            "url(",
            "innerHTML",
        ] {
            assert!(
                !page.contains(needle),
                "the page must be self-contained and not use {needle}"
            );
        }
    }
}
