//! A real HAProxy in front of the gate, sending PROXY v2 from a trusted address.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use crate::support::*;

struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_with_proxy_v2_gets_authorized_client_through_and_refuses_the_other() {
    let (up, _u) = echo_upstream().await;
    let src = FakeSource::with_ranges(&["127.0.0.10/32"]);
    let mut cfg = test_config(up);
    cfg.trusted_proxies = vec!["127.0.0.50/32".parse().unwrap()];
    let gate = Running::start_ready(cfg, src).await;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("haproxy.cfg");
    std::fs::write(
        &conf,
        format!(
            "global\n  maxconn 256\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
             backend be\n  server gate {gate} send-proxy-v2 source 127.0.0.50\n",
            gate = gate.addr
        ),
    )
    .unwrap();
    let _haproxy = Haproxy(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy is installed (scripts/test.sh installs it)"),
    );
    let front: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually("haproxy listens", || async {
        connect_from(lo(99), front).await.is_ok()
    })
    .await;

    assert_eq!(probe(lo(10), front).await, Outcome::Relayed);
    assert_eq!(probe(lo(20), front).await, Outcome::Refused);
    assert_eq!(probe(lo(10), front).await, Outcome::Relayed);
    // The gate saw the proxy's headers, not the proxy's own address.
    assert_eq!(
        gate.metric(r#"apiwall_gate_accepted_total{reason="range",range="127.0.0.10/32"}"#),
        2.0
    );
    assert!(gate.metric(r#"apiwall_gate_denied_total{reason="not_authorized"}"#) >= 1.0);
    gate.stop().await;
}
