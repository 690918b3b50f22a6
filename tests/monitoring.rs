//! Monitoring for operators: the alert rules (`packaging/prometheus/`) and the Grafana
//! dashboard (`packaging/grafana/`) against the real tools and the real daemon.
//!
//! - `promtool check rules` and `promtool test rules` (Debian's `prometheus` package);
//! - every alert has a severity, a runbook link to its README entry and test cases that
//!   fire and that stay quiet;
//! - every metric and label the rules and the dashboard use is one the built daemon
//!   exports (its live scrape, completed by `Metrics::descriptions()` for labelled
//!   metrics without a sample yet);
//! - a real Prometheus server scrapes the daemon (fake Kubernetes API server, throw-away
//!   PostgreSQL, libvirt's test driver with one KVM and one TCG domain) as job
//!   `virtsync`, has `up`, `kubevirt_vmi_hypervisor_info` and the `virtsync_*` series with
//!   their labels, evaluates every rule without error, and holds the TCG alert pending.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::daemon::DaemonProcess;
use support::fake_kube::FakeApiServer;
use support::pg::PgCluster;
use support::prometheus::{self, PrometheusServer, Selector, selectors};
use support::ssvirt;
use support::sync::Db;
use virtsync::config::SchemaMode;
use virtsync::metrics::Metrics;

/// The scrape job the rules and the README expect.
const JOB: &str = "virtsync";
const NODE: &str = "mon-node-0";
const WAIT: Duration = Duration::from_secs(30);
/// Where every runbook annotation points: an anchor of README.md.
const RUNBOOK_BASE: &str = "https://example.org/virtsync/README.md#";
/// Labels Prometheus adds to every scraped series (target labels).
const TARGET_LABELS: &[&str] = &["job", "instance"];
/// The synthetic VMIs (`fake_kube::synthetic`) and the domain type each runs under.
const GUESTS: &[(&str, &str, &str, &str)] = &[
    ("ns-0", "vm-00000", "kvm", "kvm"),
    ("ns-1", "vm-00001", "qemu", "qemu-tcg"),
];

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn rules_dir() -> PathBuf {
    repo("packaging/prometheus")
}

fn yaml(rel: &str) -> Value {
    let text = std::fs::read_to_string(repo(rel)).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(repo("packaging/grafana/virtsync-dashboard.json")).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("virtsync-dashboard.json: {e}"))
}

/// Every alert rule: (name, the rule).
fn alerts() -> Vec<(String, Value)> {
    let rules = yaml("packaging/prometheus/virtsync-rules.yaml");
    let mut out = Vec::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("only alerting rules");
            out.push((name.to_owned(), rule.clone()));
        }
    }
    out
}

/// Every panel target of the dashboard, rows' nested panels included: (panel title, expr).
fn dashboard_exprs(d: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or_default().to_owned();
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{title}: no expr"));
                out.push((title.clone(), expr.to_owned()));
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    out
}

/// The query variables of the dashboard: (name, query), e.g. `label_values(m{..}, l)`.
fn dashboard_variable_queries(d: &Value) -> Vec<(String, String)> {
    d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let q = v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .unwrap();
            (v["name"].as_str().unwrap().to_owned(), q.to_owned())
        })
        .collect()
}

