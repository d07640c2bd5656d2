//! Azure's naming rules for the resources apiwall manages.

use crate::error::ModelError;

/// The naming rule of one resource type.
#[derive(Debug, Clone, Copy)]
pub struct NameRule {
    pub what: &'static str,
    pub min: usize,
    pub max: usize,
    /// Characters allowed besides ASCII letters and digits.
    pub extra: &'static str,
    /// Characters allowed at the end besides letters and digits.
    pub end_extra: &'static str,
    /// Whether the first character must be a letter or digit.
    pub start_alnum: bool,
}

pub const RESOURCE_GROUP: NameRule = NameRule {
    what: "resource group names",
    min: 1,
    max: 90,
    extra: "-_.()",
    end_extra: "-_()",
    start_alnum: false,
};

pub const CLUSTER: NameRule = NameRule {
    what: "cluster names",
    min: 1,
    max: 63,
    extra: "-_",
    end_extra: "",
    start_alnum: true,
};

pub const VNET: NameRule = NameRule {
    what: "virtual network names",
    min: 2,
    max: 64,
    extra: "-_.",
    end_extra: "_",
    start_alnum: true,
};

/// Subnets, public IPs, firewalls, ip-configs, rule collections, rules, route tables and routes.
pub const NETWORK: NameRule = NameRule {
    what: "names",
    min: 1,
    max: 80,
    extra: "-_.",
    end_extra: "_",
    start_alnum: true,
};

impl NameRule {
    /// Checks `name` given with flag `field`; the error says which rule it breaks.
    pub fn check(&self, field: &str, name: &str) -> Result<(), ModelError> {
        let fail = |reason: String| Err(ModelError::new(field, name, reason));
        let len = name.chars().count();
        if len < self.min || len > self.max {
            return fail(format!(
                "{} must be {} to {} characters long",
                self.what, self.min, self.max
            ));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !c.is_ascii_alphanumeric() && !self.extra.contains(*c))
        {
            return fail(format!(
                "{} may contain only letters, digits and '{}'; remove '{bad}'",
                self.what, self.extra
            ));
        }
        let first = name.chars().next().unwrap_or('a');
        if self.start_alnum && !first.is_ascii_alphanumeric() {
            return fail(format!("{} must start with a letter or digit", self.what));
        }
        let last = name.chars().last().unwrap_or('a');
        if !last.is_ascii_alphanumeric() && !self.end_extra.contains(last) {
            let allowed = if self.end_extra.is_empty() {
                String::new()
            } else {
                format!(" or '{}'", self.end_extra)
            };
            return fail(format!(
                "{} must end with a letter, digit{allowed}",
                self.what
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(RESOURCE_GROUP.check("--name", "myResourceGroup").is_ok());
        assert!(RESOURCE_GROUP.check("--name", "MC_rg_c_westeurope").is_ok());
        assert!(RESOURCE_GROUP.check("--name", "rg.").is_err());
        assert!(
            CLUSTER
                .check("--name", "my cluster")
                .unwrap_err()
                .reason
                .contains("' '")
        );
        assert!(NETWORK.check("--name", "-x").is_err());
        assert!(NETWORK.check("--name", &"a".repeat(81)).is_err());
        assert!(VNET.check("--name", "a").is_err());
    }
}
