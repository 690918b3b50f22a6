//! The socket: bound with mode 0660 before the daemon says READY, one task per
//! connection, request head, body size and time bounded, the peer's credentials read
//! once per connection.

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{ApiState, Call, Reply, error, handle};

/// Largest request body accepted (the API's bodies are empty or tiny JSON).
pub const MAX_BODY: usize = 64 * 1024;
/// Largest request head (hyper's minimum buffer).
const MAX_HEAD: usize = 16 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection may live this long at most (a refresh waits up to 60 s).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(90);
const MAX_CONNECTIONS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("api.socket {path}: {problem}")]
    Bind { path: PathBuf, problem: String },
}

/// Binds `path` (replacing a stale socket file, refusing to replace anything else or a
/// socket someone still answers on) with mode 0660.
pub fn bind(path: &Path) -> Result<UnixListener, ApiError> {
    let fail = |problem: String| ApiError::Bind {
        path: path.to_path_buf(),
        problem,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(fail("exists and is not a socket; not replacing it".into()));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(fail(
                    "another process answers on it (is virtsync already running?)".into(),
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| fail(format!("removing the stale socket: {e}")))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e.to_string())),
    }
    let listener = UnixListener::bind(path).map_err(|e| fail(e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| fail(format!("setting mode 0660: {e}")))?;
    Ok(listener)
}

/// Serves until `stopped`; removes the socket file at the end.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    state: ApiState,
    stopped: CancellationToken,
) {
    let state = Arc::new(state);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stopped.cancelled() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "socket API accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped.cancelled() => break,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let admin = match stream.peer_cred() {
                Ok(cred) => {
                    let (uid, group) = (cred.uid(), state.admin_group.clone());
                    tokio::task::spawn_blocking(move || super::peer::is_admin(uid, &group))
                        .await
                        .unwrap_or_else(|e| Err(e.to_string()))
                }
                Err(e) => Err(format!("reading peer credentials: {e}")),
            };
            let service = service_fn(move |req| {
                let (state, admin) = (state.clone(), admin.clone());
                async move { Ok::<_, Infallible>(respond(&state, req, admin).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            drop(permit);
        });
    }
    let _ = std::fs::remove_file(&path);
}

async fn respond(
    state: &ApiState,
    req: Request<Incoming>,
    admin: Result<bool, String>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let too_big = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY as u64);
    let reply: Reply = if too_big {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {MAX_BODY} bytes"),
        )
    } else {
        match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => {
                let body = collected.to_bytes();
                handle(
                    state,
                    Call {
                        method: &parts.method,
                        path: parts.uri.path(),
                        query: parts.uri.query(),
                        body: &body,
                        admin,
                    },
                )
                .await
            }
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body over {MAX_BODY} bytes"),
                )
            }
            Err(e) => error(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
        }
    };
    let (status, value) = reply;
    let mut text = serde_json::to_vec_pretty(&value).unwrap_or_default();
    text.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
