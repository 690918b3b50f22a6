//! `virtsync.host_capabilities`: one row per host, written only when the capabilities'
//! fingerprint differs from the one stored there.

use tokio_postgres::Client;
use tokio_postgres::types::Type;

use super::SinkError;
use crate::model::HostCapabilities;

const UPSERT: &str = "INSERT INTO virtsync.host_capabilities AS h \
       (host_id, hostname, data, fingerprint, discovered_at, updated_at) \
     VALUES ($1, $2, $3::text::jsonb, $4, to_timestamp($5::bigint / 1000.0), now()) \
     ON CONFLICT (host_id) DO UPDATE SET hostname = EXCLUDED.hostname, data = EXCLUDED.data, \
       fingerprint = EXCLUDED.fingerprint, discovered_at = EXCLUDED.discovered_at, updated_at = now() \
     WHERE h.fingerprint IS DISTINCT FROM EXCLUDED.fingerprint";

/// The parameter types: an unnamed statement (`query_typed`) needs no prepare round
/// trip, which a pooler in transaction mode may send to another server connection.
const UPSERT_TYPES: [Type; 5] = [Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::INT8];

/// Writes the row when it differs; returns whether a row was written.
pub async fn write(
    client: &Client,
    host_id: &str,
    caps: &HostCapabilities,
) -> Result<bool, SinkError> {
    let written = client
        .query_typed(
            &format!("{UPSERT} RETURNING 1"),
            &[
                (&host_id, UPSERT_TYPES[0].clone()),
                (&caps.hostname, UPSERT_TYPES[1].clone()),
                (&caps.canonical, UPSERT_TYPES[2].clone()),
                (&caps.fingerprint, UPSERT_TYPES[3].clone()),
                (&caps.discovered_at.unix_millis, UPSERT_TYPES[4].clone()),
            ],
        )
        .await
        .map_err(|e| SinkError::Query {
            step: "writing host capabilities",
            source: e,
        })?;
    Ok(!written.is_empty())
}
