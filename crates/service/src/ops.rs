//! Mutations: pure functions that change a `World` copy and return what az prints. Back
//! references (a route table's `subnets`, a public IP's `ipConfiguration`, a subnet's
//! `ipConfigurations`) are derived in one place, `refresh_backrefs`; `check_references` then
//! refuses any change that leaves a reference dangling, naming the user of what was removed.

use std::collections::BTreeMap;
use std::net::IpAddr;

use apiwall_model::Cidr;
use apiwall_model::ids::{self, cluster_digits};
use apiwall_model::name::{self, NameRule};
use apiwall_model::resources::*;
use apiwall_model::world::{Key, Resource, Table, World};
use serde_json::{Value, json};

use crate::request::*;
use crate::{ApiError, Child, Named, to_value};

/// The default pod CIDR of kubenet: one /24 per node.
const POD_CIDR: &str = "10.244.0.0/16";
const MAX_NODES: u32 = 256;
const DEFAULT_NODES: u32 = 3;
const KUBERNETES_VERSION: &str = "1.30.5";
const NODE_VM_SIZE: &str = "Standard_DS2_v2";

fn check_name(rule: NameRule, field: &str, name: &str) -> Result<(), ApiError> {
    rule.check(field, name).map_err(ApiError::from)
}

/// az accepts "West Europe" and prints "westeurope".
fn normalize_location(field: &str, l: &str) -> Result<String, ApiError> {
    let norm: String = l
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if norm.is_empty() || !norm.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ApiError::invalid(
            field,
            l,
            "not a location; use a region name such as westeurope",
        ));
    }
    Ok(norm)
}

fn group<'a>(w: &'a World, rg: &str) -> Result<&'a ResourceGroup, ApiError> {
    w.groups
        .get(&Key::global(rg))
        .ok_or_else(|| ApiError::group_not_found(rg))
}

/// The location for a new resource: the one given, else its group's.
fn location_for(w: &World, rg: &str, given: Option<&str>) -> Result<String, ApiError> {
    let g = group(w, rg)?;
    match given {
        Some(l) => normalize_location("--location", l),
        None => Ok(g.location.clone()),
    }
}

fn get_mut<'a, T: Resource>(
    t: &'a mut Table<T>,
    rg: &str,
    name: &str,
) -> Result<&'a mut T, ApiError> {
    t.get_mut(&Key::new(rg, name))
        .ok_or_else(|| ApiError::not_found(T::TYPE, name, rg))
}

fn must_exist<T: Resource>(w: &World, t: &Table<T>, rg: &str, name: &str) -> Result<(), ApiError> {
    group(w, rg)?;
    if t.contains_key(&Key::new(rg, name)) {
        Ok(())
    } else {
        Err(ApiError::not_found(T::TYPE, name, rg))
    }
}

fn child_not_found(child_type: &str, parent: &str, name: &str, rg: &str) -> ApiError {
    ApiError::not_found(child_type, &format!("{parent}/{name}"), rg)
}

pub(crate) fn provider(namespace: &str, state: &str) -> Provider {
    Provider {
        id: format!("/subscriptions/{}/providers/{namespace}", ids::SUBSCRIPTION),
        namespace: namespace.to_string(),
        registration_policy: "RegistrationRequired".into(),
        registration_state: state.into(),
    }
}

/// The lowest address of `pool` that no resource uses. The network and broadcast addresses are
/// skipped, and so is the last usable one: it is the segment's gateway (the lab's router).
fn allocate(w: &World, pool: Cidr, flag: &str) -> Result<IpAddr, ApiError> {
    let used: std::collections::HashSet<IpAddr> = w.used_public_addresses().collect();
    let size: u128 = 1u128 << (u32::from(pool.0.max_prefix_len() - pool.prefix_len())).min(127);
    let (first, last) = (1, size.saturating_sub(3));
    (first..=last.min(first + 1_000_000))
        .filter_map(|n| pool.nth(n))
        .find(|a| !used.contains(a))
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "the pool {pool} has no free address left; widen it with: configure {flag} <a larger prefix>"
            ))
        })
}

pub(crate) fn apply(w: &mut World, request: Request) -> Result<Value, ApiError> {
    use Request::*;
    let out = match request {
        GroupCreate { name, location } => group_create(w, &name, &location, None)?,
        GroupDelete(name) => group_delete(w, &name)?,
        AksCreate(c) => aks_create(w, c)?,
        AksUpdate {
            cluster,
            authorized_ranges,
        } => aks_update(w, &cluster, authorized_ranges)?,
        AksDelete(n) => aks_delete(w, &n)?,
        VnetCreate {
            vnet,
            location,
            address_prefixes,
        } => vnet_create(w, &vnet, location.as_deref(), address_prefixes)?,
        VnetDelete(n) => delete::<VirtualNetwork>(w, |w| &mut w.vnets, &n)?,
        SubnetCreate(s) => subnet_put(w, s, true)?,
        SubnetUpdate(s) => subnet_put(w, s, false)?,
        SubnetDelete(c) => delete_child(
            w,
            |w| &mut w.vnets,
            |v| &mut v.subnets,
            |s| &s.name,
            "Microsoft.Network/virtualNetworks/subnets",
            &c,
        )?,
        PublicIpCreate { ip, location, sku } => {
            public_ip_create(w, &ip, location.as_deref(), &sku)?
        }
        PublicIpDelete(n) => delete::<PublicIp>(w, |w| &mut w.public_ips, &n)?,
        FirewallCreate { firewall, location } => {
            firewall_create(w, &firewall, location.as_deref())?
        }
        FirewallUpdate {
            firewall,
            private_ranges,
        } => firewall_update(w, &firewall, private_ranges)?,
        FirewallDelete(n) => delete::<Firewall>(w, |w| &mut w.firewalls, &n)?,
        IpConfigCreate(c) => ip_config_create(w, c)?,
        IpConfigDelete(c) => delete_child(
            w,
            |w| &mut w.firewalls,
            |f| &mut f.ip_configurations,
            |i| &i.name,
            "Microsoft.Network/azureFirewalls/azureFirewallIpConfigurations",
            &c,
        )?,
        NetworkRuleCreate(r) => network_rule_create(w, r)?,
        NetworkRuleDelete {
            rg,
            firewall,
            collection,
            name,
        } => network_rule_delete(w, &rg, &firewall, &collection, &name)?,
        CollectionDelete(c) => delete_child(
            w,
            |w| &mut w.firewalls,
            |f| &mut f.network_rule_collections,
            |x| &x.name,
            "Microsoft.Network/azureFirewalls/networkRuleCollections",
            &c,
        )?,
        RouteTableCreate {
            table,
            location,
            disable_bgp_route_propagation,
        } => route_table_create(
            w,
            &table,
            location.as_deref(),
            disable_bgp_route_propagation,
        )?,
        RouteTableDelete(n) => delete::<RouteTable>(w, |w| &mut w.route_tables, &n)?,
        RouteCreate(r) => route_put(w, r, true)?,
        RouteUpdate(r) => route_put(w, r, false)?,
        RouteDelete(c) => delete_child(
            w,
            |w| &mut w.route_tables,
            |t| &mut t.routes,
            |r| &r.name,
            "Microsoft.Network/routeTables/routes",
            &c,
        )?,
        FeatureRegister { namespace, name } => feature_register(w, &namespace, &name),
        ProviderRegister(ns) => {
            let p = provider(&ns, "Registered");
            w.providers.insert(p.key(), p);
            Value::Null
        }
        ExtensionAdd(name) => {
            let e = Extension {
                experimental: false,
                extension_type: "builtin".into(),
                name,
                preview: false,
                version: env!("CARGO_PKG_VERSION").into(),
            };
            w.extensions.insert(e.key(), e);
            Value::Null
        }
        Configure {
            public_ip_pool,
            api_server_pool,
        } => configure(w, public_ip_pool, api_server_pool)?,
        read => return Err(ApiError::Internal(format!("not a mutation: {read:?}"))),
    };
    refresh_backrefs(w);
    check_references(w)?;
    Ok(out)
}

