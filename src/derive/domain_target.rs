//! When the hypervisor type of a VMI's domain is read: when the VMI enters
//! Running on this node, after a migration onto this node ends, and after a resume.
//! Pure: the tracker computes a [`DomainTarget`] per VMI and the probe decides with
//! [`needs_probe`] whether a changed target means a new look at the domain.

use super::vmi::VmiPart;

/// The parts of a VMI's status that say its domain may have changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainFacts {
    /// The `Paused` condition is True (KubeVirt keeps phase Running while paused).
    pub paused: bool,
    /// A completed `status.migrationState`: (target node, end timestamp).
    pub migration_completed: Option<(String, String)>,
}

/// A VMI running on this node, as the hypervisor probe needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainTarget {
    pub uid: Option<String>,
    /// `status.activePods` (pod UID, node): where the `kubevirt` locator looks.
    pub active_pods: Vec<(String, String)>,
    pub runtime_user: Option<i64>,
    pub paused: bool,
    /// End time of the last completed migration onto this node.
    pub migrated_in_at: Option<String>,
}

/// The target of a VMI in phase Running on `node`; `None` for any other VMI (its series
/// is removed).
pub fn domain_target(part: &VmiPart, node: &str) -> Option<DomainTarget> {
    let running = !part.final_phase
        && part.runtime.phase.as_deref() == Some("Running")
        && part.node.as_deref() == Some(node);
    running.then(|| DomainTarget {
        uid: part.uid.clone(),
        active_pods: part.active_pods.clone(),
        runtime_user: part.runtime_user,
        paused: part.domain.paused,
        migrated_in_at: part
            .domain
            .migration_completed
            .as_ref()
            .filter(|(target, _)| target == node)
            .map(|(_, end)| end.clone()),
    })
}

/// Whether `new` needs a new look at the domain after `old` was looked at: another VMI
/// (uid), a resume, or a migration onto this node that ended since.
pub fn needs_probe(old: Option<&DomainTarget>, new: &DomainTarget) -> bool {
    let Some(old) = old else {
        return true;
    };
    old.uid != new.uid
        || (old.paused && !new.paused)
        || (new.migrated_in_at.is_some() && new.migrated_in_at != old.migrated_in_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RuntimeDetails, VmKey};
    use std::sync::Arc;

    fn part(phase: &str, node: &str) -> VmiPart {
        VmiPart {
            key: VmKey::new("ns", "vm"),
            uid: Some("u1".into()),
            resource_version: Some(1),
            node: Some(node.into()),
            final_phase: matches!(phase, "Succeeded" | "Failed"),
            cpu_count: None,
            memory_mb: None,
            guest_os: None,
            runtime: Arc::new(RuntimeDetails {
                phase: Some(phase.into()),
                ..RuntimeDetails::default()
            }),
            active_pods: vec![("pod".into(), node.into())],
            runtime_user: Some(107),
            domain: DomainFacts::default(),
            warnings: vec![],
        }
    }

    #[test]
    fn only_vmis_running_on_this_node_have_a_target() {
        assert!(domain_target(&part("Running", "me"), "me").is_some());
        for (phase, node) in [
            ("Scheduled", "me"),
            ("Pending", "me"),
            ("Succeeded", "me"),
            ("Failed", "me"),
            ("Running", "other"),
        ] {
            assert_eq!(
                domain_target(&part(phase, node), "me"),
                None,
                "{phase} {node}"
            );
        }
    }

    #[test]
    fn probe_on_start_resume_migration_in_and_new_uid_only() {
        let base = domain_target(&part("Running", "me"), "me").unwrap();
        assert!(needs_probe(None, &base), "entered Running");
        assert!(!needs_probe(Some(&base), &base), "nothing changed");

        let mut paused = base.clone();
        paused.paused = true;
        assert!(
            !needs_probe(Some(&base), &paused),
            "pausing keeps the domain"
        );
        assert!(needs_probe(Some(&paused), &base), "resume");

        let mut pods = base.clone();
        pods.active_pods.push(("pod2".into(), "other".into()));
        assert!(
            !needs_probe(Some(&base), &pods),
            "a migration target pod elsewhere"
        );

        let mut p = part("Running", "me");
        p.domain.migration_completed = Some(("me".into(), "2026-11-23T10:00:00Z".into()));
        let migrated = domain_target(&p, "me").unwrap();
        assert!(
            needs_probe(Some(&base), &migrated),
            "migration onto this node ended"
        );
        assert!(!needs_probe(Some(&migrated), &migrated));
        p.domain.migration_completed = Some(("other".into(), "2026-11-23T11:00:00Z".into()));
        let away = domain_target(&p, "me").unwrap();
        assert_eq!(
            away.migrated_in_at, None,
            "a migration to another node is not ours"
        );
        assert!(!needs_probe(Some(&migrated), &away));

        let mut other = base.clone();
        other.uid = Some("u2".into());
        assert!(
            needs_probe(Some(&base), &other),
            "a new VMI of the same name"
        );
    }
}
