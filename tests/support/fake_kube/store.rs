//! Object store, the global resourceVersion counter, the bounded change history and
//! the registry of open watches.
//!
//! Objects are kept serialized (`Snap`): a list is a concatenation of stored bytes,
//! and history entries share them, so a long history costs little memory.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

/// The kinds the fake server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    VirtualMachine,
    VirtualMachineInstance,
    Node,
}

impl Kind {
    pub const ALL: [Kind; 3] = [
        Kind::VirtualMachine,
        Kind::VirtualMachineInstance,
        Kind::Node,
    ];

    /// Accepts the kind (`VirtualMachineInstance`), the plural
    /// (`virtualmachineinstances`) or the short name (`vmi`), case-insensitively.
    pub fn parse(s: &str) -> Option<Kind> {
        match s.to_ascii_lowercase().as_str() {
            "virtualmachine" | "virtualmachines" | "vm" | "vms" => Some(Kind::VirtualMachine),
            "virtualmachineinstance" | "virtualmachineinstances" | "vmi" | "vmis" => {
                Some(Kind::VirtualMachineInstance)
            }
            "node" | "nodes" => Some(Kind::Node),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::VirtualMachine => "VirtualMachine",
            Kind::VirtualMachineInstance => "VirtualMachineInstance",
            Kind::Node => "Node",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Kind::VirtualMachine => "virtualmachines",
            Kind::VirtualMachineInstance => "virtualmachineinstances",
            Kind::Node => "nodes",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Node => "v1",
            _ => "kubevirt.io/v1",
        }
    }

    pub fn group(self) -> &'static str {
        match self {
            Kind::Node => "",
            _ => "kubevirt.io",
        }
    }

    pub fn namespaced(self) -> bool {
        self != Kind::Node
    }
}

/// One stored object version, serialized once.
#[derive(Debug)]
pub struct Snap {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub json: Bytes,
}

impl Snap {
    pub fn from_value(v: &Value) -> Snap {
        let md = &v["metadata"];
        let labels = md["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        Snap {
            namespace: md["namespace"].as_str().unwrap_or_default().to_string(),
            name: md["name"].as_str().unwrap_or_default().to_string(),
            labels,
            json: Bytes::from(serde_json::to_vec(v).expect("serialize object")),
        }
    }

    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).expect("stored object is JSON")
    }
}

/// One change: `old`/`new` are the states before and after (None = absent).
/// `old_at_rv` is `old` with its resourceVersion set to `rv`: what a watch that loses
/// sight of the object (deletion or selector no longer matching) receives.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub kind: Kind,
    pub old: Option<Arc<Snap>>,
    pub new: Option<Arc<Snap>>,
    pub old_at_rv: Option<Bytes>,
}

/// What the store tells an open watch.
#[derive(Debug)]
pub enum WatchMsg {
    Change(Arc<Change>),
    /// Send ERROR 410 Expired, then end the stream.
    Expire,
    /// Abort the response body; `mid_line` sends half of an event line first.
    Cut {
        mid_line: bool,
    },
}

pub struct WatchReg {
    pub kind: Kind,
    pub tx: mpsc::UnboundedSender<WatchMsg>,
}

pub type Key = (Kind, String, String);

pub struct State {
    pub rv: u64,
    /// Watches from an RV below this are answered with 410 Expired.
    pub compacted: u64,
    pub objects: BTreeMap<Key, Arc<Snap>>,
    pub history: VecDeque<Arc<Change>>,
    pub history_limit: usize,
    pub watches: HashMap<u64, WatchReg>,
    pub next_watch_id: u64,
    pub uid_counter: u64,
}

impl State {
    pub fn new(base_rv: u64) -> State {
        State {
            rv: base_rv,
            compacted: base_rv,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit: 10_000,
            watches: HashMap::new(),
            next_watch_id: 1,
            uid_counter: 0,
        }
    }

    fn broadcast(&mut self, change: Change) {
        let change = Arc::new(change);
        self.watches.retain(|_, w| {
            w.kind != change.kind || w.tx.send(WatchMsg::Change(change.clone())).is_ok()
        });
        self.history.push_back(change);
        while self.history.len() > self.history_limit {
            let dropped = self.history.pop_front().expect("non-empty");
            self.compacted = self.compacted.max(dropped.rv);
        }
    }