/// The segment of the lab's internet hosts; a pool may not overlap it.
const INTERNET_HOSTS: &str = "192.0.2.0/24";

fn configure(w: &mut World, public: Option<Cidr>, api: Option<Cidr>) -> Result<Value, ApiError> {
    let hosts: Cidr = INTERNET_HOSTS.parse().expect("constant");
    let (new_public, new_api) = (
        public.unwrap_or(w.settings.public_ip_pool),
        api.unwrap_or(w.settings.api_server_pool),
    );
    for (flag, pool, given) in [
        ("--public-ip-pool", new_public, public),
        ("--api-server-pool", new_api, api),
    ] {
        let Some(pool) = given.map(|_| pool) else {
            continue;
        };
        if !pool.0.addr().is_ipv4() || pool.prefix_len() > 29 {
            return Err(ApiError::invalid(
                flag,
                pool,
                "a pool is an IPv4 prefix of /29 or larger (its last address is the segment's gateway)",
            ));
        }
        if pool.overlaps(&hosts) {
            return Err(ApiError::invalid(
                flag,
                pool,
                format!(
                    "overlaps {INTERNET_HOSTS}, where the lab's internet hosts live; choose another range"
                ),
            ));
        }
        if pool.0.addr().is_ipv4()
            && apiwall_model::IANA_PRIVATE_RANGES
                .iter()
                .any(|r| r.parse::<Cidr>().expect("constant").overlaps(&pool))
        {
            return Err(ApiError::invalid(
                flag,
                pool,
                "a pool of public addresses may not overlap the private ranges (10/8, 172.16/12, 192.168/16, 100.64/10)",
            ));
        }
    }
    if new_public.overlaps(&new_api) {
        return Err(ApiError::invalid(
            "--api-server-pool",
            new_api,
            format!("overlaps the public IP pool {new_public}; the two pools must be apart"),
        ));
    }
    if let Some(ip) = w
        .public_ips
        .values()
        .find(|p| !new_public.contains_addr(p.ip_address))
    {
        return Err(ApiError::Conflict(format!(
            "--public-ip-pool {new_public}: public IP '{}' ({}) lies outside it; delete it first or keep a pool that holds it",
            ip.name, ip.ip_address
        )));
    }
    if let Some(c) = w
        .clusters
        .values()
        .find(|c| !new_api.contains_addr(c.api_server_address))
    {
        return Err(ApiError::Conflict(format!(
            "--api-server-pool {new_api}: cluster '{}' has its API server at {}, outside it; delete the cluster first or keep a pool that holds it",
            c.name, c.api_server_address
        )));
    }
    w.settings.public_ip_pool = new_public;
    w.settings.api_server_pool = new_api;
    Ok(to_value(&w.settings))
}

/// Deletes the child `c.name` from the list that `children` picks out of parent `c.parent`.
fn delete_child<T: Resource, C>(
    w: &mut World,
    table: impl Fn(&mut World) -> &mut Table<T>,
    children: impl Fn(&mut T) -> &mut Vec<C>,
    name_of: impl Fn(&C) -> &str,
    child_type: &str,
    c: &Child,
) -> Result<Value, ApiError> {
    group(w, &c.rg)?;
    let parent = get_mut(table(w), &c.rg, &c.parent)?;
    let list = children(parent);
    let before = list.len();
    list.retain(|x| !name_of(x).eq_ignore_ascii_case(&c.name));
    if list.len() == before {
        return Err(child_not_found(child_type, &c.parent, &c.name, &c.rg));
    }
    Ok(Value::Null)
}

fn delete<T: Resource>(
    w: &mut World,
    table: impl Fn(&mut World) -> &mut Table<T>,
    n: &Named,
) -> Result<Value, ApiError> {
    group(w, &n.rg)?;
    table(w)
        .remove(&Key::new(&n.rg, &n.name))
        .ok_or_else(|| ApiError::not_found(T::TYPE, &n.name, &n.rg))?;
    Ok(Value::Null)
}

// === Groups ===

fn group_create(
    w: &mut World,
    name: &str,
    location: &str,
    managed_by: Option<String>,
) -> Result<Value, ApiError> {
    check_name(name::RESOURCE_GROUP, "--name", name)?;
    let location = normalize_location("--location", location)?;
    if let Some(g) = w.groups.get(&Key::global(name)) {
        if g.location != location {
            return Err(ApiError::Conflict(format!(
                "--location '{location}': resource group '{}' already exists in location '{}'; use --location {} or another name",
                g.name, g.location, g.location
            )));
        }
        return Ok(to_value(g));
    }
    let g = ResourceGroup {
        id: ids::group_id(name),
        location,
        managed_by,
        name: name.to_string(),
        properties: GroupProperties {
            provisioning_state: SUCCEEDED.into(),
        },
        tags: None,
        kind: ResourceGroup::TYPE.into(),
    };
    let v = to_value(&g);
    w.groups.insert(g.key(), g);
    Ok(v)
}

/// Deletes a group and everything in it, including the clusters it holds and their node groups.
fn group_delete(w: &mut World, name: &str) -> Result<Value, ApiError> {
    let g = group(w, name)?.clone();
    if let Some(owner) = w
        .clusters
        .values()
        .find(|c| c.node_resource_group.eq_ignore_ascii_case(name))
    {
        return Err(ApiError::Conflict(format!(
            "resource group '{}' is the node resource group of cluster '{}'; delete the cluster instead: aks delete -g {} -n {}",
            g.name, owner.name, owner.resource_group, owner.name
        )));
    }
    let rg = Key::global(name).name;
    let clusters: Vec<Named> = w
        .clusters
        .values()
        .filter(|c| c.resource_group.eq_ignore_ascii_case(name))
        .map(|c| Named::new(&c.resource_group, &c.name))
        .collect();
    for c in clusters {
        aks_delete(w, &c)?;
    }
    remove_group_contents(w, &rg);
    w.groups.remove(&Key::global(name));
    Ok(Value::Null)
}

