//! The command line, in az's vocabulary: `apiwall network firewall network-rule create -g RG …`.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use apiwall_model::resources::{Action, NextHopType, OutboundType, Priority};
use apiwall_model::{
    AddressEntry, AuthorizedRanges, Cidr, ParseError, PortEntry, PrivateRange, Protocol,
};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// A list argument's word, which may hold several comma-separated entries.
#[derive(Debug, Clone)]
pub struct List<T>(pub Vec<T>);

impl<T: FromStr<Err = ParseError>> FromStr for List<T> {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        apiwall_model::net::split_list([s])
            .into_iter()
            .map(|w| {
                w.parse().map_err(|e: ParseError| {
                    if w == s {
                        e
                    } else {
                        ParseError::new(format!("{w}: {e}"))
                    }
                })
            })
            .collect::<Result<_, _>>()
            .map(List)
    }
}

pub fn flatten<T: Clone>(words: &[List<T>]) -> Vec<T> {
    words.iter().flat_map(|l| l.0.iter().cloned()).collect()
}

/// apiwall decides who may reach a Kubernetes API server, and sends a cluster's egress through
/// one firewall with one public IP. Commands follow az's; state lives in $APIWALL_HOME
/// (default ~/.apiwall).
#[derive(Debug, Parser)]
#[command(name = "apiwall", version, term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Json)]
    pub output: Output,
    /// JMESPath query applied to the output, with az's semantics.
    #[arg(long, global = true)]
    pub query: Option<String>,
    /// Apply a change even if the lockout check refuses it.
    #[arg(long, global = true)]
    pub force: bool,
    /// Print only errors (accepted for az compatibility).
    #[arg(long, global = true)]
    pub only_show_errors: bool,
    /// More logging.
    #[arg(long, global = true)]
    pub verbose: bool,
    /// Debug logging.
    #[arg(long, global = true)]
    pub debug: bool,
}

impl Global {
    pub fn log_filter(&self) -> &'static str {
        if self.debug {
            "debug"
        } else if self.verbose {
            "info"
        } else {
            "warn"
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Json,
    Jsonc,
    Table,
    Tsv,
    Yaml,
    Yamlc,
    None,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage resource groups.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Manage Kubernetes clusters and their authorized IP ranges.
    #[command(subcommand)]
    Aks(AksCmd),
    /// Show the nodes of clusters.
    #[command(subcommand)]
    Vm(VmCmd),
    /// Virtual networks, public IPs, firewalls and route tables.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Preview features (recorded; nothing is gated on them).
    #[command(subcommand)]
    Feature(FeatureCmd),
    /// Resource providers (recorded; nothing is gated on them).
    #[command(subcommand)]
    Provider(ProviderCmd),
    /// az extensions (recorded; apiwall has every command built in).
    #[command(subcommand)]
    Extension(ExtensionCmd),
    /// Show or change store-wide settings, such as the public IP pool.
    Configure(ConfigureArgs),
    /// Run the gate, the TCP front of a cluster's API server.
    #[command(subcommand)]
    Gate(crate::gate::GateCmd),
    /// The model as real hosts in network namespaces (needs root).
    #[command(subcommand)]
    Lab(crate::lab::LabCmd),
}

/// `-g/--resource-group`.
#[derive(Debug, Args)]
pub struct Rg {
    /// Name of the resource group.
    #[arg(short = 'g', long = "resource-group")]
    pub resource_group: String,
}

/// `-g RG -n NAME`.
#[derive(Debug, Args)]
pub struct RgName {
    /// Name of the resource group.
    #[arg(short = 'g', long = "resource-group")]
    pub resource_group: String,
    /// Name of the resource.
    #[arg(short = 'n', long)]
    pub name: String,
}

/// An optional `-g RG` for list commands.
#[derive(Debug, Args)]
pub struct RgOpt {
    /// Name of the resource group; all groups if omitted.
    #[arg(short = 'g', long = "resource-group")]
    pub resource_group: Option<String>,
}

// === group ===

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Create a resource group (or confirm an existing one).
    Create {
        #[arg(
            short = 'n',
            long = "name",
            visible_alias = "resource-group",
            short_alias = 'g'
        )]
        name: String,
        /// Location, such as westeurope.
        #[arg(short = 'l', long)]
        location: String,
    },
    Show {
        #[arg(
            short = 'n',
            long = "name",
            visible_alias = "resource-group",
            short_alias = 'g'
        )]
        name: String,
    },
    List,
    /// Delete a resource group and everything in it.
    Delete {
        #[arg(
            short = 'n',
            long = "name",
            visible_alias = "resource-group",
            short_alias = 'g'
        )]
        name: String,
        /// Do not prompt (apiwall never prompts).
        #[arg(short = 'y', long)]
        yes: bool,
        #[arg(long)]
        no_wait: bool,
    },
}

