//! TLS for PostgreSQL connections (rustls). The server certificate is always verified,
//! chain and host name, against `postgres.ca_file` or the system trust store.
//!
//! When TLS is used: with `sslmode=require`, or whenever a `ca_file` is configured (then
//! `prefer`, the default, means `require`: no silent fallback to plaintext). Without a
//! `ca_file`, `prefer` stays plaintext, as before TLS support: a server with a
//! self-signed certificate must not start failing.

use std::path::Path;
use std::sync::Arc;

use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::SinkError;

/// The connector to use with every connection of this process.
#[derive(Clone)]
pub struct Tls(pub MakeRustlsConnect);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

/// Builds the connector and settles the connection's sslmode (see the module docs).
pub fn setup(pg: &mut tokio_postgres::Config, ca_file: Option<&Path>) -> Result<Tls, SinkError> {
    match (ca_file, pg.get_ssl_mode()) {
        (None, SslMode::Prefer) => {
            pg.ssl_mode(SslMode::Disable);
        }
        // A configured CA means verified TLS: `prefer` would fall back to plaintext
        // if the server (or someone in between) declined TLS.
        (Some(_), SslMode::Prefer) => {
            pg.ssl_mode(SslMode::Require);
        }
        _ => {}
    }
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                SinkError::Setup(format!(
                    "postgres.ca_file: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            let certs = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    SinkError::Setup(format!("postgres.ca_file: {}: {e}", path.display()))
                })?;
            if certs.is_empty() {
                return Err(SinkError::Setup(format!(
                    "postgres.ca_file: {} holds no PEM certificate",
                    path.display()
                )));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    SinkError::Setup(format!("postgres.ca_file: {}: {e}", path.display()))
                })?;
            }
        }
        None if pg.get_ssl_mode() != SslMode::Disable => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(SinkError::Setup(
                    "sslmode=require but no system CA certificates were found: set postgres.ca_file".into(),
                ));
            }
        }
        None => {}
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SinkError::Setup(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Tls(MakeRustlsConnect::new(config)))
}
