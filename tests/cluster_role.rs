//! The cluster-role election against a real PostgreSQL: one holder at a time, takeover
//! after an orderly shutdown, a killed backend and a hung holder; the lock session's
//! settings; `current_holder`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::pg::{PgCluster, connect};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use virtsync::config::{Config, Env};
use virtsync::sink::postgres::SinkError;
use virtsync::sink::postgres::cluster_role::{
    ClusterRoleSettings, application_name, current_holder, run_cluster_role,
};

const RETRY: Duration = Duration::from_millis(200);

fn settings(url: &str, node: &str, lock_key: i64, idle: Duration) -> ClusterRoleSettings {
    let mut cfg = Config::defaults(&Env {
        hostname: node.into(),
        vars: Vec::new(),
    });
    cfg.postgres.url = Some(url.to_owned());
    cfg.postgres.lock_key = lock_key;
    cfg.postgres.lock_idle_timeout = idle;
    cfg.postgres.lock_retry_interval = RETRY;
    ClusterRoleSettings::from_config(&cfg, None).unwrap()
}

/// One daemon's election, with its holder flag, shutdown and the pause hook.
struct Node {
    holder: watch::Receiver<bool>,
    stop: tokio_util::sync::CancellationToken,
    pause: watch::Sender<bool>,
    task: JoinHandle<Result<(), SinkError>>,
    heartbeat: Duration,
}

impl Node {
    fn start(url: &str, node: &str, lock_key: i64, idle: Duration) -> Node {
        let mut s = settings(url, node, lock_key, idle);
        let (pause, paused) = watch::channel(false);
        s.pause = Some(paused);
        let heartbeat = s.heartbeat_interval();
        let (holder_tx, holder) = watch::channel(false);
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(run_cluster_role(s, holder_tx, stop.clone()));
        Node {
            holder,
            stop,
            pause,
            task,
            heartbeat,
        }
    }

    fn holds(&self) -> bool {
        *self.holder.borrow()
    }

    /// Waits until the holder flag reads `want`; returns how long that took.
    async fn wait_holder(&mut self, want: bool, limit: Duration) -> Duration {
        let start = Instant::now();
        tokio::time::timeout(limit, self.holder.wait_for(|h| *h == want))
            .await
            .unwrap_or_else(|_| panic!("holder flag not {want} within {limit:?}"))
            .unwrap();
        start.elapsed()
    }

    async fn shutdown(self) {
        self.stop.cancel();
        let result = tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("election did not stop within 5s")
            .unwrap();
        assert!(result.is_ok(), "{result:?}");
        assert!(!*self.holder.borrow(), "still holder after shutdown");
    }
}

/// The longest time both flags were true at once (an ongoing overlap counts).
#[derive(Clone, Default)]
struct Overlap(Arc<Mutex<(Duration, Option<Instant>)>>);

impl Overlap {
    fn watch(a: &Node, b: &Node) -> Overlap {
        let overlap = Overlap::default();
        let (mut a, mut b) = (a.holder.clone(), b.holder.clone());
        let o = overlap.clone();
        tokio::spawn(async move {
            loop {
                let both = *a.borrow_and_update() && *b.borrow_and_update();
                {
                    let mut g = o.0.lock().unwrap();
                    match (both, g.1) {
                        (true, None) => g.1 = Some(Instant::now()),
                        (false, Some(since)) => {
                            g.0 = g.0.max(since.elapsed());
                            g.1 = None;
                        }
                        _ => {}
                    }
                }
                tokio::select! {
                    r = a.changed() => if r.is_err() { return },
                    r = b.changed() => if r.is_err() { return },
                }
            }
        });
        overlap
    }

    fn max(&self) -> Duration {
        let g = self.0.lock().unwrap();
        g.0.max(g.1.map_or(Duration::ZERO, |s| s.elapsed()))
    }
}

async fn holder_name(client: &tokio_postgres::Client, key: i64) -> Option<String> {
    current_holder(client, key).await.unwrap()
}