fn remove_group_contents(w: &mut World, rg: &str) {
    let keep = |k: &Key| k.rg != rg;
    w.clusters.retain(|k, _| keep(k));
    w.vms.retain(|k, _| keep(k));
    w.vnets.retain(|k, _| keep(k));
    w.public_ips.retain(|k, _| keep(k));
    w.firewalls.retain(|k, _| keep(k));
    w.route_tables.retain(|k, _| keep(k));
}

// === Managed clusters ===

fn node_name(digits: &str, i: u32) -> String {
    format!("aks-nodepool1-{digits}-vmss{i:06}")
}

fn aks_create(w: &mut World, c: ClusterCreate) -> Result<Value, ApiError> {
    check_name(name::CLUSTER, "--name", &c.name)?;
    if let Some(n) = c.node_count.filter(|n| !(1..=MAX_NODES).contains(n)) {
        return Err(ApiError::invalid(
            "--node-count",
            n,
            format!(
                "must be between 1 and {MAX_NODES} (the pod CIDR {POD_CIDR} holds one /24 per node)"
            ),
        ));
    }
    let key = Key::new(&c.rg, &c.name);
    if w.clusters.contains_key(&key) {
        return aks_recreate(w, &key, c);
    }
    let location = location_for(w, &c.rg, c.location.as_deref())?;
    let digits = cluster_digits(&c.rg, &c.name);
    let id = format!(
        "/subscriptions/{}/resourcegroups/{}/providers/Microsoft.ContainerService/managedClusters/{}",
        ids::SUBSCRIPTION,
        c.rg,
        c.name
    );
    let node_rg = format!("MC_{}_{}_{}", c.rg, c.name, location);
    if node_rg.len() > 80 {
        return Err(ApiError::invalid(
            "--name",
            &c.name,
            format!(
                "the node resource group name {node_rg} would exceed 80 characters; use a shorter cluster or group name"
            ),
        ));
    }
    group_create(w, &node_rg, &location, Some(id.clone()))?;

    // The classic kubenet layout: one vnet, one subnet, one route table holding pod routes.
    let vnet_name = format!("aks-vnet-{digits}");
    let vnet_id = ids::resource_id(&node_rg, VirtualNetwork::TYPE, &vnet_name);
    let table_name = format!("aks-agentpool-{digits}-routetable");
    let table_id = ids::resource_id(&node_rg, RouteTable::TYPE, &table_name);
    let subnet_id = ids::child_id(&vnet_id, "subnets", "aks-subnet");
    let vnet = VirtualNetwork {
        address_space: AddressSpace {
            address_prefixes: vec!["10.0.0.0/8".parse().expect("constant")],
        },
        id: vnet_id,
        location: location.clone(),
        name: vnet_name,
        provisioning_state: SUCCEEDED.into(),
        resource_group: node_rg.clone(),
        subnets: vec![Subnet {
            address_prefix: "10.240.0.0/16".parse().expect("constant"),
            id: subnet_id.clone(),
            ip_configurations: vec![],
            name: "aks-subnet".into(),
            provisioning_state: SUCCEEDED.into(),
            resource_group: node_rg.clone(),
            route_table: Some(IdRef::new(&table_id, &node_rg)),
            kind: "Microsoft.Network/virtualNetworks/subnets".into(),
        }],
        kind: VirtualNetwork::TYPE.into(),
    };
    w.vnets.insert(vnet.key(), vnet);
    let table = RouteTable {
        disable_bgp_route_propagation: false,
        id: table_id,
        location: location.clone(),
        name: table_name,
        provisioning_state: SUCCEEDED.into(),
        resource_group: node_rg.clone(),
        routes: vec![],
        subnets: vec![],
        kind: RouteTable::TYPE.into(),
    };
    w.route_tables.insert(table.key(), table);

    let lb_profile = match c.outbound_type {
        OutboundType::LoadBalancer => {
            let ip = new_public_ip(
                w,
                &node_rg,
                &format!("aks-outbound-ip-{digits}"),
                &location,
                "Standard",
            )?;
            Some(LoadBalancerProfile {
                effective_outbound_ips: vec![IdRef::new(&ip.id, &node_rg)],
            })
        }
        OutboundType::UserDefinedRouting => None,
    };
    let api_server_address = allocate(w, w.settings.api_server_pool, "--api-server-pool")?;
    let dns_prefix = format!(
        "{}-{}-{}",
        truncate(&c.name, 10),
        truncate(&c.rg, 16),
        &ids::SUBSCRIPTION[..6]
    );
    let cluster = ManagedCluster {
        agent_pool_profiles: vec![AgentPoolProfile {
            count: c.node_count.unwrap_or(DEFAULT_NODES),
            mode: "System".into(),
            name: "nodepool1".into(),
            os_type: "Linux".into(),
            provisioning_state: SUCCEEDED.into(),
            kind: "VirtualMachineScaleSets".into(),
            vm_size: NODE_VM_SIZE.into(),
            vnet_subnet_id: subnet_id,
        }],
        api_server_access_profile: ApiServerAccessProfile {
            authorized_ip_ranges: c.authorized_ranges.and_then(|r| r.0),
            enable_private_cluster: false,
        },
        api_server_address,
        fqdn: format!(
            "{}-{digits}.hcp.{location}.azmk8s.io",
            dns_prefix.to_ascii_lowercase()
        ),
        dns_prefix,
        id,
        kubernetes_version: KUBERNETES_VERSION.into(),
        location,
        name: c.name.clone(),
        network_profile: NetworkProfile {
            dns_service_ip: "10.0.0.10".into(),
            load_balancer_profile: lb_profile,
            load_balancer_sku: "standard".into(),
            network_plugin: "kubenet".into(),
            outbound_type: c.outbound_type,
            pod_cidr: POD_CIDR.into(),
            service_cidr: "10.0.0.0/16".into(),
        },
        node_resource_group: node_rg,
        provisioning_state: SUCCEEDED.into(),
        resource_group: c.rg.clone(),
        kind: "Microsoft.ContainerService/ManagedClusters".into(),
    };
    layout_nodes(w, &cluster)?;
    let v = to_value(&cluster);
    w.clusters.insert(key, cluster);
    Ok(v)
}