/// `label_values(SELECTOR, LABEL)` → its selectors, with LABEL added as a used label.
fn label_values(query: &str) -> Result<Vec<Selector>, String> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .ok_or_else(|| format!("only label_values(SELECTOR, LABEL) is understood: {query:?}"))?;
    let (selector, label) = inner
        .rsplit_once(',')
        .ok_or_else(|| format!("label_values needs a selector and a label: {query:?}"))?;
    let mut found = selectors(selector)?;
    if found.len() != 1 {
        return Err(format!("one metric selector expected in {query:?}"));
    }
    found[0].labels.push(label.trim().to_owned());
    Ok(found)
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn readme_anchors() -> BTreeSet<String> {
    std::fs::read_to_string(repo("README.md"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

#[test]
fn promtool_checks_the_rules_and_runs_their_unit_tests() {
    let n = alerts().len();
    let out = prometheus::promtool(&rules_dir(), &["check", "rules", "virtsync-rules.yaml"]);
    let said = prometheus::said(&out);
    assert!(out.status.success(), "promtool check rules: {said}");
    assert!(
        said.contains(&format!("SUCCESS: {n} rules found")),
        "expected {n} rules: {said}"
    );
    let out = prometheus::promtool(&rules_dir(), &["test", "rules", "virtsync-rules.test.yaml"]);
    let said = prometheus::said(&out);
    assert!(out.status.success(), "promtool test rules: {said}");
    assert!(said.contains("SUCCESS"), "{said}");
}

#[test]
fn every_alert_has_a_severity_a_runbook_entry_and_firing_and_quiet_test_cases() {
    let anchors = readme_anchors();
    let alerts = alerts();
    let names: BTreeSet<&str> = alerts.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), alerts.len(), "alert names are unique");
    for (name, rule) in &alerts {
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description"] {
            assert!(
                rule["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name}: no {key}"
            );
        }
        let runbook = rule["annotations"]["runbook"].as_str().unwrap_or_default();
        let anchor = runbook
            .strip_prefix(RUNBOOK_BASE)
            .unwrap_or_else(|| panic!("{name}: runbook {runbook:?} is not {RUNBOOK_BASE}…"));
        assert_eq!(anchor, name.to_lowercase(), "{name}: its own runbook entry");
        assert!(
            anchors.contains(anchor),
            "{name}: README.md has no heading for #{anchor}"
        );
        assert!(
            rule["for"].as_str().is_some(),
            "{name}: no `for` (one bad scrape must not alert)"
        );
    }
    // The unit tests: every alert fires in a case and stays quiet in another.
    let tests = yaml("packaging/prometheus/virtsync-rules.test.yaml");
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for group in tests["tests"].as_array().unwrap() {
        for case in group["alert_rule_test"].as_array().unwrap() {
            let name = case["alertname"].as_str().unwrap().to_owned();
            assert!(
                names.contains(name.as_str()),
                "test of unknown alert {name}"
            );
            let expected = case["exp_alerts"].as_array().map_or(0, Vec::len);
            if expected == 0 {
                quiet.insert(name);
            } else {
                firing.insert(name);
            }
        }
    }
    let all: BTreeSet<String> = names.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(firing, all, "alerts without a firing test case");
    assert_eq!(quiet, all, "alerts without a quiet test case");
}

#[test]
fn promql_selectors_are_told_from_functions_labels_and_variables() {
    let sel = |m: &str, l: &[&str]| Selector {
        metric: m.to_owned(),
        labels: l.iter().map(|s| (*s).to_owned()).collect(),
    };
    assert_eq!(
        selectors(
            r#"histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket{instance=~"$instance", x!="}"}[$__rate_interval])))
               / on (instance) group_left (node) b offset 5m > 1e3 and count without (c) (c_total{d='x'}) or vector(0)"#
        )
        .unwrap(),
        [
            sel("a_bucket", &["instance", "x"]),
            sel("b", &[]),
            sel("c_total", &["d"])
        ]
    );
    assert_eq!(
        selectors("topk(10, up{job=\"virtsync\"} == bool 0) # comment metric_in_comment").unwrap(),
        [sel("up", &["job"])]
    );
    assert!(selectors(r#"{__name__="x"}"#).is_err());
    assert_eq!(
        label_values(r#"label_values(kubevirt_vmi_hypervisor_info{instance=~"$instance"}, node)"#)
            .unwrap(),
        [sel("kubevirt_vmi_hypervisor_info", &["instance", "node"])]
    );
}

#[test]
fn dashboard_is_well_formed() {
    let d = dashboard();
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let vars: BTreeSet<String> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect();
    for want in ["datasource", "instance", "node"] {
        assert!(vars.contains(want), "no ${want} variable");
    }
    let mut ids = BTreeSet::new();
    fn walk(panels: &Value, ids: &mut BTreeSet<i64>, vars: &BTreeSet<String>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or_default();
            assert!(
                ids.insert(p["id"].as_i64().expect("panel id")),
                "duplicate id: {title}"
            );
            let g = &p["gridPos"];
            let (x, w) = (g["x"].as_i64().unwrap(), g["w"].as_i64().unwrap());
            assert!(x >= 0 && w > 0 && x + w <= 24, "{title}: gridPos {g}");
            if p["type"] != "row" {
                assert_eq!(
                    p["datasource"]["uid"], "${datasource}",
                    "{title}: the $datasource variable"
                );
                assert!(!p["targets"].as_array().unwrap().is_empty(), "{title}");
            }
            // Every $variable used is defined (or one of Grafana's own).
            let text = p.to_string();
            for (at, _) in text.match_indices('$') {
                let name: String = text[at + 1..]
                    .trim_start_matches('{')
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    name.starts_with("__") || vars.contains(&name),
                    "{title}: ${name} is not a variable of the dashboard"
                );
            }
            walk(&p["panels"], ids, vars);
        }
    }
    walk(&d["panels"], &mut ids, &vars);
    let titles: Vec<&str> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for want in [
        "Fleet overview",
        "Latency",
        "Outbox",
        "Sources",
        "Hypervisor types",
    ] {
        assert!(titles.contains(&want), "no row {want:?}: {titles:?}");
    }
    assert!(
        titles.iter().any(|t| t.contains("$instance")),
        "no per-host row: {titles:?}"
    );
}

/// The built daemon as node [`NODE`] in role `all`: the fake API server with the two
/// [`GUESTS`] running there, a database with their rows, and libvirt's test driver
/// holding their domains (`<namespace>_<name>`, one `kvm`, one `qemu`).
struct Fixture {
    _kube: FakeApiServer,
    _db: Db,
    _dir: tempfile::TempDir,
    daemon: DaemonProcess,
}

async fn start_daemon(prefix: &str) -> Fixture {
    let kube = FakeApiServer::start().await;
    kube.load_synthetic(GUESTS.len(), &[NODE.to_owned()], 7);
    let db = Db::new(PgCluster::shared(), prefix, SchemaMode::Extended).await;
    for (ns, name, _, _) in GUESTS {
        ssvirt::insert_vm(&db.client, ns, name).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let domains: String = GUESTS
        .iter()
        .map(|(ns, name, virt_type, _)| {
            format!(
                "<domain type='{virt_type}'><name>{ns}_{name}</name><memory>65536</memory>\
                 <vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>"
            )
        })
        .collect();
    let node_xml = dir.path().join("libvirt-node.xml");
    std::fs::write(
        &node_xml,
        format!(
            "<node><cpu><mhz>2600</mhz><model>x86_64</model><active>2</active><max>2</max>\
             <nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads></cpu>\
             <memory>8349900</memory>{domains}</node>"
        ),
    )
    .unwrap();
    let config = format!(
        r#"
node_name = "{NODE}"
role = "all"
[kubernetes]
url = "{kube}"
[libvirt]
uri = "test://{node_xml}"
domain_check_interval = "2s"
[postgres]
url = "{url}"
schema = "extended"
flush_interval = "10ms"
managed_refresh_interval = "1s"
lock_idle_timeout = "3s"
lock_retry_interval = "300ms"
[cache]
path = "{state}"
"#,
        kube = kube.url(),
        node_xml = node_xml.display(),
        url = db.url,
        state = dir.path().join("state.redb").display(),
    );
    let mut daemon = DaemonProcess::start(dir.path(), prefix, &config);
    daemon.wait_for("vmi list complete", WAIT).await;
    Fixture {
        _kube: kube,
        _db: db,
        _dir: dir,
        daemon,
    }
}

/// Scrapes until the daemon shows both hypervisor types, every source up, the cluster
/// role held and committed changes; returns that scrape.
async fn settled_scrape(d: &mut DaemonProcess) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = d.scrape().await;
        let s = |name: &str, labels: &str| support::metrics::sample(&text, name, labels);
        let missing: Vec<String> = GUESTS
            .iter()
            .filter(|(ns, name, _, ty)| {
                s(
                    "kubevirt_vmi_hypervisor_info",
                    &format!(
                        r#"hypervisor_type="{ty}",name="{name}",namespace="{ns}",node="{NODE}""#
                    ),
                ) != Some(1.0)
            })
            .map(|(ns, name, _, ty)| format!("{ns}/{name} {ty}"))
            .chain(
                ["kubernetes", "libvirt", "postgres"]
                    .iter()
                    .filter(|src| {
                        s("virtsync_source_up", &format!(r#"source="{src}""#)) != Some(1.0)
                    })
                    .map(|src| format!("source {src} up")),
            )
            .chain((s("virtsync_cluster_role_holder", "") != Some(1.0)).then(|| "holder".into()))
            .chain(
                (s("virtsync_event_to_commit_seconds_count", "").unwrap_or(0.0) < 1.0)
                    .then(|| "a commit".into()),
            )
            .collect();
        if missing.is_empty() {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "daemon never showed {missing:?}:\n{text}\n--- log ---\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the daemon exports: every metric of `Metrics::descriptions()`, checked against
/// the live scrape (each family there is described with the same type, each sample has
/// exactly the described labels), by metric name → (type, label names).
fn exported(scrape: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let described: BTreeMap<String, (String, Vec<String>)> = Metrics::new()
        .unwrap()
        .descriptions()
        .iter()
        .map(|d| (d.name.clone(), (d.kind.to_owned(), d.labels.clone())))
        .collect();
    let types = prometheus::scrape_types(scrape);
    assert!(types.len() >= 10, "a real scrape: {scrape}");
    for (name, kind) in &types {
        let (want, _) = described
            .get(name)
            .unwrap_or_else(|| panic!("{name} is scraped but not in Metrics::descriptions()"));
        assert_eq!(kind, want, "{name}: type");
    }
    for (sample, labels) in prometheus::scrape_samples(scrape) {
        let (metric, mut labels) = resolve(&described, &sample, labels.clone())
            .unwrap_or_else(|| panic!("sample {sample} of no described metric"));
        labels.sort();
        let mut want = described[&metric].1.clone();
        want.sort();
        assert_eq!(labels, want, "{sample}: labels");
    }
    described
}

/// A sample or selector name → (its metric, `labels` without the histogram's `le`), for
/// the metric itself and a histogram's `_bucket`/`_sum`/`_count` series.
fn resolve(
    known: &BTreeMap<String, (String, Vec<String>)>,
    name: &str,
    mut labels: Vec<String>,
) -> Option<(String, Vec<String>)> {
    if known.contains_key(name) {
        return Some((name.to_owned(), labels));
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        let Some(base) = name.strip_suffix(suffix) else {
            continue;
        };
        if known.get(base).is_some_and(|(kind, _)| kind == "histogram") {
            if suffix == "_bucket" {
                labels.retain(|l| l != "le");
            }
            return Some((base.to_owned(), labels));
        }
    }
    None
}

/// Problems of one expression's selectors against what the daemon exports.
fn check_selectors(
    known: &BTreeMap<String, (String, Vec<String>)>,
    found: &[Selector],
) -> Vec<String> {
    let mut problems = Vec::new();
    if found.is_empty() {
        problems.push("uses no metric".to_owned());
    }
    for s in found {
        let labels: Vec<String> = s
            .labels
            .iter()
            .filter(|l| !TARGET_LABELS.contains(&l.as_str()))
            .cloned()
            .collect();
        if s.metric == "up" {
            if let Some(l) = labels.first() {
                problems.push(format!("up has no label {l}"));
            }
            continue;
        }
        match resolve(known, &s.metric, labels) {
            None => problems.push(format!("{} is not exported by the daemon", s.metric)),
            Some((metric, labels)) => {
                for l in labels {
                    if !known[&metric].1.contains(&l) {
                        problems.push(format!(
                            "{} has no label {l} (labels: {:?} and {TARGET_LABELS:?})",
                            s.metric, known[&metric].1
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// Every expression of the rules and the dashboard, named for messages, with its
/// selectors: (where, expression, selectors or the lexer's error).
fn all_expressions() -> Vec<(String, String, Result<Vec<Selector>, String>)> {
    let mut out = Vec::new();
    for (name, rule) in alerts() {
        let expr = rule["expr"].as_str().unwrap().to_owned();
        let found = selectors(&expr);
        out.push((format!("rule {name}"), expr, found));
    }
    let d = dashboard();
    for (title, expr) in dashboard_exprs(&d) {
        let found = selectors(&expr);
        out.push((format!("panel {title:?}"), expr, found));
    }
    for (name, query) in dashboard_variable_queries(&d) {
        let found = label_values(&query);
        out.push((format!("variable ${name}"), query, found));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_rules_use_only_metrics_and_labels_the_daemon_exports() {
    let mut f = start_daemon("monitoring_names").await;
    let scrape = settled_scrape(&mut f.daemon).await;
    let known = exported(&scrape);
    let exprs = all_expressions();
    assert!(exprs.len() > 40, "rules and panels found: {}", exprs.len());
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (place, expr, found) in &exprs {
        match found {
            Err(e) => problems.push(format!("{place}: {e}")),
            Ok(found) => {
                used.extend(found.iter().map(|s| s.metric.clone()));
                problems.extend(
                    check_selectors(&known, found)
                        .into_iter()
                        .map(|p| format!("{place}: {p}\n    {expr}")),
                );
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // The alerts of the issue, on the metrics they are about.
    for metric in [
        "virtsync_outbox_pending",
        "virtsync_outbox_oldest_age_seconds",
        "virtsync_outbox_parked",
        "virtsync_source_up",
        "virtsync_state_write_errors_total",
        "virtsync_event_to_commit_seconds_bucket",
        "kubevirt_vmi_hypervisor_info",
        "virtsync_cluster_role_holder",
        "virtsync_flush_duration_seconds_bucket",
        "up",
    ] {
        assert!(used.contains(metric), "{metric} is used nowhere");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_scrapes_the_daemon_and_evaluates_every_rule() {
    let started = std::time::Instant::now();
    let mut f = start_daemon("monitoring_prom").await;
    let scrape = settled_scrape(&mut f.daemon).await;
    let known = exported(&scrape);
    let target = f.daemon.metrics_addr().await;
    let rules_file = rules_dir().join("virtsync-rules.yaml");
    let prom = PrometheusServer::start(&format!(
        r#"
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - "{rules}"
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ["{target}"]
"#,
        rules = rules_file.display()
    ));
    eprintln!(
        "prometheus ready at {} after {:?}",
        prom.url(),
        started.elapsed()
    );

    // The target is up.
    let up = prom
        .wait_for("up == 1", WAIT, |p| {
            let r = p.query(&format!(r#"up{{job="{JOB}"}}"#));
            match r.as_slice() {
                [one] if one["value"][1] == "1" => Ok(one.clone()),
                _ => Err(format!("{r:?}")),
            }
        })
        .await;
    assert_eq!(up["metric"]["instance"], target.as_str(), "{up}");

    // kubevirt_vmi_hypervisor_info: one series per guest, with the documented labels.
    let info = prom
        .wait_for("both hypervisor_info series", WAIT, |p| {
            let r = p.query("kubevirt_vmi_hypervisor_info");
            if r.len() == GUESTS.len() {
                Ok(r)
            } else {
                Err(format!("{r:?}"))
            }
        })
        .await;
    let mut got: Vec<(String, String, String, String)> = info
        .iter()
        .map(|s| {
            let m = &s["metric"];
            let keys: BTreeSet<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                BTreeSet::from([
                    "__name__",
                    "hypervisor_type",
                    "instance",
                    "job",
                    "name",
                    "namespace",
                    "node"
                ]),
                "{s}"
            );
            assert_eq!(s["value"][1], "1", "{s}");
            let l = |k: &str| m[k].as_str().unwrap().to_owned();
            (l("namespace"), l("name"), l("node"), l("hypervisor_type"))
        })
        .collect();
    got.sort();
    let want: Vec<(String, String, String, String)> = GUESTS
        .iter()
        .map(|(ns, name, _, ty)| ((*ns).into(), (*name).into(), NODE.into(), (*ty).into()))
        .collect();
    assert_eq!(got, want);

    // Every series of the daemon's scrape is in Prometheus, each with exactly the
    // described labels plus the target's job and instance.
    let scraped: BTreeSet<String> = prometheus::scrape_samples(&scrape)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let series = prom
        .wait_for("every scraped series", WAIT, |p| {
            let series = p.series(&format!(r#"{{job="{JOB}"}}"#));
            let names: BTreeSet<String> = series
                .iter()
                .map(|s| s["__name__"].as_str().unwrap().to_owned())
                .collect();
            let missing: Vec<&String> = scraped.difference(&names).collect();
            if missing.is_empty() {
                Ok(series)
            } else {
                Err(format!("missing {missing:?}"))
            }
        })
        .await;
    let mut virtsync_names = BTreeSet::new();
    for s in &series {
        let name = s["__name__"].as_str().unwrap();
        if name.starts_with("ALERTS") {
            // Prometheus's own (the rules' alerts keep the job label of `absent(up{job})`).
            continue;
        }
        let labels: Vec<String> = s
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "__name__")
            .cloned()
            .collect();
        for t in TARGET_LABELS {
            assert!(labels.iter().any(|l| l == t), "{s}: no {t}");
        }
        if !name.starts_with("virtsync_") && name != "kubevirt_vmi_hypervisor_info" {
            continue; // up, scrape_* : Prometheus's own
        }
        virtsync_names.insert(name.to_owned());
        let own: Vec<String> = labels
            .into_iter()
            .filter(|l| !TARGET_LABELS.contains(&l.as_str()))
            .collect();
        let (metric, mut own) =
            resolve(&known, name, own).unwrap_or_else(|| panic!("{name}: not described"));
        own.sort();
        let mut want = known[&metric].1.clone();
        want.sort();
        assert_eq!(own, want, "{s}");
    }
    for name in [
        "virtsync_build_info",
        "virtsync_source_up",
        "virtsync_cluster_role_holder",
        "virtsync_outbox_pending",
        "virtsync_outbox_parked",
        "virtsync_outbox_oldest_age_seconds",
        "virtsync_state_write_errors_total",
        "virtsync_event_to_commit_seconds_bucket",
        "virtsync_flush_duration_seconds_bucket",
    ] {
        assert!(virtsync_names.contains(name), "{name} not in prometheus");
    }
    let sources: BTreeSet<String> = prom
        .query(r#"virtsync_source_up == 1"#)
        .iter()
        .map(|s| s["metric"]["source"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        sources,
        BTreeSet::from(["kubernetes".into(), "libvirt".into(), "postgres".into()])
    );

    // The rules are loaded and every one evaluates without error.
    let want_alerts: BTreeSet<String> = alerts().into_iter().map(|(n, _)| n).collect();
    prom.wait_for("every rule evaluated, healthy", WAIT, |p| {
        let data = p.api("/api/v1/rules");
        let mut seen = BTreeSet::new();
        let mut problems = Vec::new();
        for g in data["groups"].as_array().unwrap() {
            if !g["file"]
                .as_str()
                .unwrap_or_default()
                .ends_with("virtsync-rules.yaml")
            {
                problems.push(format!("group from {}", g["file"]));
            }
            for r in g["rules"].as_array().unwrap() {
                let name = r["name"].as_str().unwrap().to_owned();
                if r["health"] != "ok"
                    || r["lastEvaluation"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("0001"))
                {
                    problems.push(format!("{name}: health {} {}", r["health"], r["lastError"]));
                }
                if r["type"] != "alerting" {
                    problems.push(format!("{name}: type {}", r["type"]));
                }
                seen.insert(name);
            }
        }
        if seen != want_alerts {
            problems.push(format!("rules {seen:?}, want {want_alerts:?}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    })
    .await;

    // The TCG guest holds exactly one alert pending (for: 15m), about its node; nothing
    // else is active (every source up, a holder, the target scraped).
    let alert = prom
        .wait_for("only the TCG alert active", WAIT, |p| {
            let data = p.api("/api/v1/alerts");
            let active = data["alerts"].as_array().unwrap().clone();
            match active.as_slice() {
                [one] if one["labels"]["alertname"] == "VirtsyncVMsRunningUnderTCG" => {
                    Ok(one.clone())
                }
                _ => Err(format!("{active:?}")),
            }
        })
        .await;
    assert_eq!(alert["state"], "pending", "{alert}");
    assert_eq!(alert["labels"]["node"], NODE, "{alert}");
    assert_eq!(alert["labels"]["severity"], "warning", "{alert}");
    assert_eq!(
        alert["annotations"]["summary"],
        format!("1 VMs on node {NODE} run under TCG (software emulation), not KVM"),
        "{alert}"
    );
    assert_eq!(
        alert["annotations"]["runbook"],
        format!("{RUNBOOK_BASE}virtsyncvmsrunningundertcg")
    );

    // Every dashboard query is valid PromQL for this Prometheus (variables filled in),
    // and the hypervisor panel has both types.
    let d = dashboard();
    for (title, expr) in dashboard_exprs(&d) {
        let filled = expr
            .replace("$__rate_interval", "1m")
            .replace("$__range", "1h")
            .replace("$instance", ".*")
            .replace("$node", ".*");
        let path = format!("/api/v1/query?query={}", prometheus::encode(&filled));
        if let Err(e) = prom.try_api(&path) {
            panic!("panel {title:?}: prometheus refuses {filled}: {e}");
        }
    }
    let types: BTreeSet<String> = prom
        .query("count by (hypervisor_type) (kubevirt_vmi_hypervisor_info)")
        .iter()
        .map(|s| s["metric"]["hypervisor_type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, BTreeSet::from(["kvm".into(), "qemu-tcg".into()]));
    eprintln!("done after {:?}", started.elapsed());
}
