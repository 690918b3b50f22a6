//! The daemon's own work per VMI event, in this process on one thread: what the CPU
//! target (docs/ARCHITECTURE.md, "Performance targets") names (decode + derive + diff +
//! state write), without the daemon around it (HTTP, tasks and channels, PostgreSQL,
//! metrics). Set against the same floor.

use std::collections::HashMap;
use std::time::Duration;

use kube::runtime::watcher::Event;
use serde_json::{Value, json};
use virtsync::columns::ColumnSet;
use virtsync::derive::decode_vmi_slice;
use virtsync::model::{Timestamp, VmKey};
use virtsync::source::kube::{Action, Kind, KubeObject, Selector, Tracker, TrackerOptions};
use virtsync::state::{Outcome, StateEvent, Store, StoreOptions};

/// Seconds per event: each sample decoded as the watcher does (`KubeObject`), derived and
/// compared by the tracker, the changed records applied to the state (`group` events at
/// a time, as the owner takes them) and their deltas acknowledged as the flusher does
/// once PostgreSQL committed them, the state file written every `per_write` events (the
/// daemon writes it once per `cache.sync_interval`: its rate × that interval) and at the
/// end of each pass. The samples alternate between two versions (another IP), so every
/// event is a real change. Best of 3 passes, after one warm-up.
///
/// `pace`: `None` runs the events back to back (a hot loop: code and data stay in the
/// caches). `Some(gap)` hands them over one per `gap`, as they reach the daemon at its
/// rate, so each starts with whatever the sleep and the other processes on the machine
/// left in the caches; then only the first `PACED` samples are used and the thread's CPU
/// time is counted, not the sleeps.
pub fn cost(
    samples: &[Vec<u8>],
    node: &str,
    group: usize,
    per_write: usize,
    pace: Option<Duration>,
) -> f64 {
    let samples = match pace {
        Some(_) => &samples[..samples.len().min(PACED)],
        None => samples,
    };
    let variants = [
        samples.to_vec(),
        samples.iter().map(|s| other_ip(s)).collect(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        path: dir.path().join("pipeline.redb"),
        cache_size: 4 << 20,
        sync_interval: Duration::from_secs(1),
        writable: ColumnSet::all(),
    };
    let now = Timestamp::now();
    let (mut store, _) = Store::open(options, now).unwrap();
    let mut tracker = Tracker::new(
        TrackerOptions {
            node: node.to_owned(),
            node_role: true,
            selector: Selector::default(),
        },
        HashMap::new(),
    );
    // Every VM has a row, so changes are queued for PostgreSQL as in the daemon.
    let mut managed = HashMap::new();
    for s in samples {
        let obj: KubeObject = serde_json::from_slice(s).unwrap();
        let key = VmKey::new(obj.metadata.namespace.unwrap(), obj.metadata.name.unwrap());
        managed.insert(key, "urn:bench".to_owned());
    }
    store.set_managed(managed, now).unwrap();
    let mut listed = tracker.event(Kind::Vmi, None, Event::Init);
    listed.extend(tracker.event(Kind::Vmi, None, Event::InitDone));
    store.apply(&emitted(listed), now).unwrap();
    store.sync().unwrap();

    let mut best = f64::INFINITY;
    for pass in 0..4 {
        let start = thread_cpu();
        let mut unwritten = 0;
        for chunk in variants[pass % 2].chunks(group) {
            let mut events = Vec::with_capacity(chunk.len());
            for s in chunk {
                if let Some(gap) = pace {
                    std::thread::sleep(gap);
                }
                let obj: KubeObject = serde_json::from_slice(s).unwrap();
                events.extend(emitted(tracker.event(Kind::Vmi, None, Event::Apply(obj))));
            }
            store.apply(&events, now).unwrap();
            let outcomes: Vec<_> = store
                .next_batch(group)
                .into_iter()
                .map(|d| (d.key, d.seq, Outcome::Applied))
                .collect();
            store.ack(&outcomes).unwrap();
            unwritten += chunk.len();
            if unwritten >= per_write {
                store.sync().unwrap();
                unwritten = 0;
            }
        }
        store.sync().unwrap();
        let per_event = (thread_cpu() - start).as_secs_f64() / samples.len() as f64;
        if pass > 0 {
            best = best.min(per_event);
        }
    }
    assert_eq!(
        tracker.stats.noop, 0,
        "every pipeline event must be a real change"
    );
    best
}

/// Events per pass when paced (at 500/s: 2 s a pass).
const PACED: usize = 1_000;

/// At the daemon's pace (one event per `gap`), in thread CPU time per event: the wake-up
/// alone (sleeping and being woken), and the floor's decode on top of it.
pub fn paced_floor(samples: &[Vec<u8>], gap: Duration) -> (f64, f64) {
    let samples = &samples[..samples.len().min(PACED)];
    let per_event = |decode: bool| {
        let start = thread_cpu();
        for s in samples {
            std::thread::sleep(gap);
            if decode {
                std::hint::black_box(decode_vmi_slice(std::hint::black_box(s)).unwrap());
            }
        }
        (thread_cpu() - start).as_secs_f64() / samples.len() as f64
    };
    let wake = per_event(false);
    (wake, per_event(true) - wake)
}

/// This thread's CPU time (all of it when nothing sleeps: the hot loop's wall time).
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn emitted(actions: Vec<Action>) -> Vec<StateEvent> {
    actions
        .into_iter()
        .filter_map(Action::into_state_event)
        .collect()
}

/// The sample with another primary IP.
fn other_ip(sample: &[u8]) -> Vec<u8> {
    let mut vmi: Value = serde_json::from_slice(sample).unwrap();
    let ifc = &mut vmi["status"]["interfaces"][0];
    let ip = format!("{}x", ifc["ipAddress"].as_str().unwrap_or_default());
    ifc["ipAddress"] = json!(ip);
    ifc["ipAddresses"][0] = json!(ip);
    serde_json::to_vec(&vmi).unwrap()
}
