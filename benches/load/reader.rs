//! The least any watcher spends per event: one thread with its own current-thread
//! runtime, one plain HTTP/1.1 watch on the fake API server, and each line decoded into
//! our structs as the floor does; no state, no database, no other task. Run beside the
//! daemon while the changes are sent, it receives the same events at the same pace, so
//! its thread CPU time per event is the receive path's share of any daemon: the wake-up
//! on the socket, the HTTP chunks, the line splitting and the decode.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::sync::oneshot;
use virtsync::derive::Vmi;

use super::pipeline::thread_cpu;

/// One watch line: the event type is skipped, the object decoded as the floor decodes it.
#[derive(Deserialize)]
struct Line {
    #[serde(rename = "object")]
    _object: Vmi,
}

pub struct Reader {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<(u64, Duration)>,
}

impl Reader {
    /// Watches VMIs from `resource_version` on; returns once the watch is open.
    pub fn start(addr: SocketAddr, resource_version: u64) -> Reader {
        let (stop, stopped) = oneshot::channel();
        let (open_tx, open) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(read(addr, resource_version, open_tx, stopped))
        });
        open.recv().expect("the watch reader opened its watch");
        Reader { stop, thread }
    }

    /// Stops reading; the events read and this thread's CPU time per event.
    pub fn finish(self) -> (u64, f64) {
        let _ = self.stop.send(());
        let (events, cpu) = self.thread.join().unwrap();
        (events, cpu.as_secs_f64() / events.max(1) as f64)
    }
}

async fn read(
    addr: SocketAddr,
    resource_version: u64,
    open: mpsc::Sender<()>,
    mut stopped: oneshot::Receiver<()>,
) -> (u64, Duration) {
    let start = thread_cpu();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let uri = format!(
        "/apis/kubevirt.io/v1/virtualmachineinstances?watch=1&resourceVersion={resource_version}"
    );
    let request = hyper::Request::get(uri)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let mut body = sender.send_request(request).await.unwrap().into_body();
    open.send(()).unwrap();
    let mut pending: Vec<u8> = Vec::new();
    let mut events = 0;
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = &mut stopped => break,
        };
        let Some(Ok(frame)) = frame else { break };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        let mut used = 0;
        while let Some(end) = pending[used..].iter().position(|&b| b == b'\n') {
            let line = &pending[used..used + end];
            std::hint::black_box(serde_json::from_slice::<Line>(line).unwrap());
            events += 1;
            used += end + 1;
        }
        pending.drain(..used);
    }
    (events, thread_cpu() - start)
}
