//! A cluster's TLS identity: a CA and a server certificate for its API server address and FQDN,
//! minted once and kept under `$APIWALL_HOME/clusters/`, and the kubeconfig that trusts it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use serde_json::json;

use crate::LabError;

/// PEM files of one cluster.
#[derive(Debug, Clone)]
pub struct ClusterCerts {
    pub dir: PathBuf,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl ClusterCerts {
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("apiserver.pem")
    }
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("apiserver-key.pem")
    }

    /// Loads the cluster's certificates from `dir`, minting them first if absent.
    pub fn ensure(dir: &Path, fqdn: &str, address: IpAddr) -> Result<Self, LabError> {
        let io =
            |what: &str, e: std::io::Error| LabError::Io(format!("{what} {}: {e}", dir.display()));
        let read = |name: &str| std::fs::read_to_string(dir.join(name));
        // Certificates name the address and FQDN they were minted for; a cluster re-created with
        // another address gets new ones.
        let identity = format!("{fqdn} {address}\n");
        let same_identity = read("identity").is_ok_and(|i| i == identity);
        if let (true, Ok(ca_pem), Ok(cert_pem), Ok(key_pem)) = (
            same_identity,
            read("ca.pem"),
            read("apiserver.pem"),
            read("apiserver-key.pem"),
        ) {
            return Ok(Self {
                dir: dir.to_path_buf(),
                ca_pem,
                cert_pem,
                key_pem,
            });
        }
        let tls = |e: rcgen::Error| LabError::Tls(e.to_string());
        let ca_key = KeyPair::generate().map_err(tls)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("apiwall CA for {fqdn}"));
        let ca_cert = ca.self_signed(&ca_key).map_err(tls)?;
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().map_err(tls)?;
        let mut server = CertificateParams::new(vec![
            fqdn.to_string(),
            "kubernetes".into(),
            "kubernetes.default".into(),
            "localhost".into(),
        ])
        .map_err(tls)?;
        server.subject_alt_names.push(SanType::IpAddress(address));
        server
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
        server
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        let cert = server.signed_by(&key, &issuer).map_err(tls)?;

        std::fs::create_dir_all(dir).map_err(|e| io("creating", e))?;
        let certs = Self {
            dir: dir.to_path_buf(),
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        for (path, text) in [
            (certs.ca_path(), &certs.ca_pem),
            (certs.cert_path(), &certs.cert_pem),
            (dir.join("identity"), &identity),
        ] {
            std::fs::write(&path, text).map_err(|e| io("writing", e))?;
        }
        // The private key is readable by its owner only.
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(certs.key_path())
            .and_then(|mut f| f.write_all(certs.key_pem.as_bytes()))
            .map_err(|e| io("writing", e))?;
        Ok(certs)
    }
}

/// Where a cluster's certificates live under `home`.
pub fn cluster_dir(home: &Path, rg: &str, name: &str) -> PathBuf {
    home.join("clusters").join(format!(
        "{}_{}",
        rg.to_ascii_lowercase(),
        name.to_ascii_lowercase()
    ))
}

/// A kubeconfig for `kubectl` that reaches the cluster at `https://ADDRESS:443` and verifies its
/// certificate against the cluster's CA. The lab's API server accepts any bearer token.
pub fn kubeconfig(cluster: &str, address: IpAddr, ca_pem: &str) -> String {
    use base64::Engine as _;
    let encode = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let server = match address {
        IpAddr::V4(a) => format!("https://{a}:443"),
        IpAddr::V6(a) => format!("https://[{a}]:443"),
    };
    let user = format!("clusterUser_{cluster}");
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": cluster,
        "clusters": [{"name": cluster, "cluster": {
            "server": server,
            "certificate-authority-data": encode(ca_pem.as_bytes()),
        }}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "users": [{"name": user, "user": {"token": "apiwall-lab"}}],
        "preferences": {},
    });
    yaml_serde::to_string(&config).expect("kubeconfig serializes")
}
