//! apiwall's lab: the stored model as real hosts in network namespaces, enforced by the kernel
//! firewall, kernel routes and the gate, with a kube-apiserver stand-in behind the gate.

#![forbid(unsafe_code)]

pub mod apiserver;
pub mod certs;
pub mod controller;
pub mod fwlog;
pub mod host;
pub mod lab;
pub mod plan;
pub mod probe;
pub mod topology;

/// The kernel enforcers the lab drives, for callers that inspect them (counters, tables).
pub use apiwall_kernel as kernel;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{0}")]
    Io(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Model(String),
    #[error(transparent)]
    Kernel(#[from] apiwall_kernel::KernelError),
}
