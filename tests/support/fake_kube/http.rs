//! Request routing, list, get and error responses.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::Shared;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{Counters, Kind};
use super::watch;

pub type Body = BoxBody<Bytes, io::Error>;

/// The request log keeps the newest of at most this many entries.
const LOG_LIMIT: usize = 100_000;

/// One served request, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// Path and raw (still percent-encoded) query, e.g. `/api/v1/nodes?limit=2`.
    pub path_and_query: String,
}

pub fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(
            Full::new(body.into())
                .map_err(|e: Infallible| match e {})
                .boxed(),
        )
        .expect("response")
}

/// A `metav1.Status` failure, as the apiserver sends it.
pub fn status_json(
    code: u16,
    reason: &str,
    message: &str,
    details: Option<serde_json::Value>,
) -> Vec<u8> {
    let mut s = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        s["details"] = d;
    }
    serde_json::to_vec(&s).expect("serialize status")
}

pub fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    full(code, status_json(code.as_u16(), reason, message, None))
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = |c: u8| (c as char).to_digit(16);
                match (h(b[i + 1]), h(b[i + 2])) {
                    (Some(a), Some(c)) => {
                        out.push((a * 16 + c) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decoded query parameters (last one wins).
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        Query(
            q.unwrap_or_default()
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (pct_decode(k), pct_decode(v))
                })
                .collect(),
        )
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
}

enum Route {
    Collection(Kind, Option<String>),
    Object(Kind, String, String),
    Version,
}

fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let kv = |p: &str| Kind::parse(p).filter(|k| k.plural() == p && k.group() == "kubevirt.io");
    match segs.as_slice() {
        ["version"] => Some(Route::Version),
        ["api", "v1", "nodes"] => Some(Route::Collection(Kind::Node, None)),
        ["api", "v1", "nodes", name] => {
            Some(Route::Object(Kind::Node, String::new(), name.to_string()))
        }
        ["apis", "kubevirt.io", "v1", plural] => Some(Route::Collection(kv(plural)?, None)),
        ["apis", "kubevirt.io", "v1", "namespaces", ns, plural] => {
            Some(Route::Collection(kv(plural)?, Some(ns.to_string())))
        }
        ["apis", "kubevirt.io", "v1", "namespaces", ns, plural, name] => {
            Some(Route::Object(kv(plural)?, ns.to_string(), name.to_string()))
        }
        _ => None,
    }
}

pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    {
        let mut log = shared.log.lock().expect("log lock");
        if log.len() >= LOG_LIMIT {
            log.drain(..LOG_LIMIT / 2);
        }
        log.push(RequestRecord {
            method: req.method().to_string(),
            path_and_query: pq,
        });
    }
    let Some(r) = route(&path) else {
        return Ok(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("the server could not find the requested resource (path {path})"),
        ));
    };
    if req.method() != Method::GET {
        return Ok(status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!(
                "the server does not allow this method on the requested resource ({})",
                req.method()
            ),
        ));
    }
    let q = Query::parse(req.uri().query());
    Ok(match r {
        Route::Version => full(
            StatusCode::OK,
            r#"{"major":"1","minor":"33","gitVersion":"v1.33.0-fake","platform":"linux/amd64"}"#,
        ),
        Route::Object(kind, ns, name) => get_object(&shared, kind, &ns, &name),
        Route::Collection(kind, ns) => {
            let lsel = match LabelSelector::parse(q.get("labelSelector").unwrap_or_default()) {
                Ok(s) => s,
                Err(e) => return Ok(status(StatusCode::BAD_REQUEST, "BadRequest", &e)),
            };
            let fsel = match FieldSelector::parse(q.get("fieldSelector").unwrap_or_default()) {
                Ok(s) => s,
                Err(e) => return Ok(status(StatusCode::BAD_REQUEST, "BadRequest", &e)),
            };
            let filter = Filter {
                kind,
                ns,
                lsel,
                fsel,
            };
            if q.flag("watch") {
                watch::start(shared, filter, &q)
            } else {
                list(&shared, &filter, &q)
            }
        }
    })
}

