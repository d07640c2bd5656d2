//! The resources, in the exact JSON shape `az` prints (keys are sorted when printed).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ParseError;
use crate::net::{AddressEntry, Cidr, PortEntry, Protocol};

pub const SUCCEEDED: &str = "Succeeded";

/// A reference to another resource, as az prints it: `{"id": …, "resourceGroup": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdRef {
    pub id: String,
    pub resource_group: String,
}

impl IdRef {
    pub fn new(id: impl Into<String>, rg: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            resource_group: rg.into(),
        }
    }
}

// === Resource groups ===

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceGroup {
    pub id: String,
    pub location: String,
    pub managed_by: Option<String>,
    pub name: String,
    pub properties: GroupProperties,
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupProperties {
    pub provisioning_state: String,
}

// === Managed clusters and their nodes ===

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OutboundType {
    LoadBalancer,
    UserDefinedRouting,
}

impl FromStr for OutboundType {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.to_ascii_lowercase().as_str() {
            "loadbalancer" => Ok(Self::LoadBalancer),
            "userdefinedrouting" => Ok(Self::UserDefinedRouting),
            _ => Err(ParseError::new("use loadBalancer or userDefinedRouting")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedCluster {
    pub agent_pool_profiles: Vec<AgentPoolProfile>,
    pub api_server_access_profile: ApiServerAccessProfile,
    /// apiwall's own field: the API server endpoint's public IP (what `fqdn` resolves to).
    pub api_server_address: IpAddr,
    pub dns_prefix: String,
    pub fqdn: String,
    pub id: String,
    pub kubernetes_version: String,
    pub location: String,
    pub name: String,
    pub network_profile: NetworkProfile,
    pub node_resource_group: String,
    pub provisioning_state: String,
    pub resource_group: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPoolProfile {
    pub count: u32,
    pub mode: String,
    pub name: String,
    pub os_type: String,
    pub provisioning_state: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub vm_size: String,
    pub vnet_subnet_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiServerAccessProfile {
    /// `None`: the restriction is off and everyone is admitted.
    pub authorized_ip_ranges: Option<Vec<Cidr>>,
    pub enable_private_cluster: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkProfile {
    pub dns_service_ip: String,
    pub load_balancer_profile: Option<LoadBalancerProfile>,
    pub load_balancer_sku: String,
    pub network_plugin: String,
    pub outbound_type: OutboundType,
    pub pod_cidr: String,
    pub service_cidr: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadBalancerProfile {
    #[serde(rename = "effectiveOutboundIPs")]
    pub effective_outbound_ips: Vec<IdRef>,
}

/// A cluster node (a VM scale set instance in AKS), as `az vm list -d` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachine {
    pub id: String,
    pub location: String,
    pub name: String,
    pub power_state: String,
    pub private_ips: IpAddr,
    pub provisioning_state: String,
    pub resource_group: String,
    pub tags: BTreeMap<String, String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub vm_size: String,
}

/// Tag on a node naming the id of the cluster it belongs to.
pub const TAG_CLUSTER: &str = "aks-managed-cluster";

// === Virtual networks ===

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualNetwork {
    pub address_space: AddressSpace,
    pub id: String,
    pub location: String,
    pub name: String,
    pub provisioning_state: String,
    pub resource_group: String,
    pub subnets: Vec<Subnet>,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressSpace {
    pub address_prefixes: Vec<Cidr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subnet {
    pub address_prefix: Cidr,
    pub id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_configurations: Vec<IdRef>,
    pub name: String,
    pub provisioning_state: String,
    pub resource_group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_table: Option<IdRef>,
    #[serde(rename = "type")]
    pub kind: String,
}

// === Public IPs ===

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicIp {
    pub id: String,
    pub idle_timeout_in_minutes: u32,
    pub ip_address: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_configuration: Option<IdRef>,
    pub ip_tags: Vec<serde_json::Value>,
    pub location: String,
    pub name: String,
    pub provisioning_state: String,
    #[serde(rename = "publicIPAddressVersion")]
    pub public_ip_address_version: String,
    #[serde(rename = "publicIPAllocationMethod")]
    pub public_ip_allocation_method: String,
    pub resource_group: String,
    pub sku: Sku,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sku {
    pub name: String,
    pub tier: String,
}

// === Firewalls ===

/// The `additionalProperties` key holding a firewall's SNAT private ranges.
pub const SNAT_PRIVATE_RANGES: &str = "Network.SNAT.PrivateRanges";

/// What Azure means by `IANAPrivateRanges`: never SNAT traffic to these.
pub const IANA_PRIVATE_RANGES: [&str; 4] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Firewall {
    pub additional_properties: BTreeMap<String, String>,
    pub application_rule_collections: Vec<serde_json::Value>,
    pub id: String,
    pub ip_configurations: Vec<FirewallIpConfiguration>,
    pub location: String,
    pub name: String,
    pub nat_rule_collections: Vec<serde_json::Value>,
    pub network_rule_collections: Vec<NetworkRuleCollection>,
    pub provisioning_state: String,
    pub resource_group: String,
    pub sku: Sku,
    pub threat_intel_mode: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl Firewall {
    /// The destinations this firewall does not SNAT: `--private-ranges` if set, else
    /// IANA's private ranges (RFC 1918 and RFC 6598).
    pub fn snat_private_ranges(&self) -> Vec<Cidr> {
        let configured = self.additional_properties.get(SNAT_PRIVATE_RANGES);
        let words: Vec<&str> = match configured {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .collect(),
            None => vec!["IANAPrivateRanges"],
        };
        let mut out = Vec::new();
        for w in words {
            if w.eq_ignore_ascii_case("IANAPrivateRanges") {
                out.extend(
                    IANA_PRIVATE_RANGES
                        .iter()
                        .map(|r| r.parse::<Cidr>().expect("constant")),
                );
            } else if let Ok(c) = w.parse() {
                out.push(c);
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FirewallIpConfiguration {
    pub id: String,
    pub name: String,
    pub private_ip_address: IpAddr,
    pub provisioning_state: String,
    pub public_ip_address: IdRef,
    pub resource_group: String,
    pub subnet: IdRef,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Allow,
    Deny,
}

impl FromStr for Action {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.to_ascii_lowercase().as_str() {
            "allow" => Ok(Self::Allow),
            "deny" => Ok(Self::Deny),
            _ => Err(ParseError::new("use Allow or Deny")),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "Allow",
            Action::Deny => "Deny",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleAction {
    #[serde(rename = "type")]
    pub kind: Action,
}

/// A rule collection priority: 100 (runs first) to 65000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Priority(u32);

impl Priority {
    pub const MIN: u32 = 100;
    pub const MAX: u32 = 65000;

    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Priority {
    type Error = ParseError;
    fn try_from(p: u32) -> Result<Self, ParseError> {
        if (Self::MIN..=Self::MAX).contains(&p) {
            Ok(Self(p))
        } else {
            Err(ParseError::new(format!(
                "must be between {} and {}",
                Self::MIN,
                Self::MAX
            )))
        }
    }
}

impl From<Priority> for u32 {
    fn from(p: Priority) -> u32 {
        p.0
    }
}

impl FromStr for Priority {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let n: u32 = s.trim().parse().map_err(|_| {
            ParseError::new(format!(
                "not a number; use an integer between {} and {}",
                Self::MIN,
                Self::MAX
            ))
        })?;
        n.try_into()
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRuleCollection {
    pub action: RuleAction,
    pub id: String,
    pub name: String,
    pub priority: Priority,
    pub provisioning_state: String,
    pub resource_group: String,
    pub rules: Vec<NetworkRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRule {
    pub description: Option<String>,
    pub destination_addresses: Vec<AddressEntry>,
    pub destination_fqdns: Vec<String>,
    pub destination_ip_groups: Vec<String>,
    pub destination_ports: Vec<PortEntry>,
    pub name: String,
    pub protocols: Vec<Protocol>,
    pub source_addresses: Vec<AddressEntry>,
    pub source_ip_groups: Vec<String>,
}

// === Route tables ===

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NextHopType {
    VirtualNetworkGateway,
    VnetLocal,
    Internet,
    VirtualAppliance,
    None,
}

impl FromStr for NextHopType {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.to_ascii_lowercase().as_str() {
            "virtualnetworkgateway" => Ok(Self::VirtualNetworkGateway),
            "vnetlocal" => Ok(Self::VnetLocal),
            "internet" => Ok(Self::Internet),
            "virtualappliance" => Ok(Self::VirtualAppliance),
            "none" => Ok(Self::None),
            _ => Err(ParseError::new(
                "use VirtualAppliance, VnetLocal, Internet, None or VirtualNetworkGateway",
            )),
        }
    }
}

impl fmt::Display for NextHopType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::VirtualNetworkGateway => "VirtualNetworkGateway",
            Self::VnetLocal => "VnetLocal",
            Self::Internet => "Internet",
            Self::VirtualAppliance => "VirtualAppliance",
            Self::None => "None",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteTable {
    pub disable_bgp_route_propagation: bool,
    pub id: String,
    pub location: String,
    pub name: String,
    pub provisioning_state: String,
    pub resource_group: String,
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<IdRef>,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub address_prefix: Cidr,
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_ip_address: Option<IpAddr>,
    pub next_hop_type: NextHopType,
    pub provisioning_state: String,
    pub resource_group: String,
    #[serde(rename = "type")]
    pub kind: String,
}

// === Subscription-level records: features, providers, extensions, settings ===

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub id: String,
    pub name: String,
    pub properties: FeatureProperties,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureProperties {
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    pub id: String,
    pub namespace: String,
    pub registration_policy: String,
    pub registration_state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extension {
    pub experimental: bool,
    pub extension_type: String,
    pub name: String,
    pub preview: bool,
    pub version: String,
}

/// Store-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// Where `public-ip create` and a cluster's outbound IP take addresses from.
    pub public_ip_pool: Cidr,
    /// Where API server endpoint addresses come from.
    pub api_server_pool: Cidr,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            public_ip_pool: "203.0.113.0/24".parse().expect("constant"),
            api_server_pool: "198.51.100.0/24".parse().expect("constant"),
        }
    }
}
