//! `virtsync.host_capabilities`: one row per host, written only when the capabilities'
//! fingerprint differs from the one stored there.

use tokio_postgres::Client;

use super::SinkError;
use crate::source::libvirt::host::StoredCapabilities;

const UPSERT: &str = "INSERT INTO virtsync.host_capabilities AS h \
       (host_id, hostname, data, fingerprint, discovered_at, updated_at) \
     VALUES ($1, $2, $3::text::jsonb, $4, to_timestamp($5::bigint / 1000.0), now()) \
     ON CONFLICT (host_id) DO UPDATE SET hostname = EXCLUDED.hostname, data = EXCLUDED.data, \
       fingerprint = EXCLUDED.fingerprint, discovered_at = EXCLUDED.discovered_at, updated_at = now() \
     WHERE h.fingerprint IS DISTINCT FROM EXCLUDED.fingerprint";

/// Writes the row when it differs; returns whether a row was written.
pub async fn write(
    client: &Client,
    host_id: &str,
    caps: &StoredCapabilities,
) -> Result<bool, SinkError> {
    let n = client
        .execute(
            UPSERT,
            &[
                &host_id,
                &caps.hostname,
                &caps.canonical,
                &caps.fingerprint,
                &caps.discovered_at.unix_millis,
            ],
        )
        .await
        .map_err(|e| SinkError::Query {
            step: "writing host capabilities",
            source: e,
        })?;
    Ok(n > 0)
}
