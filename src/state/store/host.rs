//! The host's own data in the store: the current capabilities and the fingerprint last
//! written to PostgreSQL, kept in memory (the snapshot shows them) and in the `host`
//! table.

use std::sync::Arc;

use redb::ReadableDatabase;

use super::{Store, encode};
use crate::model::HostCapabilities;
use crate::state::file::HOST;
use crate::state::{StoreError, redb_err};

/// The `host` key of the current capabilities.
pub const CAPABILITIES_KEY: &str = "capabilities";
/// The `host` key of the fingerprint last written to PostgreSQL.
pub const WRITTEN_KEY: &str = "capabilities.written";

impl Store {
    /// Reads the host table into memory. A form we cannot decode is left out: discovery
    /// stores it again.
    pub(super) fn load_host(&mut self) -> Result<(), StoreError> {
        let caps = self.host(CAPABILITIES_KEY)?;
        self.capabilities = caps
            .and_then(|b| serde_json::from_slice::<HostCapabilities>(&b).ok())
            .map(Arc::new);
        self.capabilities_written = self
            .host(WRITTEN_KEY)?
            .and_then(|b| String::from_utf8(b).ok());
        Ok(())
    }

    pub fn capabilities(&self) -> Option<&Arc<HostCapabilities>> {
        self.capabilities.as_ref()
    }

    /// The fingerprint of the capabilities last written to PostgreSQL.
    pub fn capabilities_written(&self) -> Option<&str> {
        self.capabilities_written.as_deref()
    }

    /// Stores a discovery's result unless it does not replace the current form (see
    /// [`HostCapabilities::replaces`]). Returns the form now current and whether it
    /// changed.
    pub fn put_capabilities(
        &mut self,
        caps: HostCapabilities,
    ) -> Result<(Arc<HostCapabilities>, bool), StoreError> {
        if let Some(current) = &self.capabilities {
            if !caps.replaces(Some(current)) {
                return Ok((Arc::clone(current), false));
            }
        }
        let bytes = encode("host capabilities", &caps)?;
        self.put_host(CAPABILITIES_KEY, &bytes)?;
        let caps = Arc::new(caps);
        self.capabilities = Some(Arc::clone(&caps));
        Ok((caps, true))
    }

    /// Remembers that PostgreSQL holds the capabilities with this fingerprint, so a
    /// restart writes nothing unchanged.
    pub fn set_capabilities_written(&mut self, fingerprint: &str) -> Result<(), StoreError> {
        self.put_host(WRITTEN_KEY, fingerprint.as_bytes())?;
        self.capabilities_written = Some(fingerprint.to_owned());
        Ok(())
    }

    fn host(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let read = self.db()?.begin_read().map_err(redb_err("begin read"))?;
        let table = read.open_table(HOST).map_err(redb_err("open host"))?;
        let value = table.get(key).map_err(redb_err("read host"))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Written only when it changed.
    fn put_host(&mut self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        if self.host(key)?.as_deref() == Some(value) {
            return Ok(false);
        }
        let txn = self.begin()?;
        txn.open_table(HOST)
            .map_err(redb_err("open host"))?
            .insert(key, value)
            .map_err(redb_err("write host"))?;
        txn.commit().map_err(redb_err("commit"))?;
        self.write_transactions += 1;
        Ok(true)
    }
}
