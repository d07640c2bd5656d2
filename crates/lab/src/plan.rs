//! The lab's topology, planned from the model: pure, so it is tested with golden files.
//!
//! ```text
//!  node ─┐                                       ┌─ firewall (public leg) ─┐
//!  node ─┼─ br (aks-subnet) ┐                    │                          │
//!  node ─┘                  ├─ fabric ── up0 ────┼──────── internet ────────┼─ apiserver (gate → stand-in)
//!  firewall (private leg) ──┘  (route tables,    │   (router for the        ├─ workstation 192.0.2.10
//!        br (AzureFirewallSubnet)  LB SNAT)      │    public ranges)        └─ outsider    192.0.2.66
//! ```
//!
//! Every host is a network namespace named `awlab-<host>`. The fabric holds one bridge per
//! subnet, with the subnet's first address as the gateway, and applies each subnet's route table
//! as a policy-routing table. The internet namespace routes between the public ranges.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use apiwall_model::ids;
use apiwall_model::resources::{ManagedCluster, OutboundType};
use apiwall_model::{Cidr, World};

use crate::LabError;

/// Prefix of every namespace the lab makes; `lab down` removes them all.
pub const NETNS_PREFIX: &str = "awlab-";
/// The internet hosts' segment and the two hosts on it.
pub const INTERNET_HOSTS: &str = "192.0.2.0/24";
pub const WORKSTATION: (&str, &str) = ("workstation", "192.0.2.10");
pub const OUTSIDER: (&str, &str) = ("outsider", "192.0.2.66");
/// The stand-in kube-apiserver, inside the API host, behind the gate.
pub const STAND_IN: &str = "127.0.0.1:6443";
/// The gate's admin listener inside the API host.
pub const GATE_ADMIN: &str = "127.0.0.1:9443";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    Internet,
    Fabric,
    Node,
    Firewall,
    ApiServer,
    InternetHost,
}

/// One host: a namespace, its addresses and routes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    pub name: String,
    pub netns: String,
    pub role: Role,
    /// `(interface, address/prefix)`.
    pub addresses: Vec<(String, String)>,
    /// `ip route` arguments.
    pub routes: Vec<String>,
    /// Bridges inside this host and the interfaces enslaved to each.
    pub bridges: BTreeMap<String, Vec<String>>,
    pub forwarding: bool,
}

/// The fabric's leg in one subnet: its bridge, and the policy-routing table (and the `ip rule`
/// priority selecting it) that carries the subnet's effective routes. All three derive from the
/// subnet's id, so they stay put when other subnets come and go.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetLeg {
    /// Lowercased subnet id.
    pub id: String,
    pub name: String,
    pub bridge: String,
    pub table: u32,
    pub rule_priority: u32,
}

/// A short stable number for a resource id (FNV-1a), for interface names and table ids.
fn short_hash(id: &str) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in id.to_ascii_lowercase().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x01000193);
    }
    h
}

/// An interface name for a resource: `prefix` and 6 hex digits of its id (at most 15 bytes).
fn port_name(prefix: &str, id: &str) -> String {
    format!("{prefix}{:06x}", short_hash(id) & 0xff_ffff)
}

/// Host names the lab gives its own hosts; a node or firewall may not take one.
const FIXED_HOSTS: [&str; 5] = ["internet", "fabric", "apiserver", "workstation", "outsider"];

/// A veth pair between two hosts: `(host, interface)` on each end.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Link {
    pub a: (String, String),
    pub b: (String, String),
}

/// The whole lab for one cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub cluster: String,
    pub resource_group: String,
    pub api_address: IpAddr,
    pub hosts: Vec<Host>,
    pub links: Vec<Link>,
    /// The fabric's leg in each subnet of the cluster's vnet.
    pub subnets: Vec<SubnetLeg>,
    /// Firewall name → host name, for the firewalls the lab runs.
    pub firewalls: BTreeMap<String, String>,
    /// The load balancer's outbound SNAT at the fabric: `(subnet prefixes, public address)`.
    pub lb_snat: Option<(Vec<Cidr>, IpAddr)>,
}

