//! The VM power status (SSVirt's values; the table is in docs/ARCHITECTURE.md,
//! "Field rules") from KubeVirt's `status.printableStatus`, the deletion timestamp and
//! whether the VM should run.

use crate::model::VmStatus;

/// The outcome of the mapping; `unrecognized` holds a printableStatus value the table does
/// not know (mapped to UNKNOWN), so the caller can log it once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusMapping {
    pub status: VmStatus,
    pub unrecognized: Option<String>,
}

/// Whether the VM is meant to run: `spec.running: true`, or a runStrategy of `Always`,
/// `RerunOnFailure` or `Once` (compared ignoring ASCII case).
pub fn should_run(running: Option<bool>, run_strategy: Option<&str>) -> bool {
    let strategy_runs = run_strategy.is_some_and(|s| {
        ["Always", "RerunOnFailure", "Once"]
            .iter()
            .any(|r| r.eq_ignore_ascii_case(s.trim()))
    });
    running == Some(true) || strategy_runs
}

/// One printableStatus value; `None` for a value the table does not know.
pub fn map_printable(printable: &str) -> Option<VmStatus> {
    Some(match printable {
        "Running" | "Migrating" => VmStatus::PoweredOn,
        "Stopped" => VmStatus::PoweredOff,
        "Starting" => VmStatus::PoweringOn,
        "Stopping" | "Terminating" => VmStatus::PoweringOff,
        "Provisioning" | "WaitingForVolumeBinding" | "WaitingForReceiver" => VmStatus::Starting,
        "Paused" => VmStatus::Suspended,
        "CrashLoopBackOff"
        | "ErrorUnschedulable"
        | "ErrImagePull"
        | "ImagePullBackOff"
        | "ErrorPvcNotFound"
        | "ErrorDataVolumeNotFound"
        | "DataVolumeError" => VmStatus::Error,
        "Unknown" => VmStatus::Unknown,
        _ => return None,
    })
}

/// The status of a VM that exists: DELETING once it has a deletionTimestamp; an absent
/// or empty printableStatus gives STARTING when the VM should run, else STOPPED; a value
/// the table does not know gives UNKNOWN (and is returned for logging).
pub fn vm_status(printable: Option<&str>, should_run: bool, deleting: bool) -> StatusMapping {
    if deleting {
        return StatusMapping {
            status: VmStatus::Deleting,
            unrecognized: None,
        };
    }
    match printable.map(str::trim).filter(|p| !p.is_empty()) {
        None => StatusMapping {
            status: if should_run {
                VmStatus::Starting
            } else {
                VmStatus::Stopped
            },
            unrecognized: None,
        },
        Some(p) => match map_printable(p) {
            Some(status) => StatusMapping {
                status,
                unrecognized: None,
            },
            None => StatusMapping {
                status: VmStatus::Unknown,
                unrecognized: Some(p.to_string()),
            },
        },
    }
}
