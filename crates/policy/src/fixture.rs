//! A small builder of `World`s in the layout `aks create` makes (DESIGN §3), for tests and
//! benchmarks here and in the crates above. Addresses follow DESIGN §4: public IPs from
//! 203.0.113.0/24, API server endpoints from 198.51.100.0/24.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use apiwall_model::ids::{child_id, cluster_digits, resource_id};
use apiwall_model::resources::*;
use apiwall_model::{AddressEntry, Cidr, PortEntry, Protocol, Resource, World};

/// Builds a world cluster by cluster; the methods after `cluster` act on the last cluster added.
#[derive(Debug, Default)]
pub struct WorldBuilder {
    world: World,
    current: Option<String>,
    next_public: u32,
    next_api: u32,
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("fixture address")
}

fn cidr(s: &str) -> Cidr {
    s.parse().expect("fixture prefix")
}

impl WorldBuilder {
    pub fn new() -> Self {
        Self {
            next_public: 1,
            next_api: 1,
            ..Self::default()
        }
    }

    pub fn build(self) -> World {
        self.world
    }

    fn public_ip(&mut self, rg: &str, name: &str) -> PublicIp {
        let addr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, self.next_public as u8));
        self.next_public += 1;
        let p = PublicIp {
            id: resource_id(rg, "Microsoft.Network/publicIPAddresses", name),
            idle_timeout_in_minutes: 4,
            ip_address: addr,
            ip_configuration: None,
            ip_tags: vec![],
            location: "westeurope".into(),
            name: name.into(),
            provisioning_state: SUCCEEDED.into(),
            public_ip_address_version: "IPv4".into(),
            public_ip_allocation_method: "Static".into(),
            resource_group: rg.into(),
            sku: Sku {
                name: "Standard".into(),
                tier: "Regional".into(),
            },
            kind: "Microsoft.Network/publicIPAddresses".into(),
        };
        self.world.public_ips.insert(p.key(), p.clone());
        p
    }

    /// A cluster with `nodes` nodes, outbound type loadBalancer, no authorized ranges.
    pub fn cluster(mut self, rg: &str, name: &str, nodes: u32) -> Self {
        let digits = cluster_digits(rg, name);
        let mc = format!("MC_{rg}_{name}_westeurope");
        let cluster_id = resource_id(rg, "Microsoft.ContainerService/managedClusters", name);
        let vnet_id = resource_id(
            &mc,
            "Microsoft.Network/virtualNetworks",
            &format!("aks-vnet-{digits}"),
        );
        let subnet_id = child_id(&vnet_id, "subnets", "aks-subnet");
        let table_name = format!("aks-agentpool-{digits}-routetable");
        let table_id = resource_id(&mc, "Microsoft.Network/routeTables", &table_name);
        let node_ip =
            |i: u32| IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 240, 0, 4)) + i));

        let mut routes = Vec::new();
        for i in 0..nodes {
            let pod = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 244, 0, 0)) + (i << 8));
            routes.push(route(
                &table_id,
                &format!("aks-nodepool1-{digits}-vmss{i:06}____{pod}"),
                &format!("{pod}/24"),
                NextHopType::VirtualAppliance,
                Some(node_ip(i)),
            ));
        }
        let table = RouteTable {
            disable_bgp_route_propagation: false,
            id: table_id.clone(),
            location: "westeurope".into(),
            name: table_name,
            provisioning_state: SUCCEEDED.into(),
            resource_group: mc.clone(),
            routes,
            subnets: vec![IdRef::new(&subnet_id, &mc)],
            kind: "Microsoft.Network/routeTables".into(),
        };
        self.world.route_tables.insert(table.key(), table);

        let vnet = VirtualNetwork {
            address_space: AddressSpace {
                address_prefixes: vec![cidr("10.0.0.0/8")],
            },
            id: vnet_id,
            location: "westeurope".into(),
            name: format!("aks-vnet-{digits}"),
            provisioning_state: SUCCEEDED.into(),
            resource_group: mc.clone(),
            subnets: vec![subnet(
                &subnet_id,
                &mc,
                "aks-subnet",
                "10.240.0.0/16",
                Some(&table_id),
            )],
            kind: "Microsoft.Network/virtualNetworks".into(),
        };
        self.world.vnets.insert(vnet.key(), vnet);

        let lb = self.public_ip(&mc, &format!("{digits}-outbound-ip"));
        let api = IpAddr::V4(Ipv4Addr::new(198, 51, 100, self.next_api as u8));
        self.next_api += 1;
        let cluster = ManagedCluster {
            agent_pool_profiles: vec![AgentPoolProfile {
                count: nodes,
                mode: "System".into(),
                name: "nodepool1".into(),
                os_type: "Linux".into(),
                provisioning_state: SUCCEEDED.into(),
                kind: "VirtualMachineScaleSets".into(),
                vm_size: "Standard_DS2_v2".into(),
                vnet_subnet_id: subnet_id,
            }],
            api_server_access_profile: ApiServerAccessProfile {
                authorized_ip_ranges: None,
                enable_private_cluster: false,
            },
            api_server_address: api,
            dns_prefix: name.into(),
            fqdn: format!("{name}-dns.hcp.westeurope.azmk8s.io"),
            id: cluster_id.clone(),
            kubernetes_version: "1.33".into(),
            location: "westeurope".into(),
            name: name.into(),
            network_profile: NetworkProfile {
                dns_service_ip: "10.0.0.10".into(),
                load_balancer_profile: Some(LoadBalancerProfile {
                    effective_outbound_ips: vec![IdRef::new(&lb.id, &mc)],
                }),
                load_balancer_sku: "standard".into(),
                network_plugin: "kubenet".into(),
                outbound_type: OutboundType::LoadBalancer,
                pod_cidr: "10.244.0.0/16".into(),
                service_cidr: "10.0.0.0/16".into(),
            },
            node_resource_group: mc.clone(),
            provisioning_state: SUCCEEDED.into(),
            resource_group: rg.into(),
            kind: "Microsoft.ContainerService/ManagedClusters".into(),
        };
        self.world.clusters.insert(cluster.key(), cluster);

        for i in 0..nodes {
            let name = format!("aks-nodepool1-{digits}-vmss{i:06}");
            let vm = VirtualMachine {
                id: resource_id(&mc, "Microsoft.Compute/virtualMachines", &name),
                location: "westeurope".into(),
                name,
                power_state: "VM running".into(),
                private_ips: node_ip(i),
                provisioning_state: SUCCEEDED.into(),
                resource_group: mc.clone(),
                tags: BTreeMap::from([(TAG_CLUSTER.to_string(), cluster_id.clone())]),
                kind: "Microsoft.Compute/virtualMachines".into(),
                vm_size: "Standard_DS2_v2".into(),
            };
            self.world.vms.insert(vm.key(), vm);
        }
        self.current = Some(cluster_id);
        self
    }

    fn cluster_mut(&mut self) -> &mut ManagedCluster {
        let id = self.current.clone().expect("call cluster() first");
        self.world
            .clusters
            .values_mut()
            .find(|c| c.id == id)
            .expect("current cluster")
    }

    fn mc(&mut self) -> String {
        self.cluster_mut().node_resource_group.clone()
    }

    fn vnet_mut(&mut self) -> &mut VirtualNetwork {
        let mc = self.mc().to_ascii_lowercase();
        self.world
            .vnets
            .iter_mut()
            .find(|(k, _)| k.rg == mc)
            .map(|(_, v)| v)
            .expect("cluster vnet")
    }

    fn table_mut(&mut self) -> &mut RouteTable {
        let mc = self.mc().to_ascii_lowercase();
        self.world
            .route_tables
            .iter_mut()
            .find(|(k, _)| k.rg == mc)
            .map(|(_, v)| v)
            .expect("cluster route table")
    }

    pub fn outbound_type(mut self, t: OutboundType) -> Self {
        self.cluster_mut().network_profile.outbound_type = t;
        self
    }

    pub fn authorized(mut self, ranges: Option<&[&str]>) -> Self {
        self.cluster_mut()
            .api_server_access_profile
            .authorized_ip_ranges = ranges.map(|r| r.iter().map(|s| cidr(s)).collect());
        self
    }

    /// The seed's firewall: subnet `AzureFirewallSubnet` 10.200.0.0/16, firewall
    /// `myAzureFirewall` at 10.200.0.4 with public IP `myAzureFirewallPublicIP`, and collection
    /// `myAzureFirewallCollection` (200, Allow) holding `AllowTCPOutbound` (TCP, * to *:*).
    pub fn firewall(mut self) -> Self {
        let mc = self.mc();
        let vnet = self.vnet_mut();
        let subnet_id = child_id(&vnet.id, "subnets", "AzureFirewallSubnet");
        vnet.subnets.push(subnet(
            &subnet_id,
            &mc,
            "AzureFirewallSubnet",
            "10.200.0.0/16",
            None,
        ));
        let pip = self.public_ip(&mc, "myAzureFirewallPublicIP");
        let fw_id = resource_id(&mc, "Microsoft.Network/azureFirewalls", "myAzureFirewall");
        let fw = Firewall {
            additional_properties: BTreeMap::new(),
            application_rule_collections: vec![],
            id: fw_id.clone(),
            ip_configurations: vec![FirewallIpConfiguration {
                id: child_id(
                    &fw_id,
                    "azureFirewallIpConfigurations",
                    "myAzureFirewallIPConfig",
                ),
                name: "myAzureFirewallIPConfig".into(),
                private_ip_address: ip("10.200.0.4"),
                provisioning_state: SUCCEEDED.into(),
                public_ip_address: IdRef::new(&pip.id, &mc),
                resource_group: mc.clone(),
                subnet: IdRef::new(&subnet_id, &mc),
                kind: "Microsoft.Network/azureFirewalls/azureFirewallIpConfigurations".into(),
            }],
            location: "westeurope".into(),
            name: "myAzureFirewall".into(),
            nat_rule_collections: vec![],
            network_rule_collections: vec![collection(
                &fw_id,
                "myAzureFirewallCollection",
                200,
                Action::Allow,
                vec![network_rule(
                    "AllowTCPOutbound",
                    &[Protocol::Tcp],
                    &["*"],
                    &["*"],
                    &["*"],
                )],
            )],
            provisioning_state: SUCCEEDED.into(),
            resource_group: mc,
            sku: Sku {
                name: "AZFW_VNet".into(),
                tier: "Standard".into(),
            },
            threat_intel_mode: "Alert".into(),
            kind: "Microsoft.Network/azureFirewalls".into(),
        };
        self.world.firewalls.insert(fw.key(), fw);
        self
    }

    /// Replaces the firewall's collections.
    pub fn firewall_collections(mut self, cols: Vec<NetworkRuleCollection>) -> Self {
        let mc = self.mc().to_ascii_lowercase();
        let fw = self
            .world
            .firewalls
            .iter_mut()
            .find(|(k, _)| k.rg == mc)
            .map(|(_, v)| v)
            .expect("call firewall() first");
        fw.network_rule_collections = cols;
        self
    }

    /// The seed's route `AzureFirewallAPIServer`: the API server's /32 to the firewall.
    pub fn firewall_route(mut self) -> Self {
        let api = self.cluster_mut().api_server_address;
        let t = self.table_mut();
        let r = route(
            &t.id,
            "AzureFirewallAPIServer",
            &format!("{api}/32"),
            NextHopType::VirtualAppliance,
            Some(ip("10.200.0.4")),
        );
        t.routes.push(r);
        self
    }

    /// Adds a user route to the cluster's agentpool route table.
    pub fn user_route(
        mut self,
        name: &str,
        prefix: &str,
        t: NextHopType,
        hop: Option<&str>,
    ) -> Self {
        let table = self.table_mut();
        let r = route(&table.id, name, prefix, t, hop.map(ip));
        table.routes.push(r);
        self
    }

    /// The whole procedure of DESIGN §1: firewall, route, and the API server authorizing only
    /// the firewall's public IP.
    pub fn procedure(self, rg: &str, name: &str, nodes: u32) -> Self {
        let mut b = self.cluster(rg, name, nodes).firewall().firewall_route();
        let fw_ip = b
            .world
            .public_ips
            .values()
            .find(|p| p.name == "myAzureFirewallPublicIP")
            .map(|p| p.ip_address)
            .expect("firewall public IP");
        let r = format!("{fw_ip}/32");
        b = b.authorized(Some(&[r.as_str()]));
        b
    }
}

