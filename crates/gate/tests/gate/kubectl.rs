//! The real kubectl through the gate to a TLS upstream whose certificate was minted for the
//! test: kubectl verifies the upstream's certificate, so the gate passed TLS through untouched.

use std::process::Command;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types};

use crate::support::*;

const VERSION: &str = r#"{"major":"1","minor":"32","gitVersion":"v1.32.0-apiwall-test","gitCommit":"0","gitTreeState":"clean","buildDate":"2026-01-01T00:00:00Z","goVersion":"go1.23","compiler":"gc","platform":"linux/amd64"}"#;

/// A CA, and a server certificate for 127.0.0.1 and localhost signed by it.
fn mint() -> (String, rustls::ServerConfig) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "apiwall test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    server
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let key = KeyPair::generate().unwrap();
    let cert = server.signed_by(&key, &ca).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        pki_types::PrivateKeyDer::Pkcs8(pki_types::PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    (ca.pem(), tls)
}

/// A small HTTPS stand-in for kube-apiserver: answers `/version`, 404 for anything else.
async fn apiserver(tls: rustls::ServerConfig) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(s).await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    req.extend_from_slice(&buf[..n]);
                    while let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&req[..end]).to_string();
                        req.drain(..end + 4);
                        let path = head.split(' ').nth(1).unwrap_or("");
                        let (status, body) = if path.starts_with("/version") {
                            ("200 OK", VERSION.to_string())
                        } else {
                            (
                                "404 Not Found",
                                r#"{"kind":"Status","code":404}"#.to_string(),
                            )
                        };
                        let resp = format!(
                            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn kubeconfig(
    dir: &std::path::Path,
    server: std::net::SocketAddr,
    ca_pem: &str,
) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://{server}\n    certificate-authority-data: {}\n\
             users:\n- name: u\n  user:\n    token: test-token\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n",
            base64(ca_pem.as_bytes())
        ),
    )
    .unwrap();
    path
}

async fn kubectl(kubeconfig: std::path::PathBuf, home: std::path::PathBuf) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new("kubectl")
            .args([
                "get",
                "--raw",
                "/version",
                "--request-timeout=20s",
                "--kubeconfig",
            ])
            .arg(&kubeconfig)
            .env("HOME", &home)
            .output()
            .expect("kubectl is installed (scripts/test.sh installs it)")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_through_the_gate_verifies_the_upstream_certificate() {
    let (ca_pem, tls) = mint();
    let up = apiserver(tls).await;
    let dir = tempfile::tempdir().unwrap();

    // kubectl connects from 127.0.0.1.
    let src = FakeSource::with_ranges(&["127.0.0.1/32"]);
    let gate = Running::start_ready(test_config(up), src.clone()).await;
    let cfg = kubeconfig(dir.path(), gate.addr, &ca_pem);
    let out = kubectl(cfg.clone(), dir.path().to_path_buf()).await;
    assert!(
        out.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), VERSION);

    // A CA kubectl does not trust: the same gate, but verification fails, so the bytes kubectl
    // checked were the upstream's own.
    let (other_ca, _) = mint();
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let bad = kubeconfig(&other, gate.addr, &other_ca);
    let out = kubectl(bad, dir.path().to_path_buf()).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate"), "{err}");

    // Once 127.0.0.1 is no longer authorized, kubectl is refused.
    let g = gate.handle.generation();
    src.set_ranges(&["127.0.0.10/32"]);
    gate.wait_generation_after(g).await;
    let out = kubectl(cfg, dir.path().to_path_buf()).await;
    assert!(!out.status.success(), "kubectl got through a revoked range");
    gate.stop().await;
}
