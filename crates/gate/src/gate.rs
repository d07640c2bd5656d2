//! The gate: listeners, the policy thread, the accept loop and the drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use apiwall_model::Cidr;
use apiwall_policy::AuthorizedSet;
use arc_swap::ArcSwap;
use serde_json::json;
use tokio::io::unix::AsyncFd;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, watch};

use crate::access_log::AccessLog;
use crate::metrics::Metrics;
use crate::source::{PolicySource, PolicyState, Snapshot};
use crate::{GateConfig, GateError};

/// Connections accepted per wake-up of the accept loop before it yields.
const ACCEPT_BATCH: usize = 128;

/// State shared by the accept loop, the connections, the policy thread and the admin listener.
pub(crate) struct Shared {
    pub cfg: GateConfig,
    pub policy: ArcSwap<Snapshot>,
    /// The generation of the policy in force; connections re-check when it changes.
    pub changes: watch::Sender<u64>,
    /// Set at the end of the drain: open connections close.
    pub stop: watch::Sender<bool>,
    pub trusted: AuthorizedSet,
    pub metrics: Metrics,
    pub log: AccessLog,
    pub limit: Arc<Semaphore>,
    pub draining: AtomicBool,
}

impl Shared {
    /// Swaps a policy in and tells the connections.
    fn swap(&self, revision: Option<u64>, state: PolicyState) {
        let generation = self.policy.load().generation + 1;
        let ready = matches!(state, PolicyState::Loaded(_));
        self.policy.store(Arc::new(Snapshot {
            generation,
            revision,
            state,
        }));
        self.metrics.generation.set(generation as i64);
        self.metrics.revision.set(revision.map_or(-1, |r| r as i64));
        self.metrics.ready.set(i64::from(ready));
        self.changes.send_replace(generation);
    }

    pub fn ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
            && matches!(self.policy.load().state, PolicyState::Loaded(_))
    }

    pub fn open_connections(&self) -> usize {
        self.cfg.max_connections - self.limit.available_permits()
    }
}

/// A bound gate, not yet running.
pub struct Gate {
    shared: Arc<Shared>,
    listener: AsyncFd<std::net::TcpListener>,
    admin: Option<TcpListener>,
    source: Box<dyn PolicySource>,
}

/// A view of a running gate, for tests and embedding.
#[derive(Clone)]
pub struct GateHandle {
    shared: Arc<Shared>,
}

impl GateHandle {
    /// Policies swapped in since start.
    pub fn generation(&self) -> u64 {
        self.shared.policy.load().generation
    }

    /// The store revision of the policy in force.
    pub fn revision(&self) -> Option<u64> {
        self.shared.policy.load().revision
    }

    /// What is enforced, in words.
    pub fn state(&self) -> String {
        self.shared.policy.load().state.to_string()
    }

    pub fn ready(&self) -> bool {
        self.shared.ready()
    }

