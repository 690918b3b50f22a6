//! The `[postgres]` section.

use std::time::Duration;

use super::{Check, HOUR, KeySpec, Kind, POSITIVE, Preset, Section, ms, secs};

pub(super) const POSTGRES: Section = Section {
    name: "postgres",
    keys: &[
        KeySpec {
            key: "postgres.url",
            kind: Kind::OptStr,
            default: Preset::Unset {
                example: r#""postgres://virtsync@db.example.com/virtsync""#,
            },
            doc: &[
                "Database connection used by the daemon.",
                "Default: not set (required by commands that use the database).",
                r#"Accepted: a postgres:// or postgresql:// URL, or a "key=value ...""#,
                "connection string. It must not contain a password: put the password in",
                "password_file or in the systemd credential store file",
                "/etc/credstore/virtsync.postgres-password (root-only; the unit hands it",
                "over as $CREDENTIALS_DIRECTORY/postgres-password).",
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "postgres.owner_url",
            kind: Kind::OptStr,
            default: Preset::Unset {
                example: r#""postgres://virtsync_owner@db.example.com/virtsync""#,
            },
            doc: &[
                "Database connection used by `migrate` (a role that owns the schema).",
                "Default: not set. Accepted: same as url, also without a password.",
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "postgres.lock_url",
            kind: Kind::OptStr,
            default: Preset::Unset {
                example: r#""postgres://virtsync@db-direct.example.com/virtsync""#,
            },
            doc: &[
                "Database connection of the cluster-role election (candidates only), when url",
                "goes through a connection pooler such as PgBouncer: the election holds a",
                "session-level advisory lock, so it must reach PostgreSQL directly. The",
                "daemon's own connection works through a pooler in transaction mode.",
                "Default: not set (url is used). Accepted: same as url.",
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "postgres.password_file",
            kind: Kind::OptStr,
            default: Preset::Unset {
                example: r#""/etc/virtsync/postgres-password""#,
            },
            doc: &[
                "File containing the database password (trailing line breaks are ignored).",
                "Default: not set; then $CREDENTIALS_DIRECTORY/postgres-password is used if",
                "it exists (the unit loads /etc/credstore/virtsync.postgres-password there),",
                "else no password. Accepted: a file path.",
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "postgres.ca_file",
            kind: Kind::OptStr,
            default: Preset::Unset {
                example: r#""/etc/virtsync/postgres-ca.pem""#,
            },
            doc: &[
                "TLS: with sslmode=require in the URL, or whenever this is set (then TLS is",
                "mandatory, no fallback to plaintext). The server's certificate is always",
                "verified, chain and host name (like libpq's verify-full), against this PEM",
                "file of CA certificates, or the system's trust store when not set.",
                "Default: not set. Accepted: a file path.",
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "postgres.schema",
            kind: Kind::Str,
            default: Preset::Toml(r#""compat""#),
            doc: &[
                "Layout of the VM table.",
                r#"Default: "compat". Accepted: "compat", "extended"."#,
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "postgres.table",
            kind: Kind::Str,
            default: Preset::Toml(r#""vms""#),
            doc: &[
                "The VM table.",
                r#"Default: "vms". Accepted: "name" or "schema.name", each part a letter or"#,
                "'_' followed by letters, digits or '_', at most 63 characters.",
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "postgres.batch_size",
            kind: Kind::Int,
            default: Preset::Toml("500"),
            check: Check::Int {
                min: 1,
                max: 10_000,
            },
            doc: &[
                "Maximum number of rows written in one statement.",
                "Default: 500. Accepted: 1 to 10000.",
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "postgres.flush_interval",
            kind: Kind::Duration,
            default: Preset::Toml(r#""50ms""#),
            check: Check::Duration {
                min: ms(1),
                max: Some(HOUR),
            },
            doc: &[
                "At most one flush per interval: a change arriving after a quiet period is",
                "written at once; changes arriving while busy are coalesced into the next",
                "batch, written at most this much later.",
                r#"Default: "50ms". Accepted: a duration from 1ms to 1h."#,
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "postgres.managed_refresh_interval",
            kind: Kind::Duration,
            default: Preset::Toml(r#""30s""#),
            check: Check::Duration {
                min: secs(1),
                max: None,
            },
            doc: &[
                "How often this daemon checks again which of its VMs have a row in the table",
                "(by key; the cluster-role holder reads the keys of the whole table). New",
                "VMs are looked up when they appear, and a row that disappeared is noticed",
                "by the next write. The first check after a start is at a random moment",
                "within the interval.",
                r#"Default: "30s". Accepted: a duration of at least 1s."#,
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "postgres.resync_interval",
            kind: Kind::Duration,
            default: Preset::Toml(r#""1h""#),
            check: Check::Duration {
                min: Duration::ZERO,
                max: None,
            },
            doc: &[
                "How often the rows are compared with what virtsync knows (anti-entropy):",
                "this daemon's own rows; the cluster-role holder compares the whole table.",
                "The first pass after a start is at a random moment within the interval,",
                "so a fleet restarted together does not read the table all at once.",
                r#"Default: "1h". Accepted: a duration; "0s" disables it."#,
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "postgres.connect_timeout",
            kind: Kind::Duration,
            default: Preset::Toml(r#""10s""#),
            check: Check::Duration {
                min: POSITIVE,
                max: None,
            },
            doc: &[
                "Timeout for establishing a database connection.",
                r#"Default: "10s". Accepted: a duration greater than 0s."#,
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "postgres.lock_key",
            kind: Kind::Int,
            default: Preset::Toml("0x7669727473796e63"),
            doc: &[
                "PostgreSQL advisory lock key.",
                "Default: 0x7669727473796e63 (8532476813509226083). Accepted: any 64-bit",
                "signed integer (decimal or 0x hexadecimal).",
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "postgres.lock_timeout",
            kind: Kind::Duration,
            default: Preset::Toml(r#""10s""#),
            check: Check::Duration {
                min: Duration::ZERO,
                max: None,
            },
            doc: &[
                "How long one statement waits for a lock: `migrate` for the table locks of",
                "its DDL, the daemon for row locks held by others (the batch is then retried).",
                r#"Default: "10s". Accepted: a duration."#,
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "postgres.lock_idle_timeout",
            kind: Kind::Duration,
            default: Preset::Toml(r#""15s""#),
            check: Check::Duration {
                min: secs(1),
                max: Some(HOUR),
            },
            doc: &[
                "The cluster role (all VMs) is held by one daemon at a time through the",
                "advisory lock lock_key, taken on a dedicated connection. That session ends",
                "itself after idling this long (PostgreSQL's idle_session_timeout, so",
                "PostgreSQL 14 or newer is needed), which frees the lock of a hung holder;",
                "the holder checks its lock at a third of this interval and gives up the",
                "role when a check fails or is late. The same bound ends a write",
                "transaction that stays idle this long (idle_in_transaction_session_timeout),",
                "so a frozen daemon cannot hold other daemons' row locks.",
                r#"Default: "15s". Accepted: a duration from 1s to 1h."#,
            ],
            ..KeySpec::BASE
        },
        KeySpec {
            key: "postgres.lock_retry_interval",
            kind: Kind::Duration,
            default: Preset::Toml(r#""2s""#),
            check: Check::Duration {
                min: ms(100),
                max: Some(HOUR),
            },
            doc: &[
                "How often a standby daemon tries to take the cluster role.",
                r#"Default: "2s". Accepted: a duration from 100ms to 1h, shorter than"#,
                "lock_idle_timeout.",
            ],
            ..KeySpec::BASE
        },
    ],
};