impl Plan {
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
    }

    /// The plan as the `ip` commands that build it, for review and golden tests.
    pub fn script(&self) -> String {
        let mut s = format!(
            "# apiwall lab for cluster {}/{} (API server {})\n",
            self.resource_group, self.cluster, self.api_address
        );
        for h in &self.hosts {
            let _ = writeln!(s, "ip netns add {}  # {:?} {}", h.netns, h.role, h.name);
        }
        for l in &self.links {
            let _ = writeln!(s, "veth {}:{} <-> {}:{}", l.a.0, l.a.1, l.b.0, l.b.1);
        }
        for h in &self.hosts {
            for (br, ports) in &h.bridges {
                let _ = writeln!(
                    s,
                    "ip -n {} link add {br} type bridge  # ports: {}",
                    h.netns,
                    ports.join(" ")
                );
            }
            for (dev, addr) in &h.addresses {
                let _ = writeln!(s, "ip -n {} addr add {addr} dev {dev}", h.netns);
            }
            for r in &h.routes {
                let _ = writeln!(s, "ip -n {} route add {r}", h.netns);
            }
            if h.forwarding {
                let _ = writeln!(s, "ip netns exec {} sysctl net.ipv4.ip_forward=1", h.netns);
            }
        }
        if let Some((prefixes, ip)) = &self.lb_snat {
            let p: Vec<String> = prefixes.iter().map(|c| c.to_string()).collect();
            let _ = writeln!(
                s,
                "# fabric: SNAT {} leaving up0 to {ip} (load balancer outbound)",
                p.join(", ")
            );
        }
        s
    }
}

fn netns(host: &str) -> String {
    format!("{NETNS_PREFIX}{host}")
}

fn host(name: &str, role: Role) -> Host {
    Host {
        name: name.to_string(),
        netns: netns(name),
        role,
        addresses: vec![],
        routes: vec![],
        bridges: BTreeMap::new(),
        forwarding: matches!(role, Role::Internet | Role::Fabric | Role::Firewall),
    }
}

fn with_len(ip: IpAddr, net: Cidr) -> String {
    format!("{ip}/{}", net.prefix_len())
}

/// The last usable address of an IPv4 prefix: the gateway of a public segment.
fn gateway_of(net: Cidr) -> Result<IpAddr, LabError> {
    let size = 1u128 << (32 - u32::from(net.prefix_len()));
    net.nth(size.saturating_sub(2))
        .filter(|_| net.0.addr().is_ipv4() && size >= 4)
        .ok_or_else(|| {
            LabError::Model(format!(
                "the lab needs an IPv4 pool of /30 or larger, not {net}"
            ))
        })
}

