//! Effective routes of a subnet: Azure's system routes plus the user routes of the subnet's route
//! table. The longest prefix wins; on an equal prefix a user route beats a system route.

use std::net::IpAddr;

use apiwall_model::{Cidr, NextHopType, RouteTable, VirtualNetwork};
use ipnet::IpNet;
use serde::Serialize;

use crate::lpm::RangeMap;

/// What `routeTableId` says when no user route applies.
pub const SYSTEM_ROUTE: &str = "System Route";

/// Prefixes Azure drops (next hop None) unless they lie inside the vnet's address space.
const RESERVED: [&str; 4] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
];

/// One effective route, and the answer to "what is the next hop for this destination?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NextHop {
    pub address_prefix: Cidr,
    pub next_hop_type: NextHopType,
    pub next_hop_ip_address: Option<IpAddr>,
    /// The user route's table; `None` for a system route.
    pub route_table_id: Option<String>,
    /// The user route's name; `None` for a system route.
    pub route_name: Option<String>,
}

impl NextHop {
    /// `routeTableId` as `network watcher show-next-hop` prints it.
    pub fn route_table_label(&self) -> &str {
        self.route_table_id.as_deref().unwrap_or(SYSTEM_ROUTE)
    }

    pub fn is_system(&self) -> bool {
        self.route_table_id.is_none()
    }

    /// "route AzureFirewallAPIServer (10.0.0.1/32)" or "system route 0.0.0.0/0".
    pub fn describe(&self) -> String {
        match &self.route_name {
            Some(n) => format!("route {n} ({})", self.address_prefix),
            None => format!("system route {}", self.address_prefix),
        }
    }

    /// The output of `network watcher show-next-hop`.
    pub fn show(&self) -> ShowNextHop {
        ShowNextHop {
            next_hop_ip_address: self.next_hop_ip_address,
            next_hop_type: self.next_hop_type,
            route_table_id: self.route_table_label().to_string(),
        }
    }
}

/// `network watcher show-next-hop`'s output, in az's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShowNextHop {
    pub next_hop_ip_address: Option<IpAddr>,
    pub next_hop_type: NextHopType,
    pub route_table_id: String,
}

/// The compiled effective routes of one subnet.
#[derive(Debug, Clone)]
pub struct SubnetRoutes {
    routes: Vec<NextHop>,
    v4: RangeMap<u32, u32>,
    v6: RangeMap<u128, u32>,
}

const NO_ROUTE: u32 = u32::MAX;

fn system(prefix: Cidr, t: NextHopType) -> NextHop {
    NextHop {
        address_prefix: prefix,
        next_hop_type: t,
        next_hop_ip_address: None,
        route_table_id: None,
        route_name: None,
    }
}

