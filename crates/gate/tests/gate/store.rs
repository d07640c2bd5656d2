//! The gate over the real store, through the service: follows revisions, and a gate for a
//! cluster that does not exist admits nothing until it does.

use apiwall_gate::StoreSource;
use apiwall_service::{Api, ClusterCreate, LocalApi, Named, Request};
use apiwall_store::SqliteStore;

use crate::support::*;

fn api(dir: &tempfile::TempDir) -> LocalApi<SqliteStore> {
    LocalApi::new(SqliteStore::open(&dir.path().join("apiwall.db")).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_for_missing_cluster_admits_nothing_until_it_exists() {
    let dir = tempfile::tempdir().unwrap();
    let (up, _u) = echo_upstream().await;
    let source = StoreSource::new(api(&dir), "rg", "cluster");
    let gate = Running::start(test_config(up), source).await;
    eventually("the (empty) store is loaded", || async {
        gate.handle.generation() >= 1
    })
    .await;
    assert_eq!(gate.handle.state(), "cluster not found");
    assert_eq!(probe(lo(10), gate.addr).await, Outcome::Refused);
    assert_eq!(http_get(gate.admin, "/readyz").await.0, 503);

    let api = api(&dir);
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
            name: "cluster".into(),
            location: None,
            node_count: Some(1),
            outbound_type: apiwall_model::resources::OutboundType::LoadBalancer,
            authorized_ranges: Some("127.0.0.10/32".parse().unwrap()),
        }),
        false,
    )
    .unwrap();
    eventually("the cluster's policy is in force", || async {
        gate.handle.ready()
    })
    .await;
    assert_eq!(probe(lo(10), gate.addr).await, Outcome::Relayed);
    assert_eq!(probe(lo(20), gate.addr).await, Outcome::Refused);

    // Deleting the cluster revokes everything.
    api.call(Request::AksDelete(Named::new("rg", "cluster")), true)
        .unwrap();
    eventually("the cluster is gone", || async { !gate.handle.ready() }).await;
    assert_eq!(probe(lo(10), gate.addr).await, Outcome::Refused);
    gate.stop().await;
}