    /// Create or replace. Returns the object's resourceVersion (unchanged for a no-op).
    pub fn apply(&mut self, mut obj: Value) -> Result<String, String> {
        let kind = obj["kind"]
            .as_str()
            .and_then(Kind::parse)
            .ok_or_else(|| format!("unsupported kind {}", obj["kind"]))?;
        let api_version = obj["apiVersion"].as_str().unwrap_or(kind.api_version());
        if api_version != kind.api_version() {
            return Err(format!(
                "{} must have apiVersion {}",
                kind.name(),
                kind.api_version()
            ));
        }
        obj["apiVersion"] = Value::from(kind.api_version());
        obj["kind"] = Value::from(kind.name());
        let md = obj
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or("object has no metadata")?;
        let name = md
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or("object has no metadata.name")?
            .to_string();
        let ns = if kind.namespaced() {
            let ns = md
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or("default")
                .to_string();
            md.insert("namespace".into(), Value::from(ns.clone()));
            ns
        } else {
            md.remove("namespace");
            String::new()
        };
        let key = (kind, ns, name);
        let old = self.objects.get(&key).cloned();
        if let Some(old) = &old {
            let prev = old.value();
            for f in ["uid", "creationTimestamp"] {
                if !md.contains_key(f) {
                    if let Some(v) = prev["metadata"].get(f) {
                        md.insert(f.into(), v.clone());
                    }
                }
            }
            // A no-op update keeps the resourceVersion and sends no event.
            md.insert(
                "resourceVersion".into(),
                prev["metadata"]["resourceVersion"].clone(),
            );
            if obj == prev {
                return Ok(prev["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string());
            }
        }
        let md = obj["metadata"].as_object_mut().expect("checked above");
        if !md.contains_key("uid") {
            self.uid_counter += 1;
            let n = self.uid_counter;
            let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            md.insert(
                "uid".into(),
                Value::from(format!(
                    "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                    (h >> 32) as u32,
                    (h >> 16) as u16,
                    (h >> 4) & 0xfff,
                    h & 0xfff,
                    n
                )),
            );
        }
        if !md.contains_key("creationTimestamp") {
            let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
            md.insert("creationTimestamp".into(), Value::from(now.to_string()));
        }
        self.rv += 1;
        let rv = self.rv;
        md.insert("resourceVersion".into(), Value::from(rv.to_string()));
        let new = Arc::new(Snap::from_value(&obj));
        let old_at_rv = old
            .as_ref()
            .filter(|o| o.labels != new.labels)
            .map(|o| with_rv(o, rv));
        self.objects.insert(key, new.clone());
        self.broadcast(Change {
            rv,
            kind,
            old,
            new: Some(new),
            old_at_rv,
        });
        Ok(rv.to_string())
    }

    pub fn delete(&mut self, kind: Kind, ns: &str, name: &str) -> bool {
        let ns = if kind.namespaced() { ns } else { "" };
        let Some(old) = self
            .objects
            .remove(&(kind, ns.to_string(), name.to_string()))
        else {
            return false;
        };
        self.rv += 1;
        let rv = self.rv;
        let old_at_rv = Some(with_rv(&old, rv));
        self.broadcast(Change {
            rv,
            kind,
            old: Some(old),
            new: None,
            old_at_rv,
        });
        true
    }

    /// Every RV issued so far becomes too old; open watches get 410.
    pub fn expire(&mut self) {
        self.rv += 1;
        self.compacted = self.rv;
        self.history.clear();
        for w in self.watches.values() {
            let _ = w.tx.send(WatchMsg::Expire);
        }
        self.watches.clear();
    }

    pub fn cut(&mut self, mid_line: bool) {
        for w in self.watches.values() {
            let _ = w.tx.send(WatchMsg::Cut { mid_line });
        }
        if !mid_line {
            self.watches.clear();
        }
    }
}

/// `snap` re-serialized with `metadata.resourceVersion = rv`.
pub fn with_rv(snap: &Snap, rv: u64) -> Bytes {
    let mut v = snap.value();
    v["metadata"]["resourceVersion"] = Value::from(rv.to_string());
    Bytes::from(serde_json::to_vec(&v).expect("serialize"))
}

/// Counters shown to tests.
#[derive(Debug, Default)]
pub struct Counters {
    pub lists: AtomicU64,
    pub watches: AtomicU64,
    pub gets: AtomicU64,
}

impl Counters {
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}
