//! Where the gate's policy comes from: the store, followed by revision.

use std::fmt;

use apiwall_policy::{AccessDecision, ApiServerAccess, Policy};
use apiwall_service::LocalApi;
use apiwall_store::Store;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// A revisioned source of one cluster's API server access rule. Called from the gate's own
/// policy thread, never from the async runtime, so implementations may block.
pub trait PolicySource: Send + 'static {
    /// The latest revision. Cheap: polled every few tens of milliseconds.
    fn revision(&mut self) -> Result<u64, SourceError>;

    /// The cluster's compiled access rule as of the latest revision, with that revision.
    /// `None`: the cluster does not exist at that revision.
    fn load(&mut self) -> Result<(u64, Option<ApiServerAccess>), SourceError>;
}

/// The cluster `resource_group/cluster` in a store, through the service.
pub struct StoreSource<S> {
    api: LocalApi<S>,
    resource_group: String,
    cluster: String,
}

impl<S: Store> StoreSource<S> {
    pub fn new(api: LocalApi<S>, resource_group: &str, cluster: &str) -> Self {
        Self {
            api,
            resource_group: resource_group.to_string(),
            cluster: cluster.to_string(),
        }
    }
}

impl<S: Store + 'static> PolicySource for StoreSource<S> {
    fn revision(&mut self) -> Result<u64, SourceError> {
        self.api
            .store()
            .revision()
            .map_err(|e| SourceError(e.to_string()))
    }

    fn load(&mut self) -> Result<(u64, Option<ApiServerAccess>), SourceError> {
        let (world, revision) = self.api.world().map_err(|e| SourceError(e.to_string()))?;
        let policy = Policy::compile(&world);
        let access = policy
            .clusters()
            .iter()
            .find(|c| {
                c.resource_group.eq_ignore_ascii_case(&self.resource_group)
                    && c.name.eq_ignore_ascii_case(&self.cluster)
            })
            .map(|c| c.access.clone());
        Ok((revision, access))
    }
}

/// What the gate currently enforces.
#[derive(Debug, Clone)]
pub enum PolicyState {
    /// Nothing loaded yet: everything is denied.
    NotLoaded,
    /// The store has no such cluster: everything is denied.
    UnknownCluster,
    Loaded(ApiServerAccess),
}

impl fmt::Display for PolicyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyState::NotLoaded => f.write_str("no policy loaded"),
            PolicyState::UnknownCluster => f.write_str("cluster not found"),
            PolicyState::Loaded(a) if !a.restricted() => f.write_str("unrestricted"),
            PolicyState::Loaded(a) => write!(
                f,
                "{} authorized prefixes",
                a.ranges().map_or(0, |r| r.len())
            ),
        }
    }
}

/// One swapped-in policy: what is enforced, as of which store revision, and the gate's own
/// generation number (one per swap; connections compare it to know they must re-check).
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub generation: u64,
    pub revision: Option<u64>,
    pub state: PolicyState,
}

impl Snapshot {
    /// The decision for a source address, or why it is denied.
    #[inline]
    pub fn decide(&self, ip: std::net::IpAddr) -> Result<AccessDecision, crate::DenyReason> {
        use crate::DenyReason;
        match &self.state {
            PolicyState::NotLoaded => Err(DenyReason::NoPolicy),
            PolicyState::UnknownCluster => Err(DenyReason::UnknownCluster),
            PolicyState::Loaded(access) => match access.check(ip) {
                AccessDecision::NoMatch => Err(DenyReason::NotAuthorized),
                d => Ok(d),
            },
        }
    }
}
