use crate::derive::status::{map_printable, should_run, vm_status};
use crate::model::VmStatus::{self, *};

const TABLE: &[(&str, VmStatus)] = &[
    ("Running", PoweredOn),
    ("Migrating", PoweredOn),
    ("Stopped", PoweredOff),
    ("Starting", PoweringOn),
    ("Stopping", PoweringOff),
    ("Terminating", PoweringOff),
    ("Provisioning", Starting),
    ("WaitingForVolumeBinding", Starting),
    ("WaitingForReceiver", Starting),
    ("Paused", Suspended),
    ("CrashLoopBackOff", Error),
    ("ErrorUnschedulable", Error),
    ("ErrImagePull", Error),
    ("ImagePullBackOff", Error),
    ("ErrorPvcNotFound", Error),
    ("ErrorDataVolumeNotFound", Error),
    ("DataVolumeError", Error),
    ("Unknown", Unknown),
];

#[test]
fn every_row_of_the_table() {
    for (printable, expected) in TABLE {
        assert_eq!(map_printable(printable), Some(*expected), "{printable}");
        for runs in [false, true] {
            let m = vm_status(Some(printable), runs, false);
            assert_eq!(m.status, *expected, "{printable}");
            assert_eq!(m.unrecognized, None);
            // A deletionTimestamp wins over every value.
            assert_eq!(vm_status(Some(printable), runs, true).status, Deleting);
        }
    }
}

#[test]
fn empty_status_follows_whether_the_vm_should_run() {
    let cases: &[(Option<bool>, Option<&str>, bool)] = &[
        (None, None, false),
        (Some(true), None, true),
        (Some(false), None, false),
        (None, Some("Always"), true),
        (None, Some("RerunOnFailure"), true),
        (None, Some("Once"), true),
        (None, Some("always"), true),
        (None, Some("Halted"), false),
        (None, Some("Manual"), false),
        (None, Some("WaitAsReceiver"), false),
        (None, Some(""), false),
        (Some(false), Some("Always"), true),
        (Some(true), Some("Halted"), true),
    ];
    for (running, strategy, runs) in cases {
        assert_eq!(
            should_run(*running, *strategy),
            *runs,
            "{running:?} {strategy:?}"
        );
        let expected = if *runs { Starting } else { Stopped };
        for printable in [None, Some(""), Some("  ")] {
            let m = vm_status(printable, *runs, false);
            assert_eq!(m.status, expected, "{running:?} {strategy:?} {printable:?}");
            assert_eq!(m.unrecognized, None);
        }
        assert_eq!(vm_status(None, *runs, true).status, Deleting);
    }
}

#[test]
fn unknown_values_map_to_unknown_and_are_reported() {
    for value in ["Exploding", "running", "RUNNING", "printableStatusValue"] {
        assert_eq!(map_printable(value), None, "{value}");
        let m = vm_status(Some(value), true, false);
        assert_eq!(m.status, Unknown);
        assert_eq!(m.unrecognized.as_deref(), Some(value));
        let m = vm_status(Some(value), true, true);
        assert_eq!(m.status, Deleting);
        assert_eq!(m.unrecognized, None);
    }
}