// === aks ===

#[derive(Debug, Subcommand)]
pub enum AksCmd {
    /// Create a managed cluster with the classic kubenet layout (or update an existing one).
    Create(AksCreate),
    Show(RgName),
    List(RgOpt),
    /// Update a cluster's authorized IP ranges.
    Update(AksUpdate),
    /// Write a kubeconfig for kubectl that trusts the cluster's certificate.
    GetCredentials(crate::lab::GetCredentials),
    /// Delete a cluster and its node resource group.
    Delete {
        #[command(flatten)]
        id: RgName,
        #[arg(short = 'y', long)]
        yes: bool,
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Debug, Args)]
pub struct AksCreate {
    #[command(flatten)]
    pub id: RgName,
    /// Number of nodes (default 3; unchanged when the cluster exists).
    #[arg(short = 'c', long)]
    pub node_count: Option<u32>,
    /// Location; defaults to the resource group's.
    #[arg(short = 'l', long)]
    pub location: Option<String>,
    /// How nodes reach the internet.
    #[arg(long, value_parser = OutboundType::from_str, default_value = "loadBalancer")]
    pub outbound_type: OutboundType,
    /// Comma-separated CIDRs or addresses allowed to reach the API server; "" allows everyone.
    #[arg(long, value_parser = AuthorizedRanges::from_str, allow_hyphen_values = true)]
    pub api_server_authorized_ip_ranges: Option<AuthorizedRanges>,
    /// Accepted for az compatibility.
    #[arg(long)]
    pub generate_ssh_keys: bool,
    /// Accepted for az compatibility.
    #[arg(long)]
    pub network_plugin: Option<String>,
    /// Accepted for az compatibility.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Args)]
pub struct AksUpdate {
    #[command(flatten)]
    pub id: RgName,
    /// Comma-separated CIDRs or addresses allowed to reach the API server (replaces the list);
    /// "" turns the restriction off. 0.0.0.0/32 alone admits only the load balancer's outbound IP.
    #[arg(long, value_parser = AuthorizedRanges::from_str, allow_hyphen_values = true)]
    pub api_server_authorized_ip_ranges: Option<AuthorizedRanges>,
}

// === vm ===

#[derive(Debug, Subcommand)]
pub enum VmCmd {
    Show(RgName),
    List {
        #[command(flatten)]
        rg: RgOpt,
        /// Accepted for az compatibility: details are always shown.
        #[arg(short = 'd', long)]
        show_details: bool,
    },
}

// === network ===

#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Virtual networks and their subnets.
    #[command(subcommand)]
    Vnet(VnetCmd),
    /// Static public IPs, allocated from the public pool.
    #[command(subcommand, name = "public-ip")]
    PublicIp(PublicIpCmd),
    /// Firewalls, their ip-configs and network rule collections.
    #[command(subcommand)]
    Firewall(FirewallCmd),
    /// Route tables and their routes.
    #[command(subcommand, name = "route-table")]
    RouteTable(RouteTableCmd),
    /// Answer "where does this packet go, and who lets it through?" from the model.
    #[command(subcommand)]
    Watcher(WatcherCmd),
}

