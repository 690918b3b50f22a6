//! `GET /metrics`, `/healthz` on their own thread and runtime, so a busy
//! pipeline never delays a scrape. A scrape reads the connection conditions of
//! [`Health`] into `virtsync_source_up` first (metrics depend on health, not the
//! reverse).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Semaphore, oneshot};

use super::{Metrics, MetricsError};
use crate::health::Health;

/// Scrapers served at once; more wait for a slot (a scrape takes microseconds).
const MAX_CONNECTIONS: usize = 32;
/// A client that sends no complete request head within this is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The running endpoint; dropping it (or [`MetricsServer::stop`]) ends the thread.
pub struct MetricsServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds `addr` now (so a taken port is an error at start) and serves on a thread.
pub fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    health: Health,
) -> Result<MetricsServer, MetricsError> {
    let listen = |source| MetricsError::Listen { addr, source };
    let std_listener = std::net::TcpListener::bind(addr).map_err(listen)?;
    std_listener.set_nonblocking(true).map_err(listen)?;
    let bound = std_listener.local_addr().map_err(listen)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(MetricsError::Thread)?;
    let (stop, stopped) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("virtsync-metrics".into())
        .spawn(move || runtime.block_on(accept_loop(std_listener, metrics, health, stopped)))
        .map_err(MetricsError::Thread)?;
    Ok(MetricsServer {
        addr: bound,
        stop: Some(stop),
        thread: Some(thread),
    })
}

async fn accept_loop(
    std_listener: std::net::TcpListener,
    metrics: Metrics,
    health: Health,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(std_listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "metrics endpoint cannot listen");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = &mut stopped => return,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics accept failed");
                    continue;
                }
            },
            _ = &mut stopped => return,
        };
        let (metrics, health) = (metrics.clone(), health.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let (metrics, health) = (metrics.clone(), health.clone());
                async move { Ok::<_, Infallible>(respond(&req, &metrics, &health)) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

fn respond(req: &Request<Incoming>, metrics: &Metrics, health: &Health) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => match metrics.encode_with(health) {
            Ok(text) => with_type(StatusCode::OK, TEXT_FORMAT, text),
            Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        },
        "/healthz" => plain(StatusCode::OK, "ok\n".into()),
        "/readyz" => match health.ready() {
            Ok(()) => plain(StatusCode::OK, "ready\n".into()),
            Err(not) => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {not}\n"),
            ),
        },
        other => plain(
            StatusCode::NOT_FOUND,
            format!("no such path {other:?}; try /metrics, /healthz or /readyz\n"),
        ),
    }
}

fn plain(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    with_type(status, "text/plain; charset=utf-8", body)
}

fn with_type(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;
    use crate::health::{CACHE_READY, POSTGRES_CONNECTED};
    use crate::model::VmKey;

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_health_and_clear_errors() {
        let metrics = Metrics::new().unwrap();
        metrics
            .hypervisor
            .set(&VmKey::new("ns", "a"), "n", None, "kvm");
        let health = Health::default();
        health.expect(CACHE_READY, "opening");
        let server = serve("127.0.0.1:0".parse().unwrap(), metrics, health.clone()).unwrap();
        let text = get(
            server.addr,
            "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(
            text.starts_with("HTTP/1.1 503") && text.ends_with("not ready: CacheReady: opening\n"),
            "{text}"
        );
        health.set(CACHE_READY, true, "Opened", "open");
        let text = get(
            server.addr,
            "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(
            text.starts_with("HTTP/1.1 200") && text.ends_with("ready\n"),
            "{text}"
        );
        let close = "Connection: close\r\n\r\n";
        let text = get(
            server.addr,
            &format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{close}"),
        );
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("text/plain; version=0.0.4"), "{text}");
        assert!(text.contains(r#"kubevirt_vmi_hypervisor_info{hypervisor_type="kvm",name="a",namespace="ns",node="n"} 1"#), "{text}");
        // The connection conditions, as they are when scraped.
        assert!(!text.contains("virtsync_source_up{"), "{text}");
        health.set(POSTGRES_CONNECTED, false, "ConnectionLost", "refused");
        let scrape = || {
            get(
                server.addr,
                &format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{close}"),
            )
        };
        let text = scrape();
        assert!(
            text.contains("virtsync_source_up{source=\"postgres\"} 0\n"),
            "{text}"
        );
        health.set(POSTGRES_CONNECTED, true, "Connected", "db");
        let text = scrape();
        assert!(
            text.contains("virtsync_source_up{source=\"postgres\"} 1\n"),
            "{text}"
        );
        let text = get(
            server.addr,
            &format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{close}"),
        );
        assert!(
            text.starts_with("HTTP/1.1 200") && text.ends_with("ok\n"),
            "{text}"
        );
        let text = get(
            server.addr,
            &format!("GET /nope HTTP/1.1\r\nHost: x\r\n{close}"),
        );
        assert!(
            text.starts_with("HTTP/1.1 404") && text.contains("/metrics"),
            "{text}"
        );
        let text = get(
            server.addr,
            &format!("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n{close}"),
        );
        assert!(text.starts_with("HTTP/1.1 405"), "{text}");
        let text = get(server.addr, "garbage\r\n\r\n");
        assert!(
            text.starts_with("HTTP/1.1 400") || text.is_empty(),
            "{text}"
        );
        // Still serving after the garbage.
        let text = get(
            server.addr,
            &format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{close}"),
        );
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        let addr = server.addr;
        let taken = serve(addr, Metrics::new().unwrap(), Health::default())
            .err()
            .unwrap();
        assert!(
            taken
                .to_string()
                .starts_with(&format!("metrics.listen {addr}:")),
            "{taken}"
        );
        server.stop();
    }
}
