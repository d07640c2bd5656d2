//! The service in process, over a real SQLite store: revisions, create-or-update, failures that
//! change nothing, and the lockout check with and without `force`.

use apiwall_model::AuthorizedRanges;
use apiwall_model::resources::OutboundType;
use apiwall_service::{
    Api, ApiError, ClusterCreate, ErrorKind, LocalApi, Named, Request, RouteSpec,
};
use apiwall_store::SqliteStore;

fn api() -> (tempfile::TempDir, LocalApi<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("apiwall.db")).unwrap();
    (dir, LocalApi::new(store))
}

fn cluster(api: &LocalApi<SqliteStore>, outbound_type: OutboundType, ranges: Option<&str>) {
    api.call(
        Request::GroupCreate {
            name: "rg".into(),
            location: "westeurope".into(),
        },
        false,
    )
    .unwrap();
    api.call(
        Request::AksCreate(ClusterCreate {
            rg: "rg".into(),
            name: "c".into(),
            location: None,
            node_count: Some(2),
            outbound_type,
            authorized_ranges: ranges.map(|r| r.parse::<AuthorizedRanges>().unwrap()),
        }),
        false,
    )
    .unwrap();
}

#[test]
fn a_repeated_create_is_not_a_new_revision() {
    let (_d, api) = api();
    cluster(&api, OutboundType::UserDefinedRouting, None);
    let rev = api.revision().unwrap();
    let again = Request::GroupCreate {
        name: "RG".into(),
        location: "West Europe".into(),
    };
    api.call(again, false).unwrap();
    assert_eq!(
        api.revision().unwrap(),
        rev,
        "same group, other spelling: nothing changes"
    );
}

#[test]
fn a_failed_call_changes_nothing() {
    let (_d, api) = api();
    cluster(&api, OutboundType::UserDefinedRouting, None);
    let (world, rev) = api.world().unwrap();
    let bad = Request::RouteCreate(RouteSpec {
        rg: world
            .cluster("rg", "c")
            .unwrap()
            .node_resource_group
            .clone(),
        table: "nosuchtable".into(),
        name: "r".into(),
        address_prefix: Some("198.51.100.1/32".parse().unwrap()),
        next_hop_type: Some(apiwall_model::NextHopType::Internet),
        next_hop_ip: None,
    });
    let err = api.call(bad, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let (after, rev_after) = api.world().unwrap();
    assert_eq!(rev_after, rev);
    assert_eq!(after, world);
}

#[test]
fn lockout_is_refused_unless_forced() {
    let (_d, api) = api();
    cluster(&api, OutboundType::LoadBalancer, None);
    // The LB outbound IP is always admitted: restricting to another range is no lockout.
    let restrict = |force| {
        api.call(
            Request::AksUpdate {
                cluster: Named::new("rg", "c"),
                authorized_ranges: Some("192.0.2.10/32".parse().unwrap()),
            },
            force,
        )
    };
    restrict(false).expect("the LB outbound IP keeps the nodes in");
    // Routing the API server's address to nowhere does cut the nodes off.
    let (world, _) = api.world().unwrap();
    let c = world.cluster("rg", "c").unwrap();
    let table = world.route_tables.values().next().unwrap().name.clone();
    let blackhole = |force| {
        api.call(
            Request::RouteCreate(RouteSpec {
                rg: c.node_resource_group.clone(),
                table: table.clone(),
                name: "drop-api".into(),
                address_prefix: Some(format!("{}/32", c.api_server_address).parse().unwrap()),
                next_hop_type: Some(apiwall_model::NextHopType::None),
                next_hop_ip: None,
            }),
            force,
        )
    };
    let rev = api.revision().unwrap();
    let err = blackhole(false).unwrap_err();
    assert!(matches!(err, ApiError::Lockout(_)), "{err}");
    assert!(err.to_string().contains("aks-nodepool1-"), "{err}");
    assert_eq!(
        api.revision().unwrap(),
        rev,
        "a refused change writes nothing"
    );
    blackhole(true).expect("--force applies it");
    assert_eq!(api.revision().unwrap(), rev + 1);
}
