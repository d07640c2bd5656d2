//! az's output formats, after an optional JMESPath `--query`.

use std::io::Write;

use comfy_table::{Cell, ContentLineStyle, LineStyle, Table, TableStyle};
use serde_json::Value;

use crate::args::Output;

/// A failure while querying or printing: a bad `--query` is a usage error.
#[derive(Debug)]
pub struct PrintError {
    message: String,
    usage: bool,
}

impl std::fmt::Display for PrintError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl PrintError {
    pub fn exit_code(&self) -> u8 {
        if self.usage { 2 } else { 1 }
    }
}

pub fn query(value: &Value, query: &str) -> Result<Value, PrintError> {
    let usage = |e: jmespath::JmespathError| PrintError {
        message: format!("argument --query: invalid jmespath_type value: '{query}': {e}"),
        usage: true,
    };
    let expr = jmespath::compile(query).map_err(usage)?;
    let data = jmespath::Variable::try_from(value.clone()).map_err(usage)?;
    let result = expr.search(data).map_err(usage)?;
    serde_json::to_value(&*result).map_err(|e| PrintError {
        message: format!("--query result: {e}"),
        usage: false,
    })
}

pub fn print(value: &Value, format: Output, q: Option<&str>) -> Result<(), PrintError> {
    // Commands that answer nothing (deletes) print nothing, as az does.
    if value.is_null() && q.is_none() {
        return Ok(());
    }
    let value = match q {
        Some(q) => query(value, q)?,
        None => value.clone(),
    };
    let text = render(&value, format);
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| PrintError {
            message: format!("writing output: {e}"),
            usage: false,
        })
}

pub fn render(value: &Value, format: Output) -> String {
    match format {
        Output::Json | Output::Jsonc => {
            let mut s = serde_json::to_string_pretty(value).expect("JSON values serialize");
            s.push('\n');
            s
        }
        Output::Yaml | Output::Yamlc => {
            yaml_serde::to_string(value).expect("JSON values serialize as YAML")
        }
        Output::Tsv => tsv(value),
        Output::Table => table(value),
        Output::None => String::new(),
    }
}

/// `network watcher trace -o table`: the verdict, one row per hop, and for a denial what
/// blocked the flow and the fix.
pub fn trace_table(trace: &Value) -> String {
    let field = |k: &str| tsv_cell(&trace[k]);
    let mut out = format!(
        "Verdict: {}  ({} {} -> {}:{}{})\n\n",
        field("verdict"),
        field("protocol"),
        field("source"),
        field("destination"),
        field("destinationPort"),
        match trace["seenAs"].as_str() {
            Some(ip) => format!(", seen as {ip}"),
            None => String::new(),
        }
    );
    let hops: Vec<Value> = trace["hops"]
        .as_array()
        .map(|hops| {
            hops.iter()
                .enumerate()
                .map(|(i, h)| {
                    serde_json::json!({
                        "#": i + 1,
                        "component": h["component"],
                        "decision": h["decision"],
                        "name": h["name"],
                        "rule": h["rule"],
                        "detail": h["detail"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    out.push_str(&table(&Value::Array(hops)));
    for (label, key) in [
        ("Blocked by", "blockedBy"),
        ("Reason", "reason"),
        ("Fix", "fix"),
    ] {
        if let Some(v) = trace[key].as_str() {
            out.push_str(&format!("\n{label}: {v}"));
        }
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

// === tsv ===

/// az's tsv: a list prints one line per item; a dict prints its values (sorted by key) separated
/// by tabs, with nested lists and dicts left out; a scalar prints bare.
fn tsv(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Array(items) => items.iter().for_each(|i| tsv_row(i, &mut out)),
        other => tsv_row(other, &mut out),
    }
    out
}

fn tsv_row(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let cells: Vec<String> = map.values().map(tsv_cell).collect();
            out.push_str(&cells.join("\t"));
        }
        Value::Array(items) => {
            let cells: Vec<String> = items.iter().map(tsv_cell).collect();
            out.push_str(&cells.join("\t"));
        }
        other => out.push_str(&tsv_cell(other)),
    }
    out.push('\n');
}

fn tsv_cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        // Nested structures are left out, as az does.
        Value::Array(_) | Value::Object(_) => String::new(),
    }
}

// === table ===

/// Keys az leaves out of its automatic tables.
const SKIP_KEYS: [&str; 3] = ["id", "type", "etag"];

/// az's automatic table: one row per item, one column per scalar field (nested values and
/// `id`/`type`/`etag` left out), headers capitalized.
fn table(value: &Value) -> String {
    let rows: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => vec![],
        other => vec![other],
    };
    let mut columns: Vec<String> = Vec::new();
    for row in &rows {
        match row {
            Value::Object(map) => {
                for (k, v) in map {
                    if !SKIP_KEYS.contains(&k.as_str())
                        && !v.is_array()
                        && !v.is_object()
                        && !v.is_null()
                        && !columns.contains(k)
                    {
                        columns.push(k.clone());
                    }
                }
            }
            _ => {
                if !columns.iter().any(|c| c == "Result") {
                    columns.push("Result".into());
                }
            }
        }
    }
    if columns.is_empty() {
        return String::new();
    }
    let mut t = Table::new();
    // az's look: columns two spaces apart, a dashed line under the header.
    t.load_style(
        TableStyle::new()
            .header_lines(ContentLineStyle::none().junction(' '))
            .content_lines(ContentLineStyle::none().junction(' '))
            .header_separator(LineStyle::none().fill('-').junction(' ')),
    );
    t.set_header(columns.iter().map(|c| Cell::new(capitalize(c))));
    for row in rows {
        let cells: Vec<Cell> = match row {
            Value::Object(map) => columns
                .iter()
                .map(|c| Cell::new(map.get(c).map(tsv_cell).unwrap_or_default()))
                .collect(),
            other => vec![Cell::new(tsv_cell(other))],
        };
        t.add_row(cells);
    }
    for col in t.column_iter_mut() {
        col.set_padding((0, 1));
    }
    let mut out: String = t.lines().map(|l| l.trim_end().to_string() + "\n").collect();
    if out.is_empty() {
        out.push('\n');
    }
    out
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
