//! az's `@path` arguments: a word starting with `@` is replaced by the file's contents, because
//! a list of 100,000 ranges does not fit on a command line.

use std::ffi::OsString;

use anyhow::Context;

pub fn expand(args: impl IntoIterator<Item = OsString>) -> anyhow::Result<Vec<OsString>> {
    args.into_iter()
        .enumerate()
        .map(|(i, a)| match a.to_str() {
            Some(s) if i > 0 && s.len() > 1 && s.starts_with('@') => {
                let path = &s[1..];
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("argument {s}: cannot read file '{path}'"))?;
                Ok(OsString::from(text.trim_end()))
            }
            _ => Ok(a),
        })
        .collect()
}
