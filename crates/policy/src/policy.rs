//! `Policy`: one store revision compiled for the hot path and for analysis. Immutable; an
//! enforcer builds a new one per revision and swaps it in whole.

use std::collections::HashMap;
use std::net::IpAddr;

use apiwall_model::{OutboundType, TAG_CLUSTER, World};

use crate::PolicyError;
use crate::authorized::ApiServerAccess;
use crate::firewall::{Classifier, Snat};
use crate::routes::{NextHop, SubnetRoutes};

/// A compiled firewall.
#[derive(Debug, Clone)]
pub struct FirewallPolicy {
    pub id: String,
    pub name: String,
    pub resource_group: String,
    /// `ipConfigurations[0].privateIpAddress`.
    pub private_ip: Option<IpAddr>,
    /// The address of `ipConfigurations[0].publicIpAddress`.
    pub public_ip: Option<IpAddr>,
    pub classifier: Classifier,
    pub snat: Snat,
}

/// A compiled cluster: its API server and how its nodes leave.
#[derive(Debug, Clone)]
pub struct ClusterPolicy {
    pub id: String,
    pub name: String,
    pub resource_group: String,
    pub api_server_address: IpAddr,
    pub outbound_type: OutboundType,
    /// The address of the load balancer's `effectiveOutboundIPs[0]`.
    pub lb_outbound_ip: Option<IpAddr>,
    pub lb_outbound_ip_id: Option<String>,
    pub access: ApiServerAccess,
    /// `agentPoolProfiles[0].vnetSubnetId`.
    pub subnet_id: Option<String>,
    /// Indexes into `Policy::nodes`, in name order.
    pub(crate) nodes: Vec<usize>,
}

/// A node: a VM of a cluster.
#[derive(Debug, Clone)]
pub struct NodePolicy {
    pub id: String,
    pub name: String,
    pub ip: IpAddr,
    /// Index into `Policy::clusters`.
    pub(crate) cluster: Option<usize>,
    /// Lowercased subnet id, the key of `Policy::subnets`.
    pub(crate) subnet: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct SubnetPolicy {
    pub(crate) prefix: apiwall_model::Cidr,
    pub(crate) name: String,
    /// Lowercased vnet id.
    pub(crate) vnet: String,
    pub(crate) route_table_id: Option<String>,
    pub(crate) routes: SubnetRoutes,
}

/// What sits at a VirtualAppliance next hop.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Appliance {
    Firewall(usize),
    /// A node, as pod-CIDR routes name them.
    Node(usize),
}

/// Every compiled piece of one revision.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub(crate) subnets: HashMap<String, SubnetPolicy>,
    pub(crate) firewalls: Vec<FirewallPolicy>,
    /// `(lowercased vnet id, private IP)` → appliance. The same private IP can exist in two
    /// vnets (every cluster gets the same layout), so the vnet is part of the key.
    pub(crate) appliances: HashMap<(String, IpAddr), Appliance>,
    pub(crate) clusters: Vec<ClusterPolicy>,
    pub(crate) by_api_address: HashMap<IpAddr, usize>,
    pub(crate) nodes: Vec<NodePolicy>,
    pub(crate) node_by_name: HashMap<String, usize>,
    pub(crate) node_by_id: HashMap<String, usize>,
}

/// The vnet id of a subnet id: everything before `/subnets/`.
pub(crate) fn vnet_of(subnet_id: &str) -> String {
    let lower = subnet_id.to_ascii_lowercase();
    match lower.rfind("/subnets/") {
        Some(i) => lower[..i].to_string(),
        None => lower,
    }
}

