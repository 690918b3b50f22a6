//! A fake Kubernetes API server for KubeVirt objects that kube-rs cannot tell from a
//! real one for list, watch and get.
//!
//! Served (GET only; other methods 405, unknown paths 404, both as `Status`):
//! - `/apis/kubevirt.io/v1/{virtualmachines,virtualmachineinstances}` and the
//!   namespaced `/apis/kubevirt.io/v1/namespaces/{ns}/{plural}`: list (`limit`,
//!   `continue`, `labelSelector`, `fieldSelector` on metadata.name/namespace only) and
//!   watch (`watch=true|1`, `resourceVersion`, `timeoutSeconds`, `allowWatchBookmarks`);
//! - `/apis/kubevirt.io/v1/namespaces/{ns}/{plural}/{name}`, `/api/v1/nodes[/{name}]`;
//! - `/version`.
//!
//! resourceVersions come from one global counter. Watches replay a bounded history
//! (default 10,000 changes, `set_history_limit`); an RV before the window gets an
//! in-stream ERROR 410 "Expired". RV `0` or empty watches from now (no synthetic
//! ADDED events). An RV ahead of the server (only after `restart_with_rv_reset`) gets
//! an in-stream ERROR 504 "Too large resource version" after 3 s, like the watch cache.
//! List pages report the RV of the first page (kept in the continue token); a token
//! older than the window is answered 410.
//!
//! Standalone: `cargo run --example fake-apiserver -- --help`.
#![allow(dead_code)]

mod http;
mod load;
mod selector;
mod store;
mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

#[allow(unused_imports)]
pub use http::RequestRecord;
#[allow(unused_imports)]
pub use load::{Loaded, Rng, churn_vmi, node, read_dir_objects, synthetic};
#[allow(unused_imports)]
pub use selector::{FieldSelector, LabelSelector};
#[allow(unused_imports)]
pub use store::Kind;

use store::{Counters, State};

/// The RV the first object gets (after `INITIAL_RV`), so RVs look like a real cluster's.
pub const INITIAL_RV: u64 = 1000;
/// How far `restart_with_new_history` moves the RV counter ahead.
pub const RESTART_RV_JUMP: u64 = 100_000;

pub(crate) struct Shared {
    state: Mutex<State>,
    counters: Counters,
    log: Mutex<Vec<RequestRecord>>,
    bookmark_interval: Mutex<Duration>,
}

/// A running fake API server; stops (and drops every connection) when dropped.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

/// What `FakeApiServer::load_dir` did.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub applied: usize,
    pub skipped: Vec<String>,
}

fn kind(k: &str) -> Kind {
    Kind::parse(k).unwrap_or_else(|| panic!("fake API server does not serve kind {k:?}"))
}

impl FakeApiServer {
    /// Listens on `127.0.0.1:0`; panics if that fails.
    pub async fn start() -> FakeApiServer {
        Self::start_on("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind the fake API server")
    }

