//! The fake API server, driven by the real kube-rs client and watcher: what the daemon
//! will see from it must be what it would see from a real apiserver.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Config, ResourceExt};
use serde_json::{Value, json};
use support::fake_kube::FakeApiServer;

type Watch = BoxStream<'static, Result<Event<DynamicObject>, watcher::Error>>;

const STEP: Duration = Duration::from_secs(5);
const NODE: &str = "kubevirt.io/nodeName";

fn fixtures() -> PathBuf {
    support::fixtures::existing("kubevirt")
}

fn vmi_resource() -> ApiResource {
    ApiResource {
        group: "kubevirt.io".into(),
        version: "v1".into(),
        api_version: "kubevirt.io/v1".into(),
        kind: "VirtualMachineInstance".into(),
        plural: "virtualmachineinstances".into(),
    }
}

fn client(s: &FakeApiServer) -> Client {
    Client::try_from(Config::new(s.url().parse().expect("url"))).expect("client")
}

fn vmis(s: &FakeApiServer) -> Api<DynamicObject> {
    Api::all_with(client(s), &vmi_resource())
}

fn nodes() -> Vec<String> {
    vec!["node-a".into(), "node-b".into()]
}

/// Fixtures plus 6 synthetic VMs (3 on node-a, 3 on node-b).
async fn server() -> FakeApiServer {
    let s = FakeApiServer::start().await;
    let rep = s.load_dir(fixtures()).expect("load fixtures");
    assert_eq!(rep.applied, 4, "{rep:?}");
    assert_eq!(
        rep.skipped.len(),
        1,
        "the migration object is skipped: {rep:?}"
    );
    s.load_synthetic(6, &nodes(), 7);
    s
}

fn watch(s: &FakeApiServer, labels: &str, page: u32) -> Watch {
    let cfg = watcher::Config::default().labels(labels).page_size(page);
    watcher::watcher(vmis(s), cfg).boxed()
}

fn show(e: &Event<DynamicObject>) -> String {
    match e {
        Event::Apply(o) | Event::Delete(o) | Event::InitApply(o) => {
            format!("{e}@{}", o.resource_version().unwrap_or_default())
        }
        _ => e.to_string(),
    }
}

/// Events (errors skipped and counted) until one satisfies `stop`.
async fn until(
    w: &mut Watch,
    mut stop: impl FnMut(&Event<DynamicObject>) -> bool,
) -> (Vec<Event<DynamicObject>>, usize) {
    let mut seen = Vec::new();
    let mut errors = 0;
    loop {
        let next = tokio::time::timeout(STEP, w.next()).await;
        match next {
            Err(_) => panic!(
                "no event in {STEP:?}; so far {:?}",
                seen.iter().map(show).collect::<Vec<_>>()
            ),
            Ok(None) => panic!("watcher ended"),
            Ok(Some(Err(_))) => errors += 1,
            Ok(Some(Ok(e))) => {
                let done = stop(&e);
                seen.push(e);
                if done {
                    return (seen, errors);
                }
            }
        }
    }
}

async fn initial(w: &mut Watch) -> Vec<String> {
    let (evs, errors) = until(w, |e| matches!(e, Event::InitDone)).await;
    assert_eq!(errors, 0);
    assert!(
        matches!(evs[0], Event::Init),
        "{:?}",
        evs.iter().map(show).collect::<Vec<_>>()
    );
    evs.iter()
        .filter_map(|e| match e {
            Event::InitApply(o) => Some(o.name_any()),
            _ => None,
        })
        .collect()
}

/// Nothing more within `d` (the watcher may only swallow bookmarks).
async fn quiet(w: &mut Watch, d: Duration) {
    if let Ok(Some(e)) = tokio::time::timeout(d, w.next()).await {
        panic!("unexpected {:?}", e.map(|e| show(&e)));
    }
}

fn vmi(name: &str, node: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": "test", "labels": {NODE: node}},
        "status": {"phase": "Running", "nodeName": node,
            "interfaces": [{"name": "default", "ipAddress": ip, "ipAddresses": [ip]}]},
    })
}

fn label(o: &DynamicObject) -> &str {
    o.labels().get(NODE).map(String::as_str).unwrap_or_default()
}

