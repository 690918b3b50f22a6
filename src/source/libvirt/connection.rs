//! One libvirt connection, kept open and reopened (docs/ARCHITECTURE.md, "Sources").
//!
//! - libvirt's default error printing to stderr is turned off once per process.
//! - Read-only by default; a read-write connection to the same URI is opened lazily for
//!   the calls that refuse read-only access (domain capabilities).
//! - Every libvirt call runs on a blocking thread (`spawn_blocking`).
//! - The virt crate's `Drop for Connect` panics when `virConnectClose` fails: connections
//!   are closed inside `catch_unwind` (and dropped only on blocking threads where we can),
//!   so one bad connection cannot take the daemon down. Panics inside a call (the crate's
//!   `Drop` of `Domain` etc.) are contained by `spawn_blocking` and reported as errors.
//! - A call that fails with a connection error (libvirtd restarted or gone) drops the
//!   connection, publishes `Disconnected(reason)` and starts a background reconnect with
//!   capped backoff (200 ms doubling up to 30 s); `Connected` is published when it is back.
//!   Calls made while disconnected fail at once with [`LibvirtError::Disconnected`].

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use tokio::sync::watch;
use virt::connect::Connect;
use virt::error::{ErrorDomain, ErrorNumber};

/// First and largest delay between reconnect attempts.
pub const RECONNECT_MIN: Duration = Duration::from_millis(200);
pub const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// What the `LibvirtConnected` condition shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Not tried yet.
    Idle,
    Connected,
    /// The reason of the last failure (open or call).
    Disconnected(String),
}

/// A failed libvirt call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LibvirtError {
    /// No connection (the open failed, or a reconnect is under way).
    #[error("libvirt {uri}: not connected: {reason}")]
    Disconnected { uri: String, reason: String },
    /// The driver answered with an error (shown by its message alone: the code and
    /// domain are for matching, see [`LibvirtError::is_no_domain`]).
    #[error("libvirt {uri}: {}", source.message())]
    Call {
        uri: String,
        #[source]
        source: virt::error::Error,
        /// The connection broke during the call (a reconnect was started).
        connection_lost: bool,
    },
    /// The call panicked inside the virt crate or its task was cancelled.
    #[error("libvirt {uri}: call aborted: {reason}")]
    Aborted { uri: String, reason: String },
}

impl LibvirtError {
    /// The driver's own reason (e.g. "this function is not supported by the connection
    /// driver: virConnectGetDomainCapabilities").
    pub fn reason(&self) -> &str {
        match self {
            LibvirtError::Disconnected { reason, .. } | LibvirtError::Aborted { reason, .. } => {
                reason
            }
            LibvirtError::Call { source, .. } => source.message(),
        }
    }

    /// The connection broke (during this call or before it): worth one more try once
    /// the reconnect is through.
    pub fn connection_lost(&self) -> bool {
        matches!(
            self,
            LibvirtError::Disconnected { .. }
                | LibvirtError::Call {
                    connection_lost: true,
                    ..
                }
        )
    }

    /// libvirt's `virErrorNumber` of a call the driver refused.
    fn code(&self) -> Option<u32> {
        match self {
            LibvirtError::Call { source, .. } => Some(source.code().to_raw()),
            _ => None,
        }
    }

    /// libvirt said "no such domain".
    pub fn is_no_domain(&self) -> bool {
        self.code() == Some(virt::sys::VIR_ERR_NO_DOMAIN)
    }

    /// The driver does not support the call.
    pub fn is_unsupported(&self) -> bool {
        self.code() == Some(virt::sys::VIR_ERR_NO_SUPPORT)
    }
}

/// Turns off libvirt's default error printing (to stderr), once per process.
pub fn quiet_libvirt() {
    static ONCE: Once = Once::new();
    ONCE.call_once(virt::error::clear_error_callback);
}

/// An open `Connect` that is closed with panics contained.
struct Handle(Option<Connect>);

impl Handle {
    fn conn(&self) -> Option<&Connect> {
        self.0.as_ref()
    }

    fn close(&mut self) -> Result<(), String> {
        match self.0.take() {
            Some(c) => close_contained(c),
            None => Ok(()),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!("closing a libvirt connection failed: {e}");
        }
    }
}

/// Closes `c`; the virt crate panics when `virConnectClose` fails.
fn close_contained(c: Connect) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(move || drop(c))).map_err(|p| panic_text(p.as_ref()))
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".to_owned())
}

type Slot = Mutex<Option<Arc<Handle>>>;

struct Inner {
    uri: String,
    ro: Slot,
    rw: Slot,
    state: watch::Sender<ConnState>,
    reconnecting: AtomicBool,
    closed: AtomicBool,
}

/// A shared libvirt connection to one URI. Cheap to clone.
#[derive(Clone)]
pub struct LibvirtConnection {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LibvirtConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibvirtConnection")
            .field("uri", &self.inner.uri)
            .field("state", &*self.inner.state.borrow())
            .finish()
    }
}

