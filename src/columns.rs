//! The `vms` columns virtsync can write, how a record maps onto them, and the pure
//! `diff(old, new)` that decides which of them changed.

use std::sync::Arc;

use crate::config::{Owns, SchemaMode};
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
    ($($variant:ident => $name:literal, $group:ident, $kind:ident;)*) => {
        /// A writable column of the `vms` table.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Column { $($variant),* }

        impl Column {
            pub const ALL: &'static [Column] = &[$(Column::$variant),*];

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
    };
}

columns! {
    Status => "status", Status, Text;
    CpuCount => "cpu_count", Legacy, Int;
    MemoryMb => "memory_mb", Legacy, Int;
    GuestOs => "guest_os", Legacy, Text;
    RuntimeCpuCores => "runtime_cpu_cores", Runtime, Int;
    RuntimeCpuSockets => "runtime_cpu_sockets", Runtime, Int;
    RuntimeCpuThreads => "runtime_cpu_threads", Runtime, Int;
    RuntimeCpuModel => "runtime_cpu_model", Runtime, Text;
    RuntimeMemoryGuest => "runtime_memory_guest", Runtime, Text;
    RuntimeMemoryCurrent => "runtime_memory_current", Runtime, Text;
    RuntimeMemoryRequested => "runtime_memory_requested", Runtime, Text;
    RuntimePrimaryIp => "runtime_primary_ip", Runtime, Text;
    RuntimeNetworkInterfaces => "runtime_network_interfaces", Runtime, Text;
    RuntimeGuestOsId => "runtime_guest_os_id", Runtime, Text;
    RuntimeGuestOsName => "runtime_guest_os_name", Runtime, Text;
    RuntimeGuestOsVersion => "runtime_guest_os_version", Runtime, Text;
    RuntimeGuestOsKernel => "runtime_guest_os_kernel", Runtime, Text;
    RuntimePhase => "runtime_phase", Runtime, Text;
    RuntimeNodeName => "runtime_node_name", Runtime, Text;
    RuntimeQosClass => "runtime_qos_class", Runtime, Text;
    RuntimeMachineType => "runtime_machine_type", Runtime, Text;
    RuntimeArchitecture => "runtime_architecture", Runtime, Text;
    RuntimeVolumeDetails => "runtime_volume_details", Runtime, Text;
    RuntimeAgentConnected => "runtime_agent_connected", Runtime, Bool;
    RuntimeHypervisorType => "runtime_hypervisor_type", Runtime, Text;
    RuntimeVmiUpdatedAt => "runtime_vmi_updated_at", Runtime, Time;
}

impl Column {
    pub fn bit(self) -> u64 {
        1 << (self as u32)
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
