//! The `vms` columns virtsync can write, how a record maps onto them, and the pure
//! `diff(old, new)` that decides which of them changed.

mod owns;

use std::sync::Arc;

pub use owns::{Owns, SchemaMode};

use crate::model::{LegacyOrigin, RuntimeDetails, Timestamp, VmRecord};

/// Column groups, as configured by `owns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    Status,
    Legacy,
    Runtime,
}

/// How a column's values are bound and compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    Bool,
    Time,
}

macro_rules! columns {
    ($($variant:ident = $id:literal => $name:literal, $group:ident, $kind:ident;)*) => {
        /// A writable column of the `vms` table.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Column { $($variant),* }

        impl Column {
            /// Every column, in the table's order (iteration, display and SQL order; not
            /// the persisted ids, see `id`).
            pub const ALL: &'static [Column] = &[$(Column::$variant),*];

            /// The column's stable id: its bit in a `ColumnSet`, which outbox entries in
            /// the state file persist. Pinned by `tests/fixtures/persisted/column-ids.txt`.
            pub const fn id(self) -> u8 {
                match self { $(Column::$variant => $id),* }
            }

            pub fn name(self) -> &'static str {
                match self { $(Column::$variant => $name),* }
            }

            pub fn group(self) -> Group {
                match self { $(Column::$variant => Group::$group),* }
            }

            pub fn kind(self) -> Kind {
                match self { $(Column::$variant => Kind::$kind),* }
            }
        }

        // Checked when the crate compiles: every id fits a u64 mask and no two columns
        // share one.
        const _: () = {
            let ids: &[u8] = &[$($id),*];
            let mut i = 0;
            while i < ids.len() {
                assert!(ids[i] < 64, "a column id must be below 64 (ColumnSet is a u64)");
                let mut j = i + 1;
                while j < ids.len() {
                    assert!(ids[i] != ids[j], "two columns share an id");
                    j += 1;
                }
                i += 1;
            }
        };
    };
}

// The writable columns: `Variant = id => "name", group, kind;`.
//
// The id is **persisted** (as a bit of the column masks in the state file's outbox
// entries): never change or reuse one; a new column takes a new id (the next free one)
// and is appended to `tests/fixtures/persisted/column-ids.txt`. Changing an id needs a
// migration of the state file (docs/ARCHITECTURE.md, "State and outbox"). The order of
// the lines is `Column::ALL`'s and may change; the ids may not.
columns! {
    Status = 0 => "status", Status, Text;
    CpuCount = 1 => "cpu_count", Legacy, Int;
    MemoryMb = 2 => "memory_mb", Legacy, Int;
    GuestOs = 3 => "guest_os", Legacy, Text;
    RuntimeCpuCores = 4 => "runtime_cpu_cores", Runtime, Int;
    RuntimeCpuSockets = 5 => "runtime_cpu_sockets", Runtime, Int;
    RuntimeCpuThreads = 6 => "runtime_cpu_threads", Runtime, Int;
    RuntimeCpuModel = 7 => "runtime_cpu_model", Runtime, Text;
    RuntimeMemoryGuest = 8 => "runtime_memory_guest", Runtime, Text;
    RuntimeMemoryCurrent = 9 => "runtime_memory_current", Runtime, Text;
    RuntimeMemoryRequested = 10 => "runtime_memory_requested", Runtime, Text;
    RuntimePrimaryIp = 11 => "runtime_primary_ip", Runtime, Text;
    RuntimeNetworkInterfaces = 12 => "runtime_network_interfaces", Runtime, Text;
    RuntimeGuestOsId = 13 => "runtime_guest_os_id", Runtime, Text;
    RuntimeGuestOsName = 14 => "runtime_guest_os_name", Runtime, Text;
    RuntimeGuestOsVersion = 15 => "runtime_guest_os_version", Runtime, Text;
    RuntimeGuestOsKernel = 16 => "runtime_guest_os_kernel", Runtime, Text;
    RuntimePhase = 17 => "runtime_phase", Runtime, Text;
    RuntimeNodeName = 18 => "runtime_node_name", Runtime, Text;
    RuntimeQosClass = 19 => "runtime_qos_class", Runtime, Text;
    RuntimeMachineType = 20 => "runtime_machine_type", Runtime, Text;
    RuntimeArchitecture = 21 => "runtime_architecture", Runtime, Text;
    RuntimeVolumeDetails = 22 => "runtime_volume_details", Runtime, Text;
    RuntimeAgentConnected = 23 => "runtime_agent_connected", Runtime, Bool;
    RuntimeHypervisorType = 24 => "runtime_hypervisor_type", Runtime, Text;
    RuntimeVmiUpdatedAt = 25 => "runtime_vmi_updated_at", Runtime, Time;
}

