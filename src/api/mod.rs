//! The local socket API (docs/ARCHITECTURE.md, "Socket API and CLI"): HTTP/1.1 + JSON on
//! a unix socket. Reads for anyone who can open the socket (mode 0660, group `virtsync`);
//! changes only for root or the configured admin group. Every bad request gets a JSON
//! error with a message. The bodies are the types of [`types`], which the CLI reads back.

pub mod peer;
pub mod server;
pub mod types;

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Notify, watch};

use crate::config::Role;
use crate::health::Health;
use crate::model::{Timestamp, VmKey};
use crate::sink::postgres::ResyncStatus;
use crate::state::{Snapshot, StateHandle};
use types::{
    Capabilities, ClusterRoleState, ErrorBody, OutboxAction, OutboxActionDone, OutboxItem,
    OutboxList, OutboxState, OutboxSummary, Resync, ResyncRequested, Status, Vm, VmList, VmSync,
    VmsQuery,
};

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
    pub state: StateHandle,
    pub health: Health,
    pub holder: watch::Receiver<bool>,
    /// `None` without PostgreSQL (nothing to compare with).
    pub resync: Option<(Arc<Notify>, watch::Receiver<ResyncStatus>)>,
    /// `None` without libvirt.
    pub capabilities: Option<CapabilityRefresh>,
}

/// An answer: status and JSON body (a body of [`types`] in its wire form).
pub type Reply = (StatusCode, Value);

/// An answer with one of the bodies of [`types`]; a body that cannot be encoded is a 500
/// saying why.
pub fn reply<T: Serialize>(status: StatusCode, body: &T) -> Reply {
    match types::to_value(body) {
        Ok(v) => (status, v),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the answer: {e}"),
        ),
    }
}

/// An [`ErrorBody`] with `message`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    let body = ErrorBody::new(status.as_u16(), message);
    match types::to_value(&body) {
        Ok(v) => (status, v),
        // Not reached (a number and a string); the same shape, built by hand.
        Err(e) => {
            let detail = serde_json::Map::from_iter([
                ("code".to_owned(), Value::from(body.error.code)),
                (
                    "message".to_owned(),
                    Value::from(format!("{} (encoding it: {e})", body.error.message)),
                ),
            ]);
            let body = serde_json::Map::from_iter([("error".to_owned(), Value::Object(detail))]);
            (status, Value::Object(body))
        }
    }
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

/// What a request asks for, once its method, path, query and body are understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Status,
    ListVms(VmsQuery),
    GetVm(VmKey),
    Capabilities,
    RefreshCapabilities,
    Resync,
    Outbox,
    OutboxAction { key: VmKey, action: OutboxAction },
}

impl Route {
    /// Calls that change something: root or the admin group only.
    pub fn changes_things(&self) -> bool {
        matches!(
            self,
            Route::RefreshCapabilities | Route::Resync | Route::OutboxAction { .. }
        )
    }
}

/// Pure: understands a request or says, as the reply, what is wrong with it.
pub fn route(
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<Route, Reply> {
    let get = method == Method::GET;
    let post = method == Method::POST;
    if post && !body.is_empty() && serde_json::from_slice::<Value>(body).is_err() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "malformed body: expected JSON (or no body)",
        ));
    }
    let query = parse_query(query).map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    let only = |ok: bool, methods: &str| -> Result<(), Reply> {
        if ok {
            Ok(())
        } else {
            Err(error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} {path}: only {methods} here"),
            ))
        }
    };
    let no_query = |q: &[(String, String)]| -> Result<(), Reply> {
        match q.first() {
            Some((k, _)) => Err(error(
                StatusCode::BAD_REQUEST,
                format!("unknown query parameter {k:?}"),
            )),
            None => Ok(()),
        }
    };
    let key = |ns: &str, name: &str| -> Result<VmKey, Reply> {
        let key = VmKey::new(ns, name);
        key.validate()
            .map_err(|problem| error(StatusCode::BAD_REQUEST, format!("{key}: {problem}")))?;
        Ok(key)
    };
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match segments.as_slice() {
        ["", "v1", "status"] => {
            only(get, "GET")?;
            no_query(&query)?;
            Ok(Route::Status)
        }
        ["", "v1", "vms"] => {
            only(get, "GET")?;
            let (mut namespace, mut node) = (None, None);
            for (k, v) in query {
                match k.as_str() {
                    "namespace" => namespace = Some(v),
                    "node" => node = Some(v),
                    other => {
                        return Err(error(
                            StatusCode::BAD_REQUEST,
                            format!("unknown query parameter {other:?} (namespace, node)"),
                        ));
                    }
                }
            }
            Ok(Route::ListVms(VmsQuery { namespace, node }))
        }
        ["", "v1", "vms", ns, name] => {
            only(get, "GET")?;
            no_query(&query)?;
            Ok(Route::GetVm(key(ns, name)?))
        }
        ["", "v1", "host", "capabilities"] => {
            only(get, "GET")?;
            no_query(&query)?;
            Ok(Route::Capabilities)
        }
        ["", "v1", "host", "capabilities", "refresh"] => {
            only(post, "POST")?;
            no_query(&query)?;
            Ok(Route::RefreshCapabilities)
        }
        ["", "v1", "resync"] => {
            only(post, "POST")?;
            no_query(&query)?;
            Ok(Route::Resync)
        }
        ["", "v1", "outbox"] => {
            only(get, "GET")?;
            no_query(&query)?;
            Ok(Route::Outbox)
        }
        ["", "v1", "outbox", ns, name, action @ ("retry" | "drop")] => {
            only(post, "POST")?;
            no_query(&query)?;
            Ok(Route::OutboxAction {
                key: key(ns, name)?,
                action: if *action == "retry" {
                    OutboxAction::Retry
                } else {
                    OutboxAction::Drop
                },
            })
        }
        _ => Err(error(
            StatusCode::NOT_FOUND,
            format!(
                "no such endpoint {path}; see GET /v1/status, /v1/vms, /v1/host/capabilities, /v1/outbox"
            ),
        )),
    }
}