impl Policy {
    /// Compiles every subnet's routes, every firewall's classifier and SNAT, and every
    /// cluster's API server access. Dangling references compile to what Azure would do with
    /// them (nothing routes there); `trace` reports them.
    pub fn compile(world: &World) -> Policy {
        let mut p = Policy::default();

        let tables: HashMap<String, &apiwall_model::RouteTable> = world
            .route_tables
            .values()
            .map(|t| (t.id.to_ascii_lowercase(), t))
            .collect();
        for vnet in world.vnets.values() {
            for s in &vnet.subnets {
                let table = s
                    .route_table
                    .as_ref()
                    .and_then(|r| tables.get(&r.id.to_ascii_lowercase()).copied());
                p.subnets.insert(
                    s.id.to_ascii_lowercase(),
                    SubnetPolicy {
                        prefix: s.address_prefix,
                        name: s.name.clone(),
                        vnet: vnet.id.to_ascii_lowercase(),
                        route_table_id: table.map(|t| t.id.clone()),
                        routes: SubnetRoutes::compile(vnet, table),
                    },
                );
            }
        }

        let public_ips: HashMap<String, IpAddr> = world
            .public_ips
            .values()
            .map(|ip| (ip.id.to_ascii_lowercase(), ip.ip_address))
            .collect();
        let public_ip = |id: &str| public_ips.get(&id.to_ascii_lowercase()).copied();

        for fw in world.firewalls.values() {
            let cfg = fw.ip_configurations.first();
            let public = cfg.and_then(|c| public_ip(&c.public_ip_address.id));
            let i = p.firewalls.len();
            for c in &fw.ip_configurations {
                p.appliances.insert(
                    (vnet_of(&c.subnet.id), c.private_ip_address),
                    Appliance::Firewall(i),
                );
            }
            p.firewalls.push(FirewallPolicy {
                id: fw.id.clone(),
                name: fw.name.clone(),
                resource_group: fw.resource_group.clone(),
                private_ip: cfg.map(|c| c.private_ip_address),
                public_ip: public,
                classifier: Classifier::compile(fw),
                snat: Snat::new(&fw.snat_private_ranges(), public),
            });
        }

        let mut cluster_by_id = HashMap::new();
        for c in world.clusters.values() {
            let lb_id = c
                .network_profile
                .load_balancer_profile
                .as_ref()
                .and_then(|lb| lb.effective_outbound_ips.first())
                .map(|r| r.id.clone());
            let lb_ip = lb_id.as_deref().and_then(public_ip);
            let outbound = c.network_profile.outbound_type;
            cluster_by_id.insert(c.id.to_ascii_lowercase(), p.clusters.len());
            p.by_api_address
                .insert(c.api_server_address, p.clusters.len());
            p.clusters.push(ClusterPolicy {
                id: c.id.clone(),
                name: c.name.clone(),
                resource_group: c.resource_group.clone(),
                api_server_address: c.api_server_address,
                outbound_type: outbound,
                lb_outbound_ip: lb_ip,
                lb_outbound_ip_id: lb_id,
                access: ApiServerAccess::new(
                    c.api_server_access_profile.authorized_ip_ranges.as_deref(),
                    outbound,
                    lb_ip,
                ),
                subnet_id: c
                    .agent_pool_profiles
                    .first()
                    .map(|a| a.vnet_subnet_id.clone()),
                nodes: Vec::new(),
            });
        }

        for vm in world.vms.values() {
            let cluster = vm
                .tags
                .get(TAG_CLUSTER)
                .and_then(|id| cluster_by_id.get(&id.to_ascii_lowercase()).copied());
            let subnet = cluster
                .and_then(|c| p.clusters[c].subnet_id.as_deref())
                .map(str::to_ascii_lowercase);
            let i = p.nodes.len();
            if let Some(c) = cluster {
                p.clusters[c].nodes.push(i);
            }
            if let Some(s) = &subnet {
                p.appliances
                    .entry((vnet_of(s), vm.private_ips))
                    .or_insert(Appliance::Node(i));
            }
            p.node_by_name
                .entry(vm.name.to_ascii_lowercase())
                .or_insert(i);
            p.node_by_id.insert(vm.id.to_ascii_lowercase(), i);
            p.nodes.push(NodePolicy {
                id: vm.id.clone(),
                name: vm.name.clone(),
                ip: vm.private_ips,
                cluster,
                subnet,
            });
        }
        p
    }

    /// A node by name or by id, case-insensitively.
    pub fn node(&self, name_or_id: &str) -> Option<&NodePolicy> {
        let k = name_or_id.to_ascii_lowercase();
        let i = if k.contains('/') {
            self.node_by_id.get(&k)
        } else {
            self.node_by_name.get(&k)
        };
        i.map(|&i| &self.nodes[i])
    }

    pub(crate) fn node_index(&self, name_or_id: &str) -> Option<usize> {
        let k = name_or_id.to_ascii_lowercase();
        if k.contains('/') {
            self.node_by_id.get(&k).copied()
        } else {
            self.node_by_name.get(&k).copied()
        }
    }

    /// The address prefix of a node's subnet.
    pub fn subnet_prefix(&self, node: &NodePolicy) -> Option<apiwall_model::Cidr> {
        node.subnet
            .as_ref()
            .and_then(|s| self.subnets.get(s))
            .map(|s| s.prefix)
    }

    /// The cluster a node belongs to.
    pub fn cluster_of(&self, node: &NodePolicy) -> Option<&ClusterPolicy> {
        node.cluster.map(|c| &self.clusters[c])
    }

    /// The cluster whose API server has this address.
    pub fn cluster_by_api_address(&self, ip: IpAddr) -> Option<&ClusterPolicy> {
        self.by_api_address.get(&ip).map(|&i| &self.clusters[i])
    }

    pub fn clusters(&self) -> &[ClusterPolicy] {
        &self.clusters
    }

    pub fn firewalls(&self) -> &[FirewallPolicy] {
        &self.firewalls
    }

    /// The nodes of a cluster.
    pub fn nodes_of<'a>(
        &'a self,
        cluster: &'a ClusterPolicy,
    ) -> impl Iterator<Item = &'a NodePolicy> + 'a {
        cluster.nodes.iter().map(|&i| &self.nodes[i])
    }

    /// The effective routes of a subnet (by id).
    pub fn subnet_routes(&self, subnet_id: &str) -> Option<&SubnetRoutes> {
        self.subnets
            .get(&subnet_id.to_ascii_lowercase())
            .map(|s| &s.routes)
    }

    /// `network watcher show-next-hop`: the route a node's traffic to `dst` takes.
    pub fn next_hop(&self, vm: &str, dst: IpAddr) -> Result<&NextHop, PolicyError> {
        let node = self
            .node(vm)
            .ok_or_else(|| PolicyError::UnknownVm(vm.to_string()))?;
        let subnet = node
            .subnet
            .as_ref()
            .and_then(|s| self.subnets.get(s))
            .ok_or_else(|| PolicyError::NoSubnet(node.name.clone()))?;
        subnet.routes.lookup(dst).ok_or(PolicyError::NoRoute {
            vm: node.name.clone(),
            dst,
        })
    }
}

#[cfg(test)]
mod tests;
