//! The CLI's side of the socket API: one HTTP/1.1 request per call over the unix socket,
//! with errors that say what is wrong and what to do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::Value;
use tokio::net::UnixStream;

use crate::{Error, Result};

const CALL_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Client {
    socket: PathBuf,
}

/// Why the daemon cannot be reached, in words an operator can act on.
pub fn connect_problem(socket: &Path, e: &std::io::Error) -> String {
    let p = socket.display();
    match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "no socket at {p}: the daemon is not running (systemctl status virtsync), or it \
             uses another api.socket (--socket PATH)"
        ),
        std::io::ErrorKind::ConnectionRefused => format!(
            "nothing answers on {p}: the daemon is not running (a stale socket); start it with \
             systemctl start virtsync"
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "permission denied on {p}: run as root or as a member of group virtsync \
             (usermod -aG virtsync $USER, then log in again)"
        ),
        _ => format!("cannot connect to {p}: {e}"),
    }
}

impl Client {
    pub fn new(socket: PathBuf) -> Client {
        Client { socket }
    }

    /// `method path` → (status, JSON body). A non-2xx answer is returned, not an error.
    pub async fn call(&self, method: &str, path: &str) -> Result<(u16, Value)> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| Error::Other(connect_problem(&self.socket, &e)))?;
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            Error::Other(format!("{what} {} ({}): {e}", path, self.socket.display()))
        };
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| failed("talking to the daemon at", &e))?;
        tokio::spawn(conn);
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "virtsync")
            .body(Full::new(Bytes::new()))
            .map_err(|e| failed("building the request", &e))?;
        let response = tokio::time::timeout(CALL_TIMEOUT, sender.send_request(request))
            .await
            .map_err(|_| failed("no answer within 90 s to", &"timeout"))?
            .map_err(|e| failed("the daemon did not answer", &e))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| failed("reading the answer to", &e))?
            .to_bytes();
        let value = serde_json::from_slice(&body)
            .map_err(|e| failed("the daemon's answer is not JSON for", &e))?;
        Ok((status, value))
    }

    /// Like [`Client::call`], but a non-2xx answer becomes an error with the daemon's
    /// message.
    pub async fn ok(&self, method: &str, path: &str) -> Result<Value> {
        let (status, value) = self.call(method, path).await?;
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let message = value["error"]["message"]
            .as_str()
            .unwrap_or("no message")
            .to_owned();
        Err(Error::Other(format!(
            "{method} {path}: {status}: {message}"
        )))
    }
}
