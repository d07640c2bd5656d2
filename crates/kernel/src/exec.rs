//! Thin executors: `nft` and `ip`, optionally inside a named network namespace
//! (`ip netns exec NS nft …`, `ip -n NS …`). Blocking; under tokio, call them from
//! `spawn_blocking`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::process::{Command, Stdio};

use apiwall_model::Cidr;
use serde_json::Value;

use crate::KernelError;
use crate::routes::{Family, RoutePlan, RoutingTarget};
use crate::ruleset::{FAMILY, Ruleset, delete_script};

/// Runs `program args…` with `stdin`, returning its stdout; a non-zero exit is an error that
/// carries the command and its stderr.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, KernelError> {
    let command = format!("{program} {}", args.join(" "));
    tracing::debug!(%command, "running");
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| KernelError::Spawn {
            program: program.to_string(),
            source,
        })?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        // A failed write shows up as the command's own error below.
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|source| KernelError::Spawn {
            program: program.to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(KernelError::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `nft args…`, inside `netns` when given.
pub fn nft(netns: Option<&str>, args: &[&str], stdin: Option<&str>) -> Result<String, KernelError> {
    match netns {
        None => run("nft", args, stdin),
        Some(ns) => {
            let mut a = vec!["netns", "exec", ns, "nft"];
            a.extend_from_slice(args);
            run("ip", &a, stdin)
        }
    }
}

/// Runs `ip args…`, inside `netns` when given.
pub fn ip(netns: Option<&str>, args: &[&str], stdin: Option<&str>) -> Result<String, KernelError> {
    match netns {
        None => run("ip", args, stdin),
        Some(ns) => {
            let mut a = vec!["-n", ns];
            a.extend_from_slice(args);
            run("ip", &a, stdin)
        }
    }
}

// === nftables ===

/// Replaces the ruleset's table with it, in one transaction (`nft -f -`).
pub fn apply_ruleset(ruleset: &Ruleset, netns: Option<&str>) -> Result<(), KernelError> {
    nft(netns, &["-f", "-"], Some(&ruleset.to_nft()))?;
    tracing::info!(
        table = ruleset.table(),
        netns = netns.unwrap_or("-"),
        generation = ruleset.generation().map(|g| format!("0x{g:08x}")),
        "nftables table applied"
    );
    Ok(())
}

/// Asks the kernel whether the ruleset would apply, changing nothing (`nft -c -f -`).
pub fn check_ruleset(ruleset: &Ruleset, netns: Option<&str>) -> Result<(), KernelError> {
    check_nft(&ruleset.to_nft(), netns)
}

/// `nft -c -f -` on any nft text.
pub fn check_nft(text: &str, netns: Option<&str>) -> Result<(), KernelError> {
    nft(netns, &["-c", "-f", "-"], Some(text)).map(|_| ())
}

/// Deletes an apiwall table if it exists.
pub fn remove_table(table: &str, netns: Option<&str>) -> Result<(), KernelError> {
    nft(netns, &["-f", "-"], Some(&delete_script(table))).map(|_| ())
}

/// `nft list table inet TABLE`.
pub fn list_table(table: &str, netns: Option<&str>) -> Result<String, KernelError> {
    nft(netns, &["list", "table", FAMILY, table], None)
}

/// A rule's counter, summed over every nft rule with the same comment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleCounter {
    pub packets: u64,
    pub bytes: u64,
    /// How many nft rules carry the comment.
    pub rules: usize,
}

/// The counters of a table's rules, by comment (`collection/rule`, `default deny`, …).
pub fn rule_counters(
    table: &str,
    netns: Option<&str>,
) -> Result<BTreeMap<String, RuleCounter>, KernelError> {
    let command = format!("nft -j list table {FAMILY} {table}");
    let out = nft(netns, &["-j", "list", "table", FAMILY, table], None)?;
    let v: Value = serde_json::from_str(&out).map_err(|e| KernelError::Output {
        command: command.clone(),
        detail: e.to_string(),
    })?;
    let items = v["nftables"].as_array().ok_or(KernelError::Output {
        command,
        detail: "no \"nftables\" array".into(),
    })?;
    let mut out = BTreeMap::new();
    for rule in items.iter().filter_map(|i| i.get("rule")) {
        let Some(comment) = rule["comment"].as_str() else {
            continue;
        };
        let Some(counter) = rule["expr"]
            .as_array()
            .and_then(|e| e.iter().find_map(|x| x.get("counter")))
        else {
            continue;
        };
        let c: &mut RuleCounter = out.entry(comment.to_string()).or_default();
        c.packets += counter["packets"].as_u64().unwrap_or(0);
        c.bytes += counter["bytes"].as_u64().unwrap_or(0);
        c.rules += 1;
    }
    Ok(out)
}

// === routes ===

/// Installs a subnet's policy-routing table, make-before-break: every route is `replace`d (so a
/// prefix present before and after never disappears), then the routes the plan no longer has
/// are deleted, then the `ip rule` selecting the table is added if it is missing.
pub fn apply_routes(plan: &RoutePlan, netns: Option<&str>) -> Result<(), KernelError> {
    let t = &plan.target;
    let table = t.table.to_string();
    ip(netns, &["-batch", "-"], Some(&plan.to_batch()))?;

    let wanted: BTreeSet<Cidr> = plan.routes.iter().map(|r| r.prefix).collect();
    let mut stale = String::new();
    for fam in [Family::Inet, Family::Inet6] {
        for (prefix, kind) in table_routes(netns, fam, &table)? {
            if !wanted.contains(&prefix) {
                stale.push_str(&format!("route del {kind} {prefix} table {table}\n"));
            }
        }
    }
    if !stale.is_empty() {
        ip(netns, &["-batch", "-"], Some(&stale))?;
    }

    for (fam, args) in plan.rules() {
        let fam_s = fam.to_string();
        let present = rules_at(netns, fam, t.rule_priority)?
            .iter()
            .any(|r| r["table"].as_str() == Some(table.as_str()) || r["table"] == t.table);
        if present {
            continue;
        }
        drop_rules_at(netns, fam, t.rule_priority)?;
        let mut a = vec!["-family", fam_s.as_str(), "rule", "add"];
        a.extend(args.split(' '));
        ip(netns, &a, None)?;
    }
    tracing::info!(
        subnet = %t.subnet,
        table = t.table,
        routes = plan.routes.len(),
        netns = netns.unwrap_or("-"),
        "routes applied"
    );
    Ok(())
}

/// Removes a subnet's table and its `ip rule`s. Removing what is not there is not an error.
pub fn remove_routes(target: &RoutingTarget, netns: Option<&str>) -> Result<(), KernelError> {
    let table = target.table.to_string();
    for fam in [Family::Inet, Family::Inet6] {
        drop_rules_at(netns, fam, target.rule_priority)?;
        let fam_s = fam.to_string();
        let routes = table_routes(netns, fam, &table)?;
        if !routes.is_empty() {
            ip(
                netns,
                &["-family", &fam_s, "route", "flush", "table", &table],
                None,
            )?;
        }
    }
    Ok(())
}

/// The `(prefix, type)` of every route in a table.
fn table_routes(
    netns: Option<&str>,
    fam: Family,
    table: &str,
) -> Result<Vec<(Cidr, String)>, KernelError> {
    let fam_s = fam.to_string();
    let args = ["-j", "-family", &fam_s, "route", "show", "table", table];
    let out = ip(netns, &args, None)?;
    let command = format!("ip {}", args.join(" "));
    let list = parse_json_list(&out, &command)?;
    let mut routes = Vec::new();
    for r in list {
        let Some(dst) = r["dst"].as_str() else {
            continue;
        };
        let dst = match (dst, fam) {
            ("default", Family::Inet) => "0.0.0.0/0",
            ("default", Family::Inet6) => "::/0",
            (d, _) => d,
        };
        let prefix: Cidr = dst.parse().map_err(|e| KernelError::Output {
            command: command.clone(),
            detail: format!("route destination {dst}: {e}"),
        })?;
        let kind = r["type"].as_str().unwrap_or("unicast").to_string();
        routes.push((prefix, kind));
    }
    Ok(routes)
}

fn rules_at(netns: Option<&str>, fam: Family, priority: u32) -> Result<Vec<Value>, KernelError> {
    let fam_s = fam.to_string();
    let args = ["-j", "-family", &fam_s, "rule", "show"];
    let out = ip(netns, &args, None)?;
    let list = parse_json_list(&out, &format!("ip {}", args.join(" ")))?;
    Ok(list
        .into_iter()
        .filter(|r| r["priority"].as_u64() == Some(u64::from(priority)))
        .collect())
}

/// Deletes every `ip rule` at `priority` (a bounded number of them).
fn drop_rules_at(netns: Option<&str>, fam: Family, priority: u32) -> Result<(), KernelError> {
    let fam_s = fam.to_string();
    let prio = priority.to_string();
    let n = rules_at(netns, fam, priority)?.len();
    for _ in 0..n.min(64) {
        ip(
            netns,
            &["-family", &fam_s, "rule", "del", "priority", &prio],
            None,
        )?;
    }
    Ok(())
}

fn parse_json_list(out: &str, command: &str) -> Result<Vec<Value>, KernelError> {
    if out.trim().is_empty() {
        return Ok(Vec::new());
    }
    match serde_json::from_str(out) {
        Ok(Value::Array(v)) => Ok(v),
        Ok(_) => Err(KernelError::Output {
            command: command.to_string(),
            detail: "expected a JSON array".into(),
        }),
        Err(e) => Err(KernelError::Output {
            command: command.to_string(),
            detail: e.to_string(),
        }),
    }
}
