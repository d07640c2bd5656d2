//! Both relays (splice(2) and userspace copy) carry bytes both ways, keep their order, and pass
//! on a half-close: the client can finish sending and still read the whole answer.

use apiwall_gate::Relay;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_relays_carry_bytes_in_order_and_pass_on_a_half_close() {
    let (up, _u) = echo_upstream().await;
    for relay in [Relay::Splice, Relay::Copy] {
        let mut cfg = test_config(up);
        cfg.relay = relay;
        // Smaller than the payload, so the relay loops over full pipes and buffers.
        cfg.pipe_size = 64 * 1024;
        cfg.buffer_size = 16 * 1024;
        let gate = Running::start_ready(cfg, FakeSource::with_ranges(&["127.0.0.10/32"])).await;

        let payload: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let s = connect_from(lo(10), gate.addr).await.expect("connect");
        let (mut r, mut w) = s.into_split();
        let send = payload.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&send).await.unwrap();
            // Half-close: the echo upstream sees EOF, answers the rest, then closes.
            w.shutdown().await.unwrap();
            w
        });
        let mut got = Vec::with_capacity(payload.len());
        tokio::time::timeout(std::time::Duration::from_secs(20), r.read_to_end(&mut got))
            .await
            .expect("the echo ends after the half-close")
            .unwrap();
        let _w = writer.await.unwrap();
        assert_eq!(got.len(), payload.len(), "{relay:?}");
        assert!(got == payload, "{relay:?} reordered or changed bytes");
        gate.stop().await;
    }
}
