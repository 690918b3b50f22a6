//! The redb file itself: table definitions, opening with a capped cache, and moving an
//! unreadable or foreign file aside so a bad file never causes a crash loop.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, TableDefinition};

use super::{SCHEMA_VERSION, StoreError, redb_err};

pub const VM_RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("vm_records");
pub const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
/// VMs with a live row: key → the row's id, so a replaced row (same name, new id) is
/// noticed and written like a new one.
pub const MANAGED: TableDefinition<&str, &str> = TableDefinition::new("managed");
pub const HOST: TableDefinition<&str, &[u8]> = TableDefinition::new("host");
pub const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

pub const META_SCHEMA_VERSION: &str = "schema_version";
pub const META_NEXT_SEQ: &str = "next_seq";

/// Opens (or creates) the file; returns the path it was moved to if it had to be rebuilt.
pub fn open_or_rebuild(
    path: &Path,
    cache_size: u64,
    now_unix: u64,
) -> Result<(Database, Option<PathBuf>), StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: path.display().to_string(),
            dir: dir.display().to_string(),
            source,
        })?;
    }
    match open(path, cache_size) {
        Ok(db) => match check_schema(&db) {
            Ok(()) => Ok((db, None)),
            Err(problem) => {
                drop(db);
                rebuild(path, cache_size, now_unix, &problem)
            }
        },
        Err(OpenFailure::Fatal(e)) => Err(e),
        Err(OpenFailure::Unreadable(problem)) => rebuild(path, cache_size, now_unix, &problem),
    }
}

enum OpenFailure {
    Fatal(StoreError),
    Unreadable(String),
}

fn open(path: &Path, cache_size: u64) -> Result<Database, OpenFailure> {
    let cache = usize::try_from(cache_size).unwrap_or(usize::MAX);
    let result = Database::builder().set_cache_size(cache).create(path);
    let display = path.display().to_string();
    match result {
        Ok(db) => Ok(db),
        Err(redb::DatabaseError::DatabaseAlreadyOpen)
        | Err(redb::DatabaseError::LockProtocolMismatch) => {
            Err(OpenFailure::Fatal(StoreError::Locked { path: display }))
        }
        // A file we cannot even read (permissions, missing directory) is not ours to move.
        Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))
            if e.kind() != std::io::ErrorKind::InvalidData
                && e.kind() != std::io::ErrorKind::UnexpectedEof =>
        {
            Err(OpenFailure::Fatal(StoreError::OpenIo {
                path: display,
                source: e,
            }))
        }
        Err(e) => Err(OpenFailure::Unreadable(e.to_string())),
    }
}

/// A readable redb file that is not ours (or from another layout version) is unreadable too.
fn check_schema(db: &Database) -> Result<(), String> {
    let read = db.begin_read().map_err(|e| e.to_string())?;
    let version = match read.open_table(META) {
        Ok(meta) => meta
            .get(META_SCHEMA_VERSION)
            .map_err(|e| e.to_string())?
            .map(|v| v.value().to_string()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.to_string()),
    };
    match version {
        Some(v) if v == SCHEMA_VERSION.to_string() => {}
        Some(v) => {
            return Err(format!(
                "state schema version {v}, expected {SCHEMA_VERSION}"
            ));
        }
        None => {
            // A brand-new file has no tables at all; anything else without our meta is foreign.
            let tables = read.list_tables().map_err(|e| e.to_string())?.count();
            if tables > 0 {
                return Err("redb file without virtsync metadata".into());
            }
        }
    }
    // Every table must have the types we expect.
    for result in [
        read.open_table(VM_RECORDS).map(|_| ()),
        read.open_table(OUTBOX).map(|_| ()),
        read.open_table(MANAGED).map(|_| ()),
        read.open_table(HOST).map(|_| ()),
    ] {
        match result {
            Ok(()) | Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

fn rebuild(
    path: &Path,
    cache_size: u64,
    now_unix: u64,
    problem: &str,
) -> Result<(Database, Option<PathBuf>), StoreError> {
    let aside = move_aside(path, now_unix, problem)?;
    match open(path, cache_size) {
        Ok(db) => Ok((db, Some(aside))),
        Err(OpenFailure::Fatal(e)) => Err(e),
        Err(OpenFailure::Unreadable(problem)) => Err(StoreError::Unreadable {
            path: path.display().to_string(),
            problem,
        }),
    }
}

/// Renames an unreadable state file to `<path>.unreadable-<unix>` (kept for analysis);
/// the state is then rebuilt from the sources, with one clear log line.
pub fn move_aside(path: &Path, now_unix: u64, problem: &str) -> Result<PathBuf, StoreError> {
    let aside = PathBuf::from(format!("{}.unreadable-{now_unix}", path.display()));
    std::fs::rename(path, &aside).map_err(|source| StoreError::MoveAside {
        path: path.display().to_string(),
        source,
    })?;
    tracing::error!(
        path = %path.display(),
        moved_to = %aside.display(),
        problem,
        "state file unreadable: moved aside, starting with an empty state (rebuilt from the sources)"
    );
    Ok(aside)
}

/// Creates every table and stamps the schema version (idempotent).
pub fn initialise(db: &Database) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(redb_err("begin write"))?;
    txn.set_quick_repair(true);
    {
        txn.open_table(VM_RECORDS)
            .map_err(redb_err("open vm_records"))?;
        txn.open_table(OUTBOX).map_err(redb_err("open outbox"))?;
        txn.open_table(MANAGED).map_err(redb_err("open managed"))?;
        txn.open_table(HOST).map_err(redb_err("open host"))?;
        let mut meta = txn.open_table(META).map_err(redb_err("open meta"))?;
        let version = SCHEMA_VERSION.to_string();
        meta.insert(META_SCHEMA_VERSION, version.as_str())
            .map_err(redb_err("write meta"))?;
    }
    txn.commit().map_err(redb_err("commit"))
}
