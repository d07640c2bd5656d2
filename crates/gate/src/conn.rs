//! One connection: the decision at accept, the trusted proxy's header, the relay, and the
//! re-check on every policy change.
//!
//! A middleware that enforces policy on each TCP connection: when the connection is admitted,
//! it keeps watching the policy and, once the source is no longer admitted, closes it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiwall_policy::AccessDecision;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::config::Relay;
use crate::gate::Shared;
use crate::proxy::{HeaderError, read_header};
use crate::{DenyReason, GateError};

/// The address as the policy sees it: an IPv4-mapped IPv6 peer is its IPv4 address.
#[inline]
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Decides a freshly accepted connection. Runs on the accept loop: no byte is read here, and
/// a denied connection is reset at once, before it ever reaches the async reactor.
pub(crate) fn on_accept(shared: &Arc<Shared>, sock: std::net::TcpStream, peer: SocketAddr) {
    let ip = canonical(peer.ip());
    let trusted = shared.trusted.contains(ip);
    let snap = shared.policy.load();
    let decision = if trusted {
        None
    } else {
        match snap.decide(ip) {
            Ok(d) => Some(d),
            Err(reason) => return deny_std(shared, sock, peer, reason, snap.revision),
        }
    };
    let Ok(permit) = shared.limit.clone().try_acquire_owned() else {
        return deny_std(
            shared,
            sock,
            peer,
            DenyReason::MaxConnections,
            snap.revision,
        );
    };
    let generation = snap.generation;
    drop(snap);
    let sock = match sock
        .set_nonblocking(true)
        .and_then(|()| TcpStream::from_std(sock))
    {
        Ok(s) => s,
        Err(e) => {
            shared.metrics.error(crate::Side::Internal);
            tracing::warn!(%peer, error = %e, "cannot register an accepted connection");
            return;
        }
    };
    match decision {
        None => {
            tokio::spawn(from_proxy(shared.clone(), sock, peer, permit));
        }
        Some(decision) => {
            tokio::spawn(relay(
                shared.clone(),
                sock,
                Client {
                    peer,
                    source: ip,
                    via: None,
                    proxied: false,
                },
                decision,
                generation,
                Vec::new(),
                permit,
            ));
        }
    }
}

/// Resets a connection refused at accept.
fn deny_std(
    shared: &Shared,
    sock: std::net::TcpStream,
    peer: SocketAddr,
    reason: DenyReason,
    revision: Option<u64>,
) {
    // Reset: no FIN handshake and no TIME_WAIT left behind for a refused peer.
    let _ = socket2::SockRef::from(&sock).set_linger(Some(std::time::Duration::ZERO));
    drop(sock);
    count_denial(shared, peer, None, reason, revision);
}

/// Who the connection is from.
#[derive(Debug, Clone, Copy)]
struct Client {
    /// The TCP peer.
    peer: SocketAddr,
    /// The address the decision is made on.
    source: IpAddr,
    /// The client address a trusted proxy's header gave.
    via: Option<SocketAddr>,
    /// The peer is a trusted proxy whose header was read.
    proxied: bool,
}

fn deny(
    shared: &Shared,
    sock: TcpStream,
    peer: SocketAddr,
    via: Option<SocketAddr>,
    reason: DenyReason,
    revision: Option<u64>,
) {
    // Reset: no FIN handshake and no TIME_WAIT left behind for a refused peer.
    let _ = sock.set_zero_linger();
    drop(sock);
    count_denial(shared, peer, via, reason, revision);
}

fn count_denial(
    shared: &Shared,
    peer: SocketAddr,
    via: Option<SocketAddr>,
    reason: DenyReason,
    revision: Option<u64>,
) {
    shared.metrics.denied(reason);
    shared.log.denial(&shared.metrics, || {
        json!({
            "peer": peer.to_string(),
            "client": via.map(|v| v.to_string()),
            "reason": reason.as_str(),
            "revision": revision,
        })
    });
}