fn truncate(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

/// `aks create` on an existing cluster updates what it may: node count and authorized ranges.
fn aks_recreate(w: &mut World, key: &Key, c: ClusterCreate) -> Result<Value, ApiError> {
    let mut cluster = w.clusters[key].clone();
    if cluster.network_profile.outbound_type != c.outbound_type {
        return Err(ApiError::Conflict(format!(
            "--outbound-type '{:?}': cluster '{}' exists with outbound type {:?}, which cannot change; delete and re-create it",
            c.outbound_type, cluster.name, cluster.network_profile.outbound_type
        )));
    }
    // Re-running `aks create` without --node-count keeps the cluster's size.
    if let Some(n) = c.node_count {
        cluster.agent_pool_profiles[0].count = n;
    }
    if let Some(r) = c.authorized_ranges {
        cluster.api_server_access_profile.authorized_ip_ranges = r.0;
    }
    layout_nodes(w, &cluster)?;
    let v = to_value(&cluster);
    w.clusters.insert(key.clone(), cluster);
    Ok(v)
}

/// Makes the cluster's nodes, and their pod routes, match its node count.
fn layout_nodes(w: &mut World, cluster: &ManagedCluster) -> Result<(), ApiError> {
    let pool = &cluster.agent_pool_profiles[0];
    let digits = cluster_digits(&cluster.resource_group, &cluster.name);
    let (_, subnet) = w.subnet_by_id(&pool.vnet_subnet_id).ok_or_else(|| {
        ApiError::Internal(format!("cluster subnet {} is missing", pool.vnet_subnet_id))
    })?;
    let (prefix, table_id) = (
        subnet.address_prefix,
        subnet.route_table.clone().map(|r| r.id),
    );
    let node_rg = cluster.node_resource_group.clone();
    let pod: Cidr = POD_CIDR.parse().expect("constant");
    let wanted: BTreeMap<String, (IpAddr, Cidr)> = (0..pool.count)
        .map(|i| {
            let ip = prefix.nth(4 + i as u128).ok_or_else(|| {
                ApiError::invalid(
                    "--node-count",
                    pool.count,
                    format!("subnet {prefix} has no room for that many nodes"),
                )
            })?;
            let IpAddr::V4(base) = pod.0.network() else {
                unreachable!("pod CIDR is IPv4")
            };
            let pod_net: Cidr = format!(
                "{}/24",
                std::net::Ipv4Addr::from(u32::from(base) + (i << 8))
            )
            .parse()
            .expect("a /24 inside the pod CIDR");
            Ok((node_name(&digits, i), (ip, pod_net)))
        })
        .collect::<Result<_, ApiError>>()?;

    let stale: Vec<Key> = w
        .nodes_of(cluster)
        .filter(|vm| !wanted.contains_key(&vm.name))
        .map(|vm| vm.key())
        .collect();
    for k in &stale {
        w.vms.remove(k);
    }
    for (name, (ip, _)) in &wanted {
        let vm = VirtualMachine {
            id: ids::resource_id(&node_rg, VirtualMachine::TYPE, name),
            location: cluster.location.clone(),
            name: name.clone(),
            power_state: "VM running".into(),
            private_ips: *ip,
            provisioning_state: SUCCEEDED.into(),
            resource_group: node_rg.clone(),
            tags: BTreeMap::from([
                (TAG_CLUSTER.to_string(), cluster.id.clone()),
                ("aks-managed-poolName".to_string(), pool.name.clone()),
            ]),
            kind: VirtualMachine::TYPE.into(),
            vm_size: pool.vm_size.clone(),
        };
        w.vms.insert(vm.key(), vm);
    }
    // Pod routes live in the subnet's route table, named after their node.
    if let Some(table) =
        table_id.and_then(|id| w.route_tables.values_mut().find(|t| ids::same(&t.id, &id)))
    {
        let node_prefix = format!("aks-nodepool1-{digits}-vmss");
        table
            .routes
            .retain(|r| !r.name.starts_with(&node_prefix) || wanted.contains_key(&r.name));
        for (name, (ip, pod_net)) in &wanted {
            let route = Route {
                address_prefix: *pod_net,
                id: ids::child_id(&table.id, "routes", name),
                name: name.clone(),
                next_hop_ip_address: Some(*ip),
                next_hop_type: NextHopType::VirtualAppliance,
                provisioning_state: SUCCEEDED.into(),
                resource_group: table.resource_group.clone(),
                kind: "Microsoft.Network/routeTables/routes".into(),
            };
            match table.routes.iter_mut().find(|r| r.name == *name) {
                Some(r) => *r = route,
                None => table.routes.push(route),
            }
        }
    }
    Ok(())
}

fn aks_update(
    w: &mut World,
    n: &Named,
    ranges: Option<apiwall_model::AuthorizedRanges>,
) -> Result<Value, ApiError> {
    group(w, &n.rg)?;
    let Some(ranges) = ranges else {
        return Err(ApiError::Usage(
            "nothing to update: pass --api-server-authorized-ip-ranges (\"\" turns the restriction off)".into(),
        ));
    };
    let c = get_mut(&mut w.clusters, &n.rg, &n.name)?;
    c.api_server_access_profile.authorized_ip_ranges = ranges.0;
    Ok(to_value(c))
}

fn aks_delete(w: &mut World, n: &Named) -> Result<Value, ApiError> {
    group(w, &n.rg)?;
    let c = w
        .clusters
        .remove(&Key::new(&n.rg, &n.name))
        .ok_or_else(|| ApiError::not_found(ManagedCluster::TYPE, &n.name, &n.rg))?;
    let node_rg = Key::global(&c.node_resource_group).name;
    w.vms.retain(|_, vm| {
        !vm.tags
            .get(TAG_CLUSTER)
            .is_some_and(|id| ids::same(id, &c.id))
    });
    remove_group_contents(w, &node_rg);
    w.groups.remove(&Key::global(&node_rg));
    Ok(Value::Null)
}

// === Virtual networks ===

fn vnet_create(
    w: &mut World,
    n: &Named,
    location: Option<&str>,
    prefixes: Vec<Cidr>,
) -> Result<Value, ApiError> {
    check_name(name::VNET, "--name", &n.name)?;
    let location = location_for(w, &n.rg, location)?;
    let prefixes = if prefixes.is_empty() {
        vec!["10.0.0.0/16".parse().expect("constant")]
    } else {
        prefixes
    };
    for (i, a) in prefixes.iter().enumerate() {
        if let Some(b) = prefixes[..i].iter().find(|b| b.overlaps(a)) {
            return Err(ApiError::invalid(
                "--address-prefixes",
                a,
                format!("overlaps {b}; address spaces of a vnet must not overlap"),
            ));
        }
    }
    let key = Key::new(&n.rg, &n.name);
    let vnet = match w.vnets.get(&key) {
        Some(existing) => {
            let mut v = existing.clone();
            for s in &v.subnets {
                if !prefixes.iter().any(|p| p.contains(&s.address_prefix)) {
                    return Err(ApiError::Conflict(format!(
                        "--address-prefixes: subnet '{}' ({}) would fall outside the address space; keep a prefix that contains it",
                        s.name, s.address_prefix
                    )));
                }
            }
            v.address_space.address_prefixes = prefixes;
            v
        }
        None => VirtualNetwork {
            address_space: AddressSpace {
                address_prefixes: prefixes,
            },
            id: ids::resource_id(&n.rg, VirtualNetwork::TYPE, &n.name),
            location,
            name: n.name.clone(),
            provisioning_state: SUCCEEDED.into(),
            resource_group: group(w, &n.rg)?.name.clone(),
            subnets: vec![],
            kind: VirtualNetwork::TYPE.into(),
        },
    };
    let v = json!({ "newVNet": to_value(&vnet) });
    w.vnets.insert(key, vnet);
    Ok(v)
}

/// Resolves `--route-table`: a name in the same group, or a full id.
fn resolve_route_table(w: &World, rg: &str, value: &str) -> Result<IdRef, ApiError> {
    let found = if value.starts_with('/') {
        w.route_table_by_id(value)
    } else {
        w.route_tables.get(&Key::new(rg, value))
    };
    found
        .map(|t| IdRef::new(&t.id, &t.resource_group))
        .ok_or_else(|| ApiError::not_found(RouteTable::TYPE, value, rg))
}

const FIREWALL_SUBNET: &str = "AzureFirewallSubnet";

fn subnet_put(w: &mut World, s: SubnetSpec, create: bool) -> Result<Value, ApiError> {
    check_name(name::NETWORK, "--name", &s.name)?;
    must_exist(w, &w.vnets, &s.rg, &s.vnet)?;
    let route_table = match s.route_table.as_deref() {
        None => None,
        Some("") => Some(None),
        Some(t) => Some(Some(resolve_route_table(w, &s.rg, t)?)),
    };
    // The cluster whose nodes live in this subnet, if any: their addresses pin its prefix.
    let subnet_id = w
        .vnets
        .get(&Key::new(&s.rg, &s.vnet))
        .and_then(|v| {
            v.subnets
                .iter()
                .find(|x| x.name.eq_ignore_ascii_case(&s.name))
        })
        .map(|x| x.id.clone());
    let node_cluster = subnet_id.and_then(|id| {
        w.clusters
            .values()
            .find(|c| {
                c.agent_pool_profiles
                    .iter()
                    .any(|p| ids::same(&p.vnet_subnet_id, &id))
            })
            .map(|c| c.name.clone())
    });
    let vnet = get_mut(&mut w.vnets, &s.rg, &s.vnet)?;
    let existing = vnet
        .subnets
        .iter()
        .position(|x| x.name.eq_ignore_ascii_case(&s.name));
    if !create && existing.is_none() {
        return Err(child_not_found(
            "Microsoft.Network/virtualNetworks/subnets",
            &vnet.name,
            &s.name,
            &s.rg,
        ));
    }
    let prefix = match (s.address_prefix, existing) {
        (Some(p), _) => p,
        (None, Some(i)) => vnet.subnets[i].address_prefix,
        (None, None) => {
            return Err(ApiError::Usage(
                "--address-prefixes is required to create a subnet".into(),
            ));
        }
    };
    let field = "--address-prefixes";
    if !vnet
        .address_space
        .address_prefixes
        .iter()
        .any(|a| a.contains(&prefix))
    {
        let space: Vec<String> = vnet
            .address_space
            .address_prefixes
            .iter()
            .map(|c| c.to_string())
            .collect();
        return Err(ApiError::invalid(
            field,
            prefix,
            format!(
                "not inside the address space of vnet '{}' ({}); choose a prefix inside it",
                vnet.name,
                space.join(", ")
            ),
        ));
    }
    if prefix.0.addr().is_ipv4() && prefix.prefix_len() > 29 {
        return Err(ApiError::invalid(
            field,
            prefix,
            "subnets must be /29 or larger (Azure reserves 5 addresses in each)",
        ));
    }
    if s.name == FIREWALL_SUBNET && prefix.prefix_len() > 26 {
        return Err(ApiError::invalid(
            field,
            prefix,
            format!(
                "{FIREWALL_SUBNET} must be /26 or larger, for example {}/26",
                prefix.0.network()
            ),
        ));
    }
    if s.name.eq_ignore_ascii_case(FIREWALL_SUBNET) && s.name != FIREWALL_SUBNET {
        return Err(ApiError::invalid(
            "--name",
            &s.name,
            format!("the firewall subnet must be named exactly {FIREWALL_SUBNET}"),
        ));
    }
    if let Some(other) = vnet
        .subnets
        .iter()
        .enumerate()
        .find(|(i, x)| Some(*i) != existing && x.address_prefix.overlaps(&prefix))
        .map(|(_, x)| x)
    {
        return Err(ApiError::invalid(
            field,
            prefix,
            format!(
                "overlaps subnet '{}' ({}); choose a prefix that does not",
                other.name, other.address_prefix
            ),
        ));
    }
    let subnet = match existing {
        Some(i) => {
            let sub = &mut vnet.subnets[i];
            if sub.address_prefix != prefix
                && let Some(c) = &node_cluster
            {
                return Err(ApiError::Conflict(format!(
                    "--address-prefixes: subnet '{}' holds the nodes of cluster '{c}'; its prefix cannot change",
                    sub.name
                )));
            }
            if sub.address_prefix != prefix && !sub.ip_configurations.is_empty() {
                return Err(ApiError::Conflict(format!(
                    "--address-prefixes: subnet '{}' is in use by {}; its prefix cannot change",
                    sub.name, sub.ip_configurations[0].id
                )));
            }
            sub.address_prefix = prefix;
            if let Some(rt) = route_table {
                sub.route_table = rt;
            }
            sub.clone()
        }
        None => {
            let sub = Subnet {
                address_prefix: prefix,
                id: ids::child_id(&vnet.id, "subnets", &s.name),
                ip_configurations: vec![],
                name: s.name.clone(),
                provisioning_state: SUCCEEDED.into(),
                resource_group: vnet.resource_group.clone(),
                route_table: route_table.flatten(),
                kind: "Microsoft.Network/virtualNetworks/subnets".into(),
            };
            vnet.subnets.push(sub.clone());
            sub
        }
    };
    Ok(to_value(&subnet))
}

// === Public IPs ===

fn new_public_ip(
    w: &mut World,
    rg: &str,
    name: &str,
    location: &str,
    sku: &str,
) -> Result<PublicIp, ApiError> {
    let address = allocate(w, w.settings.public_ip_pool, "--public-ip-pool")?;
    let ip = PublicIp {
        id: ids::resource_id(rg, PublicIp::TYPE, name),
        idle_timeout_in_minutes: 4,
        ip_address: address,
        ip_configuration: None,
        ip_tags: vec![],
        location: location.to_string(),
        name: name.to_string(),
        provisioning_state: SUCCEEDED.into(),
        public_ip_address_version: if address.is_ipv4() { "IPv4" } else { "IPv6" }.into(),
        public_ip_allocation_method: "Static".into(),
        resource_group: rg.to_string(),
        sku: Sku {
            name: sku.to_string(),
            tier: "Regional".into(),
        },
        kind: PublicIp::TYPE.into(),
    };
    w.public_ips.insert(ip.key(), ip.clone());
    Ok(ip)
}

fn public_ip_create(
    w: &mut World,
    n: &Named,
    location: Option<&str>,
    sku: &str,
) -> Result<Value, ApiError> {
    check_name(name::NETWORK, "--name", &n.name)?;
    let sku = match sku.to_ascii_lowercase().as_str() {
        "standard" => "Standard",
        "basic" => "Basic",
        _ => return Err(ApiError::invalid("--sku", sku, "use Standard or Basic")),
    };
    let location = location_for(w, &n.rg, location)?;
    let rg = group(w, &n.rg)?.name.clone();
    let ip = match w.public_ips.get_mut(&Key::new(&n.rg, &n.name)) {
        // Re-creating keeps the address.
        Some(existing) if existing.sku.name != sku => {
            return Err(ApiError::Conflict(format!(
                "--sku {sku}: public IP '{}' exists with SKU {}, which cannot change; pass --sku {} or use another name",
                existing.name, existing.sku.name, existing.sku.name
            )));
        }
        Some(existing) => existing.clone(),
        None => new_public_ip(w, &rg, &n.name, &location, sku)?,
    };
    Ok(json!({ "publicIp": to_value(&ip) }))
}

// === Firewalls ===

fn firewall_create(w: &mut World, n: &Named, location: Option<&str>) -> Result<Value, ApiError> {
    check_name(name::NETWORK, "--name", &n.name)?;
    let location = location_for(w, &n.rg, location)?;
    let key = Key::new(&n.rg, &n.name);
    if let Some(fw) = w.firewalls.get(&key) {
        return Ok(to_value(fw));
    }
    let fw = Firewall {
        additional_properties: BTreeMap::new(),
        application_rule_collections: vec![],
        id: ids::resource_id(&n.rg, Firewall::TYPE, &n.name),
        ip_configurations: vec![],
        location,
        name: n.name.clone(),
        nat_rule_collections: vec![],
        network_rule_collections: vec![],
        provisioning_state: SUCCEEDED.into(),
        resource_group: group(w, &n.rg)?.name.clone(),
        sku: Sku {
            name: "AZFW_VNet".into(),
            tier: "Standard".into(),
        },
        threat_intel_mode: "Alert".into(),
        kind: Firewall::TYPE.into(),
    };
    let v = to_value(&fw);
    w.firewalls.insert(key, fw);
    Ok(v)
}

fn firewall_update(
    w: &mut World,
    n: &Named,
    private_ranges: Option<Vec<apiwall_model::PrivateRange>>,
) -> Result<Value, ApiError> {
    group(w, &n.rg)?;
    let fw = get_mut(&mut w.firewalls, &n.rg, &n.name)?;
    if let Some(ranges) = private_ranges {
        let canon: Vec<String> = ranges.iter().map(ToString::to_string).collect();
        if canon.is_empty() {
            fw.additional_properties.remove(SNAT_PRIVATE_RANGES);
        } else {
            fw.additional_properties
                .insert(SNAT_PRIVATE_RANGES.into(), canon.join(","));
        }
    }
    Ok(to_value(fw))
}

fn ip_config_create(w: &mut World, c: IpConfigCreate) -> Result<Value, ApiError> {
    check_name(name::NETWORK, "--name", &c.name)?;
    must_exist(w, &w.firewalls, &c.rg, &c.firewall)?;
    let vnet = w
        .vnets
        .get(&Key::new(&c.rg, &c.vnet))
        .ok_or_else(|| ApiError::not_found(VirtualNetwork::TYPE, &c.vnet, &c.rg))?;
    let subnet = vnet.subnets.iter().find(|s| s.name == FIREWALL_SUBNET).ok_or_else(|| {
        ApiError::Conflict(format!(
            "--vnet-name '{}': the vnet has no subnet named {FIREWALL_SUBNET}; create one (/26 or larger) with: network vnet subnet create -g {} --vnet-name {} -n {FIREWALL_SUBNET} --address-prefixes <prefix>",
            vnet.name, c.rg, vnet.name
        ))
    })?;
    let fw_prefix =
        format!("{}/", ids::resource_id(&c.rg, Firewall::TYPE, &c.firewall)).to_ascii_lowercase();
    if let Some(other) = subnet
        .ip_configurations
        .iter()
        .find(|r| !r.id.to_ascii_lowercase().starts_with(&fw_prefix))
    {
        return Err(ApiError::Conflict(format!(
            "--vnet-name '{}': its {FIREWALL_SUBNET} is already used by {}; a firewall subnet holds one firewall",
            vnet.name, other.id
        )));
    }
    let private_ip = subnet
        .address_prefix
        .nth(4)
        .expect("a /26 has a 4th address");
    let subnet_ref = IdRef::new(&subnet.id, &subnet.resource_group);
    let pip_key = if c.public_ip.starts_with('/') {
        w.public_ip_by_id(&c.public_ip).map(|p| p.key())
    } else {
        Some(Key::new(&c.rg, &c.public_ip))
    };
    let pip = pip_key
        .and_then(|k| w.public_ips.get(&k))
        .ok_or_else(|| ApiError::not_found(PublicIp::TYPE, &c.public_ip, &c.rg))?;
    if pip.sku.name != "Standard" {
        return Err(ApiError::invalid(
            "--public-ip-address",
            &c.public_ip,
            "a firewall needs a Standard SKU public IP; create one with --sku Standard",
        ));
    }
    let fw = get_mut(&mut w.firewalls, &c.rg, &c.firewall)?;
    let id = ids::child_id(&fw.id, "azureFirewallIpConfigurations", &c.name);
    if let Some(bound) = &pip.ip_configuration
        && !ids::same(&bound.id, &id)
    {
        return Err(ApiError::Conflict(format!(
            "--public-ip-address '{}': already bound to {}; create another public IP or delete that ip-config",
            pip.name, bound.id
        )));
    }
    if let Some(other) = fw
        .ip_configurations
        .iter()
        .find(|i| !i.name.eq_ignore_ascii_case(&c.name))
    {
        return Err(ApiError::Conflict(format!(
            "--name '{}': firewall '{}' already has ip-config '{}'; apiwall supports one ip-config per firewall, so re-create that one or delete it first",
            c.name, fw.name, other.name
        )));
    }
    let cfg = FirewallIpConfiguration {
        id,
        name: c.name.clone(),
        private_ip_address: private_ip,
        provisioning_state: SUCCEEDED.into(),
        public_ip_address: IdRef::new(&pip.id, &pip.resource_group),
        resource_group: fw.resource_group.clone(),
        subnet: subnet_ref,
        kind: "Microsoft.Network/azureFirewalls/azureFirewallIpConfigurations".into(),
    };
    fw.ip_configurations = vec![cfg.clone()];
    Ok(to_value(&cfg))
}

fn network_rule_create(w: &mut World, r: NetworkRuleCreate) -> Result<Value, ApiError> {
    check_name(name::NETWORK, "--name", &r.name)?;
    check_name(name::NETWORK, "--collection-name", &r.collection)?;
    must_exist(w, &w.firewalls, &r.rg, &r.firewall)?;
    for (flag, empty) in [
        ("--protocols", r.protocols.is_empty()),
        ("--source-addresses", r.source_addresses.is_empty()),
        (
            "--destination-addresses",
            r.destination_addresses.is_empty(),
        ),
        ("--destination-ports", r.destination_ports.is_empty()),
    ] {
        if empty {
            return Err(ApiError::Usage(format!(
                "the following arguments are required: {flag}"
            )));
        }
    }
    let fw = get_mut(&mut w.firewalls, &r.rg, &r.firewall)?;
    let rule = NetworkRule {
        description: r.description,
        destination_addresses: r.destination_addresses,
        destination_fqdns: vec![],
        destination_ip_groups: vec![],
        destination_ports: r.destination_ports,
        name: r.name.clone(),
        protocols: r.protocols,
        source_addresses: r.source_addresses,
        source_ip_groups: vec![],
    };
    let existing = fw
        .network_rule_collections
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case(&r.collection));
    match existing {
        Some(i) => {
            let coll = &fw.network_rule_collections[i];
            if let Some(p) = r.priority.filter(|p| *p != coll.priority) {
                return Err(ApiError::Conflict(format!(
                    "--priority {p}: collection '{}' exists with priority {}, which cannot change; pass --priority {} or use a new collection",
                    coll.name, coll.priority, coll.priority
                )));
            }
            if let Some(a) = r.action.filter(|a| *a != coll.action.kind) {
                return Err(ApiError::Conflict(format!(
                    "--action {a}: collection '{}' exists with action {}, which cannot change; pass --action {} or use a new collection",
                    coll.name, coll.action.kind, coll.action.kind
                )));
            }
        }
        None => {
            let (Some(priority), Some(action)) = (r.priority, r.action) else {
                return Err(ApiError::Usage(format!(
                    "--priority and --action are required to create the new collection '{}'",
                    r.collection
                )));
            };
            if let Some(c) = fw
                .network_rule_collections
                .iter()
                .find(|c| c.priority == priority)
            {
                return Err(ApiError::invalid(
                    "--priority",
                    priority,
                    format!(
                        "collection '{}' already has this priority; collection priorities must be unique",
                        c.name
                    ),
                ));
            }
            fw.network_rule_collections.push(NetworkRuleCollection {
                action: RuleAction { kind: action },
                id: ids::child_id(&fw.id, "networkRuleCollections", &r.collection),
                name: r.collection.clone(),
                priority,
                provisioning_state: SUCCEEDED.into(),
                resource_group: fw.resource_group.clone(),
                rules: vec![],
            });
        }
    }
    let i = existing.unwrap_or(fw.network_rule_collections.len() - 1);
    let rules = &mut fw.network_rule_collections[i].rules;
    // A rule created again under the same name replaces the old one, in place.
    match rules
        .iter_mut()
        .find(|x| x.name.eq_ignore_ascii_case(&rule.name))
    {
        Some(x) => *x = rule.clone(),
        None => rules.push(rule.clone()),
    }
    Ok(to_value(&rule))
}

