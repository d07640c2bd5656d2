use super::*;

fn view() -> ClusterView {
    ClusterView {
        api_address: "198.51.100.1".parse().unwrap(),
        nodes: vec![
            ("n0".into(), "10.240.0.4".parse().unwrap()),
            ("n1".into(), "10.240.0.5".parse().unwrap()),
        ],
        revision: 7,
    }
}

#[test]
fn endpoints_name_the_api_server_address() {
    let (code, v) = answer("/api/v1/namespaces/default/endpoints", &view());
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["items"][0]["metadata"]["name"], "kubernetes");
    assert_eq!(
        v["items"][0]["subsets"][0]["addresses"][0]["ip"],
        "198.51.100.1"
    );
    let t = as_table(&v, "5m").unwrap();
    assert_eq!(
        t["rows"][0]["cells"],
        json!(["kubernetes", "198.51.100.1:443", "5m"])
    );
}

#[test]
fn nodes_list_and_table() {
    let (_, v) = answer("/api/v1/nodes", &view());
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["items"][1]["status"]["addresses"][0]["address"],
        "10.240.0.5"
    );
    let t = as_table(&v, "42s").unwrap();
    assert_eq!(t["kind"], "Table");
    assert_eq!(
        t["rows"][0]["cells"],
        json!(["n0", "Ready", "<none>", "42s", KUBERNETES_VERSION])
    );
    assert_eq!(
        answer("/api/v1/nodes/n1", &view()).1["metadata"]["name"],
        "n1"
    );
}

#[test]
fn unknown_paths_are_404_status_objects() {
    let (code, v) = answer("/apis/apps/v1/deployments", &view());
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(v["kind"], "Status");
    assert!(as_table(&v, "1s").is_none());
}

#[test]
fn ages_print_as_kubectl_does() {
    use std::time::Duration;
    assert_eq!(age(Duration::from_secs(45)), "45s");
    assert_eq!(age(Duration::from_secs(600)), "10m");
    assert_eq!(age(Duration::from_secs(5 * 3600)), "5h");
    assert_eq!(age(Duration::from_secs(3 * 86400)), "3d");
}
