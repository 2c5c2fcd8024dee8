//! `--format` of the listing commands: `table` (the default), `json`, or a Go
//! template as `docker` takes it (`'{{.Name}} {{.Replicas}}'`), run by the `gotmpl`
//! crate with docker's extra functions (`json`, `split`, `join`, `title`, `lower`,
//! `upper`, `pad`, `truncate`). A template starting with `table` prints a header row
//! and aligns its tab-separated columns. Each row's data is a map of docker's field
//! names (`.ID`, `.Name`, …) to the cells the table would show.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use gotmpl::{MissingKey, Template, TemplateError, Value};

/// How a listing is printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Format {
    /// Aligned columns.
    #[default]
    Table,
    /// The objects as JSON, for scripts.
    Json,
    /// A Go template, checked when the flag is read.
    Template(String),
}

impl FromStr for Format {
    type Err = String;

    /// `table`, `json`, or a template (compiled here, so a bad one fails before any call).
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            _ => {
                compile(s)?;
                Ok(Format::Template(s.to_owned()))
            }
        }
    }
}

/// One column: its header in the table and its field name in templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    pub(crate) header: String,
    pub(crate) field: String,
}

impl Column {
    /// A column whose field name is its header in docker's style: `DESIRED STATE`
    /// is `.DesiredState`, `ID` stays `.ID`.
    pub(crate) fn from_header(header: &str) -> Column {
        let field = header
            .split_whitespace()
            .map(|w| {
                if w == "ID" {
                    w.to_owned()
                } else {
                    let lower = w.to_lowercase();
                    let mut c = lower.chars();
                    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
                }
            })
            .collect();
        Column { header: header.to_owned(), field }
    }

    /// A column with an explicit field name.
    pub(crate) fn named(header: &str, field: &str) -> Column {
        Column { header: header.to_owned(), field: field.to_owned() }
    }
}

/// Renders `rows` (cells in `columns`' order) through the template `source`: one
/// line per row, or with `table …` a header line and aligned columns.
pub(crate) fn render(source: &str, columns: &[Column], rows: &[Vec<String>]) -> Result<String, String> {
    let (is_table, body) = match source.strip_prefix("table") {
        Some(rest) => (true, rest.trim_start()),
        None => (false, source),
    };
    let template = compile(body)?;
    let run = |cells: &[String]| -> Result<String, String> {
        let map: BTreeMap<Arc<str>, Value> = columns
            .iter()
            .zip(cells)
            .map(|(c, v)| (Arc::from(c.field.as_str()), Value::from(v.as_str())))
            .collect();
        template.execute_to_string(&Value::from(map)).map_err(|e| explain(e, columns))
    };
    let mut lines = Vec::new();
    if is_table {
        let headers: Vec<String> = columns.iter().map(|c| c.header.clone()).collect();
        lines.push(run(&headers)?);
    }
    for r in rows {
        lines.push(run(r)?);
    }
    if !is_table {
        return Ok(lines.into_iter().map(|l| l + "\n").collect());
    }
    Ok(align(&lines))
}

/// Lines whose tab-separated cells are padded to each column's widest, three spaces apart.
pub(crate) fn align(lines: &[String]) -> String {
    let split: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for cells in &split {
        for (i, c) in cells.iter().enumerate() {
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for cells in &split {
        let mut line = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Parses a template, with docker's functions and `\t`/`\n` written as escapes.
fn compile(source: &str) -> Result<Template, String> {
    let text = source.replace("\\t", "\t").replace("\\n", "\n");
    Template::new("format")
        .missing_key(MissingKey::Error)
        .func("json", json)
        .func("split", split)
        .func("join", join)
        .func("title", title)
        .func("lower", |a: &[Value]| Ok(Value::from(string_arg("lower", a, 0)?.to_lowercase())))
        .func("upper", |a: &[Value]| Ok(Value::from(string_arg("upper", a, 0)?.to_uppercase())))
        .func("pad", pad)
        .func("truncate", truncate)
        .parse(&text)
        .map_err(|e| format!("not a valid template: {e}"))
}

/// A failed run in words: a missing field names the fields there are.
fn explain(e: TemplateError, columns: &[Column]) -> String {
    match e {
        TemplateError::MissingKey { key } => {
            let fields: Vec<String> = columns.iter().map(|c| format!(".{}", c.field)).collect();
            format!("--format: there is no field .{key} here; the fields are {}", fields.join(", "))
        }
        e => format!("--format: the template failed: {e}"),
    }
}

/// Argument `i` of `func` as a string (any value, as the template would print it).
fn string_arg(func: &str, args: &[Value], i: usize) -> gotmpl::Result<String> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.to_string()),
        Some(v) => Ok(v.to_string()),
        None => Err(TemplateError::ArgCount { name: func.to_owned(), expected: i + 1, got: args.len() }),
    }
}

/// Argument `i` of `func` as a count.
fn count_arg(func: &str, args: &[Value], i: usize) -> gotmpl::Result<usize> {
    let v = args.get(i).ok_or_else(|| TemplateError::ArgCount {
        name: func.to_owned(),
        expected: i + 1,
        got: args.len(),
    })?;
    let n = match v {
        Value::Int(n) => usize::try_from(*n).ok(),
        Value::Uint(n) => usize::try_from(*n).ok(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    n.ok_or_else(|| TemplateError::Exec(format!("{func}: {v} is not a count")))
}

/// `json .`: the value as JSON.
fn json(args: &[Value]) -> gotmpl::Result<Value> {
    let v =
        args.first().ok_or_else(|| TemplateError::ArgCount { name: "json".into(), expected: 1, got: 0 })?;
    Ok(Value::from(to_json(v).to_string()))
}

fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Bool(b) => J::Bool(*b),
        Value::Int(n) => J::from(*n),
        Value::Uint(n) => J::from(*n),
        Value::Float(f) => J::from(*f),
        Value::String(s) => J::String(s.to_string()),
        Value::List(l) => J::Array(l.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect()),
        _ => J::Null,
    }
}

/// `split "a,b" ","`: a list of the parts.
fn split(args: &[Value]) -> gotmpl::Result<Value> {
    let (s, sep) = (string_arg("split", args, 0)?, string_arg("split", args, 1)?);
    Ok(Value::from(s.split(sep.as_str()).map(Value::from).collect::<Vec<_>>()))
}

/// `join .List ","`: the elements joined.
fn join(args: &[Value]) -> gotmpl::Result<Value> {
    let sep = string_arg("join", args, 1)?;
    match args.first() {
        Some(Value::List(l)) => {
            Ok(Value::from(l.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(&sep)))
        }
        Some(v) => Ok(Value::from(v.to_string())),
        None => Err(TemplateError::ArgCount { name: "join".into(), expected: 2, got: 0 }),
    }
}

/// `title "hello world"`: each word's first letter upper case.
fn title(args: &[Value]) -> gotmpl::Result<Value> {
    let s = string_arg("title", args, 0)?;
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = c.is_whitespace();
    }
    Ok(Value::from(out))
}

