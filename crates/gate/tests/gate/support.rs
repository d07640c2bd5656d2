//! Fixtures: a controllable policy source, an echo upstream, clients with their own source
//! address, and waits with deadlines.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apiwall_gate::{Gate, GateConfig, GateHandle, PolicySource, SourceError};
use apiwall_model::Cidr;
use apiwall_model::resources::OutboundType;
use apiwall_policy::ApiServerAccess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Generous: the tests run on a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub fn lo(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

pub fn cidrs(list: &[&str]) -> Vec<Cidr> {
    list.iter().map(|s| s.parse().expect("a CIDR")).collect()
}

/// A policy source the test drives: each change is a new revision.
#[derive(Clone, Default)]
pub struct FakeSource(Arc<Mutex<FakeState>>);

#[derive(Default)]
struct FakeState {
    revision: u64,
    /// `None`: the cluster does not exist.
    ranges: Option<Vec<Cidr>>,
    fail: bool,
}

impl FakeSource {
    pub fn with_ranges(ranges: &[&str]) -> Self {
        let s = Self::default();
        s.set_ranges(ranges);
        s
    }

    pub fn set_ranges(&self, ranges: &[&str]) {
        let mut st = self.0.lock().unwrap();
        st.revision += 1;
        st.ranges = Some(cidrs(ranges));
    }

    /// The next revision fails to load until `fail(false)`.
    pub fn fail(&self, fail: bool) {
        let mut st = self.0.lock().unwrap();
        st.revision += 1;
        st.fail = fail;
    }
}

impl PolicySource for FakeSource {
    fn revision(&mut self) -> Result<u64, SourceError> {
        Ok(self.0.lock().unwrap().revision)
    }

    fn load(&mut self) -> Result<(u64, Option<ApiServerAccess>), SourceError> {
        let st = self.0.lock().unwrap();
        if st.fail {
            return Err(SourceError(format!("revision {} is corrupt", st.revision)));
        }
        let access = st
            .ranges
            .as_ref()
            .map(|r| ApiServerAccess::new(Some(r), OutboundType::UserDefinedRouting, None));
        Ok((st.revision, access))
    }
}

/// An upstream that echoes every byte back.
pub async fn echo_upstream() -> (SocketAddr, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, task)
}

pub fn test_config(upstream: SocketAddr) -> GateConfig {
    let mut cfg = GateConfig::new("rg", "cluster", upstream);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.admin = Some("127.0.0.1:0".parse().unwrap());
    cfg.access_log = false;
    cfg.poll_interval_ms = 10;
    cfg.drain_timeout_ms = 1_000;
    cfg
}

/// A gate running in the test's runtime.
pub struct Running {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub handle: GateHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), apiwall_gate::GateError>>>,
}

impl Running {
    pub async fn start(cfg: GateConfig, source: impl PolicySource) -> Running {
        let gate = Gate::bind(cfg, source).expect("bind the gate");
        let (tx, rx) = oneshot::channel();
        let addr = gate.local_addr();
        let admin = gate.admin_addr().expect("an admin listener");
        let handle = gate.handle();
        let task = tokio::spawn(gate.run(async {
            let _ = rx.await;
        }));
        Running {
            addr,
            admin,
            handle,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Starts and waits until a policy for an existing cluster is in force.
    pub async fn start_ready(cfg: GateConfig, source: impl PolicySource) -> Running {
        let r = Self::start(cfg, source).await;
        let h = r.handle.clone();
        eventually("the gate is ready", || {
            let h = h.clone();
            async move { h.ready() }
        })
        .await;
        r
    }

    /// Asks the gate to stop and waits for the drain to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(PATIENCE * 3, t)
                .await
                .expect("the gate stops")
                .unwrap()
                .unwrap();
        }
    }

    /// Waits until the gate enforces a policy newer than `generation`.
    pub async fn wait_generation_after(&self, generation: u64) {
        let h = self.handle.clone();
        eventually("a new policy is in force", || {
            let h = h.clone();
            async move { h.generation() > generation }
        })
        .await;
    }

    /// The value of a metric line that starts with `prefix`, summed over matching lines.
    pub fn metric(&self, prefix: &str) -> f64 {
        self.handle
            .metrics()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Polls `f` until it holds or `PATIENCE` passes.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if f().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A TCP connection from `src` (bound before connecting) to `to`.
pub async fn connect_from(src: Ipv4Addr, to: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
    s.connect(to).await
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The bytes came back from the echo upstream.
    Relayed,
    /// The gate closed or reset the connection without relaying.
    Refused,
}

/// Connects from `src`, sends a line, and tells whether it came back through the upstream.
pub async fn probe(src: Ipv4Addr, to: SocketAddr) -> Outcome {
    probe_with(src, to, b"").await
}

/// Like `probe`, with `prefix` (such as a PROXY header) sent first.
pub async fn probe_with(src: Ipv4Addr, to: SocketAddr, prefix: &[u8]) -> Outcome {
    let Ok(mut s) = connect_from(src, to).await else {
        return Outcome::Refused;
    };
    let mut msg = prefix.to_vec();
    msg.extend_from_slice(b"ping\n");
    if s.write_all(&msg).await.is_err() {
        return Outcome::Refused;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(PATIENCE, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.ends_with(b"ping\n") {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer and no close within {PATIENCE:?}");
    if got.is_empty() {
        Outcome::Refused
    } else {
        // A trusted proxy's header is consumed by the gate; anything else is relayed as is.
        assert!(
            got == msg || got == b"ping\n",
            "the upstream echoes what the gate relays: {:?}",
            String::from_utf8_lossy(&got)
        );
        Outcome::Relayed
    }
}

/// A minimal HTTP/1.0 GET: the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("an HTTP status");
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// Waits until `s` is closed by the other side (EOF or reset); returns how long it took.
pub async fn wait_closed(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .ok()
    .map(|()| start.elapsed())
}
