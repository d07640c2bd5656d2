//! The JSON access log: one line per admitted connection when it ends, one per denial.
//! Denials are rate-limited (a stranger can trigger them); the lines left out are counted and
//! reported as `suppressed` on the next denial line written.
//!
//! Lines go through a bounded channel to a writer thread, so the accept path never blocks on
//! stdout; if the writer falls behind, lines are dropped and counted.

use std::io::Write;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::metrics::Metrics;

const QUEUE: usize = 8_192;

pub(crate) struct AccessLog {
    tx: Option<SyncSender<String>>,
    limiter: Mutex<Bucket>,
}

/// A token bucket for denial lines.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    suppressed: u64,
}

impl AccessLog {
    pub fn new(enabled: bool, denials_per_sec: u32) -> Self {
        let tx = enabled.then(|| {
            let (tx, rx) = sync_channel(QUEUE);
            std::thread::Builder::new()
                .name("gate-access-log".into())
                .spawn(move || writer(rx))
                .expect("spawn the access-log thread");
            tx
        });
        let rate = f64::from(denials_per_sec);
        Self {
            tx,
            limiter: Mutex::new(Bucket {
                rate,
                burst: (rate * 2.0).max(1.0),
                tokens: (rate * 2.0).max(1.0),
                last: Instant::now(),
                suppressed: 0,
            }),
        }
    }

    /// Writes a line (not rate-limited).
    pub fn line(&self, metrics: &Metrics, event: &str, fields: Value) {
        if let Some(tx) = &self.tx {
            send(tx, metrics, event, fields);
        }
    }

    /// Writes a denial line, unless the rate limit says to count it instead.
    pub fn denial(&self, metrics: &Metrics, fields: impl FnOnce() -> Value) {
        let Some(tx) = &self.tx else { return };
        let suppressed = {
            let mut b = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let elapsed = now.duration_since(b.last).as_secs_f64();
            b.last = now;
            b.tokens = (b.tokens + elapsed * b.rate).min(b.burst);
            if b.tokens < 1.0 {
                b.suppressed += 1;
                return;
            }
            b.tokens -= 1.0;
            std::mem::take(&mut b.suppressed)
        };
        let mut v = fields();
        if suppressed > 0
            && let Some(o) = v.as_object_mut()
        {
            o.insert("suppressed".into(), json!(suppressed));
        }
        send(tx, metrics, "denied", v);
    }
}

fn send(tx: &SyncSender<String>, metrics: &Metrics, event: &str, fields: Value) {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut o = Map::new();
    o.insert("ts".into(), json!((ts * 1000.0).round() / 1000.0));
    o.insert("event".into(), json!(event));
    if let Value::Object(f) = fields {
        o.extend(f);
    }
    let line = Value::Object(o).to_string();
    match tx.try_send(line) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            metrics.log_dropped.inc();
        }
    }
}

fn writer(rx: Receiver<String>) {
    let stdout = std::io::stdout();
    while let Ok(line) = rx.recv() {
        let mut out = stdout.lock();
        let _ = writeln!(out, "{line}");
        // Write what is queued, then flush once.
        while let Ok(line) = rx.try_recv() {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
}
