//! The lab firewall benchmark's helper (`bench/lab-iperf.sh`): loads a benchmark rule set into a
//! lab firewall, and measures connection setup through it.
//!
//! ```text
//! iperf_rules apply MODE [--firewall NAME] [--netns NS] [--table T] [--rules N] [--src CIDR]
//!                         [--dst IP] [--ports LIST]
//!     MODE: none | allow-all | sets | naive. Reads the firewall from the store at $APIWALL_HOME,
//!     replaces its rule collections with the benchmark's, renders them with
//!     `apiwall_kernel::render` and applies the table with `apply_ruleset` (one `nft -f`), named
//!     `--table` (default: the firewall's own, `apiwall_<firewall>`).
//!     Prints `nft_rules=… sets=… chains=… generation=… apply_ms=…` (sets: named sets and maps).
//! iperf_rules serve ADDR            accept and close at once, forever (run it in the API host)
//! iperf_rules connect ADDR SECONDS  sequential TCP connections for SECONDS (run it in a node);
//!                                   prints `connects=… per_s=… p50_us=… p99_us=…`
//! ```
//!
//! The rule set (`sets` and `naive` render the same rules): N rules in collections of 100,
//! alternating Deny and Allow by collection. Every rule but the last has two sources (the node
//! subnet `--src` and a /24), two destinations (/32s in 198.18.0.0/15, never `--dst`) and three
//! ports (443, 8000-8080 and one port ≥ 10000, never in `--ports`); the last rule, in the last
//! collection, is the one that allows `--src` → `--dst` on `--ports`, in the same shape. So the
//! benchmark's flow is decided by the last rule, after every other rule has matched its source and
//! failed on its destination: the worst case for a first-match firewall scanned linearly. With
//! `sets`, the destination map sends the flow straight to the last rule's bucket chain; naively,
//! each rule expands to 2 × 2 × 3 = 12 nft rules (× 2 with `classify_reply`), scanned in order.
//!
//! `none` is the firewall's table without its filter: only the SNAT chain (which the lab's return
//! path needs: the internet has no route back to the node subnet). `allow-all` is the procedure's
//! own single rule (`TCP * → * : *`) with the full stateful table.

use std::error::Error;
use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use apiwall_kernel::{FirewallSpec, Mode, RenderOptions, apply_ruleset, render};
use apiwall_model::resources::Action;
use apiwall_model::{NetworkRuleCollection, Protocol};
use apiwall_policy::fixture::{collection, network_rule};
use apiwall_service::LocalApi;
use apiwall_store::SqliteStore;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("apply") => apply(&args[1..]),
        Some("serve") => serve(args.get(1).ok_or("serve ADDR")?.parse()?),
        Some("connect") => connect(
            args.get(1).ok_or("connect ADDR SECONDS")?.parse()?,
            args.get(2).ok_or("connect ADDR SECONDS")?.parse()?,
        ),
        _ => Err(
            "usage: iperf_rules apply MODE [options] | serve ADDR | connect ADDR SECONDS".into(),
        ),
    }
}

struct Options {
    firewall: String,
    netns: Option<String>,
    table: Option<String>,
    rules: usize,
    src: String,
    dst: String,
    ports: Vec<String>,
}