    /// Listens on `addr`; the server runs on the current tokio runtime.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FakeApiServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(INITIAL_RV)),
            counters: Counters::default(),
            log: Mutex::new(Vec::new()),
            bookmark_interval: Mutex::new(Duration::from_secs(1)),
        });
        let sh = shared.clone();
        let accept = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    acc = listener.accept() => {
                        let Ok((stream, _)) = acc else { continue };
                        let _ = stream.set_nodelay(true);
                        let sh = sh.clone();
                        conns.spawn(async move {
                            let svc = service_fn(move |req| http::handle(sh.clone(), req));
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(FakeApiServer {
            shared,
            addr,
            accept,
        })
    }

    /// `http://127.0.0.1:PORT`, for `kube::Config::new(url.parse()?)`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().expect("state lock")
    }

    /// Create or replace (by kind, namespace, name); returns the object's new
    /// resourceVersion. Sets `uid` and `creationTimestamp` when absent (kept from the
    /// stored object on replace), defaults the namespace to `default`. Replacing an
    /// object with identical content is a no-op (same RV, no event). Panics on
    /// objects the server cannot hold (see `try_apply`).
    pub fn apply(&self, obj: Value) -> String {
        self.try_apply(obj)
            .unwrap_or_else(|e| panic!("fake API server: {e}"))
    }

    /// `apply` that reports unsupported kinds or missing names instead of panicking.
    pub fn try_apply(&self, obj: Value) -> Result<String, String> {
        self.state().apply(obj)
    }

    /// Delete; watchers get DELETED with the last state and a new RV. False if absent.
    pub fn delete(&self, kind_name: &str, namespace: &str, name: &str) -> bool {
        self.state().delete(kind(kind_name), namespace, name)
    }

    /// The stored object (namespace ignored for Node).
    pub fn get(&self, kind_name: &str, namespace: &str, name: &str) -> Option<Value> {
        let k = kind(kind_name);
        let ns = if k.namespaced() { namespace } else { "" };
        self.state()
            .objects
            .get(&(k, ns.to_string(), name.to_string()))
            .map(|s| s.value())
    }

    /// Every stored object of a kind, ordered by namespace and name.
    pub fn list(&self, kind_name: &str) -> Vec<Value> {
        let k = kind(kind_name);
        self.state()
            .objects
            .iter()
            .filter(|((kk, _, _), _)| *kk == k)
            .map(|(_, s)| s.value())
            .collect()
    }

    /// The current (latest issued) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state().rv
    }

    /// Every open watch gets ERROR 410 Expired and ends; every RV issued so far
    /// becomes too old, so clients must relist.
    pub fn expire_watches(&self) {
        self.state().expire();
    }

    /// Aborts every open watch response now: the client sees a truncated chunked body
    /// (no final chunk) and resumes from its last RV.
    pub fn cut_connections(&self) {
        self.state().cut(false);
    }

    /// Arms every open watch to send only the first half of its next event line and
    /// then abort, so the client loses an event mid-line and must resume before it.
    pub fn cut_connections_mid_event(&self) {
        self.state().cut(true);
    }

    /// An apiserver/etcd restore: open watches are cut, the history is cleared, and RVs
    /// continue from `RESTART_RV_JUMP` higher; every older RV is expired (410), so
    /// clients relist. Stored objects keep their content and RVs.
    pub fn restart_with_new_history(&self) {
        let mut st = self.state();
        st.cut(false);
        st.history.clear();
        st.rv += RESTART_RV_JUMP;
        st.compacted = st.rv;
    }

    /// The other restore flavour: RVs restart lower, at `base`. Open watches are cut,
    /// history is cleared, every stored object is re-stamped with a fresh RV above
    /// `base` (no events). Clients resuming with an RV above the new counter get
    /// ERROR 504 "Too large resource version" (after 3 s), as from a real watch cache;
    /// ones below `base` get 410.
    pub fn restart_with_rv_reset(&self, base: u64) {
        let mut st = self.state();
        st.cut(false);
        st.history.clear();
        st.rv = base;
        st.compacted = base;
        let keys: Vec<_> = st.objects.keys().cloned().collect();
        for k in keys {
            st.rv += 1;
            let rv = st.rv;
            let snap = st.objects[&k].clone();
            let mut v = snap.value();
            v["metadata"]["resourceVersion"] = Value::from(rv.to_string());
            st.objects.insert(k, Arc::new(store::Snap::from_value(&v)));
        }
    }

    /// How many changes watches can be resumed across (default 10,000).
    pub fn set_history_limit(&self, n: usize) {
        self.state().history_limit = n.max(1);
    }

    /// Period of BOOKMARK events on watches that allow them (default 1 s); applies to
    /// watches opened afterwards.
    pub fn set_bookmark_interval(&self, d: Duration) {
        *self.shared.bookmark_interval.lock().expect("lock") = d;
    }

    pub fn lists_served(&self) -> u64 {
        self.shared.counters.lists.load(Ordering::Relaxed)
    }

    pub fn watches_opened(&self) -> u64 {
        self.shared.counters.watches.load(Ordering::Relaxed)
    }

    pub fn gets_served(&self) -> u64 {
        self.shared.counters.gets.load(Ordering::Relaxed)
    }

    /// Watches currently registered (open and past their replay).
    pub fn open_watches(&self) -> usize {
        self.state().watches.len()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.log.lock().expect("log lock").clone()
    }

    pub fn clear_requests(&self) {
        self.shared.log.lock().expect("log lock").clear();
    }

    /// Applies every VM, VMI and Node found by `read_dir_objects`; skipped files and
    /// objects are reported (and printed to stderr).
    pub fn load_dir(&self, dir: impl AsRef<Path>) -> anyhow::Result<LoadReport> {
        let loaded = read_dir_objects(dir.as_ref())?;
        let mut rep = LoadReport::default();
        for (p, why) in loaded.skipped {
            let note = format!("{}: skipped, {why}", p.display());
            eprintln!("fake API server: {note}");
            rep.skipped.push(note);
        }
        for o in loaded.objects {
            let id = format!("{}/{}", o["kind"], o["metadata"]["name"]);
            match self.try_apply(o) {
                Ok(_) => rep.applied += 1,
                Err(e) => rep.skipped.push(format!("{id}: {e}")),
            }
        }
        Ok(rep)
    }

    /// Applies `synthetic(n_vms, nodes, seed)`; returns the number of objects.
    pub fn load_synthetic(&self, n_vms: usize, nodes: &[String], seed: u64) -> usize {
        let objs = synthetic(n_vms, nodes, seed);
        let n = objs.len();
        for o in objs {
            self.apply(o);
        }
        n
    }

    /// Creates a Node for every `status.nodeName` of a stored VMI that has none yet.
    pub fn ensure_nodes_for_vmis(&self) -> usize {
        let mut names: Vec<String> = self
            .list("vmi")
            .iter()
            .filter_map(|v| v["status"]["nodeName"].as_str().map(str::to_string))
            .collect();
        names.sort();
        names.dedup();
        let mut created = 0;
        for n in names {
            if self.get("node", "", &n).is_none() {
                self.apply(node(&n));
                created += 1;
            }
        }
        created
    }

    /// Every VMI as (namespace, name).
    pub fn vmi_keys(&self) -> Vec<(String, String)> {
        let st = self.state();
        st.objects
            .keys()
            .filter(|k| k.0 == Kind::VirtualMachineInstance)
            .map(|k| (k.1.clone(), k.2.clone()))
            .collect()
    }

    /// One guest-agent change on a random VMI (`churn_vmi`); returns `ns/name`.
    pub fn churn_once(&self, rng: &mut Rng) -> Option<String> {
        churn_shared(&self.shared, rng)
    }

    /// One guest-agent change on the VMI `namespace/name` (O(log n), for long runs);
    /// false when there is no such VMI.
    pub fn churn_named(&self, namespace: &str, name: &str, rng: &mut Rng) -> bool {
        let mut st = self.state();
        let key = (
            Kind::VirtualMachineInstance,
            namespace.to_owned(),
            name.to_owned(),
        );
        let Some(mut v) = st.objects.get(&key).map(|s| s.value()) else {
            return false;
        };
        churn_vmi(&mut v, rng);
        st.apply(v).is_ok()
    }

    /// Runs `churn_once` `rate` times per second until the returned handle is dropped.
    pub fn spawn_churn(&self, rate: f64, seed: u64) -> ChurnHandle {
        let shared = self.shared.clone();
        let task = tokio::spawn(async move {
            let mut rng = Rng::new(seed);
            if rate <= 0.0 {
                return;
            }
            let period = Duration::from_secs_f64(1.0 / rate);
            let mut tick = tokio::time::interval(period.max(Duration::from_micros(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let per_tick = if period < Duration::from_micros(100) {
                (rate / 10_000.0).ceil() as usize
            } else {
                1
            };
            loop {
                tick.tick().await;
                for _ in 0..per_tick {
                    churn_shared(&shared, &mut rng);
                }
            }
        });
        ChurnHandle(task)
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Stops the churn task when dropped.
pub struct ChurnHandle(JoinHandle<()>);

impl ChurnHandle {
    /// Stops the churn and waits until it has really stopped. A drop only asks: a churn
    /// step already running on another worker thread still lands afterwards, after the
    /// caller may have taken the fake's objects as the final truth.
    pub async fn stop(mut self) {
        self.0.abort();
        let _cancelled = (&mut self.0).await;
    }
}

impl Drop for ChurnHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn churn_shared(shared: &Shared, rng: &mut Rng) -> Option<String> {
    let mut st = shared.state.lock().expect("state lock");
    let n = st
        .objects
        .keys()
        .filter(|k| k.0 == Kind::VirtualMachineInstance)
        .count();
    if n == 0 {
        return None;
    }
    let pick = rng.below(n as u64) as usize;
    let (key, snap) = st
        .objects
        .iter()
        .filter(|(k, _)| k.0 == Kind::VirtualMachineInstance)
        .nth(pick)
        .map(|(k, s)| (k.clone(), s.clone()))?;
    let mut v = snap.value();
    churn_vmi(&mut v, rng);
    st.apply(v).ok()?;
    Some(format!("{}/{}", key.1, key.2))
}
