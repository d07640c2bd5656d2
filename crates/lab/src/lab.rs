//! `lab up | down | status | exec | hosts`: the lab's lifecycle. Its state (cluster, plan,
//! processes) is a JSON file under `$APIWALL_HOME/lab/`; `down` removes every namespace, link
//! and process the lab made, and is safe without a lab.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apiwall_service::LocalApi;
use apiwall_store::{SqliteStore, Store};
use rustix::process::{Pid, Signal, kill_process, kill_process_group};
use serde::{Deserialize, Serialize};

use crate::LabError;
use crate::host::{in_netns, namespaces, run};
use crate::plan::{self, GATE_ADMIN, NETNS_PREFIX, Plan, STAND_IN};
use crate::topology::TEMP_LINK_PREFIX;

/// How long `up` waits for the lab's processes to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Process {
    pub name: String,
    pub pid: u32,
    pub netns: Option<String>,
    pub log: PathBuf,
}

/// What `up` made.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabState {
    pub resource_group: String,
    pub cluster: String,
    pub api_address: std::net::IpAddr,
    /// Whether the authorized ranges are also enforced in the kernel at the API host.
    #[serde(default)]
    pub kernel_gate: bool,
    pub processes: Vec<Process>,
}

pub fn lab_dir(home: &Path) -> PathBuf {
    home.join("lab")
}

fn state_path(home: &Path) -> PathBuf {
    lab_dir(home).join("state.json")
}

pub fn read_state(home: &Path) -> Option<LabState> {
    let text = std::fs::read_to_string(state_path(home)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Signals the process group a lab process leads (it was started as a group leader, so its
/// children, such as `ip netns exec`'s program, get the signal too). Only a live apiwall process.
fn signal_group(pid: u32, sig: Signal) {
    if !alive(pid) {
        return;
    }
    if let Some(pid) = Pid::from_raw(pid as i32) {
        let _ = kill_process_group(pid, sig);
    }
}

fn signal(pid: i32, sig: Signal) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = kill_process(pid, sig);
    }
}

/// Whether `pid` is a live (not zombie) apiwall process: a pid from a state file can outlive a
/// reboot and name an unrelated process, which must never be signalled.
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let running = stat
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'));
    let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg.ends_with(b"apiwall")));
    running && ours
}

/// Starts `apiwall ARGS` in the background, inside `netns` if given, detached from this process.
fn spawn(
    bin: &Path,
    home: &Path,
    netns: Option<&str>,
    name: &str,
    args: &[&str],
) -> Result<Process, LabError> {
    let logs = lab_dir(home).join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| LabError::Io(format!("{}: {e}", logs.display())))?;
    let log = logs.join(format!("{name}.log"));
    let file =
        std::fs::File::create(&log).map_err(|e| LabError::Io(format!("{}: {e}", log.display())))?;
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    use std::os::unix::process::CommandExt as _;
    let child = cmd
        .args(args)
        .env("APIWALL_HOME", home)
        .env("APIWALL_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().map_err(|e| LabError::Io(e.to_string()))?)
        .stderr(file)
        .process_group(0)
        .spawn()
        .map_err(|e| LabError::Io(format!("starting {name}: {e}")))?;
    Ok(Process {
        name: name.to_string(),
        pid: child.id(),
        netns: netns.map(str::to_string),
        log,
    })
}

/// Polls `probe` until it holds or the deadline passes.
fn wait_for(what: &str, mut probe: impl FnMut() -> bool) -> Result<(), LabError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if probe() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(LabError::Io(format!(
        "{what} was not ready within {READY_TIMEOUT:?}; see the logs under lab/logs"
    )))
}

/// `GET path` over plain HTTP from inside `netns`: the body of a 200 answer.
fn http_get(netns: &str, addr: &str, path: &str) -> Option<String> {
    let addr: SocketAddr = addr.parse().expect("constant address");
    let path = path.to_string();
    in_netns(netns, move || -> Option<String> {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.lines()
            .next()?
            .contains(" 200 ")
            .then(|| body.to_string())
    })
    .ok()
    .flatten()
}

fn http_ok(netns: &str, addr: &str, path: &str) -> bool {
    http_get(netns, addr, path).is_some()
}

fn applied_path(home: &Path) -> PathBuf {
    lab_dir(home).join("applied-revision")
}

/// Records the store revision the kernel enforcers have applied.
pub fn record_applied(home: &Path, revision: u64) {
    let _ = std::fs::write(applied_path(home), revision.to_string());
}