/// A trusted proxy's connection: read its header (bounded in time and size), then decide on
/// the address it carries.
async fn from_proxy(
    shared: Arc<Shared>,
    mut sock: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
) {
    let header = tokio::time::timeout(
        shared.cfg.proxy_header_timeout(),
        read_header(&mut sock, shared.cfg.proxy_header_max),
    )
    .await;
    let header = match header {
        Err(_) => {
            let rev = shared.policy.load().revision;
            return deny(
                &shared,
                sock,
                peer,
                None,
                DenyReason::ProxyHeaderTimeout,
                rev,
            );
        }
        Ok(Err(e)) => {
            shared.metrics.error(crate::Side::Client);
            tracing::debug!(%peer, error = %e, "PROXY header refused");
            let rev = shared.policy.load().revision;
            let reason = match e {
                HeaderError::Eof(_)
                | HeaderError::TooLarge(_)
                | HeaderError::Invalid(_)
                | HeaderError::Io(_) => DenyReason::ProxyHeaderInvalid,
            };
            return deny(&shared, sock, peer, None, reason, rev);
        }
        Ok(Ok(h)) => h,
    };
    // LOCAL / UNKNOWN: the proxy speaks for itself.
    let source = header.source.map_or(peer.ip(), |s| s.ip());
    let source = canonical(source);
    let snap = shared.policy.load();
    match snap.decide(source) {
        Err(reason) => deny(&shared, sock, peer, header.source, reason, snap.revision),
        Ok(decision) => {
            let generation = snap.generation;
            drop(snap);
            relay(
                shared,
                sock,
                Client {
                    peer,
                    source,
                    via: header.source,
                    proxied: true,
                },
                decision,
                generation,
                header.leftover,
                permit,
            )
            .await
        }
    }
}

/// How a relayed connection ended.
enum End {
    Done(std::io::Result<(u64, u64)>),
    Revoked(DenyReason, Option<u64>),
    Stopped,
}

async fn relay(
    shared: Arc<Shared>,
    mut sock: TcpStream,
    client: Client,
    decision: AccessDecision,
    generation: u64,
    leftover: Vec<u8>,
    permit: OwnedSemaphorePermit,
) {
    let started = Instant::now();
    shared.metrics.accepted(&decision);
    shared.metrics.open.inc();
    let _open = scopeguard(&shared);
    // Subscribe before anything can change, then catch up with a swap that happened since the
    // decision.
    let mut changes = shared.changes.subscribe();
    let mut stop = shared.stop.subscribe();
    let recheck = |shared: &Shared| {
        let snap = shared.policy.load();
        snap.decide(client.source).err().map(|r| {
            (
                if r == DenyReason::NotAuthorized {
                    DenyReason::Revoked
                } else {
                    r
                },
                snap.revision,
            )
        })
    };
    if *changes.borrow_and_update() != generation
        && let Some((reason, rev)) = recheck(&shared)
    {
        return end_revoked(&shared, sock, client, reason, rev, started);
    }

    let mut upstream = match connect_upstream(&shared, &leftover).await {
        Ok(u) => u,
        Err(e) => return fail(&shared, sock, client, e),
    };
    let _ = sock.set_nodelay(true);

    // A PROXY header from a peer that is not a trusted proxy is a forgery: a denial, even when
    // the peer's own address is admitted.
    if !client.proxied
        && opens_with_proxy_header(&sock, &upstream, shared.cfg.proxy_header_timeout()).await
    {
        drop(upstream);
        let rev = shared.policy.load().revision;
        return end_revoked(
            &shared,
            sock,
            client,
            DenyReason::ProxyHeaderUntrusted,
            rev,
            started,
        );
    }

    let end = {
        let buf = shared.cfg.buffer_size;
        let relay = shared.cfg.relay;
        let copy = async {
            match relay {
                Relay::Copy => {
                    tokio::io::copy_bidirectional_with_sizes(&mut sock, &mut upstream, buf, buf)
                        .await
                }
                Relay::Splice => crate::splice::relay(&sock, &upstream, shared.cfg.pipe_size).await,
            }
        };
        tokio::pin!(copy);
        loop {
            // Policy changes and shutdown first: a connection revoked while it was being set up
            // must not get one more burst through.
            tokio::select! {
                biased;
                _ = stop.changed() => break End::Stopped,
                changed = changes.changed() => {
                    if changed.is_err() {
                        break End::Stopped;
                    }
                    if let Some((reason, rev)) = recheck(&shared) {
                        break End::Revoked(reason, rev);
                    }
                }
                r = &mut copy => break End::Done(r),
            }
        }
    };
    drop(permit);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match end {
        End::Done(Ok((up, down))) => shared.log.line(
            &shared.metrics,
            "closed",
            json!({
                "peer": client.peer.to_string(),
                "client": client.via.map(|v| v.to_string()),
                "decision": decision,
                "bytesUp": up,
                "bytesDown": down,
                "durationMs": ms.round(),
            }),
        ),
        End::Done(Err(source)) => {
            let e = GateError::Relay {
                peer: client.peer,
                source,
            };
            shared.metrics.error(e.side());
            shared.log.line(
                &shared.metrics,
                "closed",
                json!({
                    "peer": client.peer.to_string(),
                    "client": client.via.map(|v| v.to_string()),
                    "decision": decision,
                    "error": e.to_string(),
                    "side": e.side().as_str(),
                    "durationMs": ms.round(),
                }),
            );
        }
        End::Revoked(reason, rev) => {
            drop(upstream);
            end_revoked(&shared, sock, client, reason, rev, started)
        }
        End::Stopped => {
            let _ = sock.set_zero_linger();
            shared.log.line(
                &shared.metrics,
                "closed",
                json!({
                    "peer": client.peer.to_string(),
                    "client": client.via.map(|v| v.to_string()),
                    "decision": decision,
                    "error": "closed at the end of the drain",
                    "durationMs": ms.round(),
                }),
            );
        }
    }
}

