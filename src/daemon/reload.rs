//! SIGHUP: the configuration is read again and the log says what changed. Nothing is
//! applied while running: every changed key needs a restart, and the log says which.

use crate::Result;
use crate::config::Config;
use crate::notify::Notifier;

/// Reads the configuration again: the same file, environment and flags as at start.
pub type Reload = Box<dyn Fn() -> Result<Config> + Send>;

pub(super) fn reread_config(running: &Config, reload: &Reload, notifier: &Notifier) {
    notifier.send("RELOADING=1");
    match reload() {
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the configuration does not load; still running with the one from the start")
        }
        Ok(new) => {
            let changed = running.changed_keys(&new);
            if changed.is_empty() {
                tracing::info!("SIGHUP: configuration re-read; nothing changed");
            } else {
                let changed = changed.join(", ");
                tracing::warn!(
                    changed,
                    "SIGHUP: configuration re-read; these settings changed and take effect only after a restart (systemctl restart virtsync)"
                );
            }
        }
    }
    notifier.send("READY=1");
}
