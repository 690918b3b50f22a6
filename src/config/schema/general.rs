//! The top-level keys and the `[kubernetes]` and `[libvirt]` sections.

use super::{Check, KeySpec, Kind, Preset, Section, ms};

pub(super) const TOP: Section = Section {
    name: "",
    keys: &[
        KeySpec {
            key: "node_name",
            kind: Kind::OptStr,
            default: Preset::Unset {
                example: r#""worker-1""#,
            },
            doc: &[
                "Name of this node as registered in Kubernetes.",
                "Default: the host name, lowercased.",
                "Accepted: a DNS-1123 subdomain: lowercase letters, digits, '-' and '.',",
                "starting and ending with a letter or digit, at most 253 characters.",
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "role",
            kind: Kind::Str,
            default: Preset::Toml(r#""all""#),
            shipped: Some(r#""node""#),
            doc: &[
                "What this instance does.",
                r#"Default: "all" when no file sets it; this file sets "node", for a fleet."#,
                r#"Accepted: "node" (the VMIs running on this node, labelled"#,
                "kubevirt.io/nodeName=<node_name>, and libvirt on this host; one PostgreSQL",
                r#"connection), "cluster" (all VMs: power status, spec values of stopped VMs,"#,
                "deletions; held by one daemon at a time through a PostgreSQL advisory",
                r#"lock), "all" (both; right for a single host or a lab)."#,
                r#"In a fleet, set role = "all" on 2 or 3 hosts only: they are the candidates"#,
                "for the cluster role (each keeps a second, mostly idle connection for the",
                r#"election), and the others stay "node". Without any candidate, nobody"#,
                "writes power status or deletions.",
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "owns",
            kind: Kind::List,
            default: Preset::Toml(r#"["status", "legacy", "runtime"]"#),
            doc: &[
                r#"Which groups of columns of the VM table this instance writes: "status""#,
                r#"(status), "legacy" (cpu_count, memory_mb, guest_os), "runtime" (the"#,
                r#"runtime_* columns, only with postgres.schema = "extended"). When the cloud"#,
                "API's own status controller still writes status and legacy columns, let",
                r#"virtsync own only "runtime"."#,
                r#"Default: all three. Accepted: a non-empty list of "status", "legacy","#,
                r#""runtime", without duplicates."#,
            ],
            ..KeySpec::BASE
        },
    ],
};

pub(super) const KUBERNETES: Section = Section {
    name: "kubernetes",
    keys: &[
        KeySpec {
            key: "kubernetes.kubeconfig",
            kind: Kind::OptStr,
            default: Preset::Unset {
                example: r#""/etc/virtsync/kubeconfig""#,
            },
            doc: &[
                "Kubeconfig file used to reach the Kubernetes API.",
                "Default: not set. Accepted: a file path.",
                "At most one of kubeconfig, url and in_cluster = true may be set; with none",
                "of them the KubeVirt source is off ($KUBECONFIG is not consulted).",
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "kubernetes.url",
            kind: Kind::OptStr,
            default: Preset::Unset {
                example: r#""https://127.0.0.1:6443""#,
            },
            doc: &[
                "Kubernetes API server URL.",
                "Default: not set. Accepted: a URL starting with http:// or https://.",
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "kubernetes.in_cluster",
            kind: Kind::Bool,
            default: Preset::Toml("false"),
            doc: &[
                "Use the pod's service account (when running inside the cluster).",
                "Default: false. Accepted: true, false.",
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "kubernetes.namespaces",
            kind: Kind::List,
            default: Preset::Toml("[]"),
            doc: &[
                "Namespaces to watch.",
                "Default: [] (all namespaces). Accepted: a list of namespace names (DNS-1123",
                "labels), without duplicates.",
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "kubernetes.label_selector",
            kind: Kind::OptStr,
            default: Preset::Unset {
                example: r#""virtsync.io/enabled=true""#,
            },
            doc: &[
                "Only handle objects matching this Kubernetes label selector.",
                "Default: not set (all objects). Accepted: a label selector: comma-separated",
                r#"requirements of the forms k=v, k==v, k!=v, "k in (a,b)", "k notin (a,b)","#,
                "k and !k. Added to every watch (VMIs also select this node's label).",
            ],
            ..KeySpec::BASE
        },
    ],
};

pub(super) const LIBVIRT: Section = Section {
    name: "libvirt",
    keys: &[
        KeySpec {
            key: "libvirt.uri",
            kind: Kind::OptStr,
            default: Preset::Unset {
                example: r#""qemu:///system""#,
            },
            doc: &[
                "libvirt connection URI of this host (capability discovery; the domains",
                r#"when locator = "uri")."#,
                "Default: not set (no libvirt: discovery off, logged). Accepted: a libvirt",
                "URI, e.g. qemu:///system on a libvirt host.",
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "libvirt.locator",
            kind: Kind::Str,
            default: Preset::Toml(r#""uri""#),
            doc: &[
                "How the libvirt daemons are found.",
                r#"Default: "uri". Accepted: "uri" (connect to libvirt.uri), "kubevirt" (the"#,
                "per-VM virtqemud sockets of KubeVirt launcher pods, see socket_template).",
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "libvirt.kubelet_root",
            kind: Kind::Str,
            default: Preset::Toml(r#""/var/lib/kubelet""#),
            doc: &[
                r#"The kubelet's root directory (locator = "kubevirt")."#,
                r#"Default: "/var/lib/kubelet". Accepted: a directory path."#,
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "libvirt.socket_template",
            kind: Kind::Str,
            default: Preset::Toml(
                r#""{kubelet_root}/pods/{pod_uid}/volumes/kubernetes.io~empty-dir/libvirt-runtime/virtqemud-sock""#,
            ),
            doc: &[
                r#"Path of a launcher pod's virtqemud socket (locator = "kubevirt")."#,
                "Default: shown below. Accepted: a path; placeholders {kubelet_root} and",
                "{pod_uid} are replaced, no other placeholders are allowed.",
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "libvirt.domain_check_interval",
            kind: Kind::Duration,
            default: Preset::Toml(r#""30s""#),
            check: Check::Duration {
                min: ms(100),
                max: None,
            },
            doc: &[
                "How often the domain of each VMI running on this node is looked at again (its",
                "hypervisor type; a domain gone loses its kubevirt_vmi_hypervisor_info series).",
                "It is also looked at when the VMI starts, resumes or migrates onto this node.",
                r#"Default: "30s". Accepted: a duration of at least 100ms."#,
            ],
            ..KeySpec::BASE
        },
    ],
};
