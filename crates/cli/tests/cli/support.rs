use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_apiwall");

/// A private store and a way to run the binary against it.
pub struct Env {
    pub home: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the command succeeded; its stdout.
    #[track_caller]
    pub fn ok(self) -> String {
        assert_eq!(self.code, 0, "apiwall failed: {}", self.stderr);
        self.stdout
    }
}

impl Env {
    pub fn new() -> Self {
        Self {
            home: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("APIWALL_HOME", self.home.path())
            .env_remove("APIWALL_LOG");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out: Output = self.command().args(args).output().expect("run apiwall");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs a command that must succeed and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.code, 0, "apiwall {args:?} failed: {}", r.stderr);
        r.stdout
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("JSON output")
    }

    /// Runs the seed procedure script and returns its NAME=value lines as pairs.
    pub fn procedure(&self) -> Vec<(String, String)> {
        let script = repo_root().join("scripts/procedure.sh");
        let out = Command::new("bash")
            .arg(&script)
            .env("APIWALL", BIN)
            .env("APIWALL_HOME", self.home.path())
            .output()
            .expect("run bash");
        assert!(
            out.status.success(),
            "procedure failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect()
    }

    /// Every `show` and `list` output of the whole store, concatenated: two equal dumps mean
    /// two equal states, as an operator would see them.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        let mut add = |args: &[&str]| {
            let r = self.run(args);
            out.push_str(&format!(
                "$ {}\n[{}]\n{}{}",
                args.join(" "),
                r.code,
                r.stdout,
                r.stderr
            ));
            r.stdout
        };
        let names = |json: &str| -> Vec<(String, String)> {
            let v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
            v.as_array()
                .map(|a| {
                    a.iter()
                        .map(|i| {
                            (
                                i["resourceGroup"].as_str().unwrap_or_default().to_string(),
                                i["name"].as_str().unwrap_or_default().to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        add(&["configure"]);
        add(&["feature", "list"]);
        add(&["extension", "list"]);
        for (_, g) in names(&add(&["group", "list"])) {
            add(&["group", "show", "-n", &g]);
        }
        for (kind, sub) in [
            (&["aks"][..], "show"),
            (&["vm"][..], "show"),
            (&["network", "vnet"][..], "show"),
            (&["network", "public-ip"][..], "show"),
            (&["network", "firewall"][..], "show"),
            (&["network", "route-table"][..], "show"),
        ] {
            let list: Vec<&str> = kind.iter().copied().chain(["list"]).collect();
            for (rg, name) in names(&add(&list)) {
                let show: Vec<&str> = kind
                    .iter()
                    .copied()
                    .chain([sub, "-g", &rg, "-n", &name])
                    .collect();
                add(&show);
                match kind.last() {
                    Some(&"vnet") => {
                        for (_, s) in names(&add(&[
                            "network",
                            "vnet",
                            "subnet",
                            "list",
                            "-g",
                            &rg,
                            "--vnet-name",
                            &name,
                        ])) {
                            add(&[
                                "network",
                                "vnet",
                                "subnet",
                                "show",
                                "-g",
                                &rg,
                                "--vnet-name",
                                &name,
                                "-n",
                                &s,
                            ]);
                        }
                    }
                    Some(&"firewall") => {
                        for (_, c) in names(&add(&[
                            "network",
                            "firewall",
                            "ip-config",
                            "list",
                            "-g",
                            &rg,
                            "-f",
                            &name,
                        ])) {
                            add(&[
                                "network",
                                "firewall",
                                "ip-config",
                                "show",
                                "-g",
                                &rg,
                                "-f",
                                &name,
                                "-n",
                                &c,
                            ]);
                        }
                        let colls = add(&[
                            "network",
                            "firewall",
                            "network-rule",
                            "collection",
                            "list",
                            "-g",
                            &rg,
                            "-f",
                            &name,
                        ]);
                        for (_, c) in names(&colls) {
                            add(&[
                                "network",
                                "firewall",
                                "network-rule",
                                "collection",
                                "show",
                                "-g",
                                &rg,
                                "-f",
                                &name,
                                "-n",
                                &c,
                            ]);
                            for (_, r) in names(&add(&[
                                "network",
                                "firewall",
                                "network-rule",
                                "list",
                                "-g",
                                &rg,
                                "-f",
                                &name,
                                "-c",
                                &c,
                            ])) {
                                add(&[
                                    "network",
                                    "firewall",
                                    "network-rule",
                                    "show",
                                    "-g",
                                    &rg,
                                    "-f",
                                    &name,
                                    "-c",
                                    &c,
                                    "-n",
                                    &r,
                                ]);
                            }
                        }
                    }
                    Some(&"route-table") => {
                        for (_, r) in names(&add(&[
                            "network",
                            "route-table",
                            "route",
                            "list",
                            "-g",
                            &rg,
                            "--route-table-name",
                            &name,
                        ])) {
                            add(&[
                                "network",
                                "route-table",
                                "route",
                                "show",
                                "-g",
                                &rg,
                                "--route-table-name",
                                &name,
                                "-n",
                                &r,
                            ]);
                        }
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Compares `actual` with the golden file `name`; `UPDATE_GOLDEN=1` rewrites it instead.
pub fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cli/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing golden file {}; run with UPDATE_GOLDEN=1",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "output differs from golden file {}",
        path.display()
    );
}

/// The procedure's cluster, its node resource group and its route table.
pub const RG: &str = "myResourceGroup";
pub const CLUSTER: &str = "myAKSCluster";
pub const MC: &str = "MC_myResourceGroup_myAKSCluster_westeurope";
pub const ROUTE_TABLE: &str = "aks-agentpool-81643024-routetable";

impl Env {
    /// `aks update --api-server-authorized-ip-ranges RANGES` on the procedure's cluster.
    pub fn set_ranges(&self, ranges: &str, force: bool) -> Run {
        let mut a = vec![
            "aks",
            "update",
            "-g",
            RG,
            "-n",
            CLUSTER,
            "--api-server-authorized-ip-ranges",
            ranges,
        ];
        if force {
            a.push("--force");
        }
        self.run(&a)
    }

    /// `aks create` again on the procedure's cluster, with `--node-count` if given.
    pub fn aks_create(&self, node_count: Option<u32>, force: bool) -> Run {
        let count = node_count.map(|n| n.to_string());
        let mut a = vec!["aks", "create", "-g", RG, "-n", CLUSTER, "-o", "none"];
        if let Some(c) = &count {
            a.extend(["--node-count", c]);
        }
        if force {
            a.push("--force");
        }
        self.run(&a)
    }

    /// Creates the procedure's route sending `api` to the firewall, or deletes it (`None`).
    pub fn firewall_route(&self, api: Option<&str>, force: bool) -> Run {
        let prefix = api.map(|a| format!("{a}/32")).unwrap_or_default();
        let mut a = vec!["network", "route-table", "route"];
        match api {
            Some(_) => a.extend([
                "create",
                "--address-prefix",
                &prefix,
                "--next-hop-ip-address",
                "10.200.0.4",
                "--next-hop-type",
                "VirtualAppliance",
            ]),
            None => a.push("delete"),
        }
        a.extend([
            "-g",
            MC,
            "--route-table-name",
            ROUTE_TABLE,
            "-n",
            "AzureFirewallAPIServer",
        ]);
        if force {
            a.push("--force");
        }
        self.run(&a)
    }
}

/// Tests that load the machine (floods, the lab, timing claims) take turns: run side by side on
/// 2 cores they would measure each other.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The procedure's first node.
pub const NODE: &str = "aks-nodepool1-81643024-vmss000000";

impl Env {
    /// `network watcher trace` of TCP `dest:port` from the procedure's node `vm`.
    pub fn trace_from_node(&self, vm: &str, dest: &str, port: u16) -> Value {
        let port = port.to_string();
        self.json(&[
            "network",
            "watcher",
            "trace",
            "-g",
            MC,
            "--vm",
            vm,
            "--dest-ip",
            dest,
            "--dest-port",
            &port,
        ])
    }

    /// `network watcher trace` of TCP `dest:port` from internet address `source`.
    pub fn trace_from_ip(&self, source: &str, dest: &str, port: u16) -> Value {
        let port = port.to_string();
        self.json(&[
            "network",
            "watcher",
            "trace",
            "--source-ip",
            source,
            "--dest-ip",
            dest,
            "--dest-port",
            &port,
        ])
    }

    /// `network firewall network-rule collection delete` on the procedure's firewall.
    pub fn delete_collection(&self, name: &str, force: bool) -> Run {
        let mut a = vec![
            "network",
            "firewall",
            "network-rule",
            "collection",
            "delete",
            "-g",
            MC,
            "-f",
            "myAzureFirewall",
            "-n",
            name,
        ];
        if force {
            a.push("--force");
        }
        self.run(&a)
    }
}