impl Column {
    /// The column's bit in a `ColumnSet`: `1 << id` (stable across versions).
    pub fn bit(self) -> u64 {
        1 << self.id()
    }

    /// The SQL type of the extended-mode column (`virtsync migrate` creates it so).
    pub fn sql_type(self) -> &'static str {
        match self {
            Column::RuntimeCpuModel
            | Column::RuntimeGuestOsName
            | Column::RuntimeGuestOsKernel
            | Column::RuntimeNodeName
            | Column::RuntimeMachineType => "VARCHAR(255)",
            Column::RuntimeMemoryGuest
            | Column::RuntimeMemoryCurrent
            | Column::RuntimeMemoryRequested
            | Column::RuntimePhase
            | Column::RuntimeQosClass
            | Column::RuntimeArchitecture
            | Column::Status => "VARCHAR(50)",
            Column::RuntimePrimaryIp => "VARCHAR(45)",
            Column::RuntimeGuestOsId | Column::RuntimeGuestOsVersion => "VARCHAR(100)",
            Column::RuntimeHypervisorType => "VARCHAR(20)",
            Column::RuntimeNetworkInterfaces | Column::RuntimeVolumeDetails => "TEXT",
            Column::GuestOs => "VARCHAR(255)",
            Column::CpuCount
            | Column::MemoryMb
            | Column::RuntimeCpuCores
            | Column::RuntimeCpuSockets
            | Column::RuntimeCpuThreads => "INTEGER",
            Column::RuntimeAgentConnected => "BOOLEAN",
            Column::RuntimeVmiUpdatedAt => "TIMESTAMPTZ",
        }
    }

    /// Columns whose value must be > 0 (SSVirt's CHECK constraints).
    pub fn must_be_positive(self) -> bool {
        matches!(self, Column::CpuCount | Column::MemoryMb)
    }

    /// Which source object's resourceVersion fences a write of this column.
    pub fn fenced_by_vmi(self, legacy_origin: LegacyOrigin) -> bool {
        match self.group() {
            Group::Status => false,
            Group::Legacy => legacy_origin == LegacyOrigin::Vmi,
            Group::Runtime => true,
        }
    }
}

/// A set of columns as a bit mask (fits the `int8` mask bound per row in the flush).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ColumnSet(pub u64);

impl ColumnSet {
    pub const EMPTY: ColumnSet = ColumnSet(0);

    pub fn all() -> ColumnSet {
        Column::ALL.iter().copied().collect()
    }

    pub fn of_group(group: Group) -> ColumnSet {
        Column::ALL
            .iter()
            .copied()
            .filter(|c| c.group() == group)
            .collect()
    }

    /// The columns this daemon may write: owned groups, runtime only in extended mode.
    pub fn writable(owns: &Owns, schema: SchemaMode) -> ColumnSet {
        let mut set = ColumnSet::EMPTY;
        if owns.status {
            set = set.union(ColumnSet::of_group(Group::Status));
        }
        if owns.legacy {
            set = set.union(ColumnSet::of_group(Group::Legacy));
        }
        if owns.runtime && schema == SchemaMode::Extended {
            set = set.union(ColumnSet::of_group(Group::Runtime));
        }
        set
    }

    pub fn insert(&mut self, c: Column) {
        self.0 |= c.bit();
    }

    pub fn contains(self, c: Column) -> bool {
        self.0 & c.bit() != 0
    }

    pub fn union(self, other: ColumnSet) -> ColumnSet {
        ColumnSet(self.0 | other.0)
    }

