//! Watch streams: chunked newline-delimited JSON events, one task per open watch.
//!
//! The task registers with the store (under the state lock, together with the replay
//! of the history after the requested resourceVersion, so nothing falls in between),
//! then forwards changes through the watch's selector with watch-cache semantics:
//! an object that stops matching is DELETED carrying its previous content with the
//! new resourceVersion, one that starts matching is ADDED.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Response, StatusCode};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until};

use super::Shared;
use super::http::{Body, Filter, Query, status, status_json};
use super::store::{Change, Counters, WatchMsg, WatchReg};

type FrameTx = mpsc::Sender<Result<Frame<Bytes>, io::Error>>;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

pub fn start(shared: Arc<Shared>, filter: Filter, q: &Query) -> Response<Body> {
    let from = match q.get("resourceVersion").unwrap_or_default() {
        "" | "0" => None,
        s => match s.parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("invalid resource version: {s}"),
                );
            }
        },
    };
    // "From now" means from when the request arrived, as on the apiserver, not from
    // whenever the watch task gets to run.
    let from = from.or_else(|| Some(shared.state.lock().expect("state lock").rv));
    let timeout = match q.get("timeoutSeconds").map(str::parse::<u64>) {
        None => DEFAULT_TIMEOUT,
        Some(Ok(s)) => Duration::from_secs(s),
        Some(Err(_)) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "invalid timeoutSeconds",
            );
        }
    };
    Counters::bump(&shared.counters.watches);
    let bookmarks = q.flag("allowWatchBookmarks");
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, io::Error>>(64);
    let w = Watch {
        shared,
        filter,
        tx,
        bookmarks,
        deadline: Instant::now() + timeout,
        id: None,
        cut_armed: false,
    };
    tokio::spawn(w.run(from));
    let body = StreamBody::new(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|f| (f, rx))
    }))
    .boxed();
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(body)
        .expect("response")
}

enum Flow {
    Go,
    Stop,
}

struct Watch {
    shared: Arc<Shared>,
    filter: Filter,
    tx: FrameTx,
    bookmarks: bool,
    deadline: Instant,
    id: Option<u64>,
    cut_armed: bool,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            if let Ok(mut st) = self.shared.state.lock() {
                st.watches.remove(&id);
            }
        }
    }
}