/// What a list or watch selects.
#[derive(Debug, Clone)]
pub struct Filter {
    pub kind: Kind,
    pub ns: Option<String>,
    pub lsel: LabelSelector,
    pub fsel: FieldSelector,
}

impl Filter {
    pub fn matches(&self, s: &super::store::Snap) -> bool {
        self.ns.as_deref().is_none_or(|n| n == s.namespace)
            && self.fsel.matches(&s.namespace, &s.name)
            && self.lsel.matches(&s.labels)
    }
}

fn get_object(shared: &Shared, kind: Kind, ns: &str, name: &str) -> Response<Body> {
    Counters::bump(&shared.counters.gets);
    let st = shared.state.lock().expect("state lock");
    match st.objects.get(&(kind, ns.to_string(), name.to_string())) {
        Some(s) => full(StatusCode::OK, s.json.clone()),
        None => {
            let what = if kind.group().is_empty() {
                kind.plural().to_string()
            } else {
                format!("{}.{}", kind.plural(), kind.group())
            };
            let details = json!({"name": name, "group": kind.group(), "kind": kind.plural()});
            full(
                StatusCode::NOT_FOUND,
                status_json(
                    404,
                    "NotFound",
                    &format!("{what} \"{name}\" not found"),
                    Some(details),
                ),
            )
        }
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if s.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// A list page. The continue token carries the RV of the first page (reported on
/// every page, like the apiserver's snapshot RV) and the last key returned.
fn list(shared: &Shared, f: &Filter, q: &Query) -> Response<Body> {
    Counters::bump(&shared.counters.lists);
    let limit: usize = match q.get("limit").map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return status(StatusCode::BAD_REQUEST, "BadRequest", "invalid limit"),
    };
    let st = shared.state.lock().expect("state lock");
    let (list_rv, after) = match q.get("continue").filter(|c| !c.is_empty()) {
        None => (st.rv, None),
        Some(tok) => {
            let parsed = unhex(tok).and_then(|t| {
                let (rv, rest) = t.split_once('|')?;
                let (ns, name) = rest.split_once('|')?;
                Some((rv.parse::<u64>().ok()?, ns.to_string(), name.to_string()))
            });
            let Some((rv, ns, name)) = parsed else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "continue key is not valid",
                );
            };
            if rv < st.compacted {
                return status(
                    StatusCode::GONE,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                );
            }
            (rv, Some((ns, name)))
        }
    };
    let start = (f.kind, String::new(), String::new());
    let mut items: Vec<&Bytes> = Vec::new();
    let mut last: Option<(&str, &str)> = None;
    let mut more = false;
    for ((k, ns, name), snap) in st.objects.range(start..) {
        if *k != f.kind {
            break;
        }
        if let Some((ans, aname)) = &after {
            if (ns.as_str(), name.as_str()) <= (ans.as_str(), aname.as_str()) {
                continue;
            }
        }
        if !f.matches(snap) {
            continue;
        }
        if limit > 0 && items.len() == limit {
            more = true;
            break;
        }
        items.push(&snap.json);
        last = Some((ns, name));
    }
    let mut md = json!({"resourceVersion": list_rv.to_string()});
    if more {
        let (ns, name) = last.expect("a full page has a last item");
        md["continue"] = json!(hex(&format!("{list_rv}|{ns}|{name}")));
    }
    let mut body = Vec::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 200);
    body.extend_from_slice(
        format!(
            r#"{{"apiVersion":"{}","kind":"{}List","metadata":{},"items":["#,
            f.kind.api_version(),
            f.kind.name(),
            md
        )
        .as_bytes(),
    );
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(it);
    }
    body.extend_from_slice(b"]}");
    drop(st);
    full(StatusCode::OK, body)
}