    pub fn intersect(self, other: ColumnSet) -> ColumnSet {
        ColumnSet(self.0 & other.0)
    }

    /// These columns without `other`'s.
    pub fn difference(self, other: ColumnSet) -> ColumnSet {
        ColumnSet(self.0 & !other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn iter(self) -> impl Iterator<Item = Column> {
        Column::ALL
            .iter()
            .copied()
            .filter(move |c| self.contains(*c))
    }

    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Column::name).collect()
    }
}

impl FromIterator<Column> for ColumnSet {
    fn from_iter<I: IntoIterator<Item = Column>>(iter: I) -> Self {
        let mut set = ColumnSet::EMPTY;
        for c in iter {
            set.insert(c);
        }
        set
    }
}

/// A column value as PostgreSQL sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Null,
    Text(&'a str),
    Int(i64),
    Bool(bool),
    Time(Timestamp),
}

fn text(v: &Option<String>) -> Value<'_> {
    v.as_deref().map_or(Value::Null, Value::Text)
}

fn int(v: Option<i64>) -> Value<'static> {
    v.map_or(Value::Null, Value::Int)
}

/// The value `record` gives `column`.
pub fn value(record: &VmRecord, column: Column) -> Value<'_> {
    match column {
        Column::Status => record
            .status
            .map_or(Value::Null, |s| Value::Text(s.as_str())),
        Column::CpuCount => int(record.cpu_count),
        Column::MemoryMb => int(record.memory_mb),
        Column::GuestOs => text(&record.guest_os),
        _ => match &record.runtime_details {
            None => Value::Null,
            Some(rt) => runtime_value(rt, column),
        },
    }
}

fn runtime_value(rt: &RuntimeDetails, column: Column) -> Value<'_> {
    match column {
        Column::RuntimeCpuCores => int(rt.cpu_cores),
        Column::RuntimeCpuSockets => int(rt.cpu_sockets),
        Column::RuntimeCpuThreads => int(rt.cpu_threads),
        Column::RuntimeCpuModel => text(&rt.cpu_model),
        Column::RuntimeMemoryGuest => text(&rt.memory_guest),
        Column::RuntimeMemoryCurrent => text(&rt.memory_current),
        Column::RuntimeMemoryRequested => text(&rt.memory_requested),
        Column::RuntimePrimaryIp => text(&rt.primary_ip),
        Column::RuntimeNetworkInterfaces => text(&rt.network_interfaces),
        Column::RuntimeGuestOsId => text(&rt.guest_os_id),
        Column::RuntimeGuestOsName => text(&rt.guest_os_name),
        Column::RuntimeGuestOsVersion => text(&rt.guest_os_version),
        Column::RuntimeGuestOsKernel => text(&rt.guest_os_kernel),
        Column::RuntimePhase => text(&rt.phase),
        Column::RuntimeNodeName => text(&rt.node_name),
        Column::RuntimeQosClass => text(&rt.qos_class),
        Column::RuntimeMachineType => text(&rt.machine_type),
        Column::RuntimeArchitecture => text(&rt.architecture),
        Column::RuntimeVolumeDetails => text(&rt.volume_details),
        Column::RuntimeAgentConnected => rt.agent_connected.map_or(Value::Null, Value::Bool),
        Column::RuntimeHypervisorType => text(&rt.hypervisor_type),
        Column::RuntimeVmiUpdatedAt => rt.vmi_updated_at.map_or(Value::Null, Value::Time),
        Column::Status | Column::CpuCount | Column::MemoryMb | Column::GuestOs => Value::Null,
    }
}

