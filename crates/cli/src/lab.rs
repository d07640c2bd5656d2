//! `apiwall lab …` and `apiwall aks get-credentials`: the lab's lifecycle, its hosts, and a
//! kubeconfig for the real kubectl. The work is in the lab crate; this only parses and prints.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use apiwall_lab::apiserver::{ClusterView, ViewSource};
use apiwall_lab::{LabError, certs, lab, plan};
use apiwall_model::Key;
use apiwall_service::LocalApi;
use apiwall_store::SqliteStore;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::args::Global;
use crate::commands::{home, open_api};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum LabCmd {
    /// Build the cluster's topology in network namespaces and start its enforcers.
    Up {
        #[command(flatten)]
        cluster: ClusterArg,
        /// Also enforce the authorized ranges as an nftables set on the API host's port 443.
        #[arg(long)]
        kernel_gate: bool,
    },
    /// Remove every namespace, link and process the lab made (safe without a lab).
    Down,
    /// Show the lab's namespaces and processes.
    Status,
    /// List the lab's hosts and their addresses.
    Hosts,
    /// Wait until the lab enforces the store's latest revision (gate and kernel).
    Wait {
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout: u64,
    },
    /// Probe the API server from every node and internet host: admitted or refused, the
    /// address the server saw, and the rule that decided it.
    Matrix,
    /// Run a command inside a host: apiwall lab exec HOST -- CMD…
    Exec {
        host: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Run the kube-apiserver stand-in (the lab starts it inside the API host).
    #[command(hide = true)]
    Apiserver {
        #[command(flatten)]
        cluster: ClusterArg,
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
    /// Follow the store and apply the kernel enforcers (the lab starts it).
    #[command(hide = true)]
    Controller {
        #[command(flatten)]
        cluster: ClusterArg,
        #[arg(long)]
        kernel_gate: bool,
    },
}

#[derive(Debug, Args)]
pub struct ClusterArg {
    /// The cluster's resource group; optional when the store has one cluster.
    #[arg(short = 'g', long = "resource-group")]
    pub resource_group: Option<String>,
    /// The cluster's name; optional when the store has one cluster.
    #[arg(short = 'n', long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct GetCredentials {
    #[arg(short = 'g', long = "resource-group")]
    pub resource_group: String,
    #[arg(short = 'n', long)]
    pub name: String,
    /// Where to write the kubeconfig (default ~/.kube/config).
    #[arg(short = 'f', long)]
    pub file: Option<PathBuf>,
    /// Replace the file if it exists.
    #[arg(long)]
    pub overwrite_existing: bool,
}

fn exit(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("ERROR: {e:#}");
        ExitCode::from(1)
    })
}

/// The cluster named by `-g/-n`, or the only one in the store.
fn cluster(api: &LocalApi<SqliteStore>, c: &ClusterArg) -> anyhow::Result<(String, String)> {
    if let (Some(rg), Some(n)) = (&c.resource_group, &c.name) {
        return Ok((rg.clone(), n.clone()));
    }
    let (world, _) = api.world()?;
    match world.clusters.values().collect::<Vec<_>>().as_slice() {
        [one] => Ok((one.resource_group.clone(), one.name.clone())),
        [] => bail!("the store has no cluster; create one with: apiwall aks create -g RG -n NAME"),
        many => bail!(
            "the store has {} clusters; name one with -g RG -n NAME",
            many.len()
        ),
    }
}

pub fn run(cmd: LabCmd, global: &Global) -> ExitCode {
    exit(run_lab(cmd, global))
}

fn hosts_value(p: &plan::Plan) -> serde_json::Value {
    json!(p
        .hosts
        .iter()
        .map(|h| json!({
            "name": h.name,
            "role": h.role,
            "netns": h.netns,
            "addresses": h.addresses.iter().map(|(_, a)| a.clone()).collect::<Vec<_>>().join(" "),
        }))
        .collect::<Vec<_>>())
}