fn network_rule_delete(
    w: &mut World,
    rg: &str,
    firewall: &str,
    collection: &str,
    name: &str,
) -> Result<Value, ApiError> {
    must_exist(w, &w.firewalls, rg, firewall)?;
    let fw = get_mut(&mut w.firewalls, rg, firewall)?;
    let Some(ci) = fw
        .network_rule_collections
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case(collection))
    else {
        return Err(child_not_found(
            "Microsoft.Network/azureFirewalls/networkRuleCollections",
            firewall,
            collection,
            rg,
        ));
    };
    let rules = &mut fw.network_rule_collections[ci].rules;
    let before = rules.len();
    rules.retain(|r| !r.name.eq_ignore_ascii_case(name));
    if rules.len() == before {
        return Err(child_not_found(
            "networkRules",
            &format!("{firewall}/{collection}"),
            name,
            rg,
        ));
    }
    // As az does: a collection whose last rule is deleted goes too.
    if rules.is_empty() {
        fw.network_rule_collections.remove(ci);
    }
    Ok(Value::Null)
}

// === Route tables ===

fn route_table_create(
    w: &mut World,
    n: &Named,
    location: Option<&str>,
    disable_bgp: bool,
) -> Result<Value, ApiError> {
    check_name(name::NETWORK, "--name", &n.name)?;
    let location = location_for(w, &n.rg, location)?;
    let rg = group(w, &n.rg)?.name.clone();
    let key = Key::new(&n.rg, &n.name);
    let table = w.route_tables.entry(key).or_insert_with(|| RouteTable {
        disable_bgp_route_propagation: disable_bgp,
        id: ids::resource_id(&rg, RouteTable::TYPE, &n.name),
        location,
        name: n.name.clone(),
        provisioning_state: SUCCEEDED.into(),
        resource_group: rg,
        routes: vec![],
        subnets: vec![],
        kind: RouteTable::TYPE.into(),
    });
    table.disable_bgp_route_propagation = disable_bgp;
    Ok(to_value(table))
}