impl SubnetRoutes {
    /// The effective routes of a subnet of `vnet` associated with `table` (if any).
    pub fn compile(vnet: &VirtualNetwork, table: Option<&RouteTable>) -> Self {
        let spaces = &vnet.address_space.address_prefixes;
        // System routes first: `nested` lets the later of two equal prefixes win.
        let mut routes: Vec<NextHop> = spaces
            .iter()
            .map(|p| system(*p, NextHopType::VnetLocal))
            .collect();
        routes.push(system(
            "0.0.0.0/0".parse().expect("constant"),
            NextHopType::Internet,
        ));
        routes.push(system(
            "::/0".parse().expect("constant"),
            NextHopType::Internet,
        ));
        for r in RESERVED {
            let r: Cidr = r.parse().expect("constant");
            if !spaces.iter().any(|s| s.contains(&r)) {
                routes.push(system(r, NextHopType::None));
            }
        }
        if let Some(t) = table {
            routes.extend(t.routes.iter().map(|r| NextHop {
                address_prefix: r.address_prefix,
                next_hop_type: r.next_hop_type,
                next_hop_ip_address: r.next_hop_ip_address,
                route_table_id: Some(t.id.clone()),
                route_name: Some(r.name.clone()),
            }));
        }
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            match r.address_prefix.net() {
                IpNet::V4(n) => v4.push((n.network().into(), n.broadcast().into(), i as u32)),
                IpNet::V6(n) => v6.push((n.network().into(), n.broadcast().into(), i as u32)),
            }
        }
        Self {
            v4: RangeMap::nested(v4, NO_ROUTE),
            v6: RangeMap::nested(v6, NO_ROUTE),
            routes,
        }
    }

    /// The route that traffic to `dst` takes.
    pub fn lookup(&self, dst: IpAddr) -> Option<&NextHop> {
        let i = match dst {
            IpAddr::V4(a) => self.v4.get(u32::from(a)),
            IpAddr::V6(a) => self.v6.get(u128::from(a)),
        };
        self.routes.get(i as usize)
    }

    /// Every effective route, system routes first.
    pub fn routes(&self) -> &[NextHop] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::WorldBuilder;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn system_and_user_routes() {
        let w = WorldBuilder::new()
            .cluster("rg", "c1", 3)
            .firewall_route()
            .build();
        let vnet = w.vnets.values().next().unwrap();
        let table = w.route_tables.values().next().unwrap();
        let r = SubnetRoutes::compile(vnet, Some(table));

        let h = r.lookup(ip("10.240.0.5")).unwrap();
        assert_eq!(h.next_hop_type, NextHopType::VnetLocal);
        assert_eq!(h.route_table_label(), SYSTEM_ROUTE);
        assert_eq!(h.address_prefix.to_string(), "10.0.0.0/8");

        let h = r.lookup(ip("198.51.100.250")).unwrap();
        assert_eq!(h.next_hop_type, NextHopType::Internet);
        assert_eq!(h.show().route_table_id, "System Route");

        let h = r.lookup(ip("172.16.5.5")).unwrap();
        assert_eq!(h.next_hop_type, NextHopType::None);
        assert_eq!(h.address_prefix.to_string(), "172.16.0.0/12");

        // The user /32 to the firewall beats the system 0.0.0.0/0.
        let api = w.clusters.values().next().unwrap().api_server_address;
        let h = r.lookup(api).unwrap();
        assert_eq!(h.next_hop_type, NextHopType::VirtualAppliance);
        assert_eq!(h.next_hop_ip_address, Some(ip("10.200.0.4")));
        assert_eq!(h.route_table_id.as_deref(), Some(table.id.as_str()));

        // Pod CIDR routes go to their node.
        let h = r.lookup(ip("10.244.1.7")).unwrap();
        assert_eq!(h.next_hop_ip_address, Some(ip("10.240.0.5")));
    }

    #[test]
    fn user_route_beats_system_route_on_equal_prefix() {
        let mut w = WorldBuilder::new().cluster("rg", "c1", 1).build();
        let table = w.route_tables.values_mut().next().unwrap();
        table.routes.push(crate::fixture::route(
            &table.id,
            "drop-internet",
            "0.0.0.0/0",
            NextHopType::None,
            None,
        ));
        table.routes.push(crate::fixture::route(
            &table.id,
            "vnet-to-gw",
            "10.0.0.0/8",
            NextHopType::VirtualNetworkGateway,
            None,
        ));
        let vnet = w.vnets.values().next().unwrap();
        let r = SubnetRoutes::compile(vnet, w.route_tables.values().next());
        let h = r.lookup(ip("192.0.2.1")).unwrap();
        assert_eq!(h.next_hop_type, NextHopType::None);
        assert_eq!(h.route_name.as_deref(), Some("drop-internet"));
        let h = r.lookup(ip("10.1.2.3")).unwrap();
        assert_eq!(h.next_hop_type, NextHopType::VirtualNetworkGateway);
        // The reserved None routes apply outside the vnet's space only.
        let h = r.lookup(ip("192.168.1.1")).unwrap();
        assert_eq!(h.next_hop_type, NextHopType::None);
        assert!(h.is_system());
    }

    /// The oracle: every effective route that holds `dst`; the longest wins, then a user route.
    fn naive(r: &SubnetRoutes, dst: IpAddr) -> Option<&NextHop> {
        r.routes()
            .iter()
            .enumerate()
            .filter(|(_, h)| h.address_prefix.contains_addr(dst))
            .max_by_key(|(i, h)| (h.address_prefix.prefix_len(), !h.is_system(), *i))
            .map(|(_, h)| h)
    }

    proptest! {
        #[test]
        fn lookup_agrees_with_a_naive_scan(
            user in proptest::collection::vec((0u32..32, 0u8..=32, 0usize..5), 0..40),
            dsts in proptest::collection::vec((0u32..32, any::<u32>()), 1..40),
        ) {
            let mut w = WorldBuilder::new().cluster("rg", "c", 2).build();
            let table = w.route_tables.values_mut().next().unwrap();
            let types = [
                NextHopType::VnetLocal,
                NextHopType::Internet,
                NextHopType::None,
                NextHopType::VirtualAppliance,
                NextHopType::VirtualNetworkGateway,
            ];
            for (i, (hi, len, t)) in user.into_iter().enumerate() {
                // Prefixes around 10.x and 172.16.x, where system routes live too.
                let base = if hi % 2 == 0 { 0x0a00_0000 } else { 0xac10_0000 };
                let a = std::net::Ipv4Addr::from(base | (hi << 20));
                let p = ipnet::Ipv4Net::new(a, len).unwrap().trunc();
                table.routes.push(crate::fixture::route(
                    &table.id, &format!("r{i}"), &p.to_string(), types[t], None,
                ));
            }
            let vnet = w.vnets.values().next().unwrap();
            let r = SubnetRoutes::compile(vnet, w.route_tables.values().next());
            for (hi, lo) in dsts {
                let base: u32 = if hi % 2 == 0 { 0x0a00_0000 } else { 0xac10_0000 };
                for d in [base | (hi << 20) | (lo & 0xfffff), lo] {
                    let dst = IpAddr::V4(std::net::Ipv4Addr::from(d));
                    prop_assert_eq!(r.lookup(dst), naive(&r, dst), "dst {}", dst);
                }
            }
        }
    }
}
