//! Pins what the state file holds (docs/ARCHITECTURE.md, "State and outbox"): the bytes
//! of a record and of an outbox entry as the store encodes them, and the redb layout
//! (table names and types, meta keys, the row key). The expected bytes are checked in
//! under `tests/fixtures/persisted/` (see its README.md).
//!
//! A state file written by this version must stay readable by the next ones, so each
//! check goes both ways: encoding the value gives exactly the checked-in bytes, and
//! decoding the checked-in bytes gives the value. When one fails, the persisted format
//! changed: that needs a migration of the state file (or a new `SCHEMA_VERSION`, which
//! moves old files aside and rebuilds them from the sources), never just new fixtures.
//!
//! `VIRTSYNC_BLESS=1 cargo test --lib persisted` rewrites the fixtures from
//! the code (for a new fixture, or together with that migration); without it a missing
//! or different fixture fails the test, also in CI.

use std::sync::Arc;

use redb::{TableDefinition, TableHandle};

use super::host::{CAPABILITIES_KEY, WRITTEN_KEY};
use super::{decode, encode, stored_key};
use crate::columns::{Column, ColumnSet};
use crate::model::{
    LegacyOrigin, Observation, RuntimeDetails, SourceVersions, Timestamp, VmKey, VmRecord, VmStatus,
};
use crate::state::file::{
    HOST, MANAGED, META, META_NEXT_SEQ, META_SCHEMA_VERSION, OUTBOX, VM_RECORDS,
};
use crate::state::{OutboxEntry, SCHEMA_VERSION, StoredVm};

const MIGRATION: &str = "The state file's format changed: files written by earlier versions \
     hold the checked-in bytes. Changing it needs a migration of the state file (or a new \
     state SCHEMA_VERSION), not new fixtures (docs/ARCHITECTURE.md, \"State and outbox\"; \
     tests/fixtures/persisted/README.md).";

fn bless() -> bool {
    std::env::var_os("VIRTSYNC_BLESS").is_some_and(|v| v == "1")
}

/// The checked-in bytes of `persisted/<file>`, written from `actual` first when blessing.
fn pinned_bytes(file: &str, actual: &[u8]) -> Vec<u8> {
    let rel = format!("persisted/{file}");
    let path = crate::test_fixtures::path(&rel);
    if bless() {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (VIRTSYNC_BLESS=1 writes it from the code; check it in)",
            path.display()
        )
    })
}

