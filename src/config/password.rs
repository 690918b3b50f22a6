//! Reading the database password: the only I/O of the configuration.

use std::path::Path;

use super::{ConfigError, PostgresConfig};

/// Reads the database password: `password_file` if set (it must be readable
/// and non-empty); else `<credentials_directory>/postgres-password` if it
/// exists; else `None`. Trailing line breaks are removed.
pub fn read_password(
    cfg: &PostgresConfig,
    credentials_directory: Option<&Path>,
) -> Result<Option<String>, ConfigError> {
    if let Some(path) = &cfg.password_file {
        return read_secret(path, "postgres.password_file").map(Some);
    }
    let Some(dir) = credentials_directory else {
        return Ok(None);
    };
    let path = dir.join("postgres-password");
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        _ => read_secret(&path, "$CREDENTIALS_DIRECTORY/postgres-password").map(Some),
    }
}

fn read_secret(path: &Path, key: &str) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ConfigError::new(key, format!("{} is not valid UTF-8", path.display())))?;
    let password = text.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(ConfigError::new(
            key,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(password.to_owned())
}
