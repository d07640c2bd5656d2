//! A relay that never copies through userspace: splice(2) moves each direction's bytes
//! socket → pipe → socket inside the kernel (Linux). Same contract as tokio's
//! `copy_bidirectional`: each direction ends at its EOF, which is passed on as a half-close,
//! and the relay ends when both have; an error in either ends it.

use std::io;
use std::os::fd::OwnedFd;

use rustix::net::Shutdown;
use rustix::pipe::{PipeFlags, SpliceFlags, fcntl_setpipe_size, pipe_with, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Relays between `a` and `b` until both directions reach EOF; `(a → b, b → a)` byte counts.
pub async fn relay(a: &TcpStream, b: &TcpStream, pipe_size: usize) -> io::Result<(u64, u64)> {
    tokio::try_join!(one_way(a, b, pipe_size), one_way(b, a, pipe_size))
}

fn pipe(size: usize) -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
    // A larger pipe moves more per call; the kernel may cap it (pipe-max-size), which is fine.
    let _ = fcntl_setpipe_size(&w, size);
    Ok((r, w))
}

async fn one_way(src: &TcpStream, dst: &TcpStream, pipe_size: usize) -> io::Result<u64> {
    let (r, w) = pipe(pipe_size)?;
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    let mut total = 0u64;
    loop {
        // The pipe is empty here: fill it from the source. WouldBlock means the socket has
        // nothing to read, and `try_io` clears its readiness.
        let n = loop {
            src.readable().await?;
            match src.try_io(Interest::READABLE, || {
                Ok(splice(src, None, &w, None, pipe_size, flags)?)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            // EOF from the source: half-close the destination, as copy_bidirectional does.
            let _ = rustix::net::shutdown(dst, Shutdown::Write);
            return Ok(total);
        }
        // Drain the pipe into the destination; WouldBlock means its send buffer is full.
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || {
                Ok(splice(&r, None, dst, None, left, flags)?)
            }) {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
    }
}
