//! Connections by URI, opened on first use and reused (one per launcher socket in
//! `kubevirt` mode, one in `uri` mode).

use std::collections::HashMap;
use std::sync::Mutex;

use super::connection::LibvirtConnection;

#[derive(Default, Debug)]
pub struct ConnectionPool {
    conns: Mutex<HashMap<String, LibvirtConnection>>,
}

impl ConnectionPool {
    pub fn new() -> Self {
        Self::default()
    }

    /// The connection to `uri` (created, not yet opened, when new).
    pub fn get(&self, uri: &str) -> LibvirtConnection {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns
            .entry(uri.to_owned())
            .or_insert_with(|| LibvirtConnection::new(uri))
            .clone()
    }

    /// URIs with a connection.
    pub fn uris(&self) -> Vec<String> {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<String> = conns.keys().cloned().collect();
        v.sort();
        v
    }

    /// Forgets and closes the connection to `uri` (e.g. the launcher pod is gone).
    pub async fn remove(&self, uri: &str) -> Result<(), String> {
        let conn = {
            let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            conns.remove(uri)
        };
        match conn {
            Some(c) => c.close().await,
            None => Ok(()),
        }
    }

    /// Closes every connection.
    pub async fn close_all(&self) -> Result<(), String> {
        let all: Vec<LibvirtConnection> = {
            let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            conns.drain().map(|(_, c)| c).collect()
        };
        let mut errors = Vec::new();
        for c in all {
            if let Err(e) = c.close().await {
                errors.push(format!("{}: {e}", c.uri()));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}
