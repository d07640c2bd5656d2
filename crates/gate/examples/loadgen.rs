//! The gate benchmark's load generator and upstream. One tool drives every peer the same way.
//!
//! ```text
//! loadgen serve ADDR                                   upstream: 'e' echoes, 'b' counts bytes
//! loadgen deny ADDR SECS CONCURRENCY                   denied attempts/s from 127.0.{1..4}.x
//! loadgen latency ADDR COUNT SRC                       admitted connect+first byte, p50/p99 µs
//! loadgen throughput ADDR MIB SRC                      one stream, MiB/s through the target
//! ```
//! Every result is printed as one JSON line.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str { args.get(i).map(String::as_str).unwrap_or("") };
    match arg(0) {
        "serve" => serve(arg(1).parse()?).await,
        "deny" => deny(arg(1).parse()?, arg(2).parse()?, arg(3).parse()?).await,
        "latency" => latency(arg(1).parse()?, arg(2).parse()?, arg(3).parse()?).await,
        "throughput" => throughput(arg(1).parse()?, arg(2).parse()?, arg(3).parse()?).await,
        _ => Err("usage: loadgen serve|deny|latency|throughput …".into()),
    }
}

async fn serve(addr: SocketAddr) -> Result<()> {
    let l = TcpListener::bind(addr).await?;
    loop {
        let (mut s, _) = l.accept().await?;
        tokio::spawn(async move {
            let _ = s.set_nodelay(true);
            let mut buf = vec![0u8; 256 * 1024];
            let Ok(n) = s.read(&mut buf).await else {
                return;
            };
            if n == 0 {
                return;
            }
            if buf[0] == b'b' {
                // Bulk: count until EOF, then answer with the count.
                let mut total = n as u64;
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(m) => total += m as u64,
                    }
                }
                let _ = s.write_all(&total.to_be_bytes()).await;
            } else {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
    }
}

async fn connect_from(src: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
    s.connect(to).await
}

/// Closes without TIME_WAIT, so that repeated runs do not exhaust ports.
fn reset(s: TcpStream) {
    let _ = s.set_zero_linger();
    drop(s);
}

async fn deny(to: SocketAddr, secs: f64, concurrency: usize) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let admitted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let (stop, done, admitted) = (stop.clone(), done.clone(), admitted.clone());
        tasks.push(tokio::spawn(async move {
            let mut k = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // Rotate over 1,000 never-authorized sources: 127.0.1.1 .. 127.0.4.250.
                let n = (i as u32 * 7919 + k) % 1000;
                k += 1;
                let src = Ipv4Addr::new(127, 0, 1 + (n / 250) as u8, 1 + (n % 250) as u8);
                let Ok(mut s) = connect_from(src, to).await else {
                    continue;
                };
                let mut b = [0u8; 1];
                match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                reset(s);
            }
        }));
    }
    // Warm up, then count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start_n = done.load(Ordering::Relaxed);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let n = done.load(Ordering::Relaxed) - start_n;
    let el = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "{{\"test\":\"deny\",\"denied_per_s\":{:.0},\"not_denied\":{}}}",
        n as f64 / el,
        admitted.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn latency(to: SocketAddr, count: usize, src: Ipv4Addr) -> Result<()> {
    let mut v = Vec::with_capacity(count);
    for i in 0..count + count / 10 {
        let t = Instant::now();
        let mut s = connect_from(src, to).await?;
        s.set_nodelay(true)?;
        s.write_all(b"e").await?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
        let el = t.elapsed();
        reset(s);
        // The first tenth warms up.
        if i >= count / 10 {
            v.push(el.as_secs_f64() * 1e6);
        }
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "{{\"test\":\"latency\",\"p50_us\":{:.1},\"p99_us\":{:.1}}}",
        p(0.5),
        p(0.99)
    );
    Ok(())
}

async fn throughput(to: SocketAddr, mib: u64, src: Ipv4Addr) -> Result<()> {
    let mut s = connect_from(src, to).await?;
    let chunk = vec![b'b'; 256 * 1024];
    let total = mib * 1024 * 1024;
    let t = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        s.write_all(&chunk).await?;
        sent += chunk.len() as u64;
    }
    s.shutdown().await?;
    let mut count = [0u8; 8];
    s.read_exact(&mut count).await?;
    let el = t.elapsed().as_secs_f64();
    let got = u64::from_be_bytes(count);
    if got != sent {
        return Err(format!("upstream counted {got} bytes of {sent}").into());
    }
    println!(
        "{{\"test\":\"throughput\",\"mib_per_s\":{:.0}}}",
        sent as f64 / el / (1024.0 * 1024.0)
    );
    Ok(())
}
