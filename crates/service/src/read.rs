//! Reads: straight from the store, one record where one is asked for, so `show` stays fast on
//! a large store.

use apiwall_model::resources::*;
use apiwall_model::world::{Key, Record, Resource};
use apiwall_store::Store;
use serde::Serialize;
use serde_json::Value;

use crate::{ApiError, Child, Named, Request, to_value};

fn parse<T: Resource>(r: &Record) -> Result<T, ApiError> {
    serde_json::from_str(&r.body).map_err(|e| {
        ApiError::Internal(format!(
            "stored {} {}/{} is corrupt: {e}",
            r.kind, r.key.rg, r.key.name
        ))
    })
}

fn raw(r: &Record) -> Result<Value, ApiError> {
    serde_json::from_str(&r.body)
        .map_err(|e| ApiError::Internal(format!("stored {} is corrupt: {e}", r.kind)))
}

fn group_must_exist(store: &impl Store, rg: &str) -> Result<(), ApiError> {
    match store.get(ResourceGroup::KIND, "", rg)? {
        Some(_) => Ok(()),
        None => Err(ApiError::group_not_found(rg)),
    }
}

fn get<T: Resource>(store: &impl Store, rg: &str, name: &str) -> Result<T, ApiError> {
    match store.get(T::KIND, rg, name)? {
        Some(r) => parse(&r),
        None => {
            group_must_exist(store, rg)?;
            Err(ApiError::not_found(T::TYPE, name, rg))
        }
    }
}

fn show<T: Resource>(store: &impl Store, n: &Named) -> Result<Value, ApiError> {
    get::<T>(store, &n.rg, &n.name).map(|v| to_value(&v))
}

fn list<T: Resource>(store: &impl Store, rg: Option<&str>) -> Result<Value, ApiError> {
    if let Some(rg) = rg {
        group_must_exist(store, rg)?;
    }
    let records = store.list(T::KIND, rg)?;
    records
        .iter()
        .map(raw)
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn child<'a, C: Serialize>(
    items: &'a [C],
    name_of: impl Fn(&C) -> &str,
    c: &Child,
    what: &str,
) -> Result<&'a C, ApiError> {
    items
        .iter()
        .find(|i| name_of(i).eq_ignore_ascii_case(&c.name))
        .ok_or_else(|| ApiError::not_found(what, &format!("{}/{}", c.parent, c.name), &c.rg))
}

fn collection<'a>(
    fw: &'a Firewall,
    rg: &str,
    name: &str,
) -> Result<&'a NetworkRuleCollection, ApiError> {
    fw.network_rule_collections
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            ApiError::not_found(
                "Microsoft.Network/azureFirewalls/networkRuleCollections",
                &format!("{}/{name}", fw.name),
                rg,
            )
        })
}

pub(crate) fn run(store: &impl Store, request: Request) -> Result<Value, ApiError> {
    use Request::*;
    match request {
        GroupShow(name) => match store.get(ResourceGroup::KIND, "", &name)? {
            Some(r) => raw(&r),
            None => Err(ApiError::group_not_found(&name)),
        },
        GroupList => list::<ResourceGroup>(store, None),
        AksShow(n) => show::<ManagedCluster>(store, &n),
        AksList(rg) => list::<ManagedCluster>(store, rg.as_deref()),
        VmShow(n) => show::<VirtualMachine>(store, &n),
        VmList(rg) => list::<VirtualMachine>(store, rg.as_deref()),
        VnetShow(n) => show::<VirtualNetwork>(store, &n),
        VnetList(rg) => list::<VirtualNetwork>(store, rg.as_deref()),
        SubnetShow(c) => {
            let v: VirtualNetwork = get(store, &c.rg, &c.parent)?;
            child(
                &v.subnets,
                |s| &s.name,
                &c,
                "Microsoft.Network/virtualNetworks/subnets",
            )
            .map(to_value)
        }
        SubnetList(n) => get::<VirtualNetwork>(store, &n.rg, &n.name).map(|v| to_value(&v.subnets)),
        PublicIpShow(n) => show::<PublicIp>(store, &n),
        PublicIpList(rg) => list::<PublicIp>(store, rg.as_deref()),
        FirewallShow(n) => show::<Firewall>(store, &n),
        FirewallList(rg) => list::<Firewall>(store, rg.as_deref()),
        IpConfigShow(c) => {
            let fw: Firewall = get(store, &c.rg, &c.parent)?;
            child(
                &fw.ip_configurations,
                |i| &i.name,
                &c,
                "Microsoft.Network/azureFirewalls/azureFirewallIpConfigurations",
            )
            .map(to_value)
        }
        IpConfigList(n) => {
            get::<Firewall>(store, &n.rg, &n.name).map(|f| to_value(&f.ip_configurations))
        }
        CollectionShow(c) => {
            let fw: Firewall = get(store, &c.rg, &c.parent)?;
            collection(&fw, &c.rg, &c.name).map(to_value)
        }
        CollectionList(n) => {
            get::<Firewall>(store, &n.rg, &n.name).map(|f| to_value(&f.network_rule_collections))
        }
        NetworkRuleShow {
            rg,
            firewall,
            collection: coll,
            name,
        } => {
            let fw: Firewall = get(store, &rg, &firewall)?;
            let c = collection(&fw, &rg, &coll)?;
            let child_ref = Child {
                rg: rg.clone(),
                parent: format!("{firewall}/{coll}"),
                name,
            };
            self::child(&c.rules, |r| &r.name, &child_ref, "networkRules").map(to_value)
        }
        NetworkRuleList {
            rg,
            firewall,
            collection: coll,
        } => {
            let fw: Firewall = get(store, &rg, &firewall)?;
            collection(&fw, &rg, &coll).map(|c| to_value(&c.rules))
        }
        RouteTableShow(n) => show::<RouteTable>(store, &n),
        RouteTableList(rg) => list::<RouteTable>(store, rg.as_deref()),
        RouteShow(c) => {
            let t: RouteTable = get(store, &c.rg, &c.parent)?;
            child(
                &t.routes,
                |r| &r.name,
                &c,
                "Microsoft.Network/routeTables/routes",
            )
            .map(to_value)
        }
        RouteList(n) => get::<RouteTable>(store, &n.rg, &n.name).map(|t| to_value(&t.routes)),
        FeatureShow { namespace, name } => {
            let full = format!("{namespace}/{name}");
            match store.get(Feature::KIND, "", &full)? {
                Some(r) => raw(&r),
                None => Err(ApiError::NotFound(format!(
                    "(FeatureNotFound) The feature '{name}' could not be found in namespace '{namespace}'; register it with: feature register --namespace {namespace} --name {name}"
                ))),
            }
        }
        FeatureList => list::<Feature>(store, None),
        ProviderShow(ns) => match store.get(Provider::KIND, "", &ns)? {
            Some(r) => raw(&r),
            None => Ok(to_value(&crate::ops::provider(&ns, "NotRegistered"))),
        },
        ExtensionList => list::<Extension>(store, None),
        ConfigureShow => match store.get(Settings::KIND, "", &Key::global("settings").name)? {
            Some(r) => raw(&r),
            None => Ok(to_value(&Settings::default())),
        },
        other => Err(ApiError::Internal(format!("not a read: {other:?}"))),
    }
}
