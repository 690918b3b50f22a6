//! The local socket API (DESIGN §8): HTTP/1.1 + JSON on a unix socket. Reads for anyone
//! who can open the socket (mode 0660, group `virtsync`); changes only for root or the
//! configured admin group. Every bad request gets a JSON error with a message.

pub mod peer;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::config::Role;
use crate::health::Health;
use crate::model::{Timestamp, VmKey};
use crate::sink::postgres::ResyncStatus;
use crate::source::libvirt::host::{CAPABILITIES_KEY, StoredCapabilities};
use crate::state::writer::{SharedStore, lock, with_store};

/// How long `POST /v1/host/capabilities/refresh` waits for the refresh to finish.
const REFRESH_WAIT: Duration = Duration::from_secs(60);

/// Host capability refresh: ask, then wait for the counter to move.
#[derive(Clone)]
pub struct CapabilityRefresh {
    pub request: Arc<Notify>,
    pub refreshed: watch::Receiver<u64>,
}

/// What the API reads and triggers.
#[derive(Clone)]
pub struct ApiState {
    pub node: String,
    pub role: Role,
    pub admin_group: String,
    pub version: &'static str,
    pub started: Timestamp,
    pub store: SharedStore,
    pub health: Health,
    pub holder: watch::Receiver<bool>,
    /// `None` without PostgreSQL (nothing to compare with).
    pub resync: Option<(Arc<Notify>, watch::Receiver<ResyncStatus>)>,
    /// `None` without libvirt.
    pub capabilities: Option<CapabilityRefresh>,
    /// Wakes the sink (a retried delta goes out at once).
    pub enqueued: Arc<Notify>,
}

/// An answer: status and JSON body.
pub type Reply = (StatusCode, Value);

pub fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    (
        status,
        json!({"error": {"code": status.as_u16(), "message": message.into()}}),
    )
}

/// A parsed request, as the router needs it.
pub struct Call<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    /// The caller may change things (root or admin group).
    pub admin: Result<bool, String>,
}

/// Routes one request.
pub async fn handle(state: &ApiState, call: Call<'_>) -> Reply {
    let segments: Vec<&str> = call.path.trim_end_matches('/').split('/').collect();
    let get = call.method == Method::GET;
    let post = call.method == Method::POST;
    if post && !call.body.is_empty() && serde_json::from_slice::<Value>(call.body).is_err() {
        return error(
            StatusCode::BAD_REQUEST,
            "malformed body: expected JSON (or no body)",
        );
    }
    let query = match parse_query(call.query) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let allowed = |methods: &str| -> Option<Reply> {
        let ok = match methods {
            "GET" => get,
            _ => post,
        };
        (!ok).then(|| {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} {}: only {methods} here", call.method, call.path),
            )
        })
    };
    let no_query = |q: &[(String, String)]| -> Option<Reply> {
        q.first().map(|(k, _)| {
            error(
                StatusCode::BAD_REQUEST,
                format!("unknown query parameter {k:?}"),
            )
        })
    };
    match segments.as_slice() {
        ["", "v1", "status"] => allowed("GET")
            .or_else(|| no_query(&query))
            .unwrap_or_else(|| status(state)),
        ["", "v1", "vms"] => allowed("GET").unwrap_or_else(|| list_vms(state, &query)),
        ["", "v1", "vms", ns, name] => allowed("GET")
            .or_else(|| no_query(&query))
            .unwrap_or_else(|| get_vm(state, ns, name)),
        ["", "v1", "host", "capabilities"] => allowed("GET")
            .or_else(|| no_query(&query))
            .unwrap_or_else(|| capabilities(state)),
        ["", "v1", "host", "capabilities", "refresh"] => {
            if let Some(r) = allowed("POST")
                .or_else(|| no_query(&query))
                .or_else(|| deny(&call))
            {
                return r;
            }
            refresh_capabilities(state).await
        }
        ["", "v1", "resync"] => allowed("POST")
            .or_else(|| no_query(&query))
            .or_else(|| deny(&call))
            .unwrap_or_else(|| resync(state)),
        ["", "v1", "outbox"] => allowed("GET")
            .or_else(|| no_query(&query))
            .unwrap_or_else(|| outbox(state)),
        ["", "v1", "outbox", ns, name, action @ ("retry" | "drop")] => {
            if let Some(r) = allowed("POST")
                .or_else(|| no_query(&query))
                .or_else(|| deny(&call))
            {
                return r;
            }
            outbox_action(state, ns, name, action).await
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!(
                "no such endpoint {}; see GET /v1/status, /v1/vms, /v1/host/capabilities, /v1/outbox",
                call.path
            ),
        ),
    }
}