fn print(v: &serde_json::Value, global: &Global) -> anyhow::Result<ExitCode> {
    output::print(v, global.output, global.query.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(ExitCode::SUCCESS)
}

fn run_lab(cmd: LabCmd, global: &Global) -> anyhow::Result<ExitCode> {
    let home = home()?;
    match cmd {
        LabCmd::Up {
            cluster: c,
            kernel_gate,
        } => {
            let api = open_api()?;
            let (rg, name) = cluster(&api, &c)?;
            let bin = std::env::current_exe().context("locating the apiwall binary")?;
            let (_, plan) = lab::up(&api, &home, &bin, &rg, &name, kernel_gate)?;
            print(&hosts_value(&plan), global)
        }
        LabCmd::Down => {
            let removed = lab::down(&home)?;
            tracing::info!(removed = removed.len(), "lab removed");
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Status => print(&lab::status(&home)?, global),
        LabCmd::Wait { timeout } => {
            let revision = lab::wait_converged(
                &open_api()?,
                &home,
                std::time::Duration::from_millis(timeout),
            )?;
            print(&json!({ "revision": revision }), global)
        }
        LabCmd::Matrix => {
            let rows = lab::matrix(&open_api()?, &home)?;
            print(&serde_json::to_value(rows)?, global)
        }
        LabCmd::Hosts => {
            let state =
                lab::read_state(&home).context("no lab is up; start one with: apiwall lab up")?;
            let (world, _) = open_api()?.world()?;
            let plan = plan::plan(&world, &state.resource_group, &state.cluster)?;
            print(&hosts_value(&plan), global)
        }
        LabCmd::Exec { host, command } => {
            let netns = lab::host_netns(&host)?;
            use std::os::unix::process::CommandExt as _;
            let err = std::process::Command::new("ip")
                .args(["netns", "exec", &netns])
                .args(&command)
                .exec();
            bail!("running {:?} in {host}: {err}", command)
        }
        LabCmd::Apiserver { cluster: c, listen } => {
            let api = open_api()?;
            let (rg, name) = cluster(&api, &c)?;
            run_apiserver(api, &home, &rg, &name, listen)
        }
        LabCmd::Controller {
            cluster: c,
            kernel_gate,
        } => {
            let api = open_api()?;
            let (rg, name) = cluster(&api, &c)?;
            apiwall_lab::controller::follow(&api, &home, &rg, &name, kernel_gate)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The stand-in reads the cluster's nodes and address from the store on each request.
struct StoreView {
    api: LocalApi<SqliteStore>,
    key: Key,
}

impl ViewSource for StoreView {
    fn view(&self) -> Result<ClusterView, LabError> {
        let (world, revision) = self.api.world().map_err(|e| LabError::Io(e.to_string()))?;
        let c = world.clusters.get(&self.key).ok_or_else(|| {
            LabError::Model(format!(
                "cluster {}/{} no longer exists",
                self.key.rg, self.key.name
            ))
        })?;
        Ok(ClusterView {
            api_address: c.api_server_address,
            nodes: world
                .nodes_of(c)
                .map(|vm| (vm.name.clone(), vm.private_ips))
                .collect(),
            revision,
        })
    }
}

fn run_apiserver(
    api: LocalApi<SqliteStore>,
    home: &std::path::Path,
    rg: &str,
    name: &str,
    listen: std::net::SocketAddr,
) -> anyhow::Result<ExitCode> {
    let (world, _) = api.world()?;
    let c = world
        .cluster(rg, name)
        .with_context(|| format!("cluster {rg}/{name} does not exist"))?;
    let certs = certs::ClusterCerts::ensure(
        &certs::cluster_dir(home, rg, name),
        &c.fqdn,
        c.api_server_address,
    )?;
    let tls = apiwall_lab::apiserver::tls_config(&certs.cert_pem, &certs.key_pem)?;
    let source = Arc::new(StoreView {
        api,
        key: Key::new(rg, name),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        tracing::info!(%listen, "kube-apiserver stand-in listening");
        apiwall_lab::apiserver::serve(listener, tls, source).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `aks get-credentials`: a kubeconfig that trusts the cluster's CA.
pub fn get_credentials(a: GetCredentials) -> ExitCode {
    let api = match open_api() {
        Ok(api) => api,
        Err(e) => return exit(Err(e)),
    };
    // The cluster is read through the service, so a missing one is az's not-found (exit 3).
    let request =
        apiwall_service::Request::AksShow(apiwall_service::Named::new(&a.resource_group, &a.name));
    if let Err(e) = apiwall_service::Api::call(&api, request, false) {
        eprintln!("ERROR: {e}");
        return ExitCode::from(crate::commands::exit_code(&e));
    }
    exit((|| {
        let home = home()?;
        let (world, _) = api.world()?;
        let c = world
            .cluster(&a.resource_group, &a.name)
            .context("the cluster vanished")?;
        let certs = certs::ClusterCerts::ensure(
            &certs::cluster_dir(&home, &a.resource_group, &a.name),
            &c.fqdn,
            c.api_server_address,
        )?;
        let path = match a.file {
            Some(f) => f,
            None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
                .join(".kube/config"),
        };
        let text = certs::kubeconfig(&c.name, c.api_server_address, &certs.ca_pem);
        if path.to_str() == Some("-") {
            print!("{text}");
            return Ok(ExitCode::SUCCESS);
        }
        // apiwall writes a whole kubeconfig; it does not merge into an existing one.
        if path.exists() && !a.overwrite_existing {
            bail!(
                "--file '{}': the file exists; pass --overwrite-existing to replace it, or another --file",
                path.display()
            );
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "Wrote \"{}\" as current context to {}",
            c.name,
            path.display()
        );
        Ok(ExitCode::SUCCESS)
    })())
}