/// The lock sessions of this database: (application_name, pid).
async fn lock_sessions(client: &tokio_postgres::Client) -> Vec<(String, i32)> {
    client
        .query(
            "SELECT application_name, pid FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name LIKE 'virtsync/%' \
             ORDER BY application_name, pid",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn one_holder_and_takeover_on_shutdown() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let url = PgCluster::shared().create_database("role_shutdown");
    let admin = connect(&url).await;
    let key = Config::defaults(&Env::default()).postgres.lock_key;
    let idle = Duration::from_secs(3);
    assert_eq!(holder_name(&admin, key).await, None);

    let mut a = Node::start(&url, "node-a", key, idle);
    a.wait_holder(true, Duration::from_secs(5)).await;
    let mut b = Node::start(&url, "node-b", key, idle);
    let overlap = Overlap::watch(&a, &b);
    // B is connected and trying, A keeps the role through several heartbeats.
    wait_until("both lock sessions", Duration::from_secs(5), || async {
        lock_sessions(&admin).await.len() == 2
    })
    .await;
    tokio::time::sleep(a.heartbeat * 2).await;
    assert!(a.holds() && !b.holds(), "exactly one holder");
    assert_eq!(
        holder_name(&admin, key).await.as_deref(),
        Some("virtsync/node-a")
    );
    // The unrelated key is held by nobody.
    assert_eq!(holder_name(&admin, key ^ 1).await, None);

    let t0 = Instant::now();
    a.shutdown().await;
    b.wait_holder(true, Duration::from_secs(3)).await;
    let takeover = t0.elapsed();
    eprintln!("takeover after an orderly shutdown: {takeover:?}");
    assert!(takeover < Duration::from_secs(2), "{takeover:?}");
    assert_eq!(
        holder_name(&admin, key).await.as_deref(),
        Some("virtsync/node-b")
    );
    assert_eq!(overlap.max(), Duration::ZERO, "two holders at once");
    b.shutdown().await;
    // The lock is released on shutdown and the session closed.
    wait_until("lock sessions closed", Duration::from_secs(3), || async {
        lock_sessions(&admin).await.is_empty()
    })
    .await;
    assert_eq!(holder_name(&admin, key).await, None);
}

#[tokio::test]
async fn killed_backend_steps_down_and_the_standby_takes_over() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let url = PgCluster::shared().create_database("role_kill");
    let admin = connect(&url).await;
    // A negative key: classid/objid in pg_locks are its two unsigned halves.
    let key = -42;
    let idle = Duration::from_secs(3);
    let mut a = Node::start(&url, "node-a", key, idle);
    a.wait_holder(true, Duration::from_secs(5)).await;
    let mut b = Node::start(&url, "node-b", key, idle);
    let overlap = Overlap::watch(&a, &b);
    wait_until("both lock sessions", Duration::from_secs(5), || async {
        lock_sessions(&admin).await.len() == 2
    })
    .await;
    assert_eq!(
        holder_name(&admin, key).await.as_deref(),
        Some("virtsync/node-a")
    );
    assert!(!b.holds());

    let t0 = Instant::now();
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'virtsync/node-a'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 1);
    a.wait_holder(false, Duration::from_secs(3)).await;
    let stepped_down = t0.elapsed();
    b.wait_holder(true, Duration::from_secs(3)).await;
    let takeover = t0.elapsed();
    eprintln!(
        "killed backend: holder stepped down after {stepped_down:?}, takeover after {takeover:?}"
    );
    assert!(stepped_down < a.heartbeat, "{stepped_down:?}");
    assert!(takeover < Duration::from_secs(2), "{takeover:?}");
    assert!(
        overlap.max() <= a.heartbeat,
        "two holders for {:?}",
        overlap.max()
    );
    assert_eq!(
        holder_name(&admin, key).await.as_deref(),
        Some("virtsync/node-b")
    );
    // The killed one reconnects and stands by.
    wait_until("node-a back as standby", Duration::from_secs(5), || async {
        lock_sessions(&admin)
            .await
            .iter()
            .any(|(name, _)| name == "virtsync/node-a")
    })
    .await;
    tokio::time::sleep(a.heartbeat).await;
    assert!(!a.holds() && b.holds());
    assert_eq!(overlap.max(), Duration::ZERO, "two holders at once");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_hung_holder_loses_the_role_and_steps_down_when_it_wakes() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let cluster = PgCluster::shared();
    let url = cluster.create_database("role_frozen");
    let admin = connect(&url).await;
    let key = 7;
    let idle = Duration::from_secs(2);

    // The lock session's settings, as the elector's connection gets them.
    let s = settings(&url, "node-a", key, idle);
    assert_eq!(s.application_name(), "virtsync/node-a");
    assert_eq!(s.heartbeat_interval(), idle / 3);
    let (probe, conn) = s.pg.connect(s.tls.0.clone()).await.unwrap();
    tokio::spawn(conn);
    for (setting, want) in [
        ("idle_session_timeout", "2s"),
        ("tcp_keepalives_idle", "5"),
        ("tcp_keepalives_interval", "2"),
        ("tcp_keepalives_count", "3"),
        ("application_name", "virtsync/node-a"),
    ] {
        let row = probe
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), want, "{setting}");
    }
    drop(probe);

    let mut a = Node::start(&url, "node-a", key, idle);
    a.wait_holder(true, Duration::from_secs(5)).await;
    let mut b = Node::start(&url, "node-b", key, idle);
    wait_until("both lock sessions", Duration::from_secs(5), || async {
        lock_sessions(&admin).await.len() == 2
    })
    .await;
    // Heartbeats keep the holder's session alive well past the idle timeout.
    tokio::time::sleep(idle + a.heartbeat).await;
    assert!(a.holds() && !b.holds());
    assert_eq!(
        holder_name(&admin, key).await.as_deref(),
        Some("virtsync/node-a")
    );

    // A hangs: no heartbeat. PostgreSQL ends its idle session, the standby takes over.
    let t0 = Instant::now();
    a.pause.send_replace(true);
    b.wait_holder(true, Duration::from_secs(5)).await;
    let takeover = t0.elapsed();
    eprintln!("hung holder (idle timeout {idle:?}): takeover after {takeover:?}");
    // PostgreSQL counts the idle time from the last heartbeat, up to one interval
    // before the pause.
    assert!(takeover >= idle - a.heartbeat, "{takeover:?}");
    assert!(takeover < idle + Duration::from_secs(1), "{takeover:?}");
    assert_eq!(
        holder_name(&admin, key).await.as_deref(),
        Some("virtsync/node-b")
    );
    assert!(
        cluster
            .log_tail(500)
            .contains("terminating connection due to idle-session timeout"),
        "server log:\n{}",
        cluster.log_tail(30)
    );
    // Still hung: it has noticed nothing.
    assert!(a.holds());

    // A wakes up: it steps down within one heartbeat interval and stands by.
    let overlap = Overlap::watch(&a, &b);
    let t1 = Instant::now();
    a.pause.send_replace(false);
    a.wait_holder(false, a.heartbeat).await;
    let stepped_down = t1.elapsed();
    eprintln!("woken holder stepped down after {stepped_down:?}");
    assert!(stepped_down < a.heartbeat, "{stepped_down:?}");
    assert!(
        overlap.max() < a.heartbeat,
        "two holders for {:?} after waking",
        overlap.max()
    );
    wait_until("node-a back as standby", Duration::from_secs(5), || async {
        lock_sessions(&admin)
            .await
            .iter()
            .any(|(name, _)| name == "virtsync/node-a")
    })
    .await;
    tokio::time::sleep(a.heartbeat * 2).await;
    assert!(!a.holds() && b.holds());
    assert_eq!(
        holder_name(&admin, key).await.as_deref(),
        Some("virtsync/node-b")
    );

    // The standby's session, idle between tries, is not ended by the idle timeout.
    let standby_pid = |sessions: Vec<(String, i32)>| {
        sessions
            .into_iter()
            .find(|(name, _)| name == "virtsync/node-a")
            .map(|(_, pid)| pid)
    };
    let before = standby_pid(lock_sessions(&admin).await);
    tokio::time::sleep(idle + a.heartbeat).await;
    assert_eq!(standby_pid(lock_sessions(&admin).await), before);
    assert_eq!(application_name("node-a"), "virtsync/node-a");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_holder_suspended_past_its_lease_steps_down_even_if_the_session_survived() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let url = PgCluster::shared().create_database("role_lease");
    let admin = connect(&url).await;
    let key = 8;
    let idle = Duration::from_secs(3);
    let mut a = Node::start(&url, "node-a", key, idle);
    a.wait_holder(true, Duration::from_secs(5)).await;
    let mut b = Node::start(&url, "node-b", key, idle);
    wait_until("both lock sessions", Duration::from_secs(5), || async {
        lock_sessions(&admin).await.len() == 2
    })
    .await;
    // Pause A right after a heartbeat (its session just went idle), for longer than its
    // lease (two heartbeat intervals) but shorter than the idle timeout.
    wait_until("a fresh heartbeat", Duration::from_secs(5), || async {
        let row = admin
            .query_one(
                "SELECT extract(epoch FROM now() - state_change)::float8 FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name = 'virtsync/node-a'",
                &[],
            )
            .await
            .unwrap();
        // now() is the start of this statement's transaction: compare within ~50 ms.
        row.get::<_, f64>(0) < 0.05
    })
    .await;
    a.holder.borrow_and_update();
    b.holder.borrow_and_update();
    a.pause.send_replace(true);
    tokio::time::sleep(a.heartbeat * 2 + Duration::from_millis(400)).await;
    assert!(a.holds(), "a paused holder does nothing");
    a.pause.send_replace(false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // It stepped down on waking (the flag changed twice: false, then true again once
    // its check found the lock still held), and nobody else took the role meanwhile.
    assert!(a.holds());
    assert!(a.holder.has_changed().unwrap(), "no step-down on waking");
    assert!(!b.holds() && !b.holder.has_changed().unwrap());
    assert_eq!(
        holder_name(&admin, key).await.as_deref(),
        Some("virtsync/node-a")
    );
    a.shutdown().await;
    b.shutdown().await;
}
