//! `Ruleset`: one nftables table, rendered as nft text, and the script that swaps it in atomically.

use std::collections::HashMap;
use std::fmt::{self, Write as _};

/// One nftables table in the `inet` family, ready for `nft -f`.
///
/// [`Ruleset::to_nft`] is the whole transaction: it declares the table (so that the delete cannot
/// fail on a first apply), deletes it, and defines it anew. nft runs a file as one batch, so the
/// kernel swaps the old table for the new one atomically: no packet sees a half-built table. This
/// works on nft 1.0.6 (Debian bookworm), which has no `destroy` command. Counters and set contents
/// start from zero with each apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    pub(crate) table: String,
    /// `table inet NAME { … }`.
    pub(crate) definition: String,
    /// Lines of `#` commentary printed before the transaction.
    pub(crate) header: Vec<String>,
    pub(crate) generation: Option<u32>,
}

/// The nft family of every apiwall table: one table serves IPv4 and IPv6.
pub const FAMILY: &str = "inet";

impl Ruleset {
    /// The table's name, e.g. `apiwall_myAzureFirewall`.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The nft family: always `inet`.
    pub fn family(&self) -> &'static str {
        FAMILY
    }

    /// The connection-mark value that this firewall ruleset stamps on the flows it admits; `None`
    /// for rulesets that keep no state (the API gate). It is a hash of the rules, so applying the
    /// same rules again keeps established flows on the fast path.
    pub fn generation(&self) -> Option<u32> {
        self.generation
    }

    /// `table inet NAME { … }` alone.
    pub fn definition(&self) -> &str {
        &self.definition
    }

    /// The atomic replace transaction for `nft -f`, with its header comments.
    pub fn to_nft(&self) -> String {
        let mut s = String::new();
        for h in &self.header {
            let _ = writeln!(s, "# {h}");
        }
        s.push_str(&delete_script(&self.table));
        s.push_str(&self.definition);
        s
    }
}

impl fmt::Display for Ruleset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_nft())
    }
}

/// An nft script that deletes table `table` if it exists (and does nothing otherwise).
pub fn delete_script(table: &str) -> String {
    format!("table {FAMILY} {table} {{}}\ndelete table {FAMILY} {table}\n")
}

/// An nft identifier from a resource name: letters, digits and `_`; anything else becomes `_`.
pub fn identifier(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    s.truncate(200);
    s
}

/// An nft string literal's contents: no quotes or backslashes, and at most `max` bytes (nft's
/// comments hold 128).
pub(crate) fn quote(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let c = match c {
            '"' | '\\' => '\'',
            c if c.is_control() => ' ',
            c => c,
        };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// Longest comment nft stores.
pub(crate) const COMMENT_MAX: usize = 127;

/// Named sets of one table, deduplicated by type and contents.
#[derive(Debug, Default)]
pub(crate) struct Sets {
    by_content: HashMap<(String, Vec<String>), String>,
    text: String,
}

impl Sets {
    /// `@name` of an interval set holding `elements`, even a single one (an identical set is
    /// reused).
    pub fn named(&mut self, name: &str, ty: &str, elements: Vec<String>) -> String {
        let key = (ty.to_string(), elements);
        if let Some(n) = self.by_content.get(&key) {
            return format!("@{n}");
        }
        let _ = writeln!(
            self.text,
            "\tset {name} {{\n\t\ttype {ty}\n\t\tflags interval\n\t\telements = {{ {} }}\n\t}}",
            key.1.join(", ")
        );
        self.by_content.insert(key, name.to_string());
        format!("@{name}")
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

/// 32-bit FNV-1a.
pub(crate) fn fnv1a(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}
