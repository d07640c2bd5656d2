//! Named network namespaces (`ip netns add`), removed on drop, and running code inside one on a
//! dedicated thread.
//!
//! `setns(2)` moves only the calling thread. [`Netns::run`] therefore spawns a fresh thread for
//! the closure and lets it end there: a thread of an async runtime, or of the caller, never
//! changes namespace. Sockets keep the namespace they were created in, so a socket made inside
//! `run` can be used from any thread afterwards.

use std::fs::File;
use std::os::fd::AsFd;

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use crate::KernelError;

/// A named network namespace that this process created; deleted on drop (also on panic).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name` (`ip netns add`) and brings its loopback up. It is an error
    /// if it exists already: a name is owned by whoever made it.
    pub fn create(name: &str) -> Result<Self, KernelError> {
        run("ip", &["netns", "add", name])?;
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME args…`, returning stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String, KernelError> {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// `ip netns exec NAME program args…`, returning stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String, KernelError> {
        let mut a = vec!["netns", "exec", self.name.as_str(), program];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// Runs `f` on a new thread that has entered the namespace, and waits for it. A panic in `f`
    /// is resumed here.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R, KernelError> {
        in_netns(&self.name, f)
    }
}

/// Runs `f` on a new thread that has entered the named namespace `name` (one made with
/// `ip netns add`, whoever made it), and waits for it. A panic in `f` is resumed here.
pub fn in_netns<R: Send>(name: &str, f: impl FnOnce() -> R + Send) -> Result<R, KernelError> {
    let fail = |detail: String| KernelError::Netns {
        name: name.to_string(),
        detail,
    };
    let path = format!("/run/netns/{name}");
    let file = File::open(&path).map_err(|e| fail(format!("open {path}: {e}")))?;
    std::thread::scope(|s| {
        let handle = s.spawn(move || {
            move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network)).map(|()| f())
        });
        match handle.join() {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(fail(format!("setns: {e}"))),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            tracing::warn!(netns = %self.name, error = %e, "could not delete network namespace");
        }
    }
}

fn run(program: &str, args: &[&str]) -> Result<String, KernelError> {
    crate::exec::run(program, args, None)
}