/// The store revision the gate has in force, from its `/metrics`.
fn gate_revision(api_netns: &str) -> Option<u64> {
    let metrics = http_get(api_netns, GATE_ADMIN, "/metrics")?;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("apiwall_gate_policy_revision "))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until the gate and the kernel enforcers both enforce the store's current revision.
pub fn wait_converged(
    api: &LocalApi<SqliteStore>,
    home: &Path,
    timeout: Duration,
) -> Result<u64, LabError> {
    let target = api
        .store()
        .revision()
        .map_err(|e| LabError::Io(e.to_string()))?;
    let api_netns = format!("{NETNS_PREFIX}apiserver");
    let deadline = Instant::now() + timeout;
    loop {
        let kernel = std::fs::read_to_string(applied_path(home))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        let gate = gate_revision(&api_netns);
        if kernel.is_some_and(|k| k >= target) && gate.is_some_and(|g| g >= target) {
            return Ok(target);
        }
        if Instant::now() > deadline {
            return Err(LabError::Io(format!(
                "enforcement did not reach revision {target} within {timeout:?} (kernel at {kernel:?}, gate at {gate:?})"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn tcp_ok(netns: &str, addr: SocketAddr) -> bool {
    in_netns(netns, move || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
    })
    .unwrap_or(false)
}

/// Builds the lab for cluster `rg/name` and starts its processes. If a lab is already up for the
/// same cluster, checks it and starts what is missing.
pub fn up(
    api: &LocalApi<SqliteStore>,
    home: &Path,
    bin: &Path,
    rg: &str,
    name: &str,
    kernel_gate: bool,
) -> Result<(LabState, Plan), LabError> {
    if let Some(s) = read_state(home)
        && !(s.resource_group.eq_ignore_ascii_case(rg) && s.cluster.eq_ignore_ascii_case(name))
    {
        return Err(LabError::Model(format!(
            "a lab for cluster {}/{} is up; run 'apiwall lab down' first",
            s.resource_group, s.cluster
        )));
    }
    if read_state(home).is_none() && namespaces()?.iter().any(|n| n.starts_with(NETNS_PREFIX)) {
        return Err(LabError::Model(format!(
            "a lab that is not this store's is up (network namespaces {NETNS_PREFIX}*; one lab per machine); take it down with 'apiwall lab down' under its APIWALL_HOME, or here to remove it"
        )));
    }
    let (world, _) = api.world().map_err(|e| LabError::Io(e.to_string()))?;
    let plan = plan::plan(&world, rg, name)?;
    let cluster = world.cluster(rg, name).expect("planned");
    crate::certs::ClusterCerts::ensure(
        &crate::certs::cluster_dir(home, rg, name),
        &cluster.fqdn,
        cluster.api_server_address,
    )?;
    crate::topology::build(&plan)?;
    crate::controller::apply(&world, &plan, kernel_gate, &mut Default::default())?;

    let mut state = read_state(home).unwrap_or(LabState {
        resource_group: cluster.resource_group.clone(),
        cluster: cluster.name.clone(),
        api_address: cluster.api_server_address,
        kernel_gate,
        processes: vec![],
    });
    if state.kernel_gate != kernel_gate {
        // The controller enforces the choice it was started with: restart it.
        state.kernel_gate = kernel_gate;
        if let Some(p) = state.processes.iter().find(|p| p.name == "controller") {
            signal_group(p.pid, Signal::TERM);
            // Two controllers with different choices must never both apply a revision.
            let pid = p.pid;
            wait_for("the old controller to stop", || !alive(pid))?;
        }
        state.processes.retain(|p| p.name != "controller");
    }
    state.processes.retain(|p| alive(p.pid));
    let api_ns = plan.host("apiserver").expect("planned").netns.clone();
    let listen = SocketAddr::new(cluster.api_server_address, 443).to_string();
    let wanted: [(&str, Option<&str>, Vec<&str>); 3] = [
        (
            "apiserver",
            Some(&api_ns),
            vec![
                "lab",
                "apiserver",
                "-g",
                rg,
                "-n",
                name,
                "--listen",
                STAND_IN,
            ],
        ),
        (
            "gate",
            Some(&api_ns),
            vec![
                "gate",
                "run",
                "-g",
                rg,
                "-n",
                name,
                "--listen",
                &listen,
                "--upstream",
                STAND_IN,
                "--admin",
                GATE_ADMIN,
            ],
        ),
        (
            "controller",
            None,
            [
                &["lab", "controller", "-g", rg, "-n", name][..],
                if kernel_gate {
                    &["--kernel-gate"][..]
                } else {
                    &[][..]
                },
            ]
            .concat(),
        ),
    ];
    for (pname, netns, args) in wanted {
        if !state.processes.iter().any(|p| p.name == pname) {
            state.processes.push(spawn(bin, home, netns, pname, &args)?);
        }
    }
    std::fs::create_dir_all(lab_dir(home)).map_err(|e| LabError::Io(e.to_string()))?;
    std::fs::write(
        state_path(home),
        serde_json::to_string_pretty(&state).expect("serializes"),
    )
    .map_err(|e| LabError::Io(e.to_string()))?;

    wait_for("the kube-apiserver stand-in", || {
        tcp_ok(&api_ns, STAND_IN.parse().expect("constant"))
    })?;
    wait_for("the gate", || http_ok(&api_ns, GATE_ADMIN, "/readyz"))?;
    Ok((state, plan))
}

/// Stops the lab's processes and removes every namespace and link it made. Safe without a lab.
pub fn down(home: &Path) -> Result<Vec<String>, LabError> {
    let mut removed = Vec::new();
    if let Some(state) = read_state(home) {
        for p in &state.processes {
            signal_group(p.pid, Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while state.processes.iter().any(|p| alive(p.pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for p in state.processes.iter().filter(|p| alive(p.pid)) {
            signal_group(p.pid, Signal::KILL);
        }
    }
    for ns in namespaces()?
        .into_iter()
        .filter(|n| n.starts_with(NETNS_PREFIX))
    {
        // Anything still running inside goes with its namespace.
        if let Ok(pids) = run("ip", &["netns", "pids", &ns], None) {
            for pid in pids.split_whitespace().filter_map(|p| p.parse().ok()) {
                signal(pid, Signal::KILL);
            }
        }
        run("ip", &["netns", "del", &ns], None)?;
        removed.push(ns);
    }
    // Temporary veth ends left in the root namespace by an interrupted `up`.
    let links = run("ip", &["-o", "link", "show"], None)?;
    for l in links.lines() {
        if let Some(dev) = l
            .split(": ")
            .nth(1)
            .map(|d| d.split('@').next().unwrap_or(d))
            && dev.starts_with(TEMP_LINK_PREFIX)
        {
            let _ = run("ip", &["link", "del", dev], None);
            removed.push(dev.to_string());
        }
    }
    let _ = std::fs::remove_file(state_path(home));
    Ok(removed)
}

/// The namespaces of the lab and its processes, alive or not.
pub fn status(home: &Path) -> Result<serde_json::Value, LabError> {
    let netns: Vec<String> = namespaces()?
        .into_iter()
        .filter(|n| n.starts_with(NETNS_PREFIX))
        .collect();
    let state = read_state(home);
    let processes: Vec<serde_json::Value> = state
        .as_ref()
        .map(|s| {
            s.processes
                .iter()
                .map(|p| serde_json::json!({"name": p.name, "pid": p.pid, "alive": alive(p.pid), "log": p.log}))
                .collect()
        })
        .unwrap_or_default();
    Ok(serde_json::json!({
        "up": state.is_some() && !netns.is_empty(),
        "cluster": state.as_ref().map(|s| format!("{}/{}", s.resource_group, s.cluster)),
        "apiServerAddress": state.as_ref().map(|s| s.api_address),
        "namespaces": netns,
        "processes": processes,
    }))
}

/// The namespace of host `name`, if the lab has it.
pub fn host_netns(name: &str) -> Result<String, LabError> {
    let ns = format!("{NETNS_PREFIX}{name}");
    if namespaces()?.contains(&ns) {
        Ok(ns)
    } else {
        Err(LabError::Model(format!(
            "the lab has no host '{name}'; 'apiwall lab hosts' lists them"
        )))
    }
}

// === access matrix ===

/// One host against the API server: what happened on the wire, and what `trace` predicts.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MatrixRow {
    pub host: String,
    pub address: String,
    /// `admitted` or `refused`, on the wire.
    pub result: String,
    /// The source address the gate saw, from its access log.
    pub seen_as: Option<std::net::IpAddr>,
    /// What decided it: the firewall rule and the authorized range, per `trace`.
    pub rule: String,
    /// `trace`'s verdict; `agrees` says whether the wire matched it.
    pub trace: String,
    pub agrees: bool,
}

/// The `peer` address of the first access-log event after byte `offset` of the gate's log.
fn seen_after(log: &Path, offset: u64) -> Option<std::net::IpAddr> {
    let text = std::fs::read(log).ok()?;
    let tail = String::from_utf8_lossy(text.get(offset as usize..)?).into_owned();
    tail.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| matches!(v["event"].as_str(), Some("closed" | "denied" | "revoked")))
        .find_map(|v| v["peer"].as_str()?.parse::<SocketAddr>().ok())
        .map(|a| a.ip())
}

fn describe(trace: &apiwall_policy::Trace) -> String {
    use apiwall_policy::{AccessDecision, Component};
    let mut parts = Vec::new();
    for h in &trace.hops {
        match h.component {
            Component::Firewall => parts.push(match (&h.collection, &h.rule) {
                (Some(c), Some(r)) => format!("{c}/{r}"),
                _ => format!(
                    "{}: {:?}",
                    h.name.as_deref().unwrap_or("firewall"),
                    h.decision
                ),
            }),
            Component::ApiServer => parts.push(match h.access {
                Some(AccessDecision::Range { range }) => format!("range {range}"),
                Some(AccessDecision::LoadBalancerOutbound { ip }) => format!("LB outbound IP {ip}"),
                Some(AccessDecision::Unrestricted) => "no restriction".into(),
                Some(AccessDecision::NoMatch) | None => "not in the authorized ranges".into(),
            }),
            _ if h.decision == apiwall_policy::HopDecision::Deny => parts.push(h.detail.clone()),
            _ => {}
        }
    }
    parts.join(", ")
}

/// Probes the API server from every node and internet host of the lab, one at a time.
pub fn matrix(api: &LocalApi<SqliteStore>, home: &Path) -> Result<Vec<MatrixRow>, LabError> {
    use apiwall_policy::{Flow, Policy};
    let state = read_state(home)
        .ok_or_else(|| LabError::Model("no lab is up; start one with: apiwall lab up".into()))?;
    let (world, _) = api.world().map_err(|e| LabError::Io(e.to_string()))?;
    let plan = plan::plan(&world, &state.resource_group, &state.cluster)?;
    let cluster = world
        .cluster(&state.resource_group, &state.cluster)
        .ok_or_else(|| {
            LabError::Model(format!(
                "cluster {}/{} no longer exists",
                state.resource_group, state.cluster
            ))
        })?;
    let certs = crate::certs::ClusterCerts::ensure(
        &crate::certs::cluster_dir(home, &state.resource_group, &state.cluster),
        &cluster.fqdn,
        cluster.api_server_address,
    )?;
    let log = state
        .processes
        .iter()
        .find(|p| p.name == "gate")
        .map(|p| p.log.clone());
    wait_converged(api, home, Duration::from_secs(5))?;
    let policy = Policy::compile(&world);
    let mut rows = Vec::new();
    for h in plan
        .hosts
        .iter()
        .filter(|h| matches!(h.role, plan::Role::Node | plan::Role::InternetHost))
    {
        let address = h
            .addresses
            .first()
            .map(|(_, a)| a.split('/').next().unwrap_or(a).to_string())
            .unwrap_or_default();
        let flow = match h.role {
            plan::Role::Node => {
                let vm = world
                    .vms
                    .values()
                    .find(|v| v.name == h.name)
                    .ok_or_else(|| LabError::Model(format!("no VM {}", h.name)))?;
                Flow::from_vm(
                    &vm.id,
                    cluster.api_server_address,
                    443,
                    apiwall_model::Protocol::Tcp,
                )
            }
            _ => Flow::from_ip(
                address
                    .parse()
                    .map_err(|_| LabError::Model(format!("bad address {address}")))?,
                cluster.api_server_address,
                443,
                apiwall_model::Protocol::Tcp,
            ),
        };
        let trace = policy.trace(&flow);
        let offset = log
            .as_ref()
            .and_then(|l| std::fs::metadata(l).ok())
            .map_or(0, |m| m.len());
        let outcome = crate::probe::probe(&h.netns, cluster.api_server_address, &certs.ca_pem)?;
        // The gate logs a connection when it ends; give the line a moment to land.
        let mut seen = None;
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Some(l) = &log {
            seen = seen_after(l, offset);
            if seen.is_some() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        rows.push(MatrixRow {
            host: h.name.clone(),
            address,
            result: if outcome.admitted {
                "admitted"
            } else {
                "refused"
            }
            .into(),
            seen_as: seen,
            rule: describe(&trace),
            trace: format!("{:?}", trace.verdict),
            agrees: outcome.admitted == trace.allowed(),
        });
    }
    Ok(rows)
}
