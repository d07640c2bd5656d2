//! A small HTTPS stand-in for kube-apiserver: it answers what kubectl needs for `version`,
//! `get endpoints` (the `kubernetes` endpoint is the API server's public address) and
//! `get nodes` (the cluster's nodes from the store). Any bearer token is accepted.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types::pem::PemObject};

use crate::LabError;

pub const KUBERNETES_VERSION: &str = "v1.30.5";

/// What the stand-in serves about its cluster, read fresh for each request.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterView {
    pub api_address: IpAddr,
    pub nodes: Vec<(String, IpAddr)>,
    pub revision: u64,
}

/// Where the stand-in reads its cluster from.
pub trait ViewSource: Send + Sync + 'static {
    fn view(&self) -> Result<ClusterView, LabError>;
}

/// A TLS server configuration from PEM certificate chain and key.
pub fn tls_config(cert_pem: &str, key_pem: &str) -> Result<Arc<rustls::ServerConfig>, LabError> {
    let tls = |e: &dyn std::fmt::Display| LabError::Tls(e.to_string());
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| tls(&e))?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| tls(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls(&e))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves until the listener fails. Each connection is handled on its own task.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    source: Arc<dyn ViewSource>,
) -> std::io::Result<()> {
    STARTED.get_or_init(Instant::now);
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = listener.accept().await?;
        let (acceptor, source) = (acceptor.clone(), source.clone());
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| handle(req, source.clone(), peer));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    source: Arc<dyn ViewSource>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let wants_table = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"));
    tracing::info!(%peer, method = %req.method(), %path, "request");
    let view = match tokio::task::spawn_blocking(move || source.view()).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            return Ok(respond(
                StatusCode::SERVICE_UNAVAILABLE,
                status(503, "ServiceUnavailable", &e.to_string()),
            ));
        }
        Err(e) => {
            return Ok(respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                status(500, "InternalError", &e.to_string()),
            ));
        }
    };
    let (code, body) = answer(&path, &view);
    let body = match wants_table {
        true => as_table(&body, &age(STARTED.get_or_init(Instant::now).elapsed())).unwrap_or(body),
        false => body,
    };
    Ok(respond(code, body))
}

/// When this stand-in started: the age of everything it serves.
static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// An age as kubectl prints it: `45s`, `12m`, `5h`, `3d`.
fn age(d: std::time::Duration) -> String {
    match d.as_secs() {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// The server-side table kubectl asks for (`Accept: …;as=Table`), for node and endpoint lists,
/// so `kubectl get nodes` prints its usual columns.
pub fn as_table(list: &Value, age: &str) -> Option<Value> {
    let col = |name: &str| json!({"name": name, "type": "string", "format": "", "description": "", "priority": 0});
    let meta = |item: &Value| json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": item["metadata"]});
    let (columns, rows): (Vec<Value>, Vec<Value>) = match list["kind"].as_str()? {
        "NodeList" => (
            ["Name", "Status", "Roles", "Age", "Version"].map(col).to_vec(),
            list["items"]
                .as_array()?
                .iter()
                .map(|n| {
                    let version = n["status"]["nodeInfo"]["kubeletVersion"].clone();
                    json!({"cells": [n["metadata"]["name"], "Ready", "<none>", age, version], "object": meta(n)})
                })
                .collect(),
        ),
        "EndpointsList" => (
            ["Name", "Endpoints", "Age"].map(col).to_vec(),
            list["items"]
                .as_array()?
                .iter()
                .map(|e| {
                    let addrs: Vec<String> = e["subsets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .flat_map(|s| {
                            let port = s["ports"][0]["port"].as_u64().unwrap_or(443);
                            s["addresses"].as_array().into_iter().flatten().map(move |a| {
                                format!("{}:{port}", a["ip"].as_str().unwrap_or_default())
                            })
                        })
                        .collect();
                    json!({"cells": [e["metadata"]["name"], addrs.join(","), age], "object": meta(e)})
                })
                .collect(),
        ),
        _ => return None,
    };
    Some(json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": list["metadata"]["resourceVersion"]},
        "columnDefinitions": columns,
        "rows": rows,
    }))
}

fn respond(code: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static response parts are valid")
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// The answer to one GET: pure, so tests call it directly.
pub fn answer(path: &str, view: &ClusterView) -> (StatusCode, Value) {
    let rv = view.revision.to_string();
    let endpoints = json!({
        "kind": "Endpoints", "apiVersion": "v1",
        "metadata": {"name": "kubernetes", "namespace": "default", "resourceVersion": rv,
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": view.api_address.to_string()}],
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}],
    });
    let node = |(name, ip): &(String, IpAddr)| {
        json!({
            "kind": "Node", "apiVersion": "v1",
            "metadata": {"name": name, "resourceVersion": rv, "creationTimestamp": "2026-01-01T00:00:00Z",
                         "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "agentpool": "nodepool1"}},
            "status": {
                "addresses": [{"type": "InternalIP", "address": ip.to_string()}, {"type": "Hostname", "address": name}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                "nodeInfo": {"kubeletVersion": KUBERNETES_VERSION, "osImage": "apiwall lab", "operatingSystem": "linux", "architecture": "amd64"},
            },
        })
    };
    let list = |kind: &str, items: Vec<Value>| json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items});
    let ok = |v: Value| (StatusCode::OK, v);
    match path.trim_end_matches('/') {
        "/version" => ok(json!({
            "major": "1", "minor": "30", "gitVersion": KUBERNETES_VERSION, "gitCommit": "apiwall-lab",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22.0",
            "compiler": "gc", "platform": "linux/amd64",
        })),
        "/healthz" | "/readyz" | "/livez" => (StatusCode::OK, Value::String("ok".into())),
        "/api" => ok(json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": format!("{}:443", view.api_address)}]})),
        "/apis" => ok(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})),
        "/api/v1" => ok(
            json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "endpoints", "singularName": "endpoints", "namespaced": true, "kind": "Endpoints", "verbs": ["get", "list"], "shortNames": ["ep"]},
                {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "Node", "verbs": ["get", "list"], "shortNames": ["no"]},
            ]}),
        ),
        "/api/v1/endpoints" | "/api/v1/namespaces/default/endpoints" => {
            ok(list("EndpointsList", vec![endpoints]))
        }
        "/api/v1/namespaces/default/endpoints/kubernetes" => ok(endpoints),
        "/api/v1/nodes" => ok(list("NodeList", view.nodes.iter().map(node).collect())),
        p => match p
            .strip_prefix("/api/v1/nodes/")
            .and_then(|n| view.nodes.iter().find(|(name, _)| name == n))
        {
            Some(n) => ok(node(n)),
            None if p.starts_with("/api/v1/namespaces/") && p.ends_with("/endpoints") => {
                ok(list("EndpointsList", vec![]))
            }
            None => (
                StatusCode::NOT_FOUND,
                status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
            ),
        },
    }
}

#[cfg(test)]
mod tests;