fn route_put(w: &mut World, r: RouteSpec, create: bool) -> Result<Value, ApiError> {
    check_name(name::NETWORK, "--name", &r.name)?;
    must_exist(w, &w.route_tables, &r.rg, &r.table)?;
    let table = get_mut(&mut w.route_tables, &r.rg, &r.table)?;
    let existing = table
        .routes
        .iter()
        .position(|x| x.name.eq_ignore_ascii_case(&r.name));
    if !create && existing.is_none() {
        return Err(child_not_found(
            "Microsoft.Network/routeTables/routes",
            &table.name,
            &r.name,
            &r.rg,
        ));
    }
    let old = existing.map(|i| table.routes[i].clone());
    let prefix = r.address_prefix.or(old.as_ref().map(|o| o.address_prefix));
    let hop = r.next_hop_type.or(old.as_ref().map(|o| o.next_hop_type));
    let (Some(prefix), Some(hop)) = (prefix, hop) else {
        return Err(ApiError::Usage(
            "--address-prefix and --next-hop-type are required to create a route".into(),
        ));
    };
    let hop_ip = match r.next_hop_ip {
        Some(ip) => Some(ip),
        // Changing the type away from VirtualAppliance drops the old address.
        None if hop == NextHopType::VirtualAppliance => {
            old.as_ref().and_then(|o| o.next_hop_ip_address)
        }
        None => None,
    };
    match (hop, hop_ip) {
        (NextHopType::VirtualAppliance, None) => {
            return Err(ApiError::invalid(
                "--next-hop-type",
                hop,
                "VirtualAppliance needs --next-hop-ip-address (the appliance's private IP, such as a firewall's)",
            ));
        }
        (NextHopType::VirtualAppliance, Some(ip)) if ip.is_ipv4() != prefix.0.addr().is_ipv4() => {
            return Err(ApiError::invalid(
                "--next-hop-ip-address",
                ip,
                format!(
                    "is not of the same IP family as --address-prefix {prefix}; use an appliance address of that family"
                ),
            ));
        }
        (NextHopType::VirtualAppliance, Some(_)) | (_, None) => {}
        (_, Some(ip)) => {
            return Err(ApiError::invalid(
                "--next-hop-ip-address",
                ip,
                format!(
                    "only allowed with --next-hop-type VirtualAppliance (not {hop}); remove it"
                ),
            ));
        }
    }
    if let Some(other) = table
        .routes
        .iter()
        .enumerate()
        .find(|(i, x)| Some(*i) != existing && x.address_prefix == prefix)
        .map(|(_, x)| x)
    {
        return Err(ApiError::invalid(
            "--address-prefix",
            prefix,
            format!(
                "route '{}' in this table already has this prefix; update that route instead",
                other.name
            ),
        ));
    }
    let route = Route {
        address_prefix: prefix,
        id: ids::child_id(&table.id, "routes", &r.name),
        name: old.as_ref().map_or(r.name.clone(), |o| o.name.clone()),
        next_hop_ip_address: hop_ip,
        next_hop_type: hop,
        provisioning_state: SUCCEEDED.into(),
        resource_group: table.resource_group.clone(),
        kind: "Microsoft.Network/routeTables/routes".into(),
    };
    match existing {
        Some(i) => table.routes[i] = route.clone(),
        None => table.routes.push(route.clone()),
    }
    Ok(to_value(&route))
}