fn lock(slot: &Slot) -> std::sync::MutexGuard<'_, Option<Arc<Handle>>> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

fn open(uri: &str, read_write: bool) -> Result<Connect, virt::error::Error> {
    if read_write {
        Connect::open(Some(uri))
    } else {
        Connect::open_read_only(Some(uri))
    }
}

/// Whether `e` (seen on `conn`) means the connection itself is broken.
fn connection_broken(e: &virt::error::Error, conn: &Connect) -> bool {
    let code = e.code();
    code.is_any(vec![
        ErrorNumber::InvalidConn,
        ErrorNumber::NoConnect,
        ErrorNumber::Rpc,
    ]) || (code.is(ErrorNumber::SystemError)
        && e.domain()
            .is_any(vec![ErrorDomain::Rpc, ErrorDomain::Remote]))
        || !conn.is_alive().unwrap_or(false)
}

impl LibvirtConnection {
    /// A connection to `uri`; nothing is opened until the first call (or [`Self::connect`]).
    pub fn new(uri: impl Into<String>) -> Self {
        quiet_libvirt();
        let (state, _) = watch::channel(ConnState::Idle);
        LibvirtConnection {
            inner: Arc::new(Inner {
                uri: uri.into(),
                ro: Mutex::new(None),
                rw: Mutex::new(None),
                state,
                reconnecting: AtomicBool::new(false),
                closed: AtomicBool::new(false),
            }),
        }
    }

    pub fn uri(&self) -> &str {
        &self.inner.uri
    }

    /// Connected / Disconnected(reason), for the `LibvirtConnected` condition.
    pub fn state(&self) -> watch::Receiver<ConnState> {
        self.inner.state.subscribe()
    }

    /// Waits until the read-only connection is up again (after a reconnect was started),
    /// at most `limit`.
    pub async fn wait_connected(&self, limit: Duration) {
        let mut state = self.state();
        let _ = tokio::time::timeout(limit, state.wait_for(|s| matches!(s, ConnState::Connected)))
            .await;
    }

    /// Opens the read-only connection now (a no-op when open).
    pub async fn connect(&self) -> Result<(), LibvirtError> {
        self.call(|_| Ok(())).await
    }

    /// Runs `f` on the read-only connection, on a blocking thread.
    pub async fn call<T, F>(&self, f: F) -> Result<T, LibvirtError>
    where
        T: Send + 'static,
        F: FnOnce(&Connect) -> Result<T, virt::error::Error> + Send + 'static,
    {
        self.run(false, f).await
    }

    /// Runs `f` on the read-write connection (opened on first use), on a blocking thread.
    pub async fn call_rw<T, F>(&self, f: F) -> Result<T, LibvirtError>
    where
        T: Send + 'static,
        F: FnOnce(&Connect) -> Result<T, virt::error::Error> + Send + 'static,
    {
        self.run(true, f).await
    }

    async fn run<T, F>(&self, read_write: bool, f: F) -> Result<T, LibvirtError>
    where
        T: Send + 'static,
        F: FnOnce(&Connect) -> Result<T, virt::error::Error> + Send + 'static,
    {
        let inner = self.inner.clone();
        let joined = tokio::task::spawn_blocking(move || inner.call_blocking(read_write, f)).await;
        let (result, lost) = match joined {
            Ok(r) => r,
            Err(e) => {
                let reason = if e.is_panic() {
                    panic_text(e.into_panic().as_ref())
                } else {
                    "cancelled".to_owned()
                };
                return Err(LibvirtError::Aborted {
                    uri: self.inner.uri.clone(),
                    reason,
                });
            }
        };
        if lost {
            self.start_reconnect();
        }
        result
    }

    /// Starts the background reconnect unless one runs or the connection was closed.
    fn start_reconnect(&self) {
        if self.inner.closed.load(Ordering::SeqCst)
            || self.inner.reconnecting.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut delay = RECONNECT_MIN;
            loop {
                tokio::time::sleep(delay).await;
                let Some(strong) = inner.upgrade() else {
                    return;
                };
                if strong.closed.load(Ordering::SeqCst) {
                    strong.reconnecting.store(false, Ordering::SeqCst);
                    return;
                }
                let attempt = strong.clone();
                let opened = tokio::task::spawn_blocking(move || attempt.open_ro()).await;
                match opened {
                    Ok(Ok(())) => {
                        tracing::info!(uri = %strong.uri, "libvirt connection re-established");
                        strong.reconnecting.store(false, Ordering::SeqCst);
                        return;
                    }
                    Ok(Err(reason)) => {
                        tracing::debug!(uri = %strong.uri, %reason, ?delay, "libvirt reconnect failed");
                    }
                    Err(e) => {
                        tracing::warn!(uri = %strong.uri, "libvirt reconnect aborted: {e}");
                    }
                }
                delay = (delay * 2).min(RECONNECT_MAX);
            }
        });
    }

    /// Closes both connections now (contained); later calls fail as disconnected.
    pub async fn close(&self) -> Result<(), String> {
        self.inner.closed.store(true, Ordering::SeqCst);
        let inner = self.inner.clone();
        let r = tokio::task::spawn_blocking(move || {
            let mut errors = Vec::new();
            for slot in [&inner.ro, &inner.rw] {
                let taken = lock(slot).take();
                if let Some(handle) = taken {
                    // In-flight calls hold clones: the last one closes it (contained).
                    if let Ok(mut h) = Arc::try_unwrap(handle) {
                        if let Err(e) = h.close() {
                            errors.push(e);
                        }
                    }
                }
            }
            inner
                .state
                .send_replace(ConnState::Disconnected("closed".into()));
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join("; "))
            }
        })
        .await;
        r.map_err(|e| e.to_string())?
    }
}

