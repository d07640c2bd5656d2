//! `World`: every resource of one store revision, typed. The service loads it inside a
//! transaction, changes it, checks it, and writes back what differs; the policy compiler reads it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::resources::*;

/// A resource's identity in the store: resource group and name, compared case-insensitively
/// as ARM does. Subscription-level records have an empty resource group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub rg: String,
    pub name: String,
}

impl Key {
    pub fn new(rg: &str, name: &str) -> Self {
        Self {
            rg: rg.to_ascii_lowercase(),
            name: name.to_ascii_lowercase(),
        }
    }

    pub fn global(name: &str) -> Self {
        Self::new("", name)
    }
}

/// A kind of stored resource.
pub trait Resource: Serialize + DeserializeOwned + Clone + PartialEq {
    /// The kind under which the store keeps it.
    const KIND: &'static str;
    /// The ARM resource type, as in ids and az's messages.
    const TYPE: &'static str;
    fn key(&self) -> Key;
}

macro_rules! resource {
    ($t:ty, $kind:literal, $type:literal, rg) => {
        impl Resource for $t {
            const KIND: &'static str = $kind;
            const TYPE: &'static str = $type;
            fn key(&self) -> Key {
                Key::new(&self.resource_group, &self.name)
            }
        }
    };
    ($t:ty, $kind:literal, $type:literal, global) => {
        impl Resource for $t {
            const KIND: &'static str = $kind;
            const TYPE: &'static str = $type;
            fn key(&self) -> Key {
                Key::global(&self.name)
            }
        }
    };
}

resource!(
    ResourceGroup,
    "group",
    "Microsoft.Resources/resourceGroups",
    global
);
resource!(
    ManagedCluster,
    "managedCluster",
    "Microsoft.ContainerService/managedClusters",
    rg
);
resource!(
    VirtualMachine,
    "virtualMachine",
    "Microsoft.Compute/virtualMachines",
    rg
);
resource!(
    VirtualNetwork,
    "virtualNetwork",
    "Microsoft.Network/virtualNetworks",
    rg
);
resource!(
    PublicIp,
    "publicIp",
    "Microsoft.Network/publicIPAddresses",
    rg
);
resource!(Firewall, "firewall", "Microsoft.Network/azureFirewalls", rg);
resource!(
    RouteTable,
    "routeTable",
    "Microsoft.Network/routeTables",
    rg
);
resource!(
    Feature,
    "feature",
    "Microsoft.Features/providers/features",
    global
);
resource!(Extension, "extension", "extension", global);

impl Resource for Provider {
    const KIND: &'static str = "provider";
    const TYPE: &'static str = "Microsoft.Resources/providers";
    fn key(&self) -> Key {
        Key::global(&self.namespace)
    }
}

impl Resource for Settings {
    const KIND: &'static str = "settings";
    const TYPE: &'static str = "settings";
    fn key(&self) -> Key {
        Key::global("settings")
    }
}

/// All resources of one kind, ordered by key.
pub type Table<T> = BTreeMap<Key, T>;

/// One serialized resource: `(kind, key, JSON body)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: String,
    pub key: Key,
    pub body: String,
}

/// A change to write back: a record to put, or a key to delete (`body == None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub kind: String,
    pub key: Key,
    pub body: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct World {
    pub settings: Settings,
    pub groups: Table<ResourceGroup>,
    pub clusters: Table<ManagedCluster>,
    pub vms: Table<VirtualMachine>,
    pub vnets: Table<VirtualNetwork>,
    pub public_ips: Table<PublicIp>,
    pub firewalls: Table<Firewall>,
    pub route_tables: Table<RouteTable>,
    pub features: Table<Feature>,
    pub providers: Table<Provider>,
    pub extensions: Table<Extension>,
}

/// Error from a stored body that no longer parses as its kind.
#[derive(Debug, thiserror::Error)]
#[error("stored {kind} {rg}/{name} is corrupt: {source}")]
pub struct CorruptRecord {
    pub kind: String,
    pub rg: String,
    pub name: String,
    #[source]
    pub source: serde_json::Error,
}

fn load<T: Resource>(table: &mut Table<T>, r: &Record) -> Result<(), CorruptRecord> {
    let v: T = serde_json::from_str(&r.body).map_err(|source| CorruptRecord {
        kind: r.kind.clone(),
        rg: r.key.rg.clone(),
        name: r.key.name.clone(),
        source,
    })?;
    table.insert(r.key.clone(), v);
    Ok(())
}