/// `pad "x" 1 2`: the string with spaces before and after.
fn pad(args: &[Value]) -> gotmpl::Result<Value> {
    let s = string_arg("pad", args, 0)?;
    let (before, after) = (count_arg("pad", args, 1)?, count_arg("pad", args, 2)?);
    Ok(Value::from(format!("{}{s}{}", " ".repeat(before), " ".repeat(after))))
}

/// `truncate "abcdef" 3`: at most that many characters.
fn truncate(args: &[Value]) -> gotmpl::Result<Value> {
    let s = string_arg("truncate", args, 0)?;
    let n = count_arg("truncate", args, 1)?;
    Ok(Value::from(s.chars().take(n).collect::<String>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<Column> {
        ["ID", "NAME", "REPLICAS", "DESIRED STATE"].map(Column::from_header).to_vec()
    }

    fn rows() -> Vec<Vec<String>> {
        vec![
            ["abc", "web", "2/2", "running"].map(String::from).to_vec(),
            ["defghi", "api-gateway", "0/1", "shutdown"].map(String::from).to_vec(),
        ]
    }

    #[test]
    fn field_names_follow_docker() {
        let fields: Vec<String> = columns().into_iter().map(|c| c.field).collect();
        assert_eq!(fields, ["ID", "Name", "Replicas", "DesiredState"]);
        assert_eq!(Column::from_header("MANAGER STATUS").field, "ManagerStatus");
    }

    #[test]
    fn a_template_prints_a_line_per_row() {
        let out = render("{{.Name}} {{.Replicas}}", &columns(), &rows()).unwrap();
        assert_eq!(out, "web 2/2\napi-gateway 0/1\n");
    }

    #[test]
    fn table_adds_headers_and_aligns() {
        let out = render("table {{.ID}}\\t{{.Name}}\\t{{.DesiredState}}", &columns(), &rows()).unwrap();
        assert_eq!(
            out,
            "ID       NAME          DESIRED STATE\n\
             abc      web           running\n\
             defghi   api-gateway   shutdown\n"
        );
    }

    #[test]
    fn docker_functions_are_there() {
        let out = render(
            r#"{{upper .Name}}|{{lower "AB"}}|{{title "hello world"}}|{{pad .ID 1 2}}|{{truncate .Name 2}}|{{join (split .Replicas "/") "-"}}|{{json .Name}}"#,
            &columns(),
            &rows()[..1],
        )
        .unwrap();
        assert_eq!(out, "WEB|ab|Hello World| abc  |we|2-2|\"web\"\n");
        let whole = render("{{json .}}", &columns(), &rows()[..1]).unwrap();
        let v: serde_json::Value = serde_json::from_str(whole.trim()).unwrap();
        assert_eq!(v["DesiredState"], "running");
    }

    #[test]
    fn bad_templates_say_what_is_wrong() {
        let err = "{{.Name".parse::<Format>().unwrap_err();
        assert!(err.starts_with("not a valid template: ") && err.contains("unclosed action"), "{err}");
        let err = render("{{.Nmae}}", &columns(), &rows()).unwrap_err();
        assert!(err.contains("no field .Nmae") && err.contains(".Name, .Replicas"), "{err}");
        let err = render("{{nosuch .Name}}", &columns(), &rows()).unwrap_err();
        assert!(err.contains("nosuch"), "{err}");
        assert_eq!("json".parse::<Format>().unwrap(), Format::Json);
        assert_eq!("table".parse::<Format>().unwrap(), Format::Table);
    }
}