impl Inner {
    fn disconnected(&self, reason: String) -> LibvirtError {
        LibvirtError::Disconnected {
            uri: self.uri.clone(),
            reason,
        }
    }

    /// Opens the read-only connection into its slot and publishes `Connected`.
    fn open_ro(&self) -> Result<(), String> {
        let mut slot = lock(&self.ro);
        if slot.is_some() {
            return Ok(());
        }
        match open(&self.uri, false) {
            Ok(c) => {
                *slot = Some(Arc::new(Handle(Some(c))));
                drop(slot);
                self.state.send_replace(ConnState::Connected);
                Ok(())
            }
            Err(e) => {
                let reason = e.message().to_owned();
                drop(slot);
                self.state
                    .send_replace(ConnState::Disconnected(reason.clone()));
                Err(reason)
            }
        }
    }

    /// The result and whether a reconnect must start.
    fn call_blocking<T, F>(&self, read_write: bool, f: F) -> (Result<T, LibvirtError>, bool)
    where
        F: FnOnce(&Connect) -> Result<T, virt::error::Error>,
    {
        if self.closed.load(Ordering::SeqCst) {
            return (Err(self.disconnected("closed".into())), false);
        }
        let slot = if read_write { &self.rw } else { &self.ro };
        let handle = {
            let mut guard = lock(slot);
            match guard.as_ref() {
                Some(h) => h.clone(),
                None if !read_write && self.reconnecting.load(Ordering::SeqCst) => {
                    let reason = match &*self.state.borrow() {
                        ConnState::Disconnected(r) => r.clone(),
                        _ => "reconnecting".to_owned(),
                    };
                    return (Err(self.disconnected(reason)), false);
                }
                None => match open(&self.uri, read_write) {
                    Ok(c) => {
                        let h = Arc::new(Handle(Some(c)));
                        *guard = Some(h.clone());
                        if !read_write {
                            self.state.send_replace(ConnState::Connected);
                        }
                        h
                    }
                    Err(e) => {
                        let reason = e.message().to_owned();
                        if !read_write {
                            self.state
                                .send_replace(ConnState::Disconnected(reason.clone()));
                        }
                        return (Err(self.disconnected(reason)), !read_write);
                    }
                },
            }
        };
        let Some(conn) = handle.conn() else {
            return (Err(self.disconnected("connection closed".into())), false);
        };
        match f(conn) {
            Ok(v) => (Ok(v), false),
            Err(e) => {
                let lost = connection_broken(&e, conn);
                if lost {
                    let mut guard = lock(slot);
                    if guard.as_ref().is_some_and(|h| Arc::ptr_eq(h, &handle)) {
                        *guard = None;
                    }
                    drop(guard);
                    // The other connection goes to the same libvirtd: it is dead too,
                    // and reopened on its next use.
                    let other = if read_write { &self.ro } else { &self.rw };
                    let _ = lock(other).take();
                    if !read_write {
                        self.state
                            .send_replace(ConnState::Disconnected(e.message().to_owned()));
                    }
                }
                let err = LibvirtError::Call {
                    uri: self.uri.clone(),
                    source: e,
                    connection_lost: lost,
                };
                (Err(err), lost && !read_write)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// libvirt's error stays the cause; the message shows only its text, as before.
    #[tokio::test]
    async fn a_refused_call_keeps_libvirts_error_as_source() {
        let conn = LibvirtConnection::new("test:///default");
        let err = conn
            .call(|c| c.lookup_domain_by_name("no-such-domain").map(|_| ()))
            .await
            .unwrap_err();
        assert!(err.is_no_domain(), "{err:?}");
        assert!(!err.is_unsupported(), "{err:?}");
        let source = err.source().expect("a source");
        let libvirt = source
            .downcast_ref::<virt::error::Error>()
            .expect("a virt::error::Error");
        assert_eq!(
            err.to_string(),
            format!("libvirt test:///default: {}", libvirt.message())
        );
        assert_eq!(err.reason(), libvirt.message());
        assert!(!err.reason().is_empty(), "{err}");
        conn.close().await.unwrap();
    }
}
