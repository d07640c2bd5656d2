use apiwall_model::{ModelError, ParseError};
use apiwall_store::StoreError;
use thiserror::Error;

/// How a failed call should be reported: az's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed (exit 2).
    Usage,
    /// The request is well-formed but cannot be carried out (exit 1).
    Operation,
    /// A resource it names does not exist (exit 3).
    NotFound,
}

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Invalid(#[from] ModelError),
    /// A resource does not exist; the message is az's.
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with existing resources (in use, overlap, immutable field).
    #[error("{0}")]
    Conflict(String),
    /// The change would cut a cluster's nodes off from their API server.
    #[error("{0}")]
    Lockout(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ApiError::Usage(_) => ErrorKind::Usage,
            ApiError::NotFound(_) => ErrorKind::NotFound,
            _ => ErrorKind::Operation,
        }
    }

    pub fn invalid(field: &str, value: impl ToString, reason: impl Into<String>) -> Self {
        ApiError::Invalid(ModelError::new(field, value.to_string(), reason))
    }

    pub fn parse(field: &str, value: &str, e: ParseError) -> Self {
        ApiError::Invalid(ModelError::from_parse(field, value, e))
    }

    /// az's message for a missing resource: `provider_type` like `Microsoft.Network/azureFirewalls`.
    pub fn not_found(provider_type: &str, name: &str, rg: &str) -> Self {
        ApiError::NotFound(format!(
            "(ResourceNotFound) The Resource '{provider_type}/{name}' under resource group '{rg}' was not found."
        ))
    }

    pub fn group_not_found(rg: &str) -> Self {
        ApiError::NotFound(format!(
            "(ResourceGroupNotFound) Resource group '{rg}' could not be found."
        ))
    }
}
