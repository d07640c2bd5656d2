//! A relay that never copies through userspace: splice(2) moves each direction's bytes
//! socket → pipe → socket inside the kernel (Linux). Same contract as tokio's
//! `copy_bidirectional`: each direction ends at its EOF, which is passed on as a half-close,
//! and the relay ends when both have; an error in either ends it.

use std::cell::Cell;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Mutex;

use rustix::net::Shutdown;
use rustix::pipe::{PipeFlags, SpliceFlags, fcntl_setpipe_size, pipe_with, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Relays between `a` and `b` until both directions reach EOF; `(a → b, b → a)` byte counts.
pub async fn relay(a: &TcpStream, b: &TcpStream, pipe_size: usize) -> io::Result<(u64, u64)> {
    tokio::try_join!(one_way(a, b, pipe_size), one_way(b, a, pipe_size))
}

/// Empty pipes kept for the next connections: making a pipe (pipe2 and F_SETPIPE_SZ) is a
/// cost on every admitted connection's first byte otherwise.
static POOL: Mutex<Vec<Pipe>> = Mutex::new(Vec::new());
const POOL_MAX: usize = 256;

struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    size: usize,
}

/// A pipe on loan from the pool. It goes back only if marked empty: a relay cut off mid-transfer
/// may leave bytes in it, and such a pipe is closed instead.
struct Loan {
    pipe: Option<Pipe>,
    empty: Cell<bool>,
}

impl Loan {
    fn take(size: usize) -> io::Result<Loan> {
        let pooled = {
            let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
            pool.iter()
                .position(|p| p.size == size)
                .map(|i| pool.swap_remove(i))
        };
        let pipe = match pooled {
            Some(p) => p,
            None => {
                let (r, w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
                // A larger pipe moves more per call. The kernel may refuse or cap it
                // (pipe-max-size, a user's pipe pages): such a pipe works, but is not pooled
                // as one of `size`.
                let got = fcntl_setpipe_size(&w, size).unwrap_or(0);
                Pipe {
                    r,
                    w,
                    size: if got >= size { size } else { 0 },
                }
            }
        };
        Ok(Loan {
            pipe: Some(pipe),
            empty: Cell::new(false),
        })
    }

    fn ends(&self) -> (&OwnedFd, &OwnedFd) {
        let p = self.pipe.as_ref().expect("present until dropped");
        (&p.r, &p.w)
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        if let Some(p) = self.pipe.take().filter(|p| self.empty.get() && p.size > 0) {
            let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < POOL_MAX {
                pool.push(p);
            }
        }
    }
}

async fn one_way(src: &TcpStream, dst: &TcpStream, pipe_size: usize) -> io::Result<u64> {
    let loan = Loan::take(pipe_size)?;
    let (r, w) = loan.ends();
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    let mut total = 0u64;
    loop {
        // The pipe is empty here: fill it from the source. WouldBlock means the socket has
        // nothing to read, and `try_io` clears its readiness.
        let n = loop {
            src.readable().await?;
            match src.try_io(Interest::READABLE, || {
                Ok(splice(src, None, w, None, pipe_size, flags)?)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            // EOF from the source: half-close the destination, as copy_bidirectional does. The
            // pipe was drained: it can serve another connection.
            let _ = rustix::net::shutdown(dst, Shutdown::Write);
            loan.empty.set(true);
            return Ok(total);
        }
        // Drain the pipe into the destination; WouldBlock means its send buffer is full.
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || {
                Ok(splice(r, None, dst, None, left, flags)?)
            }) {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
    }
}
