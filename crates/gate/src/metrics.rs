//! Prometheus metrics: accepted per decision and range, denied per reason, open connections,
//! the policy revision and reloads, and errors per side.

use apiwall_policy::AccessDecision;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::Side;

/// Why a connection was refused or closed by the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// No policy has loaded yet.
    NoPolicy,
    /// The configured cluster does not exist.
    UnknownCluster,
    /// No authorized range holds the source.
    NotAuthorized,
    /// A policy change no longer admits an established connection's source.
    Revoked,
    /// A peer that is not a trusted proxy opened with a PROXY header.
    ProxyHeaderUntrusted,
    /// A trusted proxy's header did not arrive in time.
    ProxyHeaderTimeout,
    /// A trusted proxy's header was malformed, too large, or the connection ended first.
    ProxyHeaderInvalid,
    /// `max_connections` are open.
    MaxConnections,
}

impl DenyReason {
    pub const ALL: [DenyReason; 8] = [
        DenyReason::NoPolicy,
        DenyReason::UnknownCluster,
        DenyReason::NotAuthorized,
        DenyReason::Revoked,
        DenyReason::ProxyHeaderUntrusted,
        DenyReason::ProxyHeaderTimeout,
        DenyReason::ProxyHeaderInvalid,
        DenyReason::MaxConnections,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::NoPolicy => "no_policy",
            DenyReason::UnknownCluster => "unknown_cluster",
            DenyReason::NotAuthorized => "not_authorized",
            DenyReason::Revoked => "revoked",
            DenyReason::ProxyHeaderUntrusted => "proxy_header_untrusted",
            DenyReason::ProxyHeaderTimeout => "proxy_header_timeout",
            DenyReason::ProxyHeaderInvalid => "proxy_header_invalid",
            DenyReason::MaxConnections => "max_connections",
        }
    }
}

impl EncodeLabelValue for DenyReason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DenyLabels {
    reason: DenyReason,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AcceptLabels {
    /// `range`, `unrestricted` or `load_balancer_outbound`.
    reason: &'static str,
    /// The authorized range (or the load balancer's IP) that admitted the source.
    range: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SideLabels {
    side: &'static str,
}

pub(crate) struct Metrics {
    registry: Registry,
    accepted: Family<AcceptLabels, Counter>,
    denied: Vec<Counter>,
    errors: Family<SideLabels, Counter>,
    pub open: Gauge,
    pub revision: Gauge,
    pub generation: Gauge,
    pub reloads: Counter,
    pub reload_failures: Counter,
    pub ready: Gauge,
    pub log_dropped: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("apiwall_gate");
        let accepted = Family::<AcceptLabels, Counter>::default();
        let denied_family = Family::<DenyLabels, Counter>::default();
        let errors = Family::<SideLabels, Counter>::default();
        let m = Metrics {
            denied: DenyReason::ALL
                .iter()
                .map(|&reason| denied_family.get_or_create(&DenyLabels { reason }).clone())
                .collect(),
            accepted,
            errors,
            open: Gauge::default(),
            revision: Gauge::default(),
            generation: Gauge::default(),
            reloads: Counter::default(),
            reload_failures: Counter::default(),
            ready: Gauge::default(),
            log_dropped: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "accepted",
            "Connections admitted, by decision and authorized range",
            m.accepted.clone(),
        );
        registry.register(
            "denied",
            "Connections refused or closed, by reason",
            denied_family,
        );
        registry.register("errors", "Errors by side at fault", m.errors.clone());
        registry.register(
            "open_connections",
            "Relayed connections open now",
            m.open.clone(),
        );
        registry.register(
            "policy_revision",
            "Store revision of the policy in force (-1: none)",
            m.revision.clone(),
        );
        registry.register(
            "policy_generation",
            "Policies swapped in since start",
            m.generation.clone(),
        );
        registry.register("policy_reloads", "Policies loaded", m.reloads.clone());
        registry.register(
            "policy_reload_failures",
            "Revisions that failed to load (the last good policy stayed)",
            m.reload_failures.clone(),
        );
        registry.register(
            "ready",
            "1 once a policy for an existing cluster is in force",
            m.ready.clone(),
        );
        registry.register(
            "access_log_dropped",
            "Access-log lines dropped because the writer fell behind",
            m.log_dropped.clone(),
        );
        m.revision.set(-1);
        Metrics { registry, ..m }
    }

    pub fn accepted(&self, d: &AccessDecision) {
        let labels = match d {
            AccessDecision::Unrestricted => AcceptLabels {
                reason: "unrestricted",
                range: String::new(),
            },
            AccessDecision::Range { range } => AcceptLabels {
                reason: "range",
                range: range.to_string(),
            },
            AccessDecision::LoadBalancerOutbound { ip } => AcceptLabels {
                reason: "load_balancer_outbound",
                range: ip.to_string(),
            },
            AccessDecision::NoMatch => return,
        };
        self.accepted.get_or_create(&labels).inc();
    }

    #[inline]
    pub fn denied(&self, reason: DenyReason) {
        self.denied[reason as usize].inc();
    }

    pub fn error(&self, side: Side) {
        self.errors
            .get_or_create(&SideLabels {
                side: side.as_str(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &self.registry)
            .expect("writing to a String cannot fail");
        s
    }
}