// === Features ===

fn feature_register(w: &mut World, namespace: &str, name: &str) -> Value {
    let full = format!("{namespace}/{name}");
    let f = Feature {
        id: format!(
            "/subscriptions/{}/providers/Microsoft.Features/providers/{namespace}/features/{name}",
            ids::SUBSCRIPTION
        ),
        name: full,
        properties: FeatureProperties {
            state: "Registered".into(),
        },
        kind: Feature::TYPE.into(),
    };
    let v = to_value(&f);
    w.features.insert(f.key(), f);
    v
}

// === Derived state and reference checks ===

/// Recomputes every back reference from the forward ones.
fn refresh_backrefs(w: &mut World) {
    let mut table_subnets: BTreeMap<String, Vec<IdRef>> = BTreeMap::new();
    let mut subnet_cfgs: BTreeMap<String, Vec<IdRef>> = BTreeMap::new();
    let mut pip_cfg: BTreeMap<String, IdRef> = BTreeMap::new();
    for v in w.vnets.values() {
        for s in &v.subnets {
            if let Some(rt) = &s.route_table {
                table_subnets
                    .entry(rt.id.to_ascii_lowercase())
                    .or_default()
                    .push(IdRef::new(&s.id, &s.resource_group));
            }
        }
    }
    for fw in w.firewalls.values() {
        for c in &fw.ip_configurations {
            let r = IdRef::new(&c.id, &c.resource_group);
            subnet_cfgs
                .entry(c.subnet.id.to_ascii_lowercase())
                .or_default()
                .push(r.clone());
            pip_cfg.insert(c.public_ip_address.id.to_ascii_lowercase(), r);
        }
    }
    for t in w.route_tables.values_mut() {
        t.subnets = table_subnets
            .remove(&t.id.to_ascii_lowercase())
            .unwrap_or_default();
    }
    for v in w.vnets.values_mut() {
        for s in &mut v.subnets {
            s.ip_configurations = subnet_cfgs
                .remove(&s.id.to_ascii_lowercase())
                .unwrap_or_default();
        }
    }
    for p in w.public_ips.values_mut() {
        p.ip_configuration = pip_cfg.remove(&p.id.to_ascii_lowercase());
    }
}

