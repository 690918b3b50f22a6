//! The `[cache]`, `[api]`, `[metrics]`, `[capabilities]` and `[log]` sections.

use std::time::Duration;

use super::{Check, KeySpec, Kind, POSITIVE, Preset, Section, secs};

pub(super) const CACHE: Section = Section {
    name: "cache",
    keys: &[
        KeySpec {
            key: "cache.path",
            kind: Kind::Str,
            default: Preset::Toml(r#""/var/lib/virtsync/state.redb""#),
            doc: &[
                "Local state database.",
                r#"Default: "/var/lib/virtsync/state.redb". Accepted: a file path."#,
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "cache.cache_size",
            kind: Kind::Size,
            default: Preset::Toml(r#""4MiB""#),
            check: Check::SizeAtLeast(1 << 20),
            doc: &[
                "Memory cache size of the state database (its records are also kept in memory, so",
                "this only holds the pages a write touches).",
                r#"Default: "4MiB". Accepted: a size of at least 1MiB."#,
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "cache.sync_interval",
            kind: Kind::Duration,
            default: Preset::Toml(r#""1s""#),
            check: Check::Duration {
                min: Duration::ZERO,
                max: Some(secs(60)),
            },
            doc: &[
                "Longest time a change stays in memory only before it is written to the state file",
                r#"(one fsynced write for everything changed meanwhile); "0s" writes every change at"#,
                "once. A crash loses at most this much of the local state, which the relist after",
                "the restart derives again (nothing reaches PostgreSQL twice with different values).",
                r#"Default: "1s". Accepted: a duration from 0s to 1m."#,
            ],
            ..KeySpec::BASE
        },
    ],
};

pub(super) const API: Section = Section {
    name: "api",
    keys: &[
        KeySpec {
            key: "api.socket",
            kind: Kind::Str,
            default: Preset::Toml(r#""/run/virtsync/virtsync.sock""#),
            doc: &[
                "Unix socket of the local control API.",
                r#"Default: "/run/virtsync/virtsync.sock". Accepted: a path."#,
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "api.admin_group",
            kind: Kind::Str,
            default: Preset::Toml(r#""virtsync-admin""#),
            doc: &[
                "Members of this group may use the administrative API calls.",
                r#"Default: "virtsync-admin". Accepted: a group name."#,
            ],
            ..KeySpec::BASE
        },
    ],
};

pub(super) const METRICS: Section = Section {
    name: "metrics",
    keys: &[KeySpec {
        key: "metrics.listen",
        kind: Kind::Str,
        default: Preset::Toml(r#""127.0.0.1:9746""#),
        doc: &[
            "Address of the Prometheus metrics HTTP endpoint.",
            r#"Default: "127.0.0.1:9746". Accepted: "ip:port", "[ipv6]:port"."#,
        ],
        ..KeySpec::BASE
    }],
};

pub(super) const CAPABILITIES: Section = Section {
    name: "capabilities",
    keys: &[
        KeySpec {
            key: "capabilities.refresh_interval",
            kind: Kind::Duration,
            default: Preset::Toml(r#""1h""#),
            check: Check::Duration {
                min: POSITIVE,
                max: None,
            },
            doc: &[
                "How often host capabilities are re-read.",
                r#"Default: "1h". Accepted: a duration greater than 0s."#,
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "capabilities.machines",
            kind: Kind::ArchLists,
            default: Preset::Table(&[
                r#"x86_64 = ["q35"]"#,
                r#"aarch64 = ["virt"]"#,
                r#"s390x = ["s390-ccw-virtio"]"#,
                r#"ppc64 = ["pseries"]"#,
                r#"ppc64le = ["pseries"]"#,
                r#"riscv64 = ["virt"]"#,
            ]),
            doc: &[
                "The machine types whose domain capabilities describe the guests, per host",
                "architecture (as libvirt names it), in preference order. Discovery asks",
                "libvirt's domain capabilities for each of the host's architecture, for kvm and",
                "for qemu (TCG). Secure boot, firmware, max vCPUs and disk buses are reported",
                "per machine; the host-level values describe the guests' machine: the machine",
                "type the VMIs on this node run (status.machine.type) when one is known, else",
                "the first listed here. An alias such as q35 is resolved to libvirt's",
                "canonical machine (e.g. pc-q35-7.2). An architecture not listed gets",
                "libvirt's default machine (on x86_64 that would be pc, not what KubeVirt",
                "guests use).",
                r#"Default: x86_64 = ["q35"], aarch64 = ["virt"], s390x = ["s390-ccw-virtio"],"#,
                r#"ppc64 and ppc64le = ["pseries"], riscv64 = ["virt"]. The architectures set"#,
                "here replace their defaults; the others keep theirs.",
                "Accepted: per architecture (lowercase letters, digits and '_'), a non-empty",
                "list of machine type names (ASCII letters, digits, '-', '_' and '.', at most",
                "64 characters) without duplicates. As an override:",
                r#"VIRTSYNC_CAPABILITIES_MACHINES="x86_64=q35,pc-q35-8.2;aarch64=virt"."#,
            ],
            ..KeySpec::BASE
        },
    ],
};

pub(super) const LOG: Section = Section {
    name: "log",
    keys: &[KeySpec {
        key: "log.format",
        kind: Kind::Str,
        default: Preset::Toml(r#""auto""#),
        doc: &[
            "How `virtsync daemon` writes its log (the other commands always write text",
            "to stderr). RUST_LOG sets the level in every format (default: info).",
            r#""journal" uses the journal's native protocol: PRIORITY per level (error 3,"#,
            "warning 4, info 6, debug and trace 7), SYSLOG_IDENTIFIER=virtsync, no",
            "timestamp of its own, and the event's fields as journal fields: VM",
            r#"("namespace/name"), COMPONENT (the Rust module, e.g."#,
            "virtsync::sink::postgres), ERROR, ... (journalctl -u virtsync -p warning,",
            "journalctl -u virtsync VM=tenant-a/web-1, journalctl -o verbose). When the",
            r#"journal socket cannot be used it writes "<N>"-prefixed lines to stderr,"#,
            "which journald also reads as priorities, and says why once.",
            r#"Default: "auto": "journal" when stderr is connected to the journal (systemd"#,
            r#"sets $JOURNAL_STREAM to its device and inode), else "text"."#,
            r#"Accepted: "auto", "text" (lines with a timestamp; colours on a terminal"#,
            r#"only), "journal", "json" (one JSON object per line on stderr, with"#,
            "timestamp, level, fields and target, for log shippers).",
        ],
        ..KeySpec::BASE
    }],
};