#[tokio::test]
async fn initial_list_pages_through_everything_that_matches() {
    let s = server().await;
    let mut all = watch(&s, "", 2);
    let mut names = initial(&mut all).await;
    names.sort();
    assert_eq!(names.len(), 8, "2 fixture VMIs + 6 synthetic: {names:?}");
    assert!(names.contains(&"centos7-gray-owl-35".to_string()));

    let mut a = watch(&s, &format!("{NODE}=node-a"), 2);
    let names = initial(&mut a).await;
    assert_eq!(names, ["vm-00000", "vm-00002", "vm-00004"]);
    let log = s.requests();
    let pages: Vec<_> = log
        .iter()
        .filter(|r| r.path_and_query.contains("node-a") && !r.path_and_query.contains("watch="))
        .collect();
    assert_eq!(pages.len(), 2, "3 objects in pages of 2: {pages:?}");
    assert!(pages[0].path_and_query.contains("limit=2"));
    assert!(pages[1].path_and_query.contains("continue="));

    // Api::list paging by hand: the last page has no continue token, and each page
    // reports a resourceVersion.
    let api = vmis(&s);
    let mut token: Option<String> = None;
    let mut got = Vec::new();
    loop {
        let mut lp = ListParams::default().limit(3);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await.expect("list");
        assert!(
            page.metadata
                .resource_version
                .as_deref()
                .is_some_and(|r| !r.is_empty())
        );
        got.extend(page.items.iter().map(|o| o.name_any()));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(got.len(), 8);
    let bad = api.list(&ListParams::default().continue_token("zz")).await;
    assert!(
        matches!(bad, Err(kube::Error::Api(ref st)) if st.code == 400),
        "{bad:?}"
    );
}

#[tokio::test]
async fn add_modify_and_move_to_another_node() {
    let s = server().await;
    let mut a = watch(&s, &format!("{NODE}=node-a"), 2);
    let mut b = watch(&s, &format!("{NODE}=node-b"), 500);
    assert_eq!(initial(&mut a).await.len(), 3);
    assert_eq!(initial(&mut b).await.len(), 3);

    let rv1 = s.apply(vmi("mover", "node-a", "10.0.0.1"));
    let (evs, _) = until(&mut a, |_| true).await;
    match &evs[0] {
        Event::Apply(o) => {
            assert_eq!(o.name_any(), "mover");
            assert_eq!(o.resource_version().as_deref(), Some(rv1.as_str()));
            assert!(o.uid().is_some() && o.creation_timestamp().is_some());
        }
        e => panic!("expected Apply, got {}", show(e)),
    }

    let rv2 = s.apply(vmi("mover", "node-a", "10.0.0.2"));
    assert!(rv2.parse::<u64>().unwrap() > rv1.parse::<u64>().unwrap());
    let (evs, _) = until(&mut a, |_| true).await;
    let Event::Apply(o) = &evs[0] else {
        panic!("expected Apply, got {}", show(&evs[0]))
    };
    assert_eq!(o.data["status"]["interfaces"][0]["ipAddress"], "10.0.0.2");
    assert_eq!(o.resource_version().as_deref(), Some(rv2.as_str()));
    // Replacing with identical content is a no-op: same RV, no event.
    assert_eq!(s.apply(vmi("mover", "node-a", "10.0.0.2")), rv2);

    // Migration: the label moves to node-b. The node-a watch loses sight of it and
    // gets DELETED carrying the previous content (still node-a) with the new RV.
    let rv3 = s.apply(vmi("mover", "node-b", "10.0.0.2"));
    let (evs, _) = until(&mut a, |_| true).await;
    let Event::Delete(o) = &evs[0] else {
        panic!("expected Delete, got {}", show(&evs[0]))
    };
    assert_eq!(label(o), "node-a");
    assert_eq!(o.data["status"]["nodeName"], "node-a");
    assert_eq!(o.resource_version().as_deref(), Some(rv3.as_str()));
    let (evs, _) = until(&mut b, |_| true).await;
    let Event::Apply(o) = &evs[0] else {
        panic!("expected Apply, got {}", show(&evs[0]))
    };
    assert_eq!((o.name_any().as_str(), label(o)), ("mover", "node-b"));
    assert_eq!(o.resource_version().as_deref(), Some(rv3.as_str()));
    // The GET that tells "moved" from "gone".
    let got = Api::<DynamicObject>::namespaced_with(client(&s), "test", &vmi_resource())
        .get("mover")
        .await
        .expect("get");
    assert_eq!(label(&got), "node-b");

    assert!(s.delete("VirtualMachineInstance", "test", "mover"));
    assert!(!s.delete("VirtualMachineInstance", "test", "mover"));
    let (evs, _) = until(&mut b, |_| true).await;
    let Event::Delete(o) = &evs[0] else {
        panic!("expected Delete, got {}", show(&evs[0]))
    };
    assert_eq!(label(o), "node-b");
    assert_eq!(o.resource_version(), Some(s.resource_version().to_string()));
    quiet(&mut a, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn expired_watch_relists() {
    let s = server().await;
    let mut a = watch(&s, &format!("{NODE}=node-a"), 2);
    initial(&mut a).await;
    let lists = s.lists_served();
    s.expire_watches();
    let (evs, errors) = until(&mut a, |e| matches!(e, Event::InitDone)).await;
    assert_eq!(errors, 1, "the 410 surfaces as one watcher error");
    assert!(matches!(evs[0], Event::Init));
    assert_eq!(evs.len(), 5, "Init, 3 InitApply, InitDone");
    assert_eq!(s.lists_served(), lists + 2, "relisted in pages of 2");
    s.apply(vmi("after", "node-a", "10.0.0.9"));
    let (evs, _) = until(&mut a, |_| true).await;
    assert!(matches!(&evs[0], Event::Apply(o) if o.name_any() == "after"));
}

#[tokio::test]
async fn cut_connections_resume_without_losing_events() {
    let s = server().await;
    let mut a = watch(&s, &format!("{NODE}=node-a"), 2);
    initial(&mut a).await;
    let (lists, watches) = (s.lists_served(), s.watches_opened());

    s.cut_connections();
    for i in 1..=3 {
        s.apply(vmi("c", "node-a", &format!("10.0.1.{i}")));
    }
    let (evs, errs) = until(&mut a, |e| matches!(e, Event::Apply(o) if o.data["status"]["interfaces"][0]["ipAddress"] == "10.0.1.3")).await;
    assert_eq!(
        errs, 0,
        "kube 5 takes a truncated chunked body as a resumable end"
    );
    let ips: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            Event::Apply(o) => Some(o.data["status"]["interfaces"][0]["ipAddress"].clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        ips,
        ["10.0.1.1", "10.0.1.2", "10.0.1.3"],
        "{:?}",
        evs.iter().map(show).collect::<Vec<_>>()
    );
    assert!(s.watches_opened() > watches, "resumed with a new watch");

    // Cut in the middle of an event line: the half line is dropped, the event comes
    // again on the resumed watch, exactly once.
    let watches = s.watches_opened();
    s.cut_connections_mid_event();
    let rv = s.apply(vmi("c", "node-a", "10.0.1.4"));
    let (evs, errs) = until(&mut a, |_| true).await;
    assert_eq!(errs, 0, "the half line is dropped silently");
    assert!(
        matches!(&evs[0], Event::Apply(o) if o.resource_version() == Some(rv.clone())),
        "{}",
        show(&evs[0])
    );
    assert!(s.watches_opened() > watches);
    quiet(&mut a, Duration::from_millis(300)).await;
    assert_eq!(s.lists_served(), lists, "resuming never relists");
}

#[tokio::test]
async fn restart_with_new_history_forces_a_relist() {
    let s = server().await;
    let mut a = watch(&s, &format!("{NODE}=node-a"), 500);
    initial(&mut a).await;
    let lists = s.lists_served();
    s.restart_with_new_history();
    s.apply(vmi("r", "node-a", "10.0.2.1"));
    let (evs, _) = until(&mut a, |e| matches!(e, Event::InitDone)).await;
    assert_eq!(
        evs.len(),
        6,
        "Init, 4 InitApply, InitDone: {:?}",
        evs.iter().map(show).collect::<Vec<_>>()
    );
    assert_eq!(s.lists_served(), lists + 1);
}

#[tokio::test]
async fn rv_reset_gives_too_large_resource_version() {
    let s = server().await;
    let old = s.resource_version();
    s.restart_with_rv_reset(10);
    let api = vmis(&s);
    let mut w = api
        .watch(&WatchParams::default(), &old.to_string())
        .await
        .expect("watch")
        .boxed();
    match tokio::time::timeout(STEP, w.try_next())
        .await
        .expect("in time")
    {
        Ok(Some(WatchEvent::Error(st))) => {
            assert_eq!((st.code, st.reason.as_str()), (504, "Timeout"))
        }
        other => panic!("expected a 504 error event, got {other:?}"),
    }
    let list = api.list(&ListParams::default()).await.expect("list");
    assert!(
        list.metadata
            .resource_version
            .unwrap()
            .parse::<u64>()
            .unwrap()
            < old
    );
}

#[tokio::test]
async fn get_object_node_and_not_found() {
    let s = server().await;
    let ns_api =
        Api::<DynamicObject>::namespaced_with(client(&s), "openshift-cnv", &vmi_resource());
    let o = ns_api.get("centos7-gray-owl-35").await.expect("get");
    assert_eq!(o.data["status"]["nodeName"], "sno-0-0");
    assert_ne!(
        o.resource_version().as_deref(),
        Some("11848215"),
        "RV is the server's"
    );
    match ns_api.get("nope").await {
        Err(kube::Error::Api(st)) => assert_eq!((st.code, st.reason.as_str()), (404, "NotFound")),
        other => panic!("expected 404, got {other:?}"),
    }
    let nodes_api = Api::<Node>::all(client(&s));
    let n = nodes_api.get("node-a").await.expect("node");
    assert_eq!(n.metadata.name.as_deref(), Some("node-a"));
    assert!(n.metadata.resource_version.is_some());
    assert!(matches!(nodes_api.get("node-z").await, Err(kube::Error::Api(st)) if st.code == 404));
    assert_eq!(
        nodes_api
            .list(&ListParams::default())
            .await
            .expect("nodes")
            .items
            .len(),
        2
    );
    assert_eq!(s.ensure_nodes_for_vmis(), 2, "sno-0-0 and nodeNameValue");
    let mut nw = watcher::watcher(nodes_api, watcher::Config::default()).boxed();
    let first = tokio::time::timeout(STEP, nw.try_next())
        .await
        .expect("in time")
        .expect("ok");
    assert!(matches!(first, Some(Event::Init)));
    let mut names = Vec::new();
    while let Some(Event::InitApply(n)) = nw.try_next().await.expect("ok") {
        names.push(n.name_any());
    }
    assert_eq!(names, ["node-a", "node-b", "nodeNameValue", "sno-0-0"]);
    s.apply(support::fake_kube::node("node-c"));
    let ev = tokio::time::timeout(STEP, nw.try_next())
        .await
        .expect("in time")
        .expect("ok");
    assert!(matches!(ev, Some(Event::Apply(ref n)) if n.name_any() == "node-c"));

    // Namespaced list and watch.
    let ns1 = Api::<DynamicObject>::namespaced_with(client(&s), "ns-1", &vmi_resource());
    let l = ns1.list(&ListParams::default()).await.expect("list");
    assert_eq!(
        l.items.iter().map(|o| o.name_any()).collect::<Vec<_>>(),
        ["vm-00001"]
    );
    let mut w = watcher::watcher(ns1, watcher::Config::default()).boxed();
    assert_eq!(initial(&mut w).await, ["vm-00001"]);
    let mut other = vmi("elsewhere", "node-b", "10.0.6.1");
    other["metadata"]["namespace"] = json!("ns-2");
    s.apply(other);
    let mut here = vmi("here", "node-b", "10.0.6.2");
    here["metadata"]["namespace"] = json!("ns-1");
    s.apply(here);
    let (evs, _) = until(&mut w, |_| true).await;
    assert!(
        matches!(&evs[0], Event::Apply(o) if o.name_any() == "here"),
        "{}",
        show(&evs[0])
    );
    assert!(s.gets_served() >= 4);

    let c = client(&s);
    let req = |m: &str, p: &str| {
        hyper::Request::builder()
            .method(m)
            .uri(p)
            .body(Vec::new())
            .unwrap()
    };
    let r = c
        .request_text(req("POST", "/apis/kubevirt.io/v1/virtualmachineinstances"))
        .await;
    assert!(
        matches!(r, Err(kube::Error::Api(ref st)) if st.code == 405),
        "{r:?}"
    );
    let r = c
        .request_text(req("GET", "/apis/kubevirt.io/v1/widgets"))
        .await;
    assert!(
        matches!(r, Err(kube::Error::Api(ref st)) if st.code == 404),
        "{r:?}"
    );
}

#[tokio::test]
async fn label_and_field_selectors() {
    let s = server().await;
    let api = vmis(&s);
    let count = |l: &'static str| {
        let api = api.clone();
        async move {
            api.list(&ListParams::default().labels(l))
                .await
                .map(|l| l.items.len())
        }
    };
    assert_eq!(
        count("kubevirt.io/nodeName in (node-a,node-b)")
            .await
            .unwrap(),
        6
    );
    assert_eq!(
        count("kubevirt.io/nodeName in (node-b, sno-0-0)")
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        count("kubevirt.io/nodeName notin (node-a)").await.unwrap(),
        5
    );
    assert_eq!(
        count("kubevirt.io/nodeName!=node-a,kubevirt.io/nodeName")
            .await
            .unwrap(),
        4
    );
    assert_eq!(count("!kubevirt.io/nodeName").await.unwrap(), 1);
    assert_eq!(count("kubevirt.io/nodeName==sno-0-0").await.unwrap(), 1);
    for bad in ["kubevirt.io/nodeName in node-a", "a=(b", "a,,b"] {
        assert!(
            matches!(count(bad).await, Err(kube::Error::Api(st)) if st.code == 400),
            "{bad}"
        );
    }
    let r = api
        .list(&ListParams::default().fields("status.nodeName=node-a"))
        .await;
    assert!(
        matches!(r, Err(kube::Error::Api(ref st)) if st.code == 400),
        "{r:?}"
    );
    let r = api
        .list(&ListParams::default().fields("metadata.name=vm-00001"))
        .await
        .unwrap();
    assert_eq!(r.items.len(), 1);

    let mut w = watch(&s, "kubevirt.io/nodeName in (node-a, node-c)", 500);
    assert_eq!(initial(&mut w).await.len(), 3);
    s.apply(vmi("x", "node-c", "10.0.3.1"));
    let (evs, _) = until(&mut w, |_| true).await;
    assert!(matches!(&evs[0], Event::Apply(o) if o.name_any() == "x"));
}

#[tokio::test]
async fn bookmarks_flow_and_are_harmless() {
    let s = server().await;
    s.set_bookmark_interval(Duration::from_millis(100));
    let api = vmis(&s);
    let rv = s.resource_version().to_string();
    let mut raw = api
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("watch")
        .boxed();
    s.apply(vmi("bm", "node-a", "10.0.4.1"));
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        match tokio::time::timeout(STEP, raw.try_next())
            .await
            .expect("in time")
            .expect("event")
        {
            Some(WatchEvent::Added(o)) => kinds.push(format!("ADDED {}", o.name_any())),
            Some(WatchEvent::Bookmark(b)) => {
                assert!(
                    b.metadata.resource_version.parse::<u64>().unwrap()
                        >= rv.parse::<u64>().unwrap()
                );
                kinds.push("BOOKMARK".into());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(kinds[0], "ADDED bm");
    assert!(kinds[1..].iter().all(|k| k == "BOOKMARK"));

    let mut a = watch(&s, &format!("{NODE}=node-a"), 2);
    assert_eq!(initial(&mut a).await.len(), 4);
    quiet(&mut a, Duration::from_millis(500)).await;
    s.apply(vmi("bm", "node-a", "10.0.4.2"));
    let (evs, errors) = until(&mut a, |_| true).await;
    assert_eq!(errors, 0);
    assert!(matches!(&evs[0], Event::Apply(o) if o.name_any() == "bm"));
    assert!(
        s.requests()
            .iter()
            .any(|r| r.path_and_query.contains("allowWatchBookmarks=true"))
    );
}

#[tokio::test]
async fn churn_changes_guest_agent_data() {
    let s = FakeApiServer::start().await;
    s.load_synthetic(20, &nodes(), 1);
    assert_eq!(s.list("vmi").len(), 20);
    assert_eq!(s.list("node").len(), 2);
    let mut a = watch(&s, "", 500);
    assert_eq!(initial(&mut a).await.len(), 20);
    let churn = s.spawn_churn(200.0, 3);
    let (evs, _) = until(&mut a, {
        let mut n = 0;
        move |e| {
            n += usize::from(matches!(e, Event::Apply(_)));
            n == 20
        }
    })
    .await;
    churn.stop().await;
    assert_eq!(evs.len(), 20);
    let rv = s.resource_version();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(s.resource_version(), rv, "churn stops with its handle");
}

/// The raw bytes of a watch response, read until the server closes.
async fn raw_watch(s: &FakeApiServer, query: &str, during: impl FnOnce()) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(s.addr())
        .await
        .expect("connect");
    let req = format!(
        "GET /apis/kubevirt.io/v1/virtualmachineinstances?{query} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\n\r\n"
    );
    c.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::new();
    // Wait for the headers, so the watch is registered before `during` runs.
    while !String::from_utf8_lossy(&out).contains("\r\n\r\n") {
        let n = c.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed before headers");
        out.extend_from_slice(&buf[..n]);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    during();
    let rest = tokio::time::timeout(STEP, async {
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest).await;
        rest
    });
    out.extend(rest.await.expect("server closes the watch"));
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn watch_wire_format_and_endings() {
    let s = server().await;
    let rv = s.resource_version();
    // timeoutSeconds: a clean end (final zero-length chunk).
    let text = raw_watch(
        &s,
        &format!("watch=1&resourceVersion={rv}&timeoutSeconds=1"),
        || {
            s.apply(vmi("w", "node-a", "10.0.5.1"));
        },
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
    );
    assert!(text.contains(r#"{"type":"ADDED","object":{"apiVersion":"kubevirt.io/v1""#));
    assert!(text.ends_with("\r\n0\r\n\r\n"), "{text}");

    // Expired by the test: ERROR 410 in the stream, then a clean end.
    let text = raw_watch(&s, &format!("watch=true&resourceVersion={rv}"), || {
        s.expire_watches()
    })
    .await;
    assert!(
        text.contains(r#""type":"MODIFIED""#) || text.contains(r#""type":"ADDED""#),
        "replayed first"
    );
    assert!(
        text.contains(r#"{"type":"ERROR","object":{"apiVersion":"v1","code":410"#),
        "{text}"
    );
    assert!(text.contains(r#""reason":"Expired""#));
    assert!(text.ends_with("\r\n0\r\n\r\n"));
    // Resuming from an RV before the expiry: 410 at once.
    let text = raw_watch(&s, &format!("watch=true&resourceVersion={rv}"), || {}).await;
    assert!(text.contains(r#""code":410"#), "{text}");

    // Cut mid-event: half a line, then the connection closes without the last chunk.
    let rv = s.resource_version();
    let text = raw_watch(&s, &format!("watch=true&resourceVersion={rv}"), || {
        s.cut_connections_mid_event();
        s.apply(vmi("w", "node-a", "10.0.5.2"));
    })
    .await;
    assert!(text.contains(r#"{"type":"MODIFIED","object":"#), "{text}");
    assert!(
        !text.contains("}}\n"),
        "the event line is incomplete: {text}"
    );
    assert!(
        !text.ends_with("\r\n0\r\n\r\n"),
        "truncated chunked body: {text}"
    );

    // Cut at once: no final chunk either.
    let text = raw_watch(&s, "watch=true", || s.cut_connections()).await;
    assert!(
        text.starts_with("HTTP/1.1 200") && !text.ends_with("\r\n0\r\n\r\n"),
        "{text}"
    );
}

fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The fake server's own selector grammar (the apiserver's behaviour it models).
#[test]
fn selector_grammar() {
    use support::fake_kube::LabelSelector;
    let a = labels(&[("kubevirt.io/nodeName", "node-a"), ("x", "1")]);
    let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&a);
    assert!(m("kubevirt.io/nodeName=node-a"));
    assert!(m("kubevirt.io/nodeName==node-a,x"));
    assert!(!m("kubevirt.io/nodeName!=node-a"));
    assert!(m("kubevirt.io/nodeName in (node-b, node-a)"));
    assert!(!m("kubevirt.io/nodeName notin (node-a)"));
    assert!(m("y notin (a)"));
    assert!(m("!y"));
    assert!(!m("!x"));
    assert!(LabelSelector::parse("a in b").is_err());
    assert!(LabelSelector::parse("a=(").is_err());
    assert!(LabelSelector::parse("a,,b").is_err());
}