    pub fn open_connections(&self) -> usize {
        self.shared.open_connections()
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> String {
        self.shared.metrics.encode()
    }
}

fn bind(what: &'static str, addr: SocketAddr, backlog: u32) -> Result<TcpListener, GateError> {
    let err = |source| GateError::Bind { what, addr, source };
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(err)?;
    sock.set_reuseaddr(true).map_err(err)?;
    sock.bind(addr).map_err(err)?;
    sock.listen(backlog).map_err(err)
}

impl Gate {
    /// Validates the configuration and binds the listeners (port 0 picks a free port). Must be
    /// called inside a tokio runtime. Nothing is admitted until [`Gate::run`] has loaded a policy.
    pub fn bind(cfg: GateConfig, source: impl PolicySource) -> Result<Gate, GateError> {
        cfg.validate()?;
        let listener = bind("listen", cfg.listen, 65_535)?;
        // Accepted sockets stay plain std sockets until admitted: a denial never touches the
        // reactor.
        // `AsyncFd::new` is deprecated because a `T` could close its descriptor while it is
        // registered; the listener owns its descriptor and is never replaced, and the safe
        // alternative (`register`) is `unsafe`, which this crate forbids.
        #[allow(deprecated)]
        let listener = listener
            .into_std()
            .and_then(AsyncFd::new)
            .map_err(|source| GateError::Bind {
                what: "listen",
                addr: cfg.listen,
                source,
            })?;
        let admin = cfg.admin.map(|a| bind("admin", a, 128)).transpose()?;
        let trusted: Vec<Cidr> = cfg
            .trusted_proxies
            .iter()
            .map(|n| Cidr(n.trunc()))
            .collect();
        let shared = Arc::new(Shared {
            policy: ArcSwap::from_pointee(Snapshot {
                generation: 0,
                revision: None,
                state: PolicyState::NotLoaded,
            }),
            changes: watch::Sender::new(0),
            stop: watch::Sender::new(false),
            trusted: AuthorizedSet::build(&trusted),
            metrics: Metrics::new(),
            log: AccessLog::new(cfg.access_log, cfg.denial_log_per_sec),
            limit: Arc::new(Semaphore::new(cfg.max_connections)),
            draining: AtomicBool::new(false),
            cfg,
        });
        Ok(Gate {
            shared,
            listener,
            admin,
            source: Box::new(source),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .get_ref()
            .local_addr()
            .expect("a bound listener")
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
            .as_ref()
            .map(|a| a.local_addr().expect("a bound listener"))
    }

    pub fn handle(&self) -> GateHandle {
        GateHandle {
            shared: self.shared.clone(),
        }
    }

    /// Runs until `shutdown` completes, then stops accepting and drains: open connections get
    /// `drain_timeout` to finish, and the rest are closed.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), GateError> {
        let Gate {
            shared,
            listener,
            admin,
            source,
        } = self;
        let listen = listener.get_ref().local_addr().ok();
        let admin_addr = admin.as_ref().and_then(|a| a.local_addr().ok());
        shared.log.line(
            &shared.metrics,
            "listening",
            json!({
                "listen": listen.map(|a| a.to_string()),
                "admin": admin_addr.map(|a| a.to_string()),
                "upstream": shared.cfg.upstream.to_string(),
                "cluster": format!("{}/{}", shared.cfg.resource_group, shared.cfg.cluster),
            }),
        );
        tracing::info!(listen = ?listen, admin = ?admin_addr, upstream = %shared.cfg.upstream, "gate listening");

        let quit = Arc::new(AtomicBool::new(false));
        let follower = {
            let shared = shared.clone();
            let quit = quit.clone();
            std::thread::Builder::new()
                .name("gate-policy".into())
                .spawn(move || follow(&shared, source, &quit))
                .expect("spawn the policy thread")
        };
        let admin_task = admin.map(|a| tokio::spawn(crate::admin::serve(a, shared.clone())));

        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                ready = listener.readable() => {
                    let mut guard = match ready {
                        Ok(g) => g,
                        Err(e) => {
                            shared.metrics.error(crate::Side::Internal);
                            tracing::error!(error = %e, "listener failed");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    // Drain the accept queue in batches, yielding between them.
                    for _ in 0..ACCEPT_BATCH {
                        match guard.get_inner().accept() {
                            Ok((sock, peer)) => crate::conn::on_accept(&shared, sock, peer),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                guard.clear_ready();
                                break;
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted
                                || e.kind() == std::io::ErrorKind::ConnectionAborted => {}
                            Err(e) => {
                                // Out of descriptors or similar: back off instead of spinning.
                                shared.metrics.error(crate::Side::Internal);
                                tracing::warn!(error = %e, "accept failed");
                                drop(guard);
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                break;
                            }
                        }
                    }
                }
            }
        }

        // Drain.
        drop(listener);
        shared.draining.store(true, Ordering::Relaxed);
        let open = shared.open_connections();
        shared
            .log
            .line(&shared.metrics, "draining", json!({ "open": open }));
        let max = u32::try_from(shared.cfg.max_connections).unwrap_or(u32::MAX);
        let drained =
            tokio::time::timeout(shared.cfg.drain_timeout(), shared.limit.acquire_many(max))
                .await
                .is_ok();
        if !drained {
            shared.stop.send_replace(true);
            // The connections close promptly once told; give them a moment to log.
            let _ =
                tokio::time::timeout(Duration::from_secs(1), shared.limit.acquire_many(max)).await;
        }
        shared.log.line(
            &shared.metrics,
            "stopped",
            json!({ "drained": drained, "closed": shared.open_connections() }),
        );
        quit.store(true, Ordering::Relaxed);
        if let Some(t) = admin_task {
            t.abort();
        }
        let _ = tokio::task::spawn_blocking(move || follower.join()).await;
        Ok(())
    }
}

/// The policy thread: polls the revision, loads and swaps in each new one. A failed load keeps
/// the policy in force (fail closed before the first one) and is retried on the next poll.
fn follow(shared: &Shared, mut source: Box<dyn PolicySource>, quit: &AtomicBool) {
    let cluster = format!("{}/{}", shared.cfg.resource_group, shared.cfg.cluster);
    let mut loaded: Option<u64> = None;
    let mut last_error: Option<String> = None;
    while !quit.load(Ordering::Relaxed) {
        let step = source.revision().and_then(|rev| {
            if loaded == Some(rev) {
                return Ok(());
            }
            let started = std::time::Instant::now();
            let (rev, access) = source.load()?;
            let state = match access {
                Some(a) => PolicyState::Loaded(a),
                None => PolicyState::UnknownCluster,
            };
            match &state {
                PolicyState::UnknownCluster => tracing::warn!(
                    %cluster, revision = rev,
                    "cluster not found in the store: admitting nothing until it exists"
                ),
                s => tracing::info!(%cluster, revision = rev, policy = %s, ms = started.elapsed().as_millis() as u64, "policy loaded"),
            }
            let described = state.to_string();
            shared.swap(Some(rev), state);
            shared.log.line(
                &shared.metrics,
                "policy",
                json!({
                    "cluster": cluster,
                    "revision": rev,
                    "policy": described,
                    "loadMs": started.elapsed().as_secs_f64() * 1000.0,
                }),
            );
            shared.metrics.reloads.inc();
            loaded = Some(rev);
            Ok(())
        });
        match step {
            Ok(()) => last_error = None,
            Err(e) => {
                shared.metrics.reload_failures.inc();
                let msg = e.to_string();
                if last_error.as_deref() != Some(&msg) {
                    tracing::error!(%cluster, error = %msg, "policy load failed; keeping the policy in force");
                    shared.log.line(
                        &shared.metrics,
                        "policy_error",
                        json!({ "cluster": cluster, "error": msg, "side": "internal" }),
                    );
                    last_error = Some(msg);
                }
            }
        }
        std::thread::sleep(shared.cfg.poll_interval());
    }
}
