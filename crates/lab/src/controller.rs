//! The lab's kernel enforcers: firewall rulesets, the fabric's route tables and its load-balancer
//! SNAT, compiled from one store revision and applied. `follow` re-applies on every new revision,
//! so CLI changes take effect live. It also runs a reader of each firewall's decision log
//! ([`crate::fwlog`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use apiwall_kernel::{
    ApiGate, FirewallSpec, RenderOptions, RoutingTarget, Selector, apply_routes, apply_ruleset,
    remove_table, render, render_api_gate, render_routes,
};
use apiwall_model::World;
use apiwall_policy::Policy;
use apiwall_service::LocalApi;
use apiwall_store::{SqliteStore, Store};

use crate::LabError;
use crate::host::nft_apply;
use crate::plan::{self, Plan};

/// How often the controller asks the store for its revision.
const POLL: Duration = Duration::from_millis(25);
/// How soon a revision that failed to apply is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// Where a subnet's routes go on the fabric: its own table, selected by its bridge.
pub fn target(leg: &plan::SubnetLeg) -> RoutingTarget {
    RoutingTarget {
        subnet: leg.name.clone(),
        table: leg.table,
        selector: Selector::Iif(leg.bridge.clone()),
        rule_priority: leg.rule_priority,
    }
}

/// What was applied last to each kernel object, so an unchanged one is not applied again: a
/// 10,000-rule firewall table takes seconds to load, and a change to a route or to the ranges
/// must not wait for it.
#[derive(Debug, Default)]
pub struct Applied(HashMap<String, String>);

impl Applied {
    /// Runs `apply` unless `key` last got exactly `text`; a failed apply is not recorded.
    fn once(
        &mut self,
        key: String,
        text: String,
        apply: impl FnOnce() -> Result<(), LabError>,
    ) -> Result<(), LabError> {
        if self.0.get(&key) == Some(&text) {
            return Ok(());
        }
        apply()?;
        self.0.insert(key, text);
        Ok(())
    }
}

/// Applies the kernel state of `world` to the lab's hosts, skipping what `applied` shows is in
/// force already. Each kernel object is applied on its own: one that fails (and is retried on the
/// next call) does not hold back the others. With `kernel_gate`, the cluster's authorized ranges
/// are also enforced as an nftables set on the API host's port 443, in front of the userspace gate.
pub fn apply(
    world: &World,
    plan: &Plan,
    kernel_gate: bool,
    applied: &mut Applied,
) -> Result<(), LabError> {
    let mut failed: Vec<String> = Vec::new();
    let mut note = |r: Result<(), LabError>| {
        if let Err(e) = r {
            failed.push(e.to_string());
        }
    };
    for fw in world.firewalls.values() {
        let Some(host) = plan.firewalls.get(&fw.name).and_then(|h| plan.host(h)) else {
            continue;
        };
        let ruleset = render(
            &FirewallSpec::from_world(world, fw),
            &RenderOptions::default(),
        );
        let ns = &host.netns;
        note(
            applied.once(format!("firewall {ns}"), ruleset.to_nft(), || {
                Ok(apply_ruleset(&ruleset, Some(ns))?)
            }),
        );
    }
    let policy = Policy::compile(world);
    let fabric = plan
        .host("fabric")
        .ok_or_else(|| LabError::Model("the plan has no fabric".into()))?;
    for leg in &plan.subnets {
        let Some(routes) = policy.subnet_routes(&leg.id) else {
            continue;
        };
        let routes = render_routes(routes, &target(leg));
        let ns = &fabric.netns;
        note(applied.once(
            format!("routes {ns} {}", leg.table),
            routes.to_batch(),
            || Ok(apply_routes(&routes, Some(ns))?),
        ));
    }
    let api_host = plan
        .host("apiserver")
        .ok_or_else(|| LabError::Model("the plan has no API host".into()))?;
    if let Some(cluster) = world.cluster(&plan.resource_group, &plan.cluster) {
        let gate = ApiGate::for_cluster(world, cluster);
        let ns = &api_host.netns;
        note(if kernel_gate {
            let ruleset = render_api_gate(&gate);
            applied.once(format!("gate {ns}"), ruleset.to_nft(), || {
                Ok(apply_ruleset(&ruleset, Some(ns))?)
            })
        } else {
            applied.once(format!("gate {ns}"), String::new(), || {
                Ok(remove_table(&gate.table, Some(ns))?)
            })
        });
    }
    let snat = plan::render_lb_snat(plan.lb_snat.as_ref());
    note(
        applied.once(format!("lb-snat {}", fabric.netns), snat.clone(), || {
            nft_apply(&fabric.netns, &snat)
        }),
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(LabError::Io(failed.join("; ")))
    }
}

