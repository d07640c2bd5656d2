//! Where the gate's policy comes from: the store, followed by revision.

use std::fmt;

use apiwall_model::ids;
use apiwall_model::resources::{ManagedCluster, PublicIp};
use apiwall_model::world::{Record, Resource, World};
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

/// The cluster `resource_group/cluster` in a store, through the service. Each load reads only
/// what the cluster's access rule depends on (the cluster and its load balancer's public IP),
/// and reuses the last rule when those records did not change, so a change elsewhere in the
/// store (a firewall rule, a route) costs the gate two small reads.
pub struct StoreSource<S> {
    api: LocalApi<S>,
    resource_group: String,
    cluster: String,
    /// The records the last rule was compiled from, and that rule.
    last: Option<(Vec<Record>, Option<ApiServerAccess>)>,
}

impl<S: Store> StoreSource<S> {
    pub fn new(api: LocalApi<S>, resource_group: &str, cluster: &str) -> Self {
        Self {
            api,
            resource_group: resource_group.to_string(),
            cluster: cluster.to_string(),
            last: None,
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
        let err = |e: &dyn fmt::Display| SourceError(e.to_string());
        let store = self.api.store();
        // The revision first: the records read after it are at least that new, so a write in
        // between is picked up again on the next poll, never missed.
        let revision = store.revision().map_err(|e| err(&e))?;
        let Some(cluster) = store
            .get(ManagedCluster::KIND, &self.resource_group, &self.cluster)
            .map_err(|e| err(&e))?
        else {
            self.last = None;
            return Ok((revision, None));
        };
        let parsed: ManagedCluster = serde_json::from_str(&cluster.body).map_err(|e| err(&e))?;
        let mut records = vec![cluster];
        let lb = parsed
            .network_profile
            .load_balancer_profile
            .as_ref()
            .and_then(|p| p.effective_outbound_ips.first());
        if let Some(lb) = lb
            && let Some(rg) = ids::parse_rg(&lb.id)
            && let Some(ip) = store
                .get(PublicIp::KIND, rg, ids::last_segment(&lb.id))
                .map_err(|e| err(&e))?
        {
            records.push(ip);
        }
        if let Some((seen, access)) = &self.last
            && *seen == records
        {
            return Ok((revision, access.clone()));
        }
        // The same compiler as everywhere else, over just these records.
        let world = World::from_records(&records).map_err(|e| err(&e))?;
        let access = Policy::compile(&world)
            .clusters()
            .first()
            .map(|c| c.access.clone());
        self.last = Some((records, access.clone()));
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