/// Answers one request.
pub async fn handle(state: &ApiState, call: Call<'_>) -> Reply {
    let route = match route(call.method, call.path, call.query, call.body) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    if route.changes_things() {
        if let Some(refusal) = deny(&call) {
            return refusal;
        }
    }
    match route {
        Route::Status => status(state),
        Route::ListVms(query) => list_vms(state, &query),
        Route::GetVm(key) => get_vm(state, &key),
        Route::Capabilities => capabilities(state),
        Route::RefreshCapabilities => refresh_capabilities(state).await,
        Route::Resync => resync(state),
        Route::Outbox => outbox(state),
        Route::OutboxAction { key, action } => outbox_action(state, key, action).await,
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

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn status(state: &ApiState) -> Reply {
    let now = Timestamp::now();
    let s = state.state.snapshot();
    let with_runtime = s
        .records()
        .filter(|(_, r)| r.record.runtime_details.is_some())
        .count();
    let (records, outbox) = (s.records.len(), s.stats);
    let holder = *state.holder.borrow();
    let cluster_role = match (state.role, holder) {
        (Role::Node, _) => "not taken (role = node)",
        (_, true) => "held by this daemon",
        (_, false) => "standby (another daemon holds it)",
    };
    let resync = state
        .resync
        .as_ref()
        .map(|(_, rx)| Resync::from(&*rx.borrow()));
    reply(
        StatusCode::OK,
        &Status {
            node: state.node.clone(),
            role: state.role.into(),
            version: state.version.to_owned(),
            started_at: state.started,
            ready: state.health.ready().is_ok(),
            conditions: state.health.conditions(),
            cluster_role: ClusterRoleState {
                held: holder,
                state: cluster_role.to_owned(),
            },
            records: count(records),
            records_with_runtime_details: count(with_runtime),
            outbox: OutboxSummary {
                pending: count(outbox.pending),
                parked: count(outbox.parked),
                oldest_age_seconds: outbox
                    .oldest_enqueued
                    .map(|t| (now.unix_millis - t.unix_millis).max(0) as f64 / 1000.0),
            },
            resync,
        },
    )
}

/// A VM as the API shows it: the record (the cloud API's VM record shape) and whether it
/// is in PostgreSQL.
fn vm(s: &Snapshot, key: &VmKey) -> Option<Vm> {
    let stored = s.record(key)?;
    let sync = match s.outbox_entry(key) {
        _ if !s.is_managed(key) => VmSync::Unmanaged,
        None => VmSync::Synced,
        Some(e) => match &e.parked {
            Some(reason) => VmSync::Parked {
                message: reason.clone(),
            },
            None => VmSync::Pending {
                since: e.first_enqueued,
            },
        },
    };
    Some(Vm {
        record: stored.full_record(),
        sync,
    })
}

fn list_vms(state: &ApiState, query: &VmsQuery) -> Reply {
    let (namespace, node) = (query.namespace.as_deref(), query.node.as_deref());
    let s = state.state.snapshot();
    let mut keys: Vec<&VmKey> = s
        .records()
        .filter(|(k, r)| {
            namespace.is_none_or(|ns| &*k.namespace == ns)
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
    let items: Vec<Vm> = keys.iter().filter_map(|k| vm(&s, k)).collect();
    reply(StatusCode::OK, &VmList { items })
}

fn get_vm(state: &ApiState, key: &VmKey) -> Reply {
    match vm(&state.state.snapshot(), key) {
        Some(v) => reply(StatusCode::OK, &v),
        None => error(StatusCode::NOT_FOUND, format!("no VM {key} known here")),
    }
}

fn capabilities(state: &ApiState) -> Reply {
    match state.state.snapshot().capabilities.as_deref() {
        Some(c) => reply(
            StatusCode::OK,
            &Capabilities {
                capabilities: serde_json::from_str(&c.canonical).unwrap_or(Value::Null),
                hostname: c.hostname.clone(),
                fingerprint: c.fingerprint.clone(),
                discovered_at: c.discovered_at,
                available: c.available,
            },
        ),
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
    let current = Resync::from(&*status.borrow());
    trigger.notify_one();
    reply(
        StatusCode::ACCEPTED,
        &ResyncRequested {
            requested: true,
            passes_before: current.passes,
            resync: current,
        },
    )
}

fn outbox(state: &ApiState) -> Reply {
    let s = state.state.snapshot();
    let items: Vec<OutboxItem> = s
        .outbox_entries()
        .into_iter()
        .map(|(k, e)| OutboxItem {
            vm: k.to_string(),
            columns: e.columns.names().into_iter().map(str::to_owned).collect(),
            since: e.first_enqueued,
            state: if e.parked.is_some() {
                OutboxState::Parked
            } else {
                OutboxState::Pending
            },
            message: e.parked.clone(),
        })
        .collect();
    reply(StatusCode::OK, &OutboxList { items })
}

async fn outbox_action(state: &ApiState, key: VmKey, action: OutboxAction) -> Reply {
    let retry = action == OutboxAction::Retry;
    let done = match retry {
        true => state.state.retry_parked(key.clone()).await,
        false => state.state.drop_outbox_entry(key.clone()).await,
    };
    match done {
        Ok(true) => {
            tracing::info!(vm = %key, action = action.as_str(), "outbox entry changed by an operator");
            reply(
                StatusCode::OK,
                &OutboxActionDone {
                    vm: key.to_string(),
                    done: action,
                },
            )
        }
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no outbox entry for {key}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: &str, path: &str, query: Option<&str>, body: &str) -> Result<Route, u16> {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        route(&method, path, query, body.as_bytes()).map_err(|(status, _)| status.as_u16())
    }

    #[test]
    fn requests_map_to_routes_or_to_the_right_error() {
        let key = VmKey::new("ns", "vm");
        assert_eq!(r("GET", "/v1/status", None, ""), Ok(Route::Status));
        assert_eq!(r("GET", "/v1/status/", None, ""), Ok(Route::Status));
        assert_eq!(
            r("GET", "/v1/vms", Some("namespace=a%20b&node=n1"), ""),
            Ok(Route::ListVms(VmsQuery {
                namespace: Some("a b".into()),
                node: Some("n1".into())
            }))
        );
        assert_eq!(
            r("GET", "/v1/vms/ns/vm", None, ""),
            Ok(Route::GetVm(key.clone()))
        );
        assert_eq!(
            r("POST", "/v1/outbox/ns/vm/retry", None, "{}"),
            Ok(Route::OutboxAction {
                key,
                action: OutboxAction::Retry
            })
        );
        assert!(r("POST", "/v1/resync", None, "").unwrap().changes_things());
        assert!(!r("GET", "/v1/outbox", None, "").unwrap().changes_things());
        for (method, path, query, body, want) in [
            ("GET", "/v2", None, "", 404),
            ("GET", "/v1/vms/a/b/c", None, "", 404),
            ("PUT", "/v1/status", None, "", 405),
            ("GET", "/v1/resync", None, "", 405),
            ("POST", "/v1/resync", None, "{", 400),
            ("GET", "/v1/vms", Some("x=1"), "", 400),
            ("GET", "/v1/vms", Some("namespace=%G0"), "", 400),
            ("GET", "/v1/vms", Some("namespace=%ff"), "", 400),
            ("GET", "/v1/outbox", Some("a"), "", 400),
            ("GET", "/v1/vms//x", None, "", 400),
        ] {
            assert_eq!(
                r(method, path, query, body),
                Err(want),
                "{method} {path} {query:?}"
            );
        }
    }
}
