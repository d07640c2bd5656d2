//! The accept path: decisions on the peer address, PROXY headers from trusted proxies only,
//! fail-closed states, revocation, limits, the admin listener and the drain.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_source_is_relayed_and_unauthorized_refused() {
    let (up, _u) = echo_upstream().await;
    let src = FakeSource::with_ranges(&["127.0.0.10/32", "127.0.1.0/24"]);
    let gate = Running::start_ready(test_config(up), src).await;

    assert_eq!(probe(lo(10), gate.addr).await, Outcome::Relayed);
    assert_eq!(
        probe("127.0.1.7".parse().unwrap(), gate.addr).await,
        Outcome::Relayed
    );
    assert_eq!(probe(lo(20), gate.addr).await, Outcome::Refused);
    assert_eq!(probe(lo(11), gate.addr).await, Outcome::Refused);

    let m = gate.handle.metrics();
    assert!(
        m.contains(r#"apiwall_gate_denied_total{reason="not_authorized"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"apiwall_gate_accepted_total{reason="range",range="127.0.0.10/32"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"apiwall_gate_accepted_total{reason="range",range="127.0.1.0/24"} 1"#),
        "{m}"
    );
    gate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_admitted_before_a_policy_loads_and_last_good_policy_is_kept() {
    let (up, _u) = echo_upstream().await;
    let src = FakeSource::with_ranges(&["127.0.0.10/32"]);
    src.fail(true);
    let gate = Running::start(test_config(up), src.clone()).await;
    eventually("a failed load is counted", || async {
        gate.metric("apiwall_gate_policy_reload_failures_total") >= 1.0
    })
    .await;
    assert_eq!(probe(lo(10), gate.addr).await, Outcome::Refused);
    let (code, body) = http_get(gate.admin, "/readyz").await;
    assert_eq!(
        (code, body.as_str()),
        (503, "not ready: no policy loaded\n")
    );
    assert_eq!(
        gate.metric(r#"apiwall_gate_denied_total{reason="no_policy"}"#),
        1.0
    );
    assert_eq!(http_get(gate.admin, "/healthz").await.0, 200);

    // The source recovers: the policy loads and the gate becomes ready.
    src.fail(false);
    eventually("ready", || async { gate.handle.ready() }).await;
    assert_eq!(probe(lo(10), gate.addr).await, Outcome::Relayed);
    assert_eq!(http_get(gate.admin, "/readyz").await.0, 200);

    // A revision that fails to load keeps the last good policy in force.
    let failures = gate.metric("apiwall_gate_policy_reload_failures_total");
    src.fail(true);
    eventually("the failed reload is counted", || async {
        gate.metric("apiwall_gate_policy_reload_failures_total") > failures
    })
    .await;
    assert_eq!(probe(lo(10), gate.addr).await, Outcome::Relayed);
    assert_eq!(probe(lo(20), gate.addr).await, Outcome::Refused);
    assert!(gate.handle.ready());
    gate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_cluster_admits_nothing_and_says_why() {
    let (up, _u) = echo_upstream().await;
    let src = FakeSource::default();
    src.fail(false); // revision 1, no such cluster
    let gate = Running::start(test_config(up), src.clone()).await;
    eventually("the policy is loaded", || async {
        gate.handle.generation() >= 1
    })
    .await;
    assert_eq!(gate.handle.state(), "cluster not found");
    for i in [10, 20, 30] {
        assert_eq!(probe(lo(i), gate.addr).await, Outcome::Refused);
    }
    let (code, body) = http_get(gate.admin, "/readyz").await;
    assert_eq!(
        (code, body.as_str()),
        (503, "not ready: cluster not found\n")
    );
    assert_eq!(
        gate.metric(r#"apiwall_gate_denied_total{reason="unknown_cluster"}"#),
        3.0
    );
    gate.stop().await;
}

/// A PROXY header sent slowly, its first bytes before the header timeout and the rest after,
/// is still a forgery: nothing of it reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowly_sent_proxy_header_from_an_untrusted_peer_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, _u) = echo_upstream().await;
    let mut cfg = test_config(up);
    cfg.proxy_header_timeout_ms = 200;
    let gate = Running::start_ready(cfg, FakeSource::with_ranges(&["127.0.0.10/32"])).await;
    let mut s = connect_from(lo(10), gate.addr).await.expect("connect");
    s.write_all(b"PROX").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await; // past the header timeout, on purpose
    let _ = s
        .write_all(b"Y TCP4 10.9.9.9 127.0.0.1 1 443\r\nping\n")
        .await;
    let mut got = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the gate closes the connection");
    assert!(
        got.is_empty(),
        "nothing was relayed: {:?}",
        String::from_utf8_lossy(&got)
    );
    gate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_proxy_header_from_untrusted_peer_is_refused() {
    let (up, _u) = echo_upstream().await;
    let src = FakeSource::with_ranges(&["127.0.0.10/32"]);
    let mut cfg = test_config(up);
    cfg.trusted_proxies = vec!["127.0.0.50/32".parse().unwrap()];
    let gate = Running::start_ready(cfg, src).await;

    // An untrusted, unauthorized peer claims an authorized client: decided on its own address.
    let forged = b"PROXY TCP4 127.0.0.10 127.0.0.1 40000 443\r\n";
    assert_eq!(
        probe_with(lo(20), gate.addr, forged).await,
        Outcome::Refused
    );
    let v2 = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (
            "127.0.0.10:40000".parse::<std::net::SocketAddr>().unwrap(),
            "127.0.0.1:443".parse::<std::net::SocketAddr>().unwrap(),
        ),
    )
    .build()
    .unwrap();
    assert_eq!(probe_with(lo(21), gate.addr, &v2).await, Outcome::Refused);

    // Even an authorized peer may not send a PROXY header unless it is a trusted proxy.
    assert_eq!(
        probe_with(lo(10), gate.addr, forged).await,
        Outcome::Refused
    );
    assert_eq!(probe_with(lo(10), gate.addr, &v2).await, Outcome::Refused);
    assert_eq!(
        gate.metric(r#"apiwall_gate_denied_total{reason="proxy_header_untrusted"}"#),
        2.0
    );
    // Anything else from it is relayed.
    assert_eq!(probe(lo(10), gate.addr).await, Outcome::Relayed);

    // The trusted proxy's headers decide; bytes after the header are relayed first.
    assert_eq!(
        probe_with(lo(50), gate.addr, forged).await,
        Outcome::Relayed
    );
    assert_eq!(probe_with(lo(50), gate.addr, &v2).await, Outcome::Relayed);
    let denied = b"PROXY TCP4 127.0.0.20 127.0.0.1 40000 443\r\n";
    assert_eq!(
        probe_with(lo(50), gate.addr, denied).await,
        Outcome::Refused
    );
    // The trusted proxy itself is not an authorized client: LOCAL/UNKNOWN speak for it.
    assert_eq!(
        probe_with(lo(50), gate.addr, b"PROXY UNKNOWN\r\n").await,
        Outcome::Refused
    );
    // Garbage from a trusted proxy is a denial.
    assert_eq!(
        probe_with(lo(50), gate.addr, b"GET / HTTP/1.1\r\n\r\n").await,
        Outcome::Refused
    );
    assert!(gate.metric(r#"apiwall_gate_denied_total{reason="proxy_header_invalid"}"#) >= 1.0);
    gate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_header_that_never_completes_is_closed_after_the_timeout() {
    let (up, _u) = echo_upstream().await;
    let src = FakeSource::with_ranges(&["127.0.0.10/32"]);
    let mut cfg = test_config(up);
    cfg.trusted_proxies = vec!["127.0.0.50/32".parse().unwrap()];
    cfg.proxy_header_timeout_ms = 300;
    let gate = Running::start_ready(cfg, src).await;

    let mut s = connect_from(lo(50), gate.addr).await.unwrap();
    let sent = Instant::now();
    s.write_all(b"PROXY TCP4 127.0.0.10 127.0.").await.unwrap();
    let took = wait_closed(&mut s, PATIENCE).await.expect("closed");
    let total = sent.elapsed();
    assert!(
        total >= Duration::from_millis(290),
        "closed after {total:?}, before the 300 ms timeout"
    );
    assert!(took < Duration::from_secs(5), "closed only after {took:?}");
    assert_eq!(
        gate.metric(r#"apiwall_gate_denied_total{reason="proxy_header_timeout"}"#),
        1.0
    );

    // A header larger than the bound is refused without waiting for the timeout.
    let mut s = connect_from(lo(50), gate.addr).await.unwrap();
    let mut big = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff".to_vec();
    big.extend(std::iter::repeat_n(0u8, 2048));
    let _ = s.write_all(&big).await;
    let took = wait_closed(&mut s, PATIENCE).await.expect("closed");
    assert!(took < Duration::from_millis(290), "closed after {took:?}");
    gate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn established_connection_is_closed_when_its_range_is_removed() {
    let (up, _u) = echo_upstream().await;
    let src = FakeSource::with_ranges(&["127.0.0.0/24"]);
    let gate = Running::start_ready(test_config(up), src.clone()).await;

    let mut gone = connect_from(lo(10), gate.addr).await.unwrap();
    let mut kept = connect_from(lo(11), gate.addr).await.unwrap();
    for s in [&mut gone, &mut kept] {
        s.write_all(b"hi").await.unwrap();
        let mut b = [0u8; 2];
        s.read_exact(&mut b).await.unwrap();
    }
    let g = gate.handle.generation();
    let changed = Instant::now();
    src.set_ranges(&["127.0.0.11/32"]);
    let took = wait_closed(&mut gone, PATIENCE).await.expect("closed");
    let since_change = changed.elapsed();
    assert!(
        since_change < Duration::from_secs(1),
        "closed {since_change:?} after the change"
    );
    gate.wait_generation_after(g).await;
    let _ = took;
    // The source still admitted keeps its connection.
    kept.write_all(b"yo").await.unwrap();
    let mut b = [0u8; 2];
    kept.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"yo");
    assert_eq!(
        gate.metric(r#"apiwall_gate_denied_total{reason="revoked"}"#),
        1.0
    );
    gate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_refused() {
    let (up, _u) = echo_upstream().await;
    let src = FakeSource::with_ranges(&["127.0.0.10/32"]);
    let mut cfg = test_config(up);
    cfg.max_connections = 2;
    let gate = Running::start_ready(cfg, src).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from(lo(10), gate.addr).await.unwrap();
        s.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        held.push(s);
    }
    assert_eq!(gate.handle.open_connections(), 2);
    assert_eq!(probe(lo(10), gate.addr).await, Outcome::Refused);
    assert_eq!(
        gate.metric(r#"apiwall_gate_denied_total{reason="max_connections"}"#),
        1.0
    );
    drop(held);
    eventually("the connections are released", || async {
        gate.handle.open_connections() == 0
    })
    .await;
    assert_eq!(probe(lo(10), gate.addr).await, Outcome::Relayed);
    gate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_an_upstream_error() {
    // Nothing listens on the upstream's port.
    let up = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let src = FakeSource::with_ranges(&["127.0.0.10/32"]);
    let gate = Running::start_ready(test_config(up), src).await;
    assert_eq!(probe(lo(10), gate.addr).await, Outcome::Refused);
    eventually("the error is counted", || async {
        gate.metric(r#"apiwall_gate_errors_total{side="upstream"}"#) == 1.0
    })
    .await;
    gate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_drains_with_a_bound() {
    let (up, _u) = echo_upstream().await;
    let src = FakeSource::with_ranges(&["127.0.0.10/32"]);
    let mut cfg = test_config(up);
    cfg.drain_timeout_ms = 1_000;
    let gate = Running::start_ready(cfg, src).await;
    let addr = gate.addr;
    let admin = gate.admin;
    let mut open = connect_from(lo(10), addr).await.unwrap();
    open.write_all(b"a").await.unwrap();
    let mut b = [0u8; 1];
    open.read_exact(&mut b).await.unwrap();

    let stopping = Instant::now();
    let stopped = tokio::spawn(gate.stop());
    eventually("the listener is closed", || async {
        connect_from(lo(10), addr).await.is_err()
    })
    .await;
    // Still draining: the open connection works.
    if stopping.elapsed() < Duration::from_millis(800) {
        open.write_all(b"b").await.unwrap();
        open.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"b");
    }
    // Closed at the end of the drain.
    wait_closed(&mut open, PATIENCE)
        .await
        .expect("closed after the drain");
    let took = stopping.elapsed();
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    tokio::time::timeout(PATIENCE, stopped)
        .await
        .unwrap()
        .unwrap();
    let _ = admin;
}