pub fn subnet(id: &str, rg: &str, name: &str, prefix: &str, table: Option<&str>) -> Subnet {
    Subnet {
        address_prefix: cidr(prefix),
        id: id.into(),
        ip_configurations: vec![],
        name: name.into(),
        provisioning_state: SUCCEEDED.into(),
        resource_group: rg.into(),
        route_table: table.map(|t| IdRef::new(t, rg)),
        kind: "Microsoft.Network/virtualNetworks/subnets".into(),
    }
}

pub fn route(
    table_id: &str,
    name: &str,
    prefix: &str,
    t: NextHopType,
    hop: Option<IpAddr>,
) -> Route {
    Route {
        address_prefix: cidr(prefix),
        id: child_id(table_id, "routes", name),
        name: name.into(),
        next_hop_ip_address: hop,
        next_hop_type: t,
        provisioning_state: SUCCEEDED.into(),
        resource_group: apiwall_model::ids::parse_rg(table_id).unwrap_or("").into(),
        kind: "Microsoft.Network/routeTables/routes".into(),
    }
}

pub fn collection(
    fw_id: &str,
    name: &str,
    priority: u32,
    action: Action,
    rules: Vec<NetworkRule>,
) -> NetworkRuleCollection {
    NetworkRuleCollection {
        action: RuleAction { kind: action },
        id: child_id(fw_id, "networkRuleCollections", name),
        name: name.into(),
        priority: priority.try_into().expect("fixture priority"),
        provisioning_state: SUCCEEDED.into(),
        resource_group: apiwall_model::ids::parse_rg(fw_id).unwrap_or("").into(),
        rules,
    }
}

