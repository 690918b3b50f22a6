//! The CLI's side of the socket API: one HTTP/1.1 request per call over the unix socket,
//! with errors that say what is wrong and what to do. Answers are read into the types of
//! [`crate::api::types`], the same the server sends.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::api::types::ErrorBody;
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

    /// `method path` → (status, body). A non-2xx answer is returned, not an error.
    pub async fn call(&self, method: &str, path: &str) -> Result<(u16, Bytes)> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| Error::Other(connect_problem(&self.socket, self.origin, &e)))?;
        let failed = |what: &str, e: &dyn std::fmt::Display| self.failed(what, path, e);
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
        Ok((status, body))
    }

    fn failed(&self, what: &str, path: &str, e: &dyn std::fmt::Display) -> Error {
        Error::Other(format!("{what} {} ({}): {e}", path, self.socket.display()))
    }

    /// `GET path`, its answer read as `T` (one of [`crate::api::types`]).
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.ok("GET", path).await
    }

    /// `POST path` (no body), its answer read as `T`.
    pub async fn post<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.ok("POST", path).await
    }

    /// Like [`Client::call`], the answer read as `T`; a non-2xx answer becomes an error
    /// with the daemon's message, an answer that does not fit `T` one naming the field.
    async fn ok<T: DeserializeOwned>(&self, method: &str, path: &str) -> Result<T> {
        let (status, body) = self.call(method, path).await?;
        if (200..300).contains(&status) {
            return decode::<T>(&body).map_err(|e| {
                self.failed("the daemon's answer does not fit the API for", path, &e)
            });
        }
        let message = match decode::<ErrorBody>(&body) {
            Ok(b) => b.error.message,
            Err(e) => format!(
                "no error message ({e}): {}",
                String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
            ),
        };
        Err(Error::Other(format!(
            "{method} {path}: {status}: {message}"
        )))
    }
}

/// Why a body does not fit: where (`items[0].state`) and what serde says.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("at {path}: {source}")]
    Field {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> std::result::Result<T, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let source = e.into_inner();
        if source.is_syntax() || source.is_eof() || source.is_io() {
            DecodeError::NotJson(source)
        } else {
            DecodeError::Field { path, source }
        }
    })?;
    de.end().map_err(DecodeError::NotJson)?;
    Ok(value)
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

    #[test]
    fn an_answer_that_does_not_fit_names_the_field_and_keeps_the_cause() {
        use crate::api::types::Status;
        let e = decode::<Status>(b"<html>").unwrap_err();
        assert!(matches!(e, DecodeError::NotJson(_)), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        let e = decode::<ErrorBody>(br#"{"error": {"code": "404", "message": "x"}}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("at error.code: invalid type: string \"404\""),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_some());
        let ok =
            decode::<ErrorBody>(b"{\"error\": {\"code\": 404, \"message\": \"x\"}}\n").unwrap();
        assert_eq!(ok, ErrorBody::new(404, "x"));
        assert!(
            decode::<ErrorBody>(b"{\"error\": {\"code\": 404, \"message\": \"x\"}} 1").is_err()
        );
    }
}
