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
    origin: SocketOrigin,
}

/// Where the socket path came from: it decides what the errors suggest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketOrigin {
    /// `--socket PATH`.
    Flag,
    /// `api.socket` of the configuration (by default `/run/virtsync/virtsync.sock`).
    Config,
}

/// For a daemon that is not the installed service.
const ELSEWHERE: &str = "a daemon started by hand or by scripts/run-daemon has its socket \
                         elsewhere: give it with --socket PATH (the demo's is \
                         dev-state/virtsync.sock)";

/// Why the daemon cannot be reached, in words an operator can act on.
pub fn connect_problem(socket: &Path, origin: SocketOrigin, e: &std::io::Error) -> String {
    let p = socket.display();
    match (e.kind(), origin) {
        (std::io::ErrorKind::NotFound, SocketOrigin::Config) => format!(
            "no socket at {p} (api.socket): the daemon is not running (systemctl status \
             virtsync), or it uses another api.socket; {ELSEWHERE}"
        ),
        (std::io::ErrorKind::NotFound, SocketOrigin::Flag) => format!(
            "no socket at {p} (--socket): the daemon is not running, or its api.socket is \
             another path"
        ),
        (std::io::ErrorKind::ConnectionRefused, SocketOrigin::Config) => format!(
            "nothing answers on {p}: the daemon is not running (a stale socket); start it with \
             systemctl start virtsync, or, for a daemon started elsewhere, give its socket with \
             --socket PATH"
        ),
        (std::io::ErrorKind::ConnectionRefused, SocketOrigin::Flag) => format!(
            "nothing answers on {p}: the daemon is not running (a stale socket); start it again"
        ),
        (std::io::ErrorKind::PermissionDenied, _) => format!(
            "permission denied on {p}: run as root or as a member of group virtsync \
             (usermod -aG virtsync $USER, then log in again)"
        ),
        _ => format!("cannot connect to {p}: {e}"),
    }
}

impl Client {
    pub fn new(socket: PathBuf, origin: SocketOrigin) -> Client {
        Client { socket, origin }
    }

    /// `method path` → (status, JSON body). A non-2xx answer is returned, not an error.
    pub async fn call(&self, method: &str, path: &str) -> Result<(u16, Value)> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| Error::Other(connect_problem(&self.socket, self.origin, &e)))?;
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

#[cfg(test)]
mod tests {
    use std::io::{Error as IoError, ErrorKind};

    use super::*;

    /// (socket, where it came from, the connect error, words the problem has, words it lacks)
    type Case<'a> = (
        &'a Path,
        SocketOrigin,
        ErrorKind,
        &'a [&'a str],
        &'a [&'a str],
    );

    #[test]
    fn connect_problems_say_what_to_do() {
        let default = Path::new("/run/virtsync/virtsync.sock");
        let demo = Path::new("dev-state/virtsync.sock");
        let cases: &[Case] = &[
            (
                default,
                SocketOrigin::Config,
                ErrorKind::NotFound,
                &[
                    "no socket at /run/virtsync/virtsync.sock",
                    "the daemon is not running",
                    "systemctl status virtsync",
                    "--socket PATH",
                    "dev-state/virtsync.sock",
                ],
                &[],
            ),
            (
                demo,
                SocketOrigin::Flag,
                ErrorKind::NotFound,
                &[
                    "no socket at dev-state/virtsync.sock (--socket)",
                    "the daemon is not running",
                ],
                &["systemctl"],
            ),
            (
                default,
                SocketOrigin::Config,
                ErrorKind::ConnectionRefused,
                &[
                    "the daemon is not running",
                    "systemctl start virtsync",
                    "--socket PATH",
                ],
                &[],
            ),
            (
                demo,
                SocketOrigin::Flag,
                ErrorKind::ConnectionRefused,
                &["the daemon is not running", "stale"],
                &["systemctl"],
            ),
            (
                default,
                SocketOrigin::Config,
                ErrorKind::PermissionDenied,
                &["permission denied", "group virtsync"],
                &[],
            ),
        ];
        for (socket, origin, kind, has, lacks) in cases {
            let text = connect_problem(socket, *origin, &IoError::from(*kind));
            for word in *has {
                assert!(text.contains(word), "{text:?} lacks {word:?}");
            }
            for word in *lacks {
                assert!(!text.contains(word), "{text:?} has {word:?}");
            }
            assert!(!text.contains('\n'), "{text:?}");
        }
    }
}