/// A network rule from az-style words: `&["TCP"]`, `&["*"]`, `&["10.0.0.0/8"]`, `&["443"]`.
pub fn network_rule(
    name: &str,
    protocols: &[Protocol],
    src: &[&str],
    dst: &[&str],
    ports: &[&str],
) -> NetworkRule {
    NetworkRule {
        description: None,
        destination_addresses: dst
            .iter()
            .map(|s| s.parse::<AddressEntry>().expect("fixture address"))
            .collect(),
        destination_fqdns: vec![],
        destination_ip_groups: vec![],
        destination_ports: ports
            .iter()
            .map(|s| s.parse::<PortEntry>().expect("fixture port"))
            .collect(),
        name: name.into(),
        protocols: protocols.to_vec(),
        source_addresses: src
            .iter()
            .map(|s| s.parse::<AddressEntry>().expect("fixture address"))
            .collect(),
        source_ip_groups: vec![],
    }
}

/// A small deterministic PRNG (xorshift64*) for generated fixtures.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `n` random IPv4 prefixes shaped like a large allow list: half /32 hosts, 30% /24, and the
/// rest spread over /16-/31. Duplicates are possible, as in real lists.
pub fn random_prefixes(n: usize, seed: u64) -> Vec<Cidr> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let len = match rng.below(10) {
                0..=4 => 32,
                5..=7 => 24,
                8 => 16 + rng.below(8) as u8,
                _ => 25 + rng.below(7) as u8,
            };
            let a = Ipv4Addr::from(rng.next_u64() as u32);
            Cidr(ipnet::IpNet::V4(
                ipnet::Ipv4Net::new(a, len).expect("length").trunc(),
            ))
        })
        .collect()
}