/// Follows the store: on every new revision, re-plans, removes the hosts and subnet legs the
/// model no longer has, builds the new ones, and re-applies. A revision that fails to apply is
/// logged and retried every `RETRY`; what was applied before stays in force meanwhile. Returns
/// only if the store fails.
pub fn follow(
    api: &LocalApi<SqliteStore>,
    home: &std::path::Path,
    rg: &str,
    name: &str,
    kernel_gate: bool,
) -> Result<(), LabError> {
    let mut applied: Option<u64> = None;
    let mut retry_at: Option<Instant> = None;
    let mut last_plan: Option<Plan> = None;
    let mut in_force = Applied::default();
    let mut readers = Readers::default();
    loop {
        let revision = api
            .store()
            .revision()
            .map_err(|e| LabError::Io(e.to_string()))?;
        let due = applied != Some(revision) || retry_at.is_some_and(|t| Instant::now() >= t);
        if due {
            let started = Instant::now();
            let mut step = || -> Result<u64, LabError> {
                let (world, rev) = api.world().map_err(|e| LabError::Io(e.to_string()))?;
                let plan = plan::plan(&world, rg, name)?;
                if last_plan.as_ref() != Some(&plan) {
                    if let Some(old) = &last_plan {
                        crate::topology::prune(old, &plan)?;
                    }
                    crate::topology::build(&plan)?;
                    // New hosts start empty: everything is applied again.
                    in_force = Applied::default();
                    last_plan = Some(plan.clone());
                }
                apply(&world, &plan, kernel_gate, &mut in_force)?;
                Ok(rev)
            };
            match step() {
                Ok(rev) => {
                    tracing::info!(
                        revision = rev,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "lab enforcement applied"
                    );
                    applied = Some(rev);
                    retry_at = None;
                    crate::lab::record_applied(home, rev);
                }
                Err(e) => {
                    tracing::error!(revision, error = %e, "could not apply this revision; retrying, the last applied state stays in force");
                    applied = Some(revision);
                    retry_at = Some(Instant::now() + RETRY);
                }
            }
        }
        if let Some(plan) = &last_plan {
            readers.ensure(home, plan);
        }
        std::thread::sleep(POLL);
    }
}

/// The firewall log readers ([`crate::fwlog`]), one per firewall host of the plan. A reader ends
/// by itself when its namespace goes; one for a namespace that exists (again) is started, at most
/// once per `RETRY` per firewall.
#[derive(Default)]
struct Readers(HashMap<String, Reader>);

struct Reader {
    netns: String,
    handle: Option<std::thread::JoinHandle<()>>,
    started: Instant,
}

impl Readers {
    fn ensure(&mut self, home: &std::path::Path, plan: &Plan) {
        self.0.retain(|fw, _| plan.firewalls.contains_key(fw));
        for (fw, host) in &plan.firewalls {
            let Some(netns) = plan.host(host).map(|h| h.netns.clone()) else {
                continue;
            };
            if let Some(r) = self.0.get(fw) {
                let running = r.handle.as_ref().is_some_and(|h| !h.is_finished());
                if (running && r.netns == netns) || r.started.elapsed() < RETRY {
                    continue;
                }
            }
            if !std::path::Path::new("/run/netns").join(&netns).exists() {
                continue;
            }
            let handle = match crate::fwlog::spawn_reader(home, fw, &netns) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(firewall = %fw, error = %e, "could not start the firewall log reader");
                    None
                }
            };
            self.0.insert(
                fw.clone(),
                Reader {
                    netns,
                    handle,
                    started: Instant::now(),
                },
            );
        }
    }
}