/// Encodes `value` with the store's encoder and compares with the fixture, then decodes
/// the fixture with the store's decoder and compares with `value`.
fn check<W, V>(file: &str, what: &'static str, wire: &W, value: &V, from_wire: impl Fn(W) -> V)
where
    W: serde::Serialize + serde::de::DeserializeOwned,
    V: PartialEq + std::fmt::Debug,
{
    let actual = encode(what, wire).unwrap_or_else(|e| panic!("{e}"));
    let pinned = pinned_bytes(file, &actual);
    let mut problems = Vec::new();
    if actual != pinned {
        problems.push(format!(
            "encoding the {what} gives\n    {}\n  the checked-in bytes are\n    {}",
            String::from_utf8_lossy(&actual),
            String::from_utf8_lossy(&pinned)
        ));
    }
    match decode::<W>(what, &pinned) {
        Ok(decoded) => {
            let decoded = from_wire(decoded);
            if decoded != *value {
                problems.push(format!(
                    "decoding the checked-in bytes gives\n    {decoded:?}\n  expected\n    {value:?}"
                ));
            }
        }
        Err(e) => problems.push(format!("the checked-in bytes no longer decode: {e}")),
    }
    assert!(
        problems.is_empty(),
        "tests/fixtures/persisted/{file}:\n  {}\n{MIGRATION}",
        problems.join("\n  ")
    );
}

fn t(unix_millis: i64) -> Timestamp {
    Timestamp { unix_millis }
}

/// A node role's record: every field set, the runtime details' timestamp included.
fn node_record() -> StoredVm {
    let key = VmKey::new("vdc-a", "web-1");
    let mut record = VmRecord::new(&key);
    record.status = Some(VmStatus::PoweredOn);
    record.cpu_count = Some(4);
    record.memory_mb = Some(8192);
    record.guest_os = Some("CentOS Stream 9".into());
    record.runtime_details = Some(Arc::new(RuntimeDetails {
        cpu_cores: Some(2),
        cpu_sockets: Some(2),
        cpu_threads: Some(1),
        cpu_model: Some("host-passthrough".into()),
        memory_guest: Some("8Gi".into()),
        memory_current: Some("8Gi".into()),
        memory_requested: Some("8Gi".into()),
        primary_ip: Some("10.128.1.131".into()),
        network_interfaces: Some(
            r#"[{"interfaceName":"eth0","ipAddress":"10.128.1.131","mac":"02:8a:4e:00:00:0b","name":"default"}]"#
                .into(),
        ),
        guest_os_id: Some("centos".into()),
        guest_os_name: Some("CentOS Stream".into()),
        guest_os_version: Some("9".into()),
        guest_os_kernel: Some("5.14.0-570.el9.x86_64".into()),
        phase: Some("Running".into()),
        node_name: Some("node-7".into()),
        qos_class: Some("Burstable".into()),
        machine_type: Some("pc-q35-rhel9.4.0".into()),
        architecture: Some("amd64".into()),
        volume_details: Some(r#"[{"name":"rootdisk","size":"30Gi","type":"pvc"}]"#.into()),
        agent_connected: Some(true),
        hypervisor_type: Some("kvm".into()),
        // Kept apart in memory (`StoredVm::vmi_updated_at`), inside the details on disk.
        vmi_updated_at: None,
    }));
    StoredVm {
        obs: Arc::new(Observation {
            record,
            versions: SourceVersions {
                vm_resource_version: Some(184_467),
                vmi_uid: Some("5d4c7f0e-2b1a-4c8e-9f3d-7a6b5c4d3e2f".into()),
                vmi_resource_version: Some(184_502),
                legacy_origin: LegacyOrigin::Vmi,
                runtime_unknown: false,
            },
        }),
        vmi_updated_at: Some(t(1_755_357_930_123)),
    }
}

/// A cluster role's record of a VM whose VMI runs elsewhere: runtime unknown, no details.
fn cluster_record() -> StoredVm {
    let mut record = VmRecord::new(&VmKey::new("vdc-b", "db-2"));
    record.status = Some(VmStatus::PoweredOff);
    record.cpu_count = Some(2);
    record.memory_mb = Some(4096);
    record.guest_os = Some("Debian GNU/Linux 12 (bookworm)".into());
    StoredVm {
        obs: Arc::new(Observation {
            record,
            versions: SourceVersions {
                vm_resource_version: Some(99),
                vmi_uid: None,
                vmi_resource_version: None,
                legacy_origin: LegacyOrigin::Vm,
                runtime_unknown: true,
            },
        }),
        vmi_updated_at: None,
    }
}

/// A parked outbox entry: columns of every group (their ids are the mask's bits).
fn parked_entry() -> OutboxEntry {
    OutboxEntry {
        seq: 42,
        first_seq: 7,
        first_enqueued: t(1_755_357_931_456),
        columns: [
            Column::Status,
            Column::MemoryMb,
            Column::RuntimePrimaryIp,
            Column::RuntimeAgentConnected,
            Column::RuntimeVmiUpdatedAt,
        ]
        .into_iter()
        .collect(),
        parked: Some(
            "new row for relation \"vms\" violates check constraint \"vms_memory_mb_check\"".into(),
        ),
    }
}

/// A pending (not parked) outbox entry.
fn pending_entry() -> OutboxEntry {
    OutboxEntry {
        seq: 3,
        first_seq: 3,
        first_enqueued: t(1_755_357_932_000),
        columns: [Column::CpuCount, Column::RuntimePhase]
            .into_iter()
            .collect(),
        parked: None,
    }
}

#[test]
fn record_encoding_is_pinned() {
    for (file, stored) in [
        ("record-v1.json", node_record()),
        ("record-cluster-v1.json", cluster_record()),
    ] {
        check(file, "record", &stored.to_wire(), &stored, StoredVm::from);
    }
}

#[test]
fn outbox_entry_encoding_is_pinned() {
    for (file, entry) in [
        ("outbox-v1.json", parked_entry()),
        ("outbox-pending-v1.json", pending_entry()),
    ] {
        check(file, "outbox entry", &entry, &entry, |e| e);
    }
    // The mask in those bytes is the columns' ids (src/columns.rs, column-ids.txt).
    assert_eq!(
        parked_entry().columns,
        ColumnSet((1 << 0) | (1 << 2) | (1 << 11) | (1 << 23) | (1 << 25))
    );
}

fn table<K: redb::Key + 'static, V: redb::Value + 'static>(t: TableDefinition<K, V>) -> String {
    format!(
        "table {} key {} value {}",
        t.name(),
        K::type_name().name(),
        V::type_name().name()
    )
}

/// The redb layout: table names and types, meta keys, host keys, how a VM's key is
/// written as a row key. Compared line by line with `layout-v1.txt` (comments skipped).
#[test]
fn redb_layout_is_pinned() {
    let key = VmKey::new("vdc-a", "web-1");
    let row_key = key.to_string();
    assert_eq!(
        stored_key(&row_key),
        Some(key.clone()),
        "{row_key} reads back"
    );
    let actual = [
        format!("schema_version {SCHEMA_VERSION}"),
        table(VM_RECORDS),
        table(OUTBOX),
        table(MANAGED),
        table(HOST),
        table(META),
        format!("meta key {META_SCHEMA_VERSION}"),
        format!("meta key {META_NEXT_SEQ}"),
        format!("host key {CAPABILITIES_KEY}"),
        format!("host key {WRITTEN_KEY}"),
        format!(
            "row key of {:?} {:?}: {row_key}",
            &*key.namespace, &*key.name
        ),
    ];
    let file = "layout-v1.txt";
    let header = "# The redb layout of the state file, as the code defines it (src/state/file.rs,\n\
                  # the row keys of src/state/store/). Changing a line needs a migration of the\n\
                  # state file: see README.md here. Checked by\n\
                  # state::store::persisted::redb_layout_is_pinned.\n";
    let blessed = format!("{header}{}\n", actual.join("\n"));
    let pinned = pinned_bytes(file, blessed.as_bytes());
    let pinned = String::from_utf8_lossy(&pinned);
    let pinned: Vec<&str> = pinned
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        pinned, actual,
        "tests/fixtures/persisted/{file} (left) differs from the code (right).\n{MIGRATION}"
    );
}
