//! Gate errors, tagged by the side at fault so that metrics and log levels can follow them.

use std::net::SocketAddr;

/// Who is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something wrong or went away.
    Client,
    /// The upstream could not be reached or failed.
    Upstream,
    /// The gate itself: configuration, binding, the policy source.
    Internal,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
            Side::Internal => "internal",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("invalid gate configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("upstream {addr}: connect failed: {source}")]
    UpstreamConnect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("upstream {addr}: connect timed out after {ms} ms")]
    UpstreamTimeout { addr: SocketAddr, ms: u64 },
    #[error("client {peer}: {source}")]
    Client {
        peer: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("relay between {peer} and the upstream: {source}")]
    Relay {
        peer: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("policy source: {0}")]
    Source(#[from] crate::source::SourceError),
}

impl GateError {
    /// The side at fault.
    pub fn side(&self) -> Side {
        match self {
            GateError::Config(_) | GateError::Bind { .. } | GateError::Source(_) => Side::Internal,
            GateError::UpstreamConnect { .. } | GateError::UpstreamTimeout { .. } => Side::Upstream,
            // A relay error is almost always a peer resetting; the client is the usual one.
            GateError::Client { .. } | GateError::Relay { .. } => Side::Client,
        }
    }
}