/// Connects to the upstream within the connect timeout and forwards the bytes that arrived after
/// a PROXY header, so they go first.
async fn connect_upstream(shared: &Shared, leftover: &[u8]) -> Result<TcpStream, GateError> {
    let addr = shared.cfg.upstream;
    let mut upstream = tokio::time::timeout(shared.cfg.connect_timeout(), TcpStream::connect(addr))
        .await
        .map_err(|_| GateError::UpstreamTimeout {
            addr,
            ms: shared.cfg.connect_timeout_ms,
        })?
        .map_err(|source| GateError::UpstreamConnect { addr, source })?;
    let _ = upstream.set_nodelay(true);
    if !leftover.is_empty() {
        upstream
            .write_all(leftover)
            .await
            .map_err(|source| GateError::UpstreamConnect { addr, source })?;
    }
    Ok(upstream)
}

/// Whether the client's first bytes are (or may be) a PROXY v1 or v2 header. Only looks (peek)
/// at what the client already sent, and stops as soon as the upstream speaks first or `wait`
/// passes. A header still incomplete at that point counts as one: a client that sends `PROXY`
/// slowly must not get the rest of its header through.
async fn opens_with_proxy_header(sock: &TcpStream, upstream: &TcpStream, wait: Duration) -> bool {
    const V1: &[u8] = b"PROXY ";
    const V2: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 12];
    let mut partial = false;
    let mut backoff = Duration::from_millis(1);
    loop {
        let n = tokio::select! {
            r = sock.peek(&mut buf) => match r {
                Ok(n) => n,
                Err(_) => return partial,
            },
            _ = upstream.readable() => return partial,
            _ = tokio::time::sleep_until(deadline) => return partial,
        };
        let seen = &buf[..n];
        let v1 = seen.len().min(V1.len());
        let v2 = seen.len().min(V2.len());
        let may_v1 = n > 0 && seen[..v1] == V1[..v1];
        let may_v2 = n > 0 && seen[..v2] == V2[..v2];
        if !may_v1 && !may_v2 {
            return false;
        }
        if (may_v1 && n >= V1.len()) || (may_v2 && n >= V2.len()) {
            return true;
        }
        // A partial match: wait for more bytes (peek does not wait for more), backing off so a
        // slow sender cannot keep the task spinning.
        partial = true;
        if tokio::time::Instant::now() >= deadline {
            return true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(50));
    }
}

/// Closes a relayed connection that the policy no longer admits (or a forged header).
fn end_revoked(
    shared: &Shared,
    sock: TcpStream,
    client: Client,
    reason: DenyReason,
    revision: Option<u64>,
    started: Instant,
) {
    let _ = sock.set_zero_linger();
    drop(sock);
    shared.metrics.denied(reason);
    // Not rate-limited: a revocation is an operator's change, and a forged header comes only
    // from an admitted peer; neither is something a stranger triggers.
    let event = if reason == DenyReason::ProxyHeaderUntrusted {
        "denied"
    } else {
        "revoked"
    };
    shared.log.line(
        &shared.metrics,
        event,
        json!({
            "peer": client.peer.to_string(),
            "client": client.via.map(|v| v.to_string()),
            "reason": reason.as_str(),
            "revision": revision,
            "durationMs": (started.elapsed().as_secs_f64() * 1000.0).round(),
        }),
    );
}

fn fail(shared: &Shared, sock: TcpStream, client: Client, e: GateError) {
    let _ = sock.set_zero_linger();
    drop(sock);
    shared.metrics.error(e.side());
    tracing::warn!(peer = %client.peer, side = e.side().as_str(), error = %e, "connection failed");
    shared.log.line(
        &shared.metrics,
        "closed",
        json!({
            "peer": client.peer.to_string(),
            "client": client.via.map(|v| v.to_string()),
            "error": e.to_string(),
            "side": e.side().as_str(),
        }),
    );
}

/// Decrements the open-connections gauge when the relay ends, however it ends.
fn scopeguard(shared: &Arc<Shared>) -> OpenGuard {
    OpenGuard(shared.clone())
}

struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.metrics.open.dec();
    }
}
