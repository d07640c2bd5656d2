//! Turns parsed arguments into service requests, runs them, prints the answer.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use apiwall_service::{
    Api, ApiError, Child, ClusterCreate, ErrorKind, IpConfigCreate, IpFlowSpec, LocalApi, Named,
    Request, RouteSpec, SubnetSpec, TraceSpec,
};
use apiwall_store::SqliteStore;

use crate::args::*;
use crate::output;

/// `$APIWALL_HOME`, default `~/.apiwall`.
pub fn home() -> anyhow::Result<PathBuf> {
    if let Some(h) = std::env::var_os("APIWALL_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    let home = std::env::var_os("HOME").context("neither APIWALL_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".apiwall"))
}

pub fn open_api() -> anyhow::Result<LocalApi<SqliteStore>> {
    let path = home()?.join("apiwall.db");
    let store = SqliteStore::open(&path)
        .with_context(|| format!("opening the store at {}", path.display()))?;
    Ok(LocalApi::new(store))
}

pub fn run(cli: Cli) -> ExitCode {
    if let Command::Lab(cmd) = cli.command {
        return crate::lab::run(cmd, &cli.global);
    }
    if let Command::Aks(AksCmd::GetCredentials(a)) = cli.command {
        return crate::lab::get_credentials(a);
    }
    if let Command::Gate(cmd) = cli.command {
        return crate::gate::run(cmd, &cli.global);
    }
    let request = to_request(cli.command);
    let trace_table = matches!(request, Request::Trace(_))
        && cli.global.output == Output::Table
        && cli.global.query.is_none();
    let api = match open_api() {
        Ok(api) => api,
        Err(e) => {
            eprintln!("ERROR: {e:#}");
            return ExitCode::from(1);
        }
    };
    match api.call(request, cli.global.force) {
        Ok(value) if trace_table => {
            print!("{}", output::trace_table(&value));
            ExitCode::SUCCESS
        }
        Ok(value) => match output::print(&value, cli.global.output, cli.global.query.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ERROR: {e:#}");
                ExitCode::from(e.exit_code())
            }
        },
        Err(e) => {
            eprintln!("ERROR: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

pub fn exit_code(e: &ApiError) -> u8 {
    match e.kind() {
        ErrorKind::Usage => 2,
        ErrorKind::Operation => 1,
        ErrorKind::NotFound => 3,
    }
}

fn named(id: RgName) -> Named {
    Named::new(id.resource_group, id.name)
}

fn fw_child(id: FirewallChild) -> Child {
    Child {
        rg: id.resource_group,
        parent: id.firewall_name,
        name: id.name,
    }
}

fn subnet_child(id: SubnetId) -> Child {
    Child {
        rg: id.resource_group,
        parent: id.vnet_name,
        name: id.name,
    }
}

fn route_child(id: RouteId) -> Child {
    Child {
        rg: id.resource_group,
        parent: id.route_table_name,
        name: id.name,
    }
}

fn route_spec(a: RouteArgs) -> RouteSpec {
    RouteSpec {
        rg: a.id.resource_group,
        table: a.id.route_table_name,
        name: a.id.name,
        address_prefix: a.address_prefix,
        next_hop_type: a.next_hop_type,
        next_hop_ip: a.next_hop_ip_address,
    }
}

fn to_request(command: Command) -> Request {
    match command {
        Command::Group(c) => match c {
            GroupCmd::Create { name, location } => Request::GroupCreate { name, location },
            GroupCmd::Show { name } => Request::GroupShow(name),
            GroupCmd::List => Request::GroupList,
            GroupCmd::Delete { name, .. } => Request::GroupDelete(name),
        },
        Command::Aks(c) => match c {
            AksCmd::Create(a) => Request::AksCreate(ClusterCreate {
                rg: a.id.resource_group,
                name: a.id.name,
                location: a.location,
                node_count: a.node_count,
                outbound_type: a.outbound_type,
                authorized_ranges: a.api_server_authorized_ip_ranges,
            }),
            AksCmd::Show(id) => Request::AksShow(named(id)),
            AksCmd::List(rg) => Request::AksList(rg.resource_group),
            AksCmd::Update(a) => Request::AksUpdate {
                cluster: named(a.id),
                authorized_ranges: a.api_server_authorized_ip_ranges,
            },
            AksCmd::Delete { id, .. } => Request::AksDelete(named(id)),
            AksCmd::GetCredentials(_) => unreachable!("get-credentials runs before to_request"),
        },
        Command::Vm(c) => match c {
            VmCmd::Show(id) => Request::VmShow(named(id)),
            VmCmd::List { rg, .. } => Request::VmList(rg.resource_group),
        },
        Command::Network(n) => network_request(n),
        Command::Feature(c) => match c {
            FeatureCmd::Register { namespace, name } => {
                Request::FeatureRegister { namespace, name }
            }
            FeatureCmd::Show { namespace, name } => Request::FeatureShow { namespace, name },
            FeatureCmd::List { .. } => Request::FeatureList,
        },
        Command::Provider(c) => match c {
            ProviderCmd::Register { namespace } => Request::ProviderRegister(namespace),
            ProviderCmd::Show { namespace } => Request::ProviderShow(namespace),
        },
        Command::Extension(c) => match c {
            ExtensionCmd::Add { name } => Request::ExtensionAdd(name),
            ExtensionCmd::List => Request::ExtensionList,
        },
        Command::Gate(_) | Command::Lab(_) => {
            unreachable!("gate and lab commands run before to_request")
        }
        Command::Configure(a) => match (a.public_ip_pool, a.api_server_pool) {
            (None, None) => Request::ConfigureShow,
            (public_ip_pool, api_server_pool) => Request::Configure {
                public_ip_pool,
                api_server_pool,
            },
        },
    }
}

fn network_request(n: NetworkCmd) -> Request {
    match n {
        NetworkCmd::Vnet(c) => match c {
            VnetCmd::Create {
                id,
                address_prefixes,
                location,
            } => Request::VnetCreate {
                vnet: named(id),
                location,
                address_prefixes: flatten(&address_prefixes),
            },
            VnetCmd::Show(id) => Request::VnetShow(named(id)),
            VnetCmd::List(rg) => Request::VnetList(rg.resource_group),
            VnetCmd::Delete(id) => Request::VnetDelete(named(id)),
            VnetCmd::Subnet(s) => match s {
                SubnetCmd::Create {
                    id,
                    address_prefixes,
                    route_table,
                } => Request::SubnetCreate(SubnetSpec {
                    rg: id.resource_group,
                    vnet: id.vnet_name,
                    name: id.name,
                    address_prefix: Some(address_prefixes),
                    route_table,
                }),
                SubnetCmd::Update {
                    id,
                    address_prefixes,
                    route_table,
                } => Request::SubnetUpdate(SubnetSpec {
                    rg: id.resource_group,
                    vnet: id.vnet_name,
                    name: id.name,
                    address_prefix: address_prefixes,
                    route_table,
                }),
                SubnetCmd::Show(id) => Request::SubnetShow(subnet_child(id)),
                SubnetCmd::List {
                    resource_group,
                    vnet_name,
                } => Request::SubnetList(Named::new(resource_group, vnet_name)),
                SubnetCmd::Delete(id) => Request::SubnetDelete(subnet_child(id)),
            },
        },
        NetworkCmd::PublicIp(c) => match c {
            PublicIpCmd::Create {
                id, sku, location, ..
            } => Request::PublicIpCreate {
                ip: named(id),
                location,
                sku,
            },
            PublicIpCmd::Show(id) => Request::PublicIpShow(named(id)),
            PublicIpCmd::List(rg) => Request::PublicIpList(rg.resource_group),
            PublicIpCmd::Delete(id) => Request::PublicIpDelete(named(id)),
        },
        NetworkCmd::Firewall(c) => match c {
            FirewallCmd::Create { id, location } => Request::FirewallCreate {
                firewall: named(id),
                location,
            },
            FirewallCmd::Show(id) => Request::FirewallShow(named(id)),
            FirewallCmd::List(rg) => Request::FirewallList(rg.resource_group),
            FirewallCmd::Update { id, private_ranges } => Request::FirewallUpdate {
                firewall: named(id),
                private_ranges: private_ranges.map(|r| flatten(&r)),
            },
            FirewallCmd::Delete(id) => Request::FirewallDelete(named(id)),
            FirewallCmd::IpConfig(i) => match i {
                IpConfigCmd::Create {
                    id,
                    vnet_name,
                    public_ip_address,
                } => Request::IpConfigCreate(IpConfigCreate {
                    rg: id.resource_group,
                    firewall: id.firewall_name,
                    name: id.name,
                    vnet: vnet_name,
                    public_ip: public_ip_address,
                }),
                IpConfigCmd::Show(id) => Request::IpConfigShow(fw_child(id)),
                IpConfigCmd::List(f) => {
                    Request::IpConfigList(Named::new(f.resource_group, f.firewall_name))
                }
                IpConfigCmd::Delete(id) => Request::IpConfigDelete(fw_child(id)),
            },
            FirewallCmd::NetworkRule(r) => match r {
                NetworkRuleCmd::Create(a) => {
                    Request::NetworkRuleCreate(apiwall_service::NetworkRuleCreate {
                        rg: a.id.resource_group,
                        firewall: a.id.firewall_name,
                        collection: a.collection_name,
                        name: a.id.name,
                        priority: a.priority,
                        action: a.action,
                        protocols: flatten(&a.protocols),
                        source_addresses: flatten(&a.source_addresses),
                        destination_addresses: flatten(&a.destination_addresses),
                        destination_ports: flatten(&a.destination_ports),
                        description: a.description,
                    })
                }
                NetworkRuleCmd::Show {
                    id,
                    collection_name,
                } => Request::NetworkRuleShow {
                    rg: id.resource_group,
                    firewall: id.firewall_name,
                    collection: collection_name,
                    name: id.name,
                },
                NetworkRuleCmd::List {
                    fw,
                    collection_name,
                } => Request::NetworkRuleList {
                    rg: fw.resource_group,
                    firewall: fw.firewall_name,
                    collection: collection_name,
                },
                NetworkRuleCmd::Delete {
                    id,
                    collection_name,
                } => Request::NetworkRuleDelete {
                    rg: id.resource_group,
                    firewall: id.firewall_name,
                    collection: collection_name,
                    name: id.name,
                },
                NetworkRuleCmd::Collection(c) => match c {
                    CollectionCmd::List(f) => {
                        Request::CollectionList(Named::new(f.resource_group, f.firewall_name))
                    }
                    CollectionCmd::Show(id) => Request::CollectionShow(fw_child(id)),
                    CollectionCmd::Delete(id) => Request::CollectionDelete(fw_child(id)),
                },
            },
        },
        NetworkCmd::Watcher(c) => match c {
            WatcherCmd::ShowNextHop {
                resource_group,
                vm,
                source_ip,
                dest_ip,
            } => Request::NextHop {
                rg: resource_group,
                vm,
                source_ip,
                dest_ip,
            },
            WatcherCmd::TestIpFlow {
                resource_group,
                vm,
                direction,
                protocol,
                local,
                remote,
            } => Request::IpFlow(IpFlowSpec {
                rg: resource_group,
                vm,
                direction: match direction {
                    Direction::Inbound => apiwall_service::Direction::Inbound,
                    Direction::Outbound => apiwall_service::Direction::Outbound,
                },
                protocol,
                local: (local.ip(), local.port()),
                remote: (remote.ip(), remote.port()),
            }),
            WatcherCmd::Trace {
                resource_group,
                vm,
                source_ip,
                dest_ip,
                dest_port,
                protocol,
            } => Request::Trace(TraceSpec {
                rg: resource_group,
                vm,
                source_ip,
                dest_ip,
                dest_port,
                protocol,
            }),
        },
        NetworkCmd::RouteTable(c) => match c {
            RouteTableCmd::Create {
                id,
                location,
                disable_bgp_route_propagation,
            } => Request::RouteTableCreate {
                table: named(id),
                location,
                disable_bgp_route_propagation,
            },
            RouteTableCmd::Show(id) => Request::RouteTableShow(named(id)),
            RouteTableCmd::List(rg) => Request::RouteTableList(rg.resource_group),
            RouteTableCmd::Delete(id) => Request::RouteTableDelete(named(id)),
            RouteTableCmd::Route(r) => match r {
                RouteCmd::Create(a) => Request::RouteCreate(route_spec(a)),
                RouteCmd::Update(a) => Request::RouteUpdate(route_spec(a)),
                RouteCmd::Show(id) => Request::RouteShow(route_child(id)),
                RouteCmd::List {
                    resource_group,
                    route_table_name,
                } => Request::RouteList(Named::new(resource_group, route_table_name)),
                RouteCmd::Delete(id) => Request::RouteDelete(route_child(id)),
            },
        },
    }
}
