//! The gate's configuration. The CLI (or a test) builds it; the gate parses no arguments.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {value}: {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub value: String,
    pub reason: String,
}

/// What the gate does, where it listens and how long it waits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GateConfig {
    /// The cluster whose authorized IP ranges apply.
    pub resource_group: String,
    pub cluster: String,
    /// Where clients connect. Loopback by default.
    pub listen: SocketAddr,
    /// The API server.
    pub upstream: SocketAddr,
    /// Peers whose PROXY v1/v2 header is honoured. Any other peer is decided on its own address.
    pub trusted_proxies: Vec<IpNet>,
    /// `/metrics`, `/healthz`, `/readyz`; none when unset.
    pub admin: Option<SocketAddr>,
    /// Open relayed connections (and PROXY headers being read) at most; more are denied.
    pub max_connections: usize,
    pub connect_timeout_ms: u64,
    pub proxy_header_timeout_ms: u64,
    /// Largest PROXY header accepted, in bytes (v1 is at most 107; v2 carries TLVs).
    pub proxy_header_max: usize,
    /// How long shutdown waits for open connections before closing them.
    pub drain_timeout_ms: u64,
    /// How often the store revision is polled.
    pub poll_interval_ms: u64,
    /// Relay buffer per direction with `Relay::Copy`, in bytes.
    pub buffer_size: usize,
    /// Pipe capacity per direction with `Relay::Splice`, in bytes; only bytes in flight use memory.
    pub pipe_size: usize,
    /// How admitted connections are relayed.
    pub relay: Relay,
    /// Denial lines in the access log per second (a burst of twice that); the rest are counted.
    pub denial_log_per_sec: u32,
    /// Write JSON access-log lines to stdout.
    pub access_log: bool,
}

/// How an admitted connection's bytes are moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Relay {
    /// tokio's `copy_bidirectional_with_sizes`: through a userspace buffer.
    Copy,
    /// splice(2) through a pipe per direction: the bytes stay in the kernel (Linux).
    #[default]
    Splice,
}

impl GateConfig {
    /// Defaults for everything but the cluster and the upstream.
    pub fn new(resource_group: &str, cluster: &str, upstream: SocketAddr) -> Self {
        Self {
            resource_group: resource_group.to_string(),
            cluster: cluster.to_string(),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6443),
            upstream,
            trusted_proxies: Vec::new(),
            admin: None,
            max_connections: 10_000,
            connect_timeout_ms: 3_000,
            proxy_header_timeout_ms: 3_000,
            proxy_header_max: 1_024,
            drain_timeout_ms: 10_000,
            poll_interval_ms: 25,
            buffer_size: 64 * 1024,
            pipe_size: 256 * 1024,
            relay: Relay::default(),
            denial_log_per_sec: 20,
            access_log: true,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, value: &dyn ToString, reason: &str| ConfigError {
            field,
            value: value.to_string(),
            reason: reason.to_string(),
        };
        if self.cluster.is_empty() {
            return Err(err("--name", &"\"\"", "must name a cluster"));
        }
        if self.resource_group.is_empty() {
            return Err(err(
                "--resource-group",
                &"\"\"",
                "must name a resource group",
            ));
        }
        if self.max_connections == 0 || self.max_connections > u32::MAX as usize {
            return Err(err(
                "--max-connections",
                &self.max_connections,
                "must be between 1 and 4294967295",
            ));
        }
        for (field, v) in [
            ("--connect-timeout", self.connect_timeout_ms),
            ("--proxy-header-timeout", self.proxy_header_timeout_ms),
        ] {
            if v == 0 {
                return Err(err(field, &v, "must be at least 1 ms"));
            }
        }
        if !(1..=1_000).contains(&self.poll_interval_ms) {
            return Err(err(
                "poll interval",
                &self.poll_interval_ms,
                "must be between 1 and 1000 ms",
            ));
        }
        if !(16..=65_551).contains(&self.proxy_header_max) {
            return Err(err(
                "PROXY header limit",
                &self.proxy_header_max,
                "must be between 16 and 65551 bytes",
            ));
        }
        if self.buffer_size < 1024 {
            return Err(err(
                "buffer size",
                &self.buffer_size,
                "must be at least 1024 bytes",
            ));
        }
        if self.pipe_size < 4096 {
            return Err(err(
                "pipe size",
                &self.pipe_size,
                "must be at least 4096 bytes (one page)",
            ));
        }
        if self.listen.port() != 0 && Some(self.listen) == self.admin {
            return Err(err("--admin", &self.listen, "must differ from --listen"));
        }
        Ok(())
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub(crate) fn proxy_header_timeout(&self) -> Duration {
        Duration::from_millis(self.proxy_header_timeout_ms)
    }

    pub(crate) fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }

    pub(crate) fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
}