/// `Some(refusal)` unless the caller may change things.
fn deny(call: &Call<'_>) -> Option<Reply> {
    match &call.admin {
        Ok(true) => None,
        Ok(false) => Some(error(
            StatusCode::FORBIDDEN,
            "changing things needs root or membership of the admin group (api.admin_group)",
        )),
        Err(e) => Some(error(
            StatusCode::FORBIDDEN,
            format!("cannot tell who is calling: {e}"),
        )),
    }
}

fn parse_query(q: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let Some(q) = q.filter(|q| !q.is_empty()) else {
        return Ok(Vec::new());
    };
    q.split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_decode(s).ok_or_else(|| format!("bad percent-encoding in query {pair:?}"))
            };
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn status(state: &ApiState) -> Reply {
    let now = Timestamp::now();
    let (records, with_runtime, outbox) = {
        let s = lock(&state.store);
        let with_runtime = s
            .records()
            .filter(|(_, r)| r.record.runtime_details.is_some())
            .count();
        (s.records().count(), with_runtime, s.outbox_stats())
    };
    let holder = *state.holder.borrow();
    let cluster_role = match (state.role, holder) {
        (Role::Node, _) => "not taken (role = node)",
        (_, true) => "held by this daemon",
        (_, false) => "standby (another daemon holds it)",
    };
    let resync = state.resync.as_ref().map(|(_, rx)| rx.borrow().clone());
    (
        StatusCode::OK,
        json!({
            "node": state.node,
            "role": format!("{:?}", state.role).to_lowercase(),
            "version": state.version,
            "startedAt": state.started,
            "ready": state.health.ready().is_ok(),
            "conditions": state.health.conditions(),
            "clusterRole": {"held": holder, "state": cluster_role},
            "records": records,
            "recordsWithRuntimeDetails": with_runtime,
            "outbox": {
                "pending": outbox.pending,
                "parked": outbox.parked,
                "oldestAgeSeconds": outbox.oldest_enqueued
                    .map(|t| (now.unix_millis - t.unix_millis).max(0) as f64 / 1000.0),
            },
            "resync": resync,
        }),
    )
}

/// A VM as the API shows it: the record (seed 000 shape) and whether it is in PostgreSQL.
fn vm_json(s: &crate::state::Store, key: &VmKey) -> Option<Value> {
    let stored = s.record(key)?;
    let sync = match s.outbox_entry(key) {
        _ if !s.is_managed(key) => json!({"state": "Unmanaged"}),
        None => json!({"state": "Synced"}),
        Some(e) => match &e.parked {
            Some(reason) => json!({"state": "Parked", "message": reason}),
            None => json!({"state": "Pending", "since": e.first_enqueued}),
        },
    };
    let mut v = serde_json::to_value(&stored.record).ok()?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("sync".into(), sync);
    }
    Some(v)
}

fn list_vms(state: &ApiState, query: &[(String, String)]) -> Reply {
    let mut namespace = None;
    let mut node = None;
    for (k, v) in query {
        match k.as_str() {
            "namespace" => namespace = Some(v.as_str()),
            "node" => node = Some(v.as_str()),
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter {other:?} (namespace, node)"),
                );
            }
        }
    }
    let s = lock(&state.store);
    let mut keys: Vec<&VmKey> = s
        .records()
        .filter(|(k, r)| {
            namespace.is_none_or(|ns| k.namespace == ns)
                && node.is_none_or(|n| {
                    r.record
                        .runtime_details
                        .as_ref()
                        .and_then(|rt| rt.node_name.as_deref())
                        == Some(n)
                })
        })
        .map(|(k, _)| k)
        .collect();
    keys.sort();
    let vms: Vec<Value> = keys.iter().filter_map(|k| vm_json(&s, k)).collect();
    (StatusCode::OK, json!({"items": vms}))
}

