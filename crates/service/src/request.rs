//! Requests: one variant per operation, with typed (already parsed) arguments. Field names
//! follow az's flags.

use apiwall_model::resources::{Action, NextHopType, OutboundType, Priority};
use std::net::IpAddr;

use apiwall_model::{AddressEntry, AuthorizedRanges, Cidr, PortEntry, PrivateRange, Protocol};

/// A resource group and a name: what `-g RG -n NAME` gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub rg: String,
    pub name: String,
}

impl Named {
    pub fn new(rg: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            rg: rg.into(),
            name: name.into(),
        }
    }
}

/// A child of a named parent: a subnet of a vnet, a route of a route table, an ip-config or a
/// rule collection of a firewall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub rg: String,
    pub parent: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterCreate {
    pub rg: String,
    pub name: String,
    pub location: Option<String>,
    /// `None`: 3 for a new cluster, unchanged for an existing one.
    pub node_count: Option<u32>,
    pub outbound_type: OutboundType,
    pub authorized_ranges: Option<AuthorizedRanges>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SubnetSpec {
    pub rg: String,
    pub vnet: String,
    pub name: String,
    /// Required to create; optional to update.
    pub address_prefix: Option<Cidr>,
    /// `Some("")` detaches the route table.
    pub route_table: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IpConfigCreate {
    pub rg: String,
    pub firewall: String,
    pub name: String,
    pub vnet: String,
    pub public_ip: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkRuleCreate {
    pub rg: String,
    pub firewall: String,
    pub collection: String,
    pub name: String,
    pub priority: Option<Priority>,
    pub action: Option<Action>,
    pub protocols: Vec<Protocol>,
    pub source_addresses: Vec<AddressEntry>,
    pub destination_addresses: Vec<AddressEntry>,
    pub destination_ports: Vec<PortEntry>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteSpec {
    pub rg: String,
    pub table: String,
    pub name: String,
    pub address_prefix: Option<Cidr>,
    pub next_hop_type: Option<NextHopType>,
    pub next_hop_ip: Option<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IpFlowSpec {
    pub rg: String,
    pub vm: String,
    pub direction: Direction,
    pub protocol: Protocol,
    /// The VM's side: `IP:PORT`.
    pub local: (IpAddr, u16),
    /// The other side: `IP:PORT`.
    pub remote: (IpAddr, u16),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TraceSpec {
    /// The source: a node (with its group), or an address on the internet.
    pub rg: Option<String>,
    pub vm: Option<String>,
    pub source_ip: Option<IpAddr>,
    pub dest_ip: IpAddr,
    pub dest_port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    GroupCreate {
        name: String,
        location: String,
    },
    GroupShow(String),
    GroupList,
    GroupDelete(String),

    AksCreate(ClusterCreate),
    AksShow(Named),
    AksList(Option<String>),
    AksUpdate {
        cluster: Named,
        authorized_ranges: Option<AuthorizedRanges>,
    },
    AksDelete(Named),

    VmShow(Named),
    VmList(Option<String>),

    VnetCreate {
        vnet: Named,
        location: Option<String>,
        address_prefixes: Vec<Cidr>,
    },
    VnetShow(Named),
    VnetList(Option<String>),
    VnetDelete(Named),
    SubnetCreate(SubnetSpec),
    SubnetUpdate(SubnetSpec),
    SubnetShow(Child),
    SubnetList(Named),
    SubnetDelete(Child),

    PublicIpCreate {
        ip: Named,
        location: Option<String>,
        sku: String,
    },
    PublicIpShow(Named),
    PublicIpList(Option<String>),
    PublicIpDelete(Named),

    FirewallCreate {
        firewall: Named,
        location: Option<String>,
    },
    FirewallShow(Named),
    FirewallList(Option<String>),
    FirewallUpdate {
        firewall: Named,
        private_ranges: Option<Vec<PrivateRange>>,
    },
    FirewallDelete(Named),
    IpConfigCreate(IpConfigCreate),
    IpConfigShow(Child),
    IpConfigList(Named),
    IpConfigDelete(Child),
    NetworkRuleCreate(NetworkRuleCreate),
    /// `parent` is `firewall/collection`.
    NetworkRuleShow {
        rg: String,
        firewall: String,
        collection: String,
        name: String,
    },
    NetworkRuleList {
        rg: String,
        firewall: String,
        collection: String,
    },
    NetworkRuleDelete {
        rg: String,
        firewall: String,
        collection: String,
        name: String,
    },
    CollectionShow(Child),
    CollectionList(Named),
    CollectionDelete(Child),

    RouteTableCreate {
        table: Named,
        location: Option<String>,
        disable_bgp_route_propagation: bool,
    },
    RouteTableShow(Named),
    RouteTableList(Option<String>),
    RouteTableDelete(Named),
    RouteCreate(RouteSpec),
    RouteUpdate(RouteSpec),
    RouteShow(Child),
    RouteList(Named),
    RouteDelete(Child),

    FeatureRegister {
        namespace: String,
        name: String,
    },
    FeatureShow {
        namespace: String,
        name: String,
    },
    FeatureList,
    ProviderRegister(String),
    ProviderShow(String),
    ExtensionAdd(String),
    ExtensionList,

    ConfigureShow,

    /// `network watcher show-next-hop`.
    NextHop {
        rg: String,
        vm: String,
        source_ip: Option<IpAddr>,
        dest_ip: IpAddr,
    },
    /// `network watcher test-ip-flow`.
    IpFlow(IpFlowSpec),
    /// `network watcher trace`.
    Trace(TraceSpec),
    Configure {
        public_ip_pool: Option<Cidr>,
        api_server_pool: Option<Cidr>,
    },
}

impl Request {
    /// Whether the request only reads.
    pub fn is_read(&self) -> bool {
        use Request::*;
        matches!(
            self,
            GroupShow(_)
                | GroupList
                | AksShow(_)
                | AksList(_)
                | VmShow(_)
                | VmList(_)
                | VnetShow(_)
                | VnetList(_)
                | SubnetShow(_)
                | SubnetList(_)
                | PublicIpShow(_)
                | PublicIpList(_)
                | FirewallShow(_)
                | FirewallList(_)
                | IpConfigShow(_)
                | IpConfigList(_)
                | NetworkRuleShow { .. }
                | NetworkRuleList { .. }
                | CollectionShow(_)
                | CollectionList(_)
                | RouteTableShow(_)
                | RouteTableList(_)
                | RouteShow(_)
                | RouteList(_)
                | FeatureShow { .. }
                | FeatureList
                | ProviderShow(_)
                | ExtensionList
                | ConfigureShow
                | NextHop { .. }
                | IpFlow(_)
                | Trace(_)
        )
    }
}