// === network watcher ===

#[derive(Debug, Subcommand)]
pub enum WatcherCmd {
    /// The next hop of a packet from a VM: type, address and the route table that decided it.
    ShowNextHop {
        #[arg(short = 'g', long = "resource-group")]
        resource_group: String,
        /// The VM (node) the packet leaves.
        #[arg(long)]
        vm: String,
        /// The VM's own address.
        #[arg(long)]
        source_ip: Option<IpAddr>,
        #[arg(long)]
        dest_ip: IpAddr,
    },
    /// Whether a flow is allowed, and by which rule; unlike Azure's, it includes the firewall.
    TestIpFlow {
        #[arg(short = 'g', long = "resource-group")]
        resource_group: String,
        #[arg(long)]
        vm: String,
        #[arg(long, value_enum, ignore_case = true)]
        direction: Direction,
        #[arg(long, value_parser = Protocol::from_str)]
        protocol: Protocol,
        /// The VM's side, IP:PORT.
        #[arg(long)]
        local: SocketAddr,
        /// The other side, IP:PORT.
        #[arg(long)]
        remote: SocketAddr,
    },
    /// Every hop of a flow (route, firewall rule, SNAT, the API server's authorized ranges),
    /// the verdict, and for a denial what blocked it and how to fix it.
    Trace {
        #[arg(short = 'g', long = "resource-group")]
        resource_group: Option<String>,
        /// A node as the source (needs -g).
        #[arg(long, required_unless_present = "source_ip")]
        vm: Option<String>,
        /// The source address (an internet host, or the node's own address with --vm).
        #[arg(long)]
        source_ip: Option<IpAddr>,
        #[arg(long)]
        dest_ip: IpAddr,
        #[arg(long, default_value_t = 443)]
        dest_port: u16,
        #[arg(long, value_parser = Protocol::from_str, default_value = "TCP")]
        protocol: Protocol,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Debug, Subcommand)]
pub enum VnetCmd {
    Create {
        #[command(flatten)]
        id: RgName,
        /// Address spaces (CIDRs); default 10.0.0.0/16.
        #[arg(long, num_args = 1.., value_parser = List::<Cidr>::from_str)]
        address_prefixes: Vec<List<Cidr>>,
        #[arg(short = 'l', long)]
        location: Option<String>,
    },
    Show(RgName),
    List(RgOpt),
    Delete(RgName),
    #[command(subcommand)]
    Subnet(SubnetCmd),
}

