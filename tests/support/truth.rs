//! The truth PostgreSQL must hold at the end of a fault scenario: the fake API server's
//! final VMs and VMIs run through the library's own derivation (VM + VMI → record →
//! column values), compared with the `vms` rows column by column.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio_postgres::Client;
use virtsync::columns::{Column, Value, value};
use virtsync::derive::{VmInput, VmiInput, decode_vm, decode_vmi, derive_vm, derive_vmi, observe};

use super::fake_kube::FakeApiServer;
use super::sync::Db;

/// The columns compared: every one a VM or VMI decides (times and JSON documents are
/// left out: PostgreSQL renders them its own way).
pub const COLUMNS: &[Column] = &[
    Column::Status,
    Column::CpuCount,
    Column::MemoryMb,
    Column::GuestOs,
    Column::RuntimeCpuCores,
    Column::RuntimeMemoryGuest,
    Column::RuntimePrimaryIp,
    Column::RuntimeGuestOsName,
    Column::RuntimeGuestOsVersion,
    Column::RuntimeGuestOsKernel,
    Column::RuntimePhase,
    Column::RuntimeNodeName,
];

pub type Rows = BTreeMap<String, Vec<Option<String>>>;

pub fn text_of(v: Value<'_>) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Text(t) => Some(t.to_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Time(t) => Some(format!("{t:?}")),
    }
}

/// `namespace/name` → the expected values of [`COLUMNS`], for every VM the fake API
/// server holds (with its VMI when there is one).
pub fn expected(kube: &FakeApiServer) -> Rows {
    let vmis: BTreeMap<String, _> = kube
        .list("VirtualMachineInstance")
        .iter()
        .map(|v| {
            let part = derive_vmi(&decode_vmi(v).unwrap()).unwrap();
            (part.key.to_string(), part)
        })
        .collect();
    kube.list("VirtualMachine")
        .iter()
        .map(|v| {
            let vm = derive_vm(&decode_vm(v).unwrap()).unwrap();
            let key = vm.key.to_string();
            let vmi = vmis.get(&key).map_or(VmiInput::Unknown, VmiInput::Present);
            let obs = observe(&vm.key, VmInput::Present(&vm), vmi, None);
            let values = COLUMNS
                .iter()
                .map(|c| text_of(value(&obs.record, *c)))
                .collect();
            (key, values)
        })
        .collect()
}

/// `namespace/vm_name` → [`COLUMNS`] of every live row.
pub async fn actual(client: &Client) -> Rows {
    let select: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("{}::text", c.name()))
        .collect();
    let sql = format!(
        "SELECT namespace || '/' || vm_name, {} FROM vms WHERE deleted_at IS NULL",
        select.join(", ")
    );
    client
        .query(sql.as_str(), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let vals = (1..=COLUMNS.len()).map(|i| r.get(i)).collect();
            (r.get::<_, String>(0), vals)
        })
        .collect()
}

/// Every VM whose row differs, with the differing columns (empty: the truth holds).
pub fn differences(expected: &Rows, actual: &Rows) -> Vec<String> {
    let mut out = Vec::new();
    for (key, want) in expected {
        let Some(got) = actual.get(key) else {
            out.push(format!("{key}: no row"));
            continue;
        };
        for ((c, w), g) in COLUMNS.iter().zip(want).zip(got) {
            if w != g {
                out.push(format!("{key}.{}: want {w:?}, got {g:?}", c.name()));
            }
        }
    }
    out
}

/// Polls until PostgreSQL holds the truth; returns how long it took. Panics after
/// `limit` naming the first differences.
pub async fn wait_converged(kube: &FakeApiServer, db: &Db, limit: Duration) -> Duration {
    let want = expected(kube);
    let start = Instant::now();
    // Its own connection: the test's may have died with an outage.
    let client = super::pg::connect(&db.url).await;
    loop {
        let diff = differences(&want, &actual(&client).await);
        if diff.is_empty() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "PostgreSQL did not reach the truth within {limit:?}: {} differences, first: {:#?}",
            diff.len(),
            &diff[..diff.len().min(8)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One SSVirt row per VM (`namespace/name` keys) in a single statement.
pub async fn insert_rows(client: &Client, keys: &[String]) {
    let (namespaces, names): (Vec<&str>, Vec<&str>) =
        keys.iter().map(|k| k.split_once('/').unwrap()).unzip();
    client
        .execute(
            "INSERT INTO vms (id, name, description, vapp_id, vm_name, namespace, status, \
             cpu_count, memory_mb, guest_os) \
             SELECT 'urn:vcloud:vm:' || gen_random_uuid(), n, '', \
                    'urn:vcloud:vapp:00000000-0000-4000-8000-000000000001', n, ns, \
                    'POWERED_OFF', 1, 1024, 'rhel9' \
             FROM unnest($1::text[], $2::text[]) AS t(ns, n)",
            &[&namespaces, &names],
        )
        .await
        .unwrap();
}

/// The keys of every VM the fake API server holds.
pub fn vm_keys(kube: &FakeApiServer) -> Vec<String> {
    kube.list("VirtualMachine")
        .iter()
        .map(|v| {
            format!(
                "{}/{}",
                v["metadata"]["namespace"].as_str().unwrap(),
                v["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}
