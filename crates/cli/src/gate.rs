//! `apiwall gate run`: the arguments, turned into a `GateConfig`, and the gate run until
//! SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use apiwall_gate::{Gate, GateConfig, StoreSource};
use clap::{Args, Subcommand};

use crate::args::{Global, List};
use crate::commands::open_api;

#[derive(Debug, Subcommand)]
pub enum GateCmd {
    /// Run the gate in front of a cluster's API server: admit only its authorized IP ranges,
    /// follow changes live, and close connections a change no longer admits.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Name of the resource group.
    #[arg(short = 'g', long = "resource-group")]
    pub resource_group: String,
    /// Name of the managed cluster.
    #[arg(short = 'n', long)]
    pub name: String,
    /// Address clients connect to.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Address of the API server the gate relays to.
    #[arg(long)]
    pub upstream: SocketAddr,
    /// Proxies (CIDRs, comma- or space-separated) whose PROXY v1/v2 header is honoured.
    #[arg(long, num_args = 1..)]
    pub trusted_proxies: Vec<List<apiwall_model::Cidr>>,
    /// Address of the admin listener (/metrics, /healthz, /readyz); none if unset.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Open connections at most; more are refused.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Upstream connect timeout, in milliseconds.
    #[arg(long, default_value_t = 3_000)]
    pub connect_timeout: u64,
    /// Time a trusted proxy has to send its PROXY header, in milliseconds.
    #[arg(long, default_value_t = 3_000)]
    pub proxy_header_timeout: u64,
    /// Time open connections get to finish after SIGTERM, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub drain_timeout: u64,
    /// How admitted connections are relayed: splice (in the kernel, Linux) or copy (userspace).
    #[arg(long, value_enum, default_value_t = RelayArg::Splice)]
    pub relay: RelayArg,
    /// Do not write the JSON access log to stdout.
    #[arg(long)]
    pub no_access_log: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RelayArg {
    Copy,
    Splice,
}

pub fn run(cmd: GateCmd, _global: &Global) -> ExitCode {
    match cmd {
        GateCmd::Run(a) => match run_gate(a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ERROR: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

fn config(a: &RunArgs) -> GateConfig {
    let mut cfg = GateConfig::new(&a.resource_group, &a.name, a.upstream);
    cfg.listen = a.listen;
    cfg.trusted_proxies = crate::args::flatten(&a.trusted_proxies)
        .into_iter()
        .map(|c| c.0)
        .collect();
    cfg.admin = a.admin;
    cfg.max_connections = a.max_connections;
    cfg.connect_timeout_ms = a.connect_timeout;
    cfg.proxy_header_timeout_ms = a.proxy_header_timeout;
    cfg.drain_timeout_ms = a.drain_timeout;
    cfg.access_log = !a.no_access_log;
    cfg.relay = match a.relay {
        RelayArg::Copy => apiwall_gate::Relay::Copy,
        RelayArg::Splice => apiwall_gate::Relay::Splice,
    };
    cfg
}

fn run_gate(a: RunArgs) -> anyhow::Result<()> {
    let cfg = config(&a);
    let files = apiwall_gate::raise_nofile_limit();
    let needed = cfg.max_connections as u64 * 6 + 64;
    if files < needed {
        tracing::warn!(
            open_files = files,
            needed,
            max_connections = cfg.max_connections,
            "the open-file limit is below what --max-connections needs; raise it (ulimit -n) or lower --max-connections"
        );
    }
    let api = open_api()?;
    let source = StoreSource::new(api, &a.resource_group, &a.name);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gate")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let gate = Gate::bind(cfg, source)?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        gate.run(shutdown).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    // Connections still open after the drain are dropped with the runtime.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(())
}