fn apply(args: &[String]) -> Result<()> {
    let mode = args.first().ok_or("apply MODE")?.as_str();
    let mut o = Options {
        firewall: "myAzureFirewall".into(),
        netns: None,
        table: None,
        rules: 10_000,
        src: "10.240.0.0/16".into(),
        dst: "198.51.100.1".into(),
        ports: vec!["5201".into(), "5202".into()],
    };
    let mut it = args[1..].iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .clone();
        match flag.as_str() {
            "--firewall" => o.firewall = value,
            "--netns" => o.netns = Some(value),
            "--table" => o.table = Some(value),
            "--rules" => o.rules = value.parse()?,
            "--src" => o.src = value,
            "--dst" => o.dst = value,
            "--ports" => o.ports = value.split(',').map(str::to_string).collect(),
            _ => return Err(format!("unknown option {flag}").into()),
        }
    }
    let netns = o
        .netns
        .clone()
        .unwrap_or_else(|| format!("awlab-{}", o.firewall));

    let home = std::env::var_os("APIWALL_HOME").ok_or("APIWALL_HOME is not set")?;
    let store = SqliteStore::open(&std::path::Path::new(&home).join("apiwall.db"))?;
    let (world, revision) = LocalApi::new(store).world()?;
    let fw = world
        .firewalls
        .values()
        .find(|f| f.name.eq_ignore_ascii_case(&o.firewall))
        .ok_or_else(|| format!("no firewall {} in the store", o.firewall))?;
    let mut spec = FirewallSpec::from_world(&world, fw);

    let (collections, render_mode) = match mode {
        "none" | "allow-all" => (allow_all(&fw.id), Mode::Sets),
        "sets" => (benchmark_rules(&fw.id, &o), Mode::Sets),
        "naive" => (benchmark_rules(&fw.id, &o), Mode::Naive),
        _ => return Err(format!("unknown mode {mode}: none | allow-all | sets | naive").into()),
    };
    spec.collections = collections;
    if let Some(t) = &o.table {
        spec.table.clone_from(t);
    }
    let ruleset = render(
        &spec,
        &RenderOptions {
            mode: render_mode,
            ..RenderOptions::default()
        },
    );
    let started = Instant::now();
    if mode == "none" {
        // The same table with only its SNAT chain: forwarding with conntrack and NAT, no filter.
        let def = ruleset.definition();
        let start = def
            .find("\tchain postrouting {")
            .ok_or("the rendered table has no postrouting chain")?;
        let len = def[start..]
            .find("\n\t}\n")
            .ok_or("unterminated postrouting chain")?;
        let table = ruleset.table();
        let text = format!(
            "table inet {table}\ndelete table inet {table}\ntable inet {table} {{\n{}\n\t}}\n}}\n",
            &def[start..start + len]
        );
        apiwall_lab::host::nft_apply(&netns, &text)?;
        println!(
            "mode=none revision={revision} firewall_rules=0 nft_rules=0 sets=0 chains=1 generation=- apply_ms={}",
            started.elapsed().as_millis()
        );
        return Ok(());
    }
    apply_ruleset(&ruleset, Some(&netns))?;
    let apply_ms = started.elapsed().as_millis();
    // `render` counts the nft rules of its classify chains; the naive table mirrors them in
    // `classify_reply`.
    let counted = ruleset
        .to_nft()
        .lines()
        .next()
        .and_then(|h| h.split("nft rules ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or("no rule count in the header")?;
    let nft_rules = if render_mode == Mode::Naive {
        2 * counted
    } else {
        counted
    };
    let def = ruleset.definition();
    let sets = def.matches("\tset ").count() + def.matches("\tmap ").count();
    let chains = def.matches("\tchain ").count();
    println!(
        "mode={mode} revision={revision} firewall_rules={} nft_rules={nft_rules} sets={sets} chains={chains} generation=0x{:08x} apply_ms={apply_ms}",
        spec.collections
            .iter()
            .map(|c| c.rules.len())
            .sum::<usize>(),
        ruleset.generation().unwrap_or(0),
    );
    Ok(())
}

/// The procedure's own rule: TCP from anywhere to anywhere.
fn allow_all(fw_id: &str) -> Vec<NetworkRuleCollection> {
    vec![collection(
        fw_id,
        "myAzureFirewallCollection",
        200,
        Action::Allow,
        vec![network_rule(
            "AllowTCPOutbound",
            &[Protocol::Tcp],
            &["*"],
            &["*"],
            &["*"],
        )],
    )]
}

/// `o.rules` rules whose last one alone matches the benchmark's flow (see the module docs).
fn benchmark_rules(fw_id: &str, o: &Options) -> Vec<NetworkRuleCollection> {
    let fillers = o.rules.saturating_sub(1);
    let mut cols = Vec::new();
    for c in 0..fillers.div_ceil(100) {
        let rules = (c * 100..((c + 1) * 100).min(fillers))
            .map(|i| {
                let (hi, lo) = (i / 256, i % 256);
                let second_src = format!("10.241.{lo}.0/24");
                let d1 = format!("198.18.{hi}.{lo}");
                let d2 = format!("198.19.{hi}.{lo}");
                let own_port = format!("{}", 10_000 + i);
                network_rule(
                    &format!("rule-{i}"),
                    &[Protocol::Tcp],
                    &[&o.src, &second_src],
                    &[&d1, &d2],
                    &["443", "8000-8080", &own_port],
                )
            })
            .collect();
        let action = if c % 2 == 0 {
            Action::Deny
        } else {
            Action::Allow
        };
        cols.push(collection(
            fw_id,
            &format!("bench-{c}"),
            100 + c as u32,
            action,
            rules,
        ));
    }
    let ports: Vec<&str> = ["443"]
        .into_iter()
        .chain(o.ports.iter().map(String::as_str))
        .collect();
    cols.push(collection(
        fw_id,
        "bench-last",
        60_000,
        Action::Allow,
        vec![network_rule(
            "allow-benchmark-flow",
            &[Protocol::Tcp],
            &[&o.src, "10.241.255.0/24"],
            &[&o.dst, "198.19.255.255"],
            &ports,
        )],
    ));
    cols
}

/// Accepts connections and closes each at once (the client reads to EOF).
fn serve(addr: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(addr)?;
    for conn in listener.incoming() {
        drop(conn);
    }
    Ok(())
}

/// Sequential connections: connect, read to EOF (the server closes first, so the client's port is
/// free again at once), close. Each connection's SYN is the packet the firewall classifies.
fn connect(addr: SocketAddr, seconds: f64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut failures = 0u64;
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        let t = Instant::now();
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(mut s) => {
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                latencies.push(t.elapsed());
            }
            Err(_) => failures += 1,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let q = |p: f64| -> u128 {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0, |d| d.as_micros())
    };
    println!(
        "connects={} failures={failures} seconds={elapsed:.2} per_s={:.0} p50_us={} p99_us={}",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        q(0.5),
        q(0.99)
    );
    Ok(())
}
