//! ARM resource ids and the deterministic names Azure derives for a cluster's node resources.

/// The subscription of a local store. There is one; its id is all zeros.
pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";

pub fn group_id(rg: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}")
}

/// Id of a top-level resource: `provider_type` is for example `Microsoft.Network/publicIPAddresses`.
pub fn resource_id(rg: &str, provider_type: &str, name: &str) -> String {
    let (namespace, kind) = provider_type.split_once('/').unwrap_or((provider_type, ""));
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}/providers/{namespace}/{kind}/{name}")
}

/// Id of a child resource, such as a subnet under a vnet.
pub fn child_id(parent_id: &str, child_kind: &str, name: &str) -> String {
    format!("{parent_id}/{child_kind}/{name}")
}

/// The resource group and name at the end of an id, as `(rg, last segment)`.
pub fn parse_rg(id: &str) -> Option<&str> {
    let mut parts = id.split('/');
    while let Some(p) = parts.next() {
        if p.eq_ignore_ascii_case("resourceGroups") {
            return parts.next();
        }
    }
    None
}

pub fn last_segment(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// Whether two ids name the same resource (ARM ids compare case-insensitively).
pub fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// A stable 8-digit number for a cluster, as AKS puts in `aks-vnet-NNNNNNNN`. It is derived from
/// the cluster's identity (FNV-1a), so re-running a create gives the same names.
pub fn cluster_digits(rg: &str, name: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in format!("{}/{}", rg.to_ascii_lowercase(), name.to_ascii_lowercase()).bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{:08}", h % 100_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let id = resource_id("rg1", "Microsoft.Network/virtualNetworks", "v");
        assert_eq!(
            id,
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/v"
        );
        assert_eq!(parse_rg(&id), Some("rg1"));
        assert_eq!(last_segment(&child_id(&id, "subnets", "s")), "s");
        assert_eq!(cluster_digits("RG", "c"), cluster_digits("rg", "C"));
        assert_eq!(cluster_digits("rg", "c").len(), 8);
    }
}