/// The text value of `column` in `record`, to adjust it in place (sanitizing).
pub fn text_mut(record: &mut VmRecord, column: Column) -> Option<&mut String> {
    let slot = match column {
        Column::GuestOs => &mut record.guest_os,
        _ => {
            let rt = Arc::make_mut(record.runtime_details.as_mut()?);
            match column {
                Column::RuntimeCpuModel => &mut rt.cpu_model,
                Column::RuntimeMemoryGuest => &mut rt.memory_guest,
                Column::RuntimeMemoryCurrent => &mut rt.memory_current,
                Column::RuntimeMemoryRequested => &mut rt.memory_requested,
                Column::RuntimePrimaryIp => &mut rt.primary_ip,
                Column::RuntimeNetworkInterfaces => &mut rt.network_interfaces,
                Column::RuntimeGuestOsId => &mut rt.guest_os_id,
                Column::RuntimeGuestOsName => &mut rt.guest_os_name,
                Column::RuntimeGuestOsVersion => &mut rt.guest_os_version,
                Column::RuntimeGuestOsKernel => &mut rt.guest_os_kernel,
                Column::RuntimePhase => &mut rt.phase,
                Column::RuntimeNodeName => &mut rt.node_name,
                Column::RuntimeQosClass => &mut rt.qos_class,
                Column::RuntimeMachineType => &mut rt.machine_type,
                Column::RuntimeArchitecture => &mut rt.architecture,
                Column::RuntimeVolumeDetails => &mut rt.volume_details,
                Column::RuntimeHypervisorType => &mut rt.hypervisor_type,
                _ => return None,
            }
        }
    };
    slot.as_mut()
}