fn get_vm(state: &ApiState, ns: &str, name: &str) -> Reply {
    let key = VmKey::new(ns, name);
    if let Err(problem) = key.validate() {
        return error(StatusCode::BAD_REQUEST, format!("{key}: {problem}"));
    }
    match vm_json(&lock(&state.store), &key) {
        Some(v) => (StatusCode::OK, v),
        None => error(StatusCode::NOT_FOUND, format!("no VM {key} known here")),
    }
}

fn capabilities(state: &ApiState) -> Reply {
    let stored = lock(&state.store).host(CAPABILITIES_KEY);
    let stored: Option<StoredCapabilities> = match stored {
        Ok(b) => b.and_then(|b| serde_json::from_slice(&b).ok()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    match stored {
        Some(c) => {
            let data: Value = serde_json::from_str(&c.canonical).unwrap_or(Value::Null);
            (
                StatusCode::OK,
                json!({
                    "hostname": c.hostname,
                    "fingerprint": c.fingerprint,
                    "discoveredAt": c.discovered_at,
                    "available": c.available,
                    "capabilities": data,
                }),
            )
        }
        None if state.capabilities.is_none() => error(
            StatusCode::NOT_FOUND,
            "no host capabilities: no libvirt configured (libvirt.uri, or locator = \"kubevirt\")",
        ),
        None => error(StatusCode::NOT_FOUND, "no host capabilities discovered yet"),
    }
}

async fn refresh_capabilities(state: &ApiState) -> Reply {
    let Some(refresh) = &state.capabilities else {
        return error(
            StatusCode::CONFLICT,
            "no libvirt configured (libvirt.uri, or locator = \"kubevirt\"): nothing to refresh",
        );
    };
    let mut done = refresh.refreshed.clone();
    let before = *done.borrow_and_update();
    refresh.request.notify_one();
    let finished = tokio::time::timeout(REFRESH_WAIT, async {
        while *done.borrow_and_update() <= before {
            if done.changed().await.is_err() {
                return false;
            }
        }
        true
    })
    .await;
    match finished {
        Ok(true) => capabilities(state),
        Ok(false) => error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping"),
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            format!("the refresh did not finish within {REFRESH_WAIT:?}; it goes on"),
        ),
    }
}

fn resync(state: &ApiState) -> Reply {
    let Some((trigger, status)) = &state.resync else {
        return error(
            StatusCode::CONFLICT,
            "no PostgreSQL configured (postgres.url): nothing to compare with",
        );
    };
    let current = status.borrow().clone();
    trigger.notify_one();
    (
        StatusCode::ACCEPTED,
        json!({"requested": true, "passesBefore": current.passes, "resync": current}),
    )
}

fn outbox(state: &ApiState) -> Reply {
    let s = lock(&state.store);
    let items: Vec<Value> = s
        .outbox_entries()
        .map(|(k, e)| {
            json!({
                "vm": k.to_string(),
                "columns": e.columns.names(),
                "since": e.first_enqueued,
                "state": if e.parked.is_some() { "Parked" } else { "Pending" },
                "message": e.parked,
            })
        })
        .collect();
    (StatusCode::OK, json!({"items": items}))
}

async fn outbox_action(state: &ApiState, ns: &str, name: &str, action: &str) -> Reply {
    let key = VmKey::new(ns, name);
    if let Err(problem) = key.validate() {
        return error(StatusCode::BAD_REQUEST, format!("{key}: {problem}"));
    }
    let store = state.store.clone();
    let (k, retry) = (key.clone(), action == "retry");
    let done = tokio::task::spawn_blocking(move || {
        with_store(&store, |s| {
            if retry {
                s.retry_parked(&k)
            } else {
                s.drop_outbox_entry(&k)
            }
        })
    })
    .await;
    match done {
        Ok(Ok(true)) => {
            if retry {
                state.enqueued.notify_one();
            }
            tracing::info!(vm = %key, action, "outbox entry changed by an operator");
            (
                StatusCode::OK,
                json!({"vm": key.to_string(), "done": action}),
            )
        }
        Ok(Ok(false)) => error(StatusCode::NOT_FOUND, format!("no outbox entry for {key}")),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