fn diff<T: Resource>(before: &Table<T>, after: &Table<T>, out: &mut Vec<Write>) {
    for (k, v) in after {
        if before.get(k) != Some(v) {
            out.push(Write {
                kind: T::KIND.to_string(),
                key: k.clone(),
                body: Some(to_body(v)),
            });
        }
    }
    for k in before.keys().filter(|k| !after.contains_key(*k)) {
        out.push(Write {
            kind: T::KIND.to_string(),
            key: k.clone(),
            body: None,
        });
    }
}

/// The stored form of a resource: compact JSON.
pub fn to_body<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("resources always serialize")
}

/// Applies `$m!(field)` to every table of a `World`.
macro_rules! each_table {
    ($m:ident) => {
        $m!(groups);
        $m!(clusters);
        $m!(vms);
        $m!(vnets);
        $m!(public_ips);
        $m!(firewalls);
        $m!(route_tables);
        $m!(features);
        $m!(providers);
        $m!(extensions);
    };
}

impl World {
    /// Builds a world from stored records. Records of unknown kinds are ignored, so an older
    /// binary can read a newer store.
    pub fn from_records<'a>(
        records: impl IntoIterator<Item = &'a Record>,
    ) -> Result<Self, CorruptRecord> {
        let mut w = World::default();
        for r in records {
            macro_rules! try_load {
                ($f:ident) => {
                    if r.kind == kind_of(&w.$f) {
                        load(&mut w.$f, r)?;
                        continue;
                    }
                };
            }
            each_table!(try_load);
            if r.kind == Settings::KIND {
                w.settings = serde_json::from_str(&r.body).map_err(|source| CorruptRecord {
                    kind: r.kind.clone(),
                    rg: String::new(),
                    name: "settings".into(),
                    source,
                })?;
            }
        }
        Ok(w)
    }

    /// The writes that turn `before` into `self`. Unchanged resources produce no write, so a
    /// no-op command changes nothing.
    pub fn diff(&self, before: &World) -> Vec<Write> {
        let mut out = Vec::new();
        macro_rules! d {
            ($f:ident) => {
                diff(&before.$f, &self.$f, &mut out);
            };
        }
        each_table!(d);
        if self.settings != before.settings {
            out.push(Write {
                kind: Settings::KIND.into(),
                key: self.settings.key(),
                body: Some(to_body(&self.settings)),
            });
        }
        out
    }

    /// Every public IP address in use, across pools.
    pub fn used_public_addresses(&self) -> impl Iterator<Item = std::net::IpAddr> + '_ {
        self.public_ips
            .values()
            .map(|p| p.ip_address)
            .chain(self.clusters.values().map(|c| c.api_server_address))
    }

    /// The nodes of a cluster, by the tag that names the cluster's id.
    pub fn nodes_of<'a>(
        &'a self,
        cluster: &'a ManagedCluster,
    ) -> impl Iterator<Item = &'a VirtualMachine> + 'a {
        self.vms.values().filter(move |vm| {
            vm.tags
                .get(TAG_CLUSTER)
                .is_some_and(|id| crate::ids::same(id, &cluster.id))
        })
    }

    /// The cluster `rg/name`.
    pub fn cluster(&self, rg: &str, name: &str) -> Option<&ManagedCluster> {
        self.clusters.get(&Key::new(rg, name))
    }

    /// The vnet and subnet with the given subnet id.
    pub fn subnet_by_id(&self, id: &str) -> Option<(&VirtualNetwork, &Subnet)> {
        self.vnets.values().find_map(|v| {
            v.subnets
                .iter()
                .find(|s| crate::ids::same(&s.id, id))
                .map(|s| (v, s))
        })
    }

    pub fn public_ip_by_id(&self, id: &str) -> Option<&PublicIp> {
        self.public_ips
            .values()
            .find(|p| crate::ids::same(&p.id, id))
    }

    pub fn route_table_by_id(&self, id: &str) -> Option<&RouteTable> {
        self.route_tables
            .values()
            .find(|t| crate::ids::same(&t.id, id))
    }
}

fn kind_of<T: Resource>(_: &Table<T>) -> &'static str {
    T::KIND
}
