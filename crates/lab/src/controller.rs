//! The lab's kernel enforcers: firewall rulesets, the fabric's route tables and its load-balancer
//! SNAT, compiled from one store revision and applied. `follow` re-applies on every new revision,
//! so CLI changes take effect live.

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

/// First routing table id of the fabric's subnets (one per subnet, in vnet order).
const FIRST_TABLE: u32 = 100;
const FIRST_RULE_PRIORITY: u32 = 1000;
/// How often the controller asks the store for its revision.
const POLL: Duration = Duration::from_millis(25);

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
/// force already. With `kernel_gate`, the cluster's authorized ranges are also enforced as an
/// nftables set on the API host's port 443, in front of the userspace gate.
pub fn apply(
    world: &World,
    plan: &Plan,
    kernel_gate: bool,
    applied: &mut Applied,
) -> Result<(), LabError> {
    for fw in world.firewalls.values() {
        let Some(host) = plan.firewalls.get(&fw.name).and_then(|h| plan.host(h)) else {
            continue;
        };
        let ruleset = render(
            &FirewallSpec::from_world(world, fw),
            &RenderOptions::default(),
        );
        let ns = &host.netns;
        applied.once(format!("firewall {ns}"), ruleset.to_nft(), || {
            Ok(apply_ruleset(&ruleset, Some(ns))?)
        })?;
    }
    let policy = Policy::compile(world);
    let fabric = plan
        .host("fabric")
        .ok_or_else(|| LabError::Model("the plan has no fabric".into()))?;
    for (j, (subnet_id, bridge)) in plan.subnet_bridges.iter().enumerate() {
        let Some(routes) = policy.subnet_routes(subnet_id) else {
            continue;
        };
        let target = RoutingTarget {
            subnet: apiwall_model::ids::last_segment(subnet_id).to_string(),
            table: FIRST_TABLE + j as u32,
            selector: Selector::Iif(bridge.clone()),
            rule_priority: FIRST_RULE_PRIORITY + j as u32,
        };
        let routes = render_routes(routes, &target);
        let ns = &fabric.netns;
        applied.once(
            format!("routes {ns} {}", target.table),
            routes.to_batch(),
            || Ok(apply_routes(&routes, Some(ns))?),
        )?;
    }
    let api_host = plan
        .host("apiserver")
        .ok_or_else(|| LabError::Model("the plan has no API host".into()))?;
    let cluster = world
        .clusters
        .get(&apiwall_model::Key::new(
            &plan.resource_group,
            &plan.cluster,
        ))
        .ok_or_else(|| LabError::Model(format!("cluster {} no longer exists", plan.cluster)))?;
    let gate = ApiGate::for_cluster(world, cluster);
    let ns = &api_host.netns;
    if kernel_gate {
        let ruleset = render_api_gate(&gate);
        applied.once(format!("gate {ns}"), ruleset.to_nft(), || {
            Ok(apply_ruleset(&ruleset, Some(ns))?)
        })?;
    } else {
        applied.once(format!("gate {ns}"), String::new(), || {
            Ok(remove_table(&gate.table, Some(ns))?)
        })?;
    }
    let snat = plan::render_lb_snat(plan.lb_snat.as_ref());
    applied.once(format!("lb-snat {}", fabric.netns), snat.clone(), || {
        nft_apply(&fabric.netns, &snat)
    })
}

/// Follows the store: on every new revision, re-plans, builds any new host, and re-applies.
/// A revision that fails to apply is logged and retried on the next one; the last applied state
/// stays in force meanwhile. Returns only if the store fails.
pub fn follow(
    api: &LocalApi<SqliteStore>,
    home: &std::path::Path,
    rg: &str,
    name: &str,
    kernel_gate: bool,
) -> Result<(), LabError> {
    let mut applied: Option<u64> = None;
    let mut last_plan: Option<Plan> = None;
    let mut in_force = Applied::default();
    loop {
        let revision = api
            .store()
            .revision()
            .map_err(|e| LabError::Io(e.to_string()))?;
        if applied != Some(revision) {
            let started = Instant::now();
            let result = api
                .world()
                .map_err(|e| LabError::Io(e.to_string()))
                .and_then(|(world, rev)| {
                    let plan = plan::plan(&world, rg, name)?;
                    if last_plan.as_ref() != Some(&plan) {
                        crate::topology::build(&plan)?;
                        last_plan = Some(plan.clone());
                    }
                    apply(&world, &plan, kernel_gate, &mut in_force)?;
                    Ok(rev)
                });
            match result {
                Ok(rev) => {
                    tracing::info!(
                        revision = rev,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "lab enforcement applied"
                    );
                    applied = Some(rev);
                    crate::lab::record_applied(home, rev);
                }
                Err(e) => {
                    tracing::error!(revision, error = %e, "could not apply this revision; keeping the last applied state");
                    applied = Some(revision);
                }
            }
        }
        std::thread::sleep(POLL);
    }
}