/// Refuses a world where something refers to a resource that is gone. This is how every
/// delete of a resource still in use is refused, with its user named.
fn check_references(w: &World) -> Result<(), ApiError> {
    let in_use = |what: String, user: String, fix: &str| {
        Err(ApiError::Conflict(format!(
            "{what} is in use by {user}; {fix}"
        )))
    };
    for v in w.vnets.values() {
        for s in &v.subnets {
            if let Some(rt) = &s.route_table
                && w.route_table_by_id(&rt.id).is_none()
            {
                return in_use(
                    format!("route table '{}'", ids::last_segment(&rt.id)),
                    format!("subnet '{}' of vnet '{}'", s.name, v.name),
                    "detach it first with: network vnet subnet update --route-table \"\"",
                );
            }
        }
    }
    for fw in w.firewalls.values() {
        for c in &fw.ip_configurations {
            let user = format!("ip-config '{}' of firewall '{}'", c.name, fw.name);
            if w.public_ip_by_id(&c.public_ip_address.id).is_none() {
                return in_use(
                    format!("public IP '{}'", ids::last_segment(&c.public_ip_address.id)),
                    user,
                    "delete the ip-config first with: network firewall ip-config delete",
                );
            }
            if w.subnet_by_id(&c.subnet.id).is_none() {
                return in_use(
                    format!("subnet '{}'", ids::last_segment(&c.subnet.id)),
                    user,
                    "delete the ip-config first with: network firewall ip-config delete",
                );
            }
        }
    }
    for c in w.clusters.values() {
        let user = format!("cluster '{}'", c.name);
        let fix = "delete the cluster first with: aks delete";
        for p in &c.agent_pool_profiles {
            if w.subnet_by_id(&p.vnet_subnet_id).is_none() {
                return in_use(
                    format!("subnet '{}'", ids::last_segment(&p.vnet_subnet_id)),
                    user,
                    fix,
                );
            }
        }
        if let Some(lb) = &c.network_profile.load_balancer_profile {
            for ip in &lb.effective_outbound_ips {
                if w.public_ip_by_id(&ip.id).is_none() {
                    return in_use(
                        format!("public IP '{}'", ids::last_segment(&ip.id)),
                        user,
                        fix,
                    );
                }
            }
        }
    }
    Ok(())
}

/// Refuses a change that would cut a cluster's nodes off from their own API server: every node
/// that reaches its API server before the change must still reach it after.
pub(crate) fn check_lockout(before: &World, after: &World) -> Result<(), ApiError> {
    if after.clusters.is_empty() {
        return Ok(());
    }
    let (before, after) = (
        apiwall_policy::Policy::compile(before),
        apiwall_policy::Policy::compile(after),
    );
    let cut = apiwall_policy::lockout(&before, &after);
    if cut.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = cut.iter().map(ToString::to_string).collect();
    Err(ApiError::Lockout(lines.join("\n")))
}
