//! Probing the API server from a lab host, the way kubectl reaches it: TCP to port 443, a TLS
//! handshake that verifies the cluster's certificate, and `GET /version`. The gate's access log
//! then says which address the server saw.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls::{self, pki_types::pem::PemObject};

use crate::LabError;
use crate::host::in_netns;

const TIMEOUT: Duration = Duration::from_secs(3);

/// What one probe saw on the wire.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub admitted: bool,
    /// What happened: the server's answer, or how the connection failed.
    pub detail: String,
}

fn client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, LabError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| LabError::Tls(e.to_string()))?;
        roots.add(cert).map_err(|e| LabError::Tls(e.to_string()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| LabError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

fn get_version(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Outcome {
    let fail = |what: String| Outcome {
        admitted: false,
        detail: what,
    };
    let tcp = match TcpStream::connect_timeout(&addr, TIMEOUT) {
        Ok(t) => t,
        Err(e) => return fail(format!("connect: {e}")),
    };
    let _ = tcp.set_read_timeout(Some(TIMEOUT));
    let _ = tcp.set_write_timeout(Some(TIMEOUT));
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let conn = match rustls::ClientConnection::new(config, name) {
        Ok(c) => c,
        Err(e) => return fail(format!("TLS: {e}")),
    };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let request = format!("GET /version HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if let Err(e) = tls.write_all(request.as_bytes()) {
        return fail(format!("closed by the server before TLS completed ({e})"));
    }
    let mut response = Vec::new();
    match tls.read_to_end(&mut response) {
        Ok(_) => {}
        // The server closing without close_notify still delivered its answer.
        Err(_) if !response.is_empty() => {}
        Err(e) => return fail(format!("closed by the server ({e})")),
    }
    let text = String::from_utf8_lossy(&response);
    let status = text.lines().next().unwrap_or_default().to_string();
    Outcome {
        admitted: status.contains(" 200 "),
        detail: status,
    }
}

/// Probes `https://API:443/version` from inside `netns`, verifying the server's certificate
/// against `ca_pem`.
pub fn probe(netns: &str, api: IpAddr, ca_pem: &str) -> Result<Outcome, LabError> {
    let config = client_config(ca_pem)?;
    in_netns(netns, move || {
        get_version(SocketAddr::new(api, 443), config)
    })
}