fn line(kind: &str, object: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(object.len() + 40);
    b.extend_from_slice(br#"{"type":""#);
    b.extend_from_slice(kind.as_bytes());
    b.extend_from_slice(br#"","object":"#);
    b.extend_from_slice(object);
    b.extend_from_slice(b"}\n");
    Bytes::from(b)
}

impl Watch {
    async fn send(&self, b: Bytes) -> Flow {
        match self.tx.send(Ok(Frame::data(b))).await {
            Ok(()) => Flow::Go,
            Err(_) => Flow::Stop,
        }
    }

    async fn error_event(
        &self,
        code: u16,
        reason: &str,
        message: &str,
        details: Option<serde_json::Value>,
    ) {
        let _ = self
            .send(line("ERROR", &status_json(code, reason, message, details)))
            .await;
    }

    /// Abort the body: the client sees a truncated chunked response. With `partial`,
    /// half of that line goes out first.
    async fn cut(&self, partial: Option<Bytes>) -> Flow {
        if let Some(p) = partial {
            let _ = self.send(p.slice(..p.len() / 2)).await;
        }
        // Let hyper flush what it has before it sees the error.
        sleep(Duration::from_millis(50)).await;
        let _ = self
            .tx
            .send(Err(io::Error::other("connection cut by test")))
            .await;
        Flow::Stop
    }

    fn event_for(&self, c: &Change) -> Option<Bytes> {
        let m = |s: &Option<Arc<super::store::Snap>>| {
            s.as_ref().filter(|s| self.filter.matches(s)).cloned()
        };
        match (m(&c.old), m(&c.new)) {
            (Some(_), Some(n)) => Some(line("MODIFIED", &n.json)),
            (None, Some(n)) => Some(line("ADDED", &n.json)),
            (Some(o), None) => {
                let obj = c
                    .old_at_rv
                    .clone()
                    .unwrap_or_else(|| super::store::with_rv(&o, c.rv));
                Some(line("DELETED", &obj))
            }
            (None, None) => None,
        }
    }

    async fn on_change(&mut self, c: &Change) -> Flow {
        let Some(l) = self.event_for(c) else {
            return Flow::Go;
        };
        if self.cut_armed {
            return self.cut(Some(l)).await;
        }
        self.send(l).await
    }

    async fn on_msg(&mut self, msg: WatchMsg) -> Flow {
        match msg {
            WatchMsg::Change(c) => self.on_change(&c).await,
            WatchMsg::Expire => {
                self.error_event(
                    410,
                    "Expired",
                    "too old resource version (expired by test)",
                    None,
                )
                .await;
                Flow::Stop
            }
            WatchMsg::Cut { mid_line: false } => self.cut(None).await,
            WatchMsg::Cut { mid_line: true } => {
                self.cut_armed = true;
                Flow::Go
            }
        }
    }

    async fn bookmark(&mut self, rx: &mut mpsc::UnboundedReceiver<WatchMsg>) -> Flow {
        // Every change up to `rv` is already queued (they are queued under the lock
        // before the RV becomes visible): send those first.
        let rv = self.shared.state.lock().expect("state lock").rv;
        while let Ok(m) = rx.try_recv() {
            if let Flow::Stop = self.on_msg(m).await {
                return Flow::Stop;
            }
        }
        let k = self.filter.kind;
        let obj = json!({"kind": k.name(), "apiVersion": k.api_version(), "metadata": {"resourceVersion": rv.to_string()}});
        self.send(line("BOOKMARK", &serde_json::to_vec(&obj).expect("json")))
            .await
    }

    async fn run(mut self, from: Option<u64>) {
        // A resourceVersion ahead of the server (after an RV reset): wait a little,
        // then answer like the apiserver's watch cache does.
        if let Some(rv) = from {
            let until = Instant::now() + Duration::from_secs(3);
            loop {
                let cur = self.shared.state.lock().expect("state lock").rv;
                if rv <= cur {
                    break;
                }
                if Instant::now() >= until {
                    let details = json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1});
                    let msg = format!("Timeout: Too large resource version: {rv}, current: {cur}");
                    self.error_event(504, "Timeout", &msg, Some(details)).await;
                    return;
                }
                sleep(Duration::from_millis(100)).await;
            }
        }
        let (wtx, mut rx) = mpsc::unbounded_channel();
        let replay: Result<Vec<Arc<Change>>, String> = {
            let mut st = self.shared.state.lock().expect("state lock");
            match from {
                Some(rv) if rv < st.compacted => {
                    Err(format!("too old resource version: {rv} ({})", st.compacted))
                }
                _ => {
                    let from = from.unwrap_or(st.rv);
                    let id = st.next_watch_id;
                    st.next_watch_id += 1;
                    st.watches.insert(
                        id,
                        WatchReg {
                            kind: self.filter.kind,
                            tx: wtx,
                        },
                    );
                    self.id = Some(id);
                    Ok(st
                        .history
                        .iter()
                        .filter(|c| c.rv > from && c.kind == self.filter.kind)
                        .cloned()
                        .collect())
                }
            }
        };
        let replay = match replay {
            Ok(r) => r,
            Err(msg) => {
                self.error_event(410, "Expired", &msg, None).await;
                return;
            }
        };
        for c in replay {
            if let Flow::Stop = self.on_change(&c).await {
                return;
            }
        }
        let interval = *self.shared.bookmark_interval.lock().expect("lock");
        let mut next_bm = Instant::now() + interval;
        loop {
            let flow = tokio::select! {
                _ = sleep_until(self.deadline) => Flow::Stop,
                _ = self.tx.closed() => Flow::Stop,
                m = rx.recv() => match m {
                    Some(m) => self.on_msg(m).await,
                    None => Flow::Stop,
                },
                _ = sleep_until(next_bm), if self.bookmarks => {
                    next_bm = Instant::now() + interval;
                    self.bookmark(&mut rx).await
                }
            };
            if let Flow::Stop = flow {
                return;
            }
        }
    }
}
