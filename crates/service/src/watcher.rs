//! Network watcher: questions answered from the model, with no packet sent.

use apiwall_model::Protocol;
use apiwall_model::resources::{Action, VirtualMachine};
use apiwall_model::world::{Key, Resource, World};
use apiwall_policy::{Flow, Policy};
use serde_json::{Value, json};

use crate::{ApiError, Direction, IpFlowSpec, Request, TraceSpec};

fn vm<'a>(w: &'a World, rg: &str, name: &str) -> Result<&'a VirtualMachine, ApiError> {
    if !w.groups.contains_key(&Key::global(rg)) {
        return Err(ApiError::group_not_found(rg));
    }
    w.vms
        .get(&Key::new(rg, name))
        .ok_or_else(|| ApiError::not_found(VirtualMachine::TYPE, name, rg))
}

/// The VM's own address, as `--source-ip`/`--local` must name it.
fn check_own_ip(vm: &VirtualMachine, field: &str, ip: std::net::IpAddr) -> Result<(), ApiError> {
    if ip == vm.private_ips {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            ip,
            format!(
                "not an address of VM '{}'; use its private IP {}",
                vm.name, vm.private_ips
            ),
        ))
    }
}

pub(crate) fn run(w: &World, request: Request) -> Result<Value, ApiError> {
    let policy = Policy::compile(w);
    match request {
        Request::NextHop {
            rg,
            vm: name,
            source_ip,
            dest_ip,
        } => {
            let vm = vm(w, &rg, &name)?;
            if let Some(ip) = source_ip {
                check_own_ip(vm, "--source-ip", ip)?;
            }
            let hop = policy
                .next_hop(&vm.id, dest_ip)
                .map_err(|e| ApiError::Conflict(e.to_string()))?;
            Ok(serde_json::to_value(hop.show()).expect("serializes"))
        }
        Request::IpFlow(f) => ip_flow(w, &policy, f),
        Request::Trace(t) => trace(w, &policy, t),
        other => Err(ApiError::Internal(format!(
            "not a watcher request: {other:?}"
        ))),
    }
}

fn ip_flow(w: &World, policy: &Policy, f: IpFlowSpec) -> Result<Value, ApiError> {
    if f.protocol == Protocol::Any {
        return Err(ApiError::invalid(
            "--protocol",
            "Any",
            "a flow has one protocol; use TCP, UDP or ICMP",
        ));
    }
    let vm = vm(w, &f.rg, &f.vm)?;
    check_own_ip(vm, "--local", f.local.0)?;
    let flow = match f.direction {
        Direction::Outbound => Flow::from_vm(&vm.id, f.remote.0, f.remote.1, f.protocol),
        Direction::Inbound => Flow::from_ip(f.remote.0, f.local.0, f.local.1, f.protocol),
    };
    let r = policy.test_ip_flow(&flow);
    Ok(json!({
        "access": match r.access { Action::Allow => "Allow", Action::Deny => "Deny" },
        "ruleName": r.rule_name,
    }))
}

fn trace(w: &World, policy: &Policy, t: TraceSpec) -> Result<Value, ApiError> {
    let flow = match (&t.vm, t.source_ip) {
        (Some(name), _) => {
            let rg = t.rg.as_deref().ok_or_else(|| {
                ApiError::Usage("--vm needs -g/--resource-group, the VM's group".into())
            })?;
            let vm = vm(w, rg, name)?;
            if let Some(ip) = t.source_ip {
                check_own_ip(vm, "--source-ip", ip)?;
            }
            Flow::from_vm(&vm.id, t.dest_ip, t.dest_port, t.protocol)
        }
        (None, Some(src)) => Flow::from_ip(src, t.dest_ip, t.dest_port, t.protocol),
        (None, None) => {
            return Err(ApiError::Usage(
                "give the source: --vm NODE or --source-ip IP".into(),
            ));
        }
    };
    if t.protocol == Protocol::Any {
        return Err(ApiError::invalid(
            "--protocol",
            "Any",
            "a flow has one protocol; use TCP, UDP or ICMP",
        ));
    }
    Ok(serde_json::to_value(policy.trace(&flow)).expect("serializes"))
}
