//! Running things in the lab's hosts, with the kernel crate's executors: commands (`ip`, `nft`)
//! and code on a thread that has entered a host's network namespace.

use apiwall_kernel::exec;

use crate::LabError;

/// Runs `program args…` with `stdin`, returning stdout; a non-zero exit is an error with stderr.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, LabError> {
    Ok(exec::run(program, args, stdin)?)
}

/// `ip [-n NETNS] -batch -` with `batch`, one command per line.
pub fn ip_batch(netns: Option<&str>, batch: &str) -> Result<(), LabError> {
    if batch.trim().is_empty() {
        return Ok(());
    }
    exec::ip(netns, &["-batch", "-"], Some(batch))?;
    Ok(())
}

/// `nft -f -` with `text`, inside `netns`: one atomic transaction.
pub fn nft_apply(netns: &str, text: &str) -> Result<(), LabError> {
    exec::nft(Some(netns), &["-f", "-"], Some(text))?;
    Ok(())
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
    Ok(apiwall_kernel::in_netns(netns, f)?)
}