/// Columns whose values differ between `old` (None = never seen) and `new`.
/// `runtime_vmi_updated_at` is bookkeeping, not data: it never counts as a change.
pub fn diff(old: Option<&VmRecord>, new: &VmRecord) -> ColumnSet {
    Column::ALL
        .iter()
        .copied()
        .filter(|c| *c != Column::RuntimeVmiUpdatedAt)
        .filter(|c| match old {
            None => true,
            Some(old) => value(old, *c) != value(new, *c),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{VmKey, VmStatus};

    fn record() -> VmRecord {
        let mut r = VmRecord::new(&VmKey::new("ns", "vm"));
        r.status = Some(VmStatus::PoweredOn);
        r.cpu_count = Some(2);
        r.memory_mb = Some(2048);
        r.runtime_details = Some(Arc::new(RuntimeDetails {
            primary_ip: Some("10.0.0.1".into()),
            agent_connected: Some(true),
            ..RuntimeDetails::default()
        }));
        r
    }

    #[test]
    fn ids_are_unique_below_64_and_are_the_bits() {
        let mut seen = 0u64;
        for c in Column::ALL {
            assert!(c.id() < 64, "{} has id {}", c.name(), c.id());
            assert_eq!(c.bit(), 1u64 << c.id(), "{}", c.name());
            assert_eq!(seen & c.bit(), 0, "{} reuses id {}", c.name(), c.id());
            seen |= c.bit();
        }
        assert_eq!(ColumnSet::all().0, seen);
    }

    /// The ids are persisted (outbox entries' column masks in the state file): the code
    /// must give every column of `tests/fixtures/persisted/column-ids.txt` the id pinned
    /// there. A new column with a new id passes (`VIRTSYNC_BLESS=1` appends it to the
    /// file); a changed, reused or dropped id fails: that needs a migration.
    #[test]
    fn persisted_column_ids_are_pinned() {
        let rel = "persisted/column-ids.txt";
        let path = crate::test_fixtures::path(rel);
        let text = crate::test_fixtures::text(rel);
        let mut pinned: Vec<(String, u8, bool)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            let (name, id, retired) = match parts.as_slice() {
                [name, id] => (*name, *id, false),
                [name, id, "retired"] => (*name, *id, true),
                _ => panic!("{}:{}: expected `name id [retired]`", path.display(), n + 1),
            };
            let id: u8 = id
                .parse()
                .unwrap_or_else(|e| panic!("{}:{}: id {id:?}: {e}", path.display(), n + 1));
            assert!(
                pinned.iter().all(|(p, i, _)| p != name && *i != id),
                "{}:{}: {name} {id} repeats a name or an id of an earlier line",
                path.display(),
                n + 1
            );
            pinned.push((name.to_string(), id, retired));
        }

        let mut problems = Vec::new();
        for (name, id, retired) in &pinned {
            match Column::ALL.iter().find(|c| c.name() == name) {
                Some(c) if *retired => problems.push(format!(
                    "{name} is pinned as retired (id {id}) but is a column again, with id {}",
                    c.id()
                )),
                Some(c) if c.id() != *id => problems.push(format!(
                    "{name} has id {} in src/columns.rs, pinned as {id}",
                    c.id()
                )),
                Some(_) => {}
                None if *retired => {}
                None => problems.push(format!(
                    "{name} (id {id}) is gone from src/columns.rs (a dropped column stays in \
                     the file as `{name} {id} retired`, its id reserved)"
                )),
            }
            if let Some(c) = Column::ALL
                .iter()
                .find(|c| c.id() == *id && c.name() != name)
            {
                problems.push(format!("id {id} of {name} is reused by {}", c.name()));
            }
        }
        assert!(
            problems.is_empty(),
            "persisted column ids changed, compared with {}:\n  {}\n\
             These ids are the bits of the column masks that outbox entries in existing \
             state files hold: changing, reusing or dropping one needs a migration of the \
             state file (docs/ARCHITECTURE.md, \"State and outbox\"), not an edit of the \
             pinned file. Reordering the lines of `columns!` is fine if each keeps its id.",
            path.display(),
            problems.join("\n  ")
        );

        let new: Vec<Column> = Column::ALL
            .iter()
            .copied()
            .filter(|c| pinned.iter().all(|(name, _, _)| name != c.name()))
            .collect();
        if new.is_empty() {
            return;
        }
        // A new column is pinned on purpose, once: from then on its id is checked too.
        let names: Vec<String> = new
            .iter()
            .map(|c| format!("{} {}", c.name(), c.id()))
            .collect();
        assert!(
            std::env::var_os("VIRTSYNC_BLESS").is_some_and(|v| v == "1"),
            "new columns not pinned in {} yet: {}. Run `VIRTSYNC_BLESS=1 cargo test --lib \
             persisted` to append them (and commit the file): their ids are persisted from \
             the first release on.",
            path.display(),
            names.join(", ")
        );
        let mut text = text;
        for line in &names {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    #[test]
    fn equal_records_have_no_diff() {
        assert!(diff(Some(&record()), &record()).is_empty());
    }

    #[test]
    fn first_sight_writes_every_column_but_the_timestamp() {
        let d = diff(None, &record());
        assert_eq!(d.len(), Column::ALL.len() - 1);
        assert!(!d.contains(Column::RuntimeVmiUpdatedAt));
    }

    #[test]
    fn diff_names_exactly_the_changed_columns() {
        let old = record();
        let mut new = record();
        new.memory_mb = Some(4096);
        if let Some(rt) = new.runtime_details.as_mut().map(Arc::make_mut) {
            rt.primary_ip = Some("10.0.0.2".into());
            rt.vmi_updated_at = Some(Timestamp { unix_millis: 5 });
        }
        assert_eq!(
            diff(Some(&old), &new).names(),
            vec!["memory_mb", "runtime_primary_ip"]
        );
    }

    #[test]
    fn clearing_runtime_changes_only_the_columns_that_had_values() {
        let old = record();
        let mut new = record();
        new.runtime_details = None;
        assert_eq!(
            diff(Some(&old), &new).names(),
            vec!["runtime_primary_ip", "runtime_agent_connected"]
        );
    }

    #[test]
    fn writable_follows_owns_and_schema() {
        let all = Owns {
            status: true,
            legacy: true,
            runtime: true,
        };
        assert_eq!(ColumnSet::writable(&all, SchemaMode::Compat).len(), 4);
        assert_eq!(
            ColumnSet::writable(&all, SchemaMode::Extended).len(),
            Column::ALL.len()
        );
        let runtime_only = Owns {
            status: false,
            legacy: false,
            runtime: true,
        };
        let w = ColumnSet::writable(&runtime_only, SchemaMode::Extended);
        assert!(!w.contains(Column::Status) && w.contains(Column::RuntimePhase));
    }

    #[test]
    fn fences_follow_the_source_of_each_group() {
        assert!(!Column::Status.fenced_by_vmi(LegacyOrigin::Vmi));
        assert!(Column::CpuCount.fenced_by_vmi(LegacyOrigin::Vmi));
        assert!(!Column::CpuCount.fenced_by_vmi(LegacyOrigin::Vm));
        assert!(Column::RuntimePhase.fenced_by_vmi(LegacyOrigin::Vm));
    }
}
