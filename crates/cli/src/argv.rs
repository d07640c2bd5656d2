//! az's `@path` arguments: a word starting with `@` is replaced by the file's contents, because
//! a list of 100,000 ranges does not fit on a command line. Not expanded: the value of `--query`
//! (JMESPath uses `@`), and anything after `--` (a command run by `lab exec`).

use std::ffi::OsString;

use anyhow::Context;

pub fn expand(args: impl IntoIterator<Item = OsString>) -> anyhow::Result<Vec<OsString>> {
    let mut out = Vec::new();
    let mut verbatim = false;
    let mut prev_query = false;
    for (i, a) in args.into_iter().enumerate() {
        let s = a.to_str();
        let expand = i > 0 && !verbatim && !prev_query;
        verbatim |= s == Some("--");
        prev_query = s == Some("--query");
        match s {
            Some(s) if expand && s.len() > 1 && s.starts_with('@') => {
                let path = &s[1..];
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("argument {s}: cannot read file '{path}'"))?;
                out.push(OsString::from(text.trim_end()));
            }
            _ => out.push(a),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(words: &[&str]) -> anyhow::Result<Vec<String>> {
        expand(words.iter().map(OsString::from))
            .map(|v| v.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    #[test]
    fn files_expand_but_queries_and_commands_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ranges");
        std::fs::write(&f, "203.0.113.2/32,192.0.2.10/32\n").unwrap();
        let at = format!("@{}", f.display());
        assert_eq!(
            run(&["apiwall", "--x", &at]).unwrap()[2],
            "203.0.113.2/32,192.0.2.10/32"
        );
        assert_eq!(
            run(&["apiwall", "--query", "@[0].name"]).unwrap()[2],
            "@[0].name"
        );
        assert_eq!(
            run(&["apiwall", "lab", "exec", "h", "--", "dig", "@192.0.2.1"]).unwrap()[6],
            "@192.0.2.1"
        );
        let err = run(&["apiwall", "--x", "@/nonexistent/file"]).unwrap_err();
        assert!(format!("{err:#}").contains("cannot read file '/nonexistent/file'"));
    }
}
