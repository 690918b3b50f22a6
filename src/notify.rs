//! systemd's notification protocol (`sd_notify`) without libsystemd: one datagram per
//! message to `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). READY=1,
//! STATUS=…, STOPPING=1, and WATCHDOG=1 while every internal loop is alive.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::health::{Health, STALE_AFTER};

/// Where notifications go; does nothing when not started by systemd.
#[derive(Clone, Debug, Default)]
pub struct Notifier {
    socket: Option<String>,
    /// `WATCHDOG_USEC` when it is meant for this process (`WATCHDOG_PID`).
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From the environment (`env` is `std::env::var` in the daemon, a table in tests).
    pub fn from_env(env: impl Fn(&str) -> Option<String>, pid: u32) -> Notifier {
        let socket = env("NOTIFY_SOCKET").filter(|s| !s.is_empty());
        let for_us = env("WATCHDOG_PID").is_none_or(|p| p.trim() == pid.to_string());
        let watchdog = env("WATCHDOG_USEC")
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|u| *u > 0 && for_us)
            .map(Duration::from_micros);
        Notifier { socket, watchdog }
    }

    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends `state` (e.g. `READY=1\nSTATUS=running`); errors are logged, not fatal.
    pub fn send(&self, state: &str) {
        let Some(path) = &self.socket else { return };
        if let Err(e) = send_to(path, state) {
            tracing::warn!(socket = %path, error = %e, "notifying systemd failed");
        }
    }
}

fn send_to(path: &str, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    // Never block the caller: a receiver that does not read gets EAGAIN, not a hang.
    sock.set_nonblocking(true)?;
    match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        }
        None => {
            sock.send_to(state.as_bytes(), path)?;
        }
    }
    Ok(())
}

/// Pings the watchdog at half its interval while no internal loop is stuck; a stuck
/// loop stops the pings (systemd then restarts the daemon) and says which.
pub async fn run_watchdog(notifier: Notifier, health: Health, stopped: CancellationToken) {
    let Some(interval) = notifier.watchdog() else {
        return;
    };
    let mut tick = tokio::time::interval(interval / 2);
    let mut silent: Vec<&'static str> = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.cancelled() => return,
        }
        let stuck = health.stuck(STALE_AFTER);
        if stuck.is_empty() {
            notifier.send("WATCHDOG=1");
        } else if stuck != silent {
            tracing::error!(loops = ?stuck, silent_for_more_than = ?STALE_AFTER, "internal loop not alive; watchdog pings stopped");
        }
        silent = stuck;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_decides_socket_and_watchdog() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let n = Notifier::from_env(env(&[]), 7);
        assert_eq!((n.socket, n.watchdog), (None, None));
        let n = Notifier::from_env(
            env(&[("NOTIFY_SOCKET", "/run/x"), ("WATCHDOG_USEC", "30000000")]),
            7,
        );
        assert_eq!(n.socket.as_deref(), Some("/run/x"));
        assert_eq!(n.watchdog, Some(Duration::from_secs(30)));
        let n = Notifier::from_env(
            env(&[("WATCHDOG_USEC", "30000000"), ("WATCHDOG_PID", "8")]),
            7,
        );
        assert_eq!(n.watchdog, None, "meant for another process");
        let n = Notifier::from_env(env(&[("WATCHDOG_USEC", "junk")]), 7);
        assert_eq!(n.watchdog, None);
    }

    #[test]
    fn datagrams_reach_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_env(
            |k| (k == "NOTIFY_SOCKET").then(|| path.display().to_string()),
            1,
        );
        n.send("READY=1\nSTATUS=running");
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=running");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("virtsync-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::from_env(|k| (k == "NOTIFY_SOCKET").then(|| format!("@{name}")), 1);
        n.send("WATCHDOG=1");
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }
}
