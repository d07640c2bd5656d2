//! Running things in the lab's hosts: commands (`ip`, `nft`, anything) and code on a thread
//! that has entered a host's network namespace.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use crate::LabError;

/// Runs `program args…` with `stdin`, returning stdout; a non-zero exit is an error with stderr.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, LabError> {
    let line = format!("{program} {}", args.join(" "));
    tracing::debug!(command = %line, "running");
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LabError::Io(format!("{line}: {e} (is iproute2/nftables installed?)")))?;
    if let Some(input) = stdin {
        let _ = child
            .stdin
            .take()
            .expect("piped")
            .write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| LabError::Io(format!("{line}: {e}")))?;
    if !out.status.success() {
        return Err(LabError::Io(format!(
            "{line}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -n NETNS -batch -` with `batch` (one command per line); `-force` goes on after errors
/// only where asked.
pub fn ip_batch(netns: Option<&str>, batch: &str) -> Result<(), LabError> {
    if batch.trim().is_empty() {
        return Ok(());
    }
    let mut args = vec![];
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["-batch", "-"]);
    run("ip", &args, Some(batch)).map(|_| ())
}

/// `nft -f -` with `text`, inside `netns`: one atomic transaction.
pub fn nft_apply(netns: &str, text: &str) -> Result<(), LabError> {
    run(
        "ip",
        &["netns", "exec", netns, "nft", "-f", "-"],
        Some(text),
    )
    .map(|_| ())
}

/// The named network namespaces that exist.
pub fn namespaces() -> Result<Vec<String>, LabError> {
    let out = run("ip", &["netns", "list"], None)?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// Runs `f` on a new thread inside namespace `netns` and waits for it. Only that thread enters
/// the namespace; sockets made there keep it.
pub fn in_netns<R: Send>(netns: &str, f: impl FnOnce() -> R + Send) -> Result<R, LabError> {
    let path = format!("/run/netns/{netns}");
    let file = File::open(&path).map_err(|e| LabError::Io(format!("open {path}: {e}")))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
                .map(|()| f())
                .map_err(|e| LabError::Io(format!("setns {netns}: {e}")))
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}