/// Lookup keys for a prefix list: half inside listed prefixes, half uniformly random.
pub fn random_queries(prefixes: &[Cidr], n: usize, seed: u64) -> Vec<IpAddr> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            if i % 2 == 0 && !prefixes.is_empty() {
                let c = prefixes[rng.below(prefixes.len() as u64) as usize];
                let host_bits = 32 - c.prefix_len() as u32;
                let off = if host_bits == 0 {
                    0
                } else {
                    rng.next_u64() as u32 & (u32::MAX >> (32 - host_bits))
                };
                match c.net().addr() {
                    IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) | off)),
                    v6 => v6,
                }
            } else {
                IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32))
            }
        })
        .collect()
}

/// A firewall with `n` rules in collections of 100: `n - 1` Deny rules for TCP from the node
/// subnet to distinct /32s and ports, then the seed's `AllowTCPOutbound` last (priority 65000),
/// so a flow to the API server is decided by the very last rule.
pub fn big_firewall_collections(fw_id: &str, n: usize) -> Vec<NetworkRuleCollection> {
    let mut cols = Vec::new();
    let deny = n.saturating_sub(1);
    for c in 0..deny.div_ceil(100) {
        let rules = (c * 100..((c + 1) * 100).min(deny))
            .map(|i| {
                let dst = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i as u32);
                let port = format!("{}", 1000 + (i % 50_000));
                network_rule(
                    &format!("deny-{i}"),
                    &[Protocol::Tcp],
                    &["10.240.0.0/16"],
                    &[&dst.to_string()],
                    &[&port],
                )
            })
            .collect();
        cols.push(collection(
            fw_id,
            &format!("deny-{c}"),
            100 + c as u32,
            Action::Deny,
            rules,
        ));
    }
    cols.push(collection(
        fw_id,
        "myAzureFirewallCollection",
        65000,
        Action::Allow,
        vec![network_rule(
            "AllowTCPOutbound",
            &[Protocol::Tcp],
            &["*"],
            &["*"],
            &["*"],
        )],
    ));
    cols
}