/// `-g RG --vnet-name V -n NAME`.
#[derive(Debug, Args)]
pub struct SubnetId {
    #[arg(short = 'g', long = "resource-group")]
    pub resource_group: String,
    /// Name of the virtual network.
    #[arg(long)]
    pub vnet_name: String,
    /// Name of the subnet.
    #[arg(short = 'n', long)]
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum SubnetCmd {
    Create {
        #[command(flatten)]
        id: SubnetId,
        /// The subnet's prefix (one CIDR).
        #[arg(long, alias = "address-prefix", value_parser = Cidr::parse_strict)]
        address_prefixes: Cidr,
        /// Route table to associate: a name in the same group, or an id.
        #[arg(long)]
        route_table: Option<String>,
    },
    Update {
        #[command(flatten)]
        id: SubnetId,
        #[arg(long, alias = "address-prefix", value_parser = Cidr::parse_strict)]
        address_prefixes: Option<Cidr>,
        /// Route table to associate: a name in the same group, or an id; "" detaches it.
        #[arg(long)]
        route_table: Option<String>,
    },
    Show(SubnetId),
    List {
        #[arg(short = 'g', long = "resource-group")]
        resource_group: String,
        #[arg(long)]
        vnet_name: String,
    },
    Delete(SubnetId),
}

#[derive(Debug, Subcommand)]
pub enum PublicIpCmd {
    Create {
        #[command(flatten)]
        id: RgName,
        /// SKU: Standard or Basic.
        #[arg(long, default_value = "Standard")]
        sku: String,
        /// Accepted for az compatibility: addresses are always static.
        #[arg(long)]
        allocation_method: Option<String>,
        #[arg(short = 'l', long)]
        location: Option<String>,
    },
    Show(RgName),
    List(RgOpt),
    Delete(RgName),
}

/// `-g RG -f FIREWALL -n NAME`.
#[derive(Debug, Args)]
pub struct FirewallChild {
    #[arg(short = 'g', long = "resource-group")]
    pub resource_group: String,
    /// Name of the firewall.
    #[arg(short = 'f', long)]
    pub firewall_name: String,
    #[arg(short = 'n', long)]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct FirewallRef {
    #[arg(short = 'g', long = "resource-group")]
    pub resource_group: String,
    #[arg(short = 'f', long)]
    pub firewall_name: String,
}

#[derive(Debug, Subcommand)]
pub enum FirewallCmd {
    Create {
        #[command(flatten)]
        id: RgName,
        #[arg(short = 'l', long)]
        location: Option<String>,
    },
    Show(RgName),
    List(RgOpt),
    /// Update a firewall: `--private-ranges` sets the destinations that are not SNATed.
    Update {
        #[command(flatten)]
        id: RgName,
        /// CIDRs (or IANAPrivateRanges) never SNATed; 0.0.0.0/0 = never SNAT,
        /// 255.255.255.255/32 = always SNAT.
        #[arg(long, num_args = 1.., value_parser = List::<PrivateRange>::from_str)]
        private_ranges: Option<Vec<List<PrivateRange>>>,
    },
    Delete(RgName),
    #[command(subcommand, name = "ip-config")]
    IpConfig(IpConfigCmd),
    #[command(subcommand, name = "network-rule")]
    NetworkRule(NetworkRuleCmd),
}

#[derive(Debug, Subcommand)]
pub enum IpConfigCmd {
    /// Bind a public IP and the vnet's AzureFirewallSubnet (private IP: its 4th address).
    Create {
        #[command(flatten)]
        id: FirewallChild,
        #[arg(long)]
        vnet_name: String,
        /// Name or id of a Standard public IP.
        #[arg(long)]
        public_ip_address: String,
    },
    Show(FirewallChild),
    List(FirewallRef),
    Delete(FirewallChild),
}

#[derive(Debug, Subcommand)]
pub enum NetworkRuleCmd {
    /// Create a network rule (or replace one of the same name); creates its collection if new.
    Create(NetworkRuleCreate),
    Show {
        #[command(flatten)]
        id: FirewallChild,
        #[arg(short = 'c', long)]
        collection_name: String,
    },
    List {
        #[command(flatten)]
        fw: FirewallRef,
        #[arg(short = 'c', long)]
        collection_name: String,
    },
    Delete {
        #[command(flatten)]
        id: FirewallChild,
        #[arg(short = 'c', long)]
        collection_name: String,
    },
    #[command(subcommand)]
    Collection(CollectionCmd),
}

#[derive(Debug, Args)]
pub struct NetworkRuleCreate {
    #[command(flatten)]
    pub id: FirewallChild,
    #[arg(short = 'c', long)]
    pub collection_name: String,
    /// Collection priority, 100 (first) to 65000; required for a new collection.
    #[arg(long, value_parser = Priority::from_str)]
    pub priority: Option<Priority>,
    /// Collection action, Allow or Deny; required for a new collection.
    #[arg(long, value_parser = Action::from_str)]
    pub action: Option<Action>,
    /// TCP, UDP, ICMP or Any.
    #[arg(long, num_args = 1.., required = true, value_parser = List::<Protocol>::from_str)]
    pub protocols: Vec<List<Protocol>>,
    /// '*', addresses, CIDRs or ranges a.b.c.d-e.f.g.h.
    #[arg(long, num_args = 1.., required = true, value_parser = List::<AddressEntry>::from_str)]
    pub source_addresses: Vec<List<AddressEntry>>,
    /// '*', addresses, CIDRs or ranges a.b.c.d-e.f.g.h.
    #[arg(long, num_args = 1.., required = true, value_parser = List::<AddressEntry>::from_str)]
    pub destination_addresses: Vec<List<AddressEntry>>,
    /// '*', ports or ranges a-b, within 1-65535.
    #[arg(long, num_args = 1.., required = true, value_parser = List::<PortEntry>::from_str)]
    pub destination_ports: Vec<List<PortEntry>>,
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CollectionCmd {
    List(FirewallRef),
    Show(FirewallChild),
    Delete(FirewallChild),
}

/// `-g RG --route-table-name T -n NAME`.
#[derive(Debug, Args)]
pub struct RouteId {
    #[arg(short = 'g', long = "resource-group")]
    pub resource_group: String,
    #[arg(long)]
    pub route_table_name: String,
    #[arg(short = 'n', long)]
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum RouteTableCmd {
    Create {
        #[command(flatten)]
        id: RgName,
        #[arg(short = 'l', long)]
        location: Option<String>,
        #[arg(long, alias = "disable-bgp-route-propagation", default_value_t = false, action = clap::ArgAction::Set)]
        disable_bgp_route_propagation: bool,
    },
    Show(RgName),
    List(RgOpt),
    Delete(RgName),
    #[command(subcommand)]
    Route(RouteCmd),
}

#[derive(Debug, Args)]
pub struct RouteArgs {
    #[command(flatten)]
    pub id: RouteId,
    /// Destination CIDR.
    #[arg(long, value_parser = Cidr::parse_strict)]
    pub address_prefix: Option<Cidr>,
    /// VirtualAppliance, VnetLocal, Internet, None or VirtualNetworkGateway.
    #[arg(long, value_parser = NextHopType::from_str)]
    pub next_hop_type: Option<NextHopType>,
    /// The appliance's private IP (VirtualAppliance only).
    #[arg(long)]
    pub next_hop_ip_address: Option<IpAddr>,
}

#[derive(Debug, Subcommand)]
pub enum RouteCmd {
    Create(RouteArgs),
    Update(RouteArgs),
    Show(RouteId),
    List {
        #[arg(short = 'g', long = "resource-group")]
        resource_group: String,
        #[arg(long)]
        route_table_name: String,
    },
    Delete(RouteId),
}

// === feature, provider, extension, configure ===

#[derive(Debug, Subcommand)]
pub enum FeatureCmd {
    Register {
        #[arg(long)]
        namespace: String,
        #[arg(short = 'n', long)]
        name: String,
    },
    Show {
        #[arg(long)]
        namespace: String,
        #[arg(short = 'n', long)]
        name: String,
    },
    List {
        /// Accepted for az compatibility.
        #[arg(long)]
        namespace: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProviderCmd {
    Register {
        #[arg(short = 'n', long)]
        namespace: String,
    },
    Show {
        #[arg(short = 'n', long)]
        namespace: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExtensionCmd {
    Add {
        #[arg(short = 'n', long)]
        name: String,
    },
    List,
}

#[derive(Debug, Args)]
pub struct ConfigureArgs {
    /// Where public IPs are allocated (default 203.0.113.0/24).
    #[arg(long, value_parser = Cidr::parse_strict)]
    pub public_ip_pool: Option<Cidr>,
    /// Where API server endpoint addresses are allocated (default 198.51.100.0/24).
    #[arg(long, value_parser = Cidr::parse_strict)]
    pub api_server_pool: Option<Cidr>,
}