/// Plans the lab for cluster `rg/name`.
pub fn plan(world: &World, rg: &str, name: &str) -> Result<Plan, LabError> {
    let cluster: &ManagedCluster = world.cluster(rg, name).ok_or_else(|| {
        LabError::Model(format!(
            "cluster {rg}/{name} does not exist; create it with: aks create -g {rg} -n {name}"
        ))
    })?;
    let pool = world.settings.public_ip_pool;
    let api_pool = world.settings.api_server_pool;
    let hosts_net: Cidr = INTERNET_HOSTS.parse().expect("constant");
    let (pool_gw, api_gw, hosts_gw) = (
        gateway_of(pool)?,
        gateway_of(api_pool)?,
        gateway_of(hosts_net)?,
    );

    let subnet_id = &cluster.agent_pool_profiles[0].vnet_subnet_id;
    let (vnet, _) = world.subnet_by_id(subnet_id).ok_or_else(|| {
        LabError::Model(format!("cluster {name}'s subnet {subnet_id} is missing"))
    })?;

    let mut internet = host("internet", Role::Internet);
    internet.bridges.insert("br0".into(), vec![]);
    for (net, gw) in [(pool, pool_gw), (api_pool, api_gw), (hosts_net, hosts_gw)] {
        internet.addresses.push(("br0".into(), with_len(gw, net)));
    }
    let mut fabric = host("fabric", Role::Fabric);
    let mut hosts = Vec::new();
    let mut links = Vec::new();
    let plug_internet =
        |internet: &mut Host, links: &mut Vec<Link>, h: &str, dev: &str, port: String| {
            internet
                .bridges
                .get_mut("br0")
                .expect("made above")
                .push(port.clone());
            links.push(Link {
                a: (h.to_string(), dev.to_string()),
                b: ("internet".into(), port),
            });
        };

    // One bridge per subnet, the subnet's first address as its gateway.
    let mut subnets: Vec<SubnetLeg> = Vec::new();
    let mut subnet_gw = BTreeMap::new();
    for s in &vnet.subnets {
        let br = port_name("sn", &s.id);
        let h = short_hash(&s.id);
        let leg = SubnetLeg {
            id: s.id.to_ascii_lowercase(),
            name: s.name.clone(),
            bridge: br.clone(),
            table: 10_000 + h % 1_000_000,
            rule_priority: 1_000 + h % 30_000,
        };
        if let Some(other) = subnets.iter().find(|o| {
            o.bridge == leg.bridge || o.table == leg.table || o.rule_priority == leg.rule_priority
        }) {
            return Err(LabError::Model(format!(
                "subnets '{}' and '{}' hash to the same lab bridge or routing table; rename one of them",
                other.name, s.name
            )));
        }
        let gw = s
            .address_prefix
            .nth(1)
            .ok_or_else(|| LabError::Model(format!("subnet {} is too small", s.name)))?;
        fabric
            .addresses
            .push((br.clone(), with_len(gw, s.address_prefix)));
        fabric.bridges.insert(br.clone(), vec![]);
        subnets.push(leg);
        subnet_gw.insert(s.id.to_ascii_lowercase(), (br, gw, s.address_prefix));
    }
    let attach = |fabric: &mut Host,
                  links: &mut Vec<Link>,
                  subnet: &str,
                  h: &str,
                  port: String|
     -> Result<(IpAddr, Cidr), LabError> {
        let (br, gw, prefix) = subnet_gw
            .get(&subnet.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| {
                LabError::Model(format!("subnet {subnet} is not in the cluster's vnet"))
            })?;
        fabric
            .bridges
            .get_mut(&br)
            .expect("made above")
            .push(port.clone());
        links.push(Link {
            a: (h.to_string(), "eth0".into()),
            b: ("fabric".into(), port),
        });
        Ok((gw, prefix))
    };

    // Nodes.
    for vm in world.nodes_of(cluster) {
        let mut n = host(&vm.name, Role::Node);
        let (gw, prefix) = attach(
            &mut fabric,
            &mut links,
            subnet_id,
            &vm.name,
            port_name("nd", &vm.id),
        )?;
        n.addresses
            .push(("eth0".into(), with_len(vm.private_ips, prefix)));
        n.routes.push(format!("default via {gw}"));
        hosts.push(n);
    }

    // Firewalls with an ip-config in this vnet: a private leg in their subnet, a public leg on
    // the internet.
    let mut firewalls = BTreeMap::new();
    for fw in world.firewalls.values() {
        let Some(cfg) = fw.ip_configurations.first() else {
            continue;
        };
        if !vnet
            .subnets
            .iter()
            .any(|s| ids::same(&s.id, &cfg.subnet.id))
        {
            continue;
        }
        let Some(public) = world.public_ip_by_id(&cfg.public_ip_address.id) else {
            continue;
        };
        let mut f = host(&fw.name, Role::Firewall);
        let (gw, prefix) = attach(
            &mut fabric,
            &mut links,
            &cfg.subnet.id,
            &fw.name,
            port_name("fw", &fw.id),
        )?;
        f.addresses
            .push(("eth0".into(), with_len(cfg.private_ip_address, prefix)));
        f.addresses
            .push(("eth1".into(), with_len(public.ip_address, pool)));
        for space in &vnet.address_space.address_prefixes {
            f.routes.push(format!("{space} via {gw}"));
        }
        f.routes.push(format!("default via {pool_gw}"));
        plug_internet(
            &mut internet,
            &mut links,
            &fw.name,
            "eth1",
            port_name("pf", &fw.id),
        );
        firewalls.insert(fw.name.clone(), fw.name.clone());
        hosts.push(f);
    }

    // The fabric's uplink carries the load balancer's outbound IP, when the cluster has one.
    let lb_ip = match cluster.network_profile.outbound_type {
        OutboundType::LoadBalancer => cluster
            .network_profile
            .load_balancer_profile
            .as_ref()
            .and_then(|p| p.effective_outbound_ips.first())
            .and_then(|r| world.public_ip_by_id(&r.id))
            .map(|p| p.ip_address),
        OutboundType::UserDefinedRouting => None,
    };
    let lb_snat = lb_ip.map(|ip| {
        fabric.addresses.push(("up0".into(), with_len(ip, pool)));
        fabric.routes.push(format!("default via {pool_gw}"));
        plug_internet(&mut internet, &mut links, "fabric", "up0", "pfab".into());
        let prefixes = vnet
            .subnets
            .iter()
            .filter(|s| ids::same(&s.id, subnet_id))
            .map(|s| s.address_prefix)
            .collect();
        (prefixes, ip)
    });

    // The API server host, and the internet hosts.
    let mut api = host("apiserver", Role::ApiServer);
    api.addresses.push((
        "eth0".into(),
        with_len(cluster.api_server_address, api_pool),
    ));
    api.routes.push(format!("default via {api_gw}"));
    plug_internet(
        &mut internet,
        &mut links,
        "apiserver",
        "eth0",
        "papi".into(),
    );
    hosts.push(api);
    for (name, ip) in [WORKSTATION, OUTSIDER] {
        let mut h = host(name, Role::InternetHost);
        h.addresses.push(("eth0".into(), format!("{ip}/24")));
        h.routes.push(format!("default via {hosts_gw}"));
        plug_internet(
            &mut internet,
            &mut links,
            name,
            "eth0",
            format!("p{}", &name[..3]),
        );
        hosts.push(h);
    }

    for h in hosts
        .iter()
        .filter(|h| matches!(h.role, Role::Node | Role::Firewall))
    {
        let clash = FIXED_HOSTS.iter().any(|f| f.eq_ignore_ascii_case(&h.name))
            || hosts
                .iter()
                .filter(|o| o.name.eq_ignore_ascii_case(&h.name))
                .count()
                > 1;
        if clash {
            return Err(LabError::Model(format!(
                "{} '{}' has the name of another lab host (the lab's own hosts are {}); rename it to run the lab",
                match h.role {
                    Role::Firewall => "firewall",
                    _ => "node",
                },
                h.name,
                FIXED_HOSTS.join(", ")
            )));
        }
    }
    let mut all = vec![internet, fabric];
    all.extend(hosts);
    Ok(Plan {
        cluster: cluster.name.clone(),
        resource_group: cluster.resource_group.clone(),
        api_address: cluster.api_server_address,
        hosts: all,
        links,
        subnets,
        firewalls,
        lb_snat,
    })
}

/// The fabric's load-balancer SNAT as one nftables table: traffic from the cluster's subnet
/// leaving through the uplink takes the load balancer's outbound IP.
pub fn render_lb_snat(lb: Option<&(Vec<Cidr>, IpAddr)>) -> String {
    let mut s = String::from("table ip apiwall_fabric {}\ndelete table ip apiwall_fabric\n");
    if let Some((prefixes, ip)) = lb {
        let p: Vec<String> = prefixes.iter().map(|c| c.to_string()).collect();
        let _ = write!(
            s,
            "table ip apiwall_fabric {{\n\tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\toifname \"up0\" ip saddr {{ {} }} counter snat to {ip} comment \"load balancer outbound\"\n\t}}\n}}\n",
            p.join(", ")
        );
    }
    s
}

#[cfg(test)]
mod tests;
