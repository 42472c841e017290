//! Small accessors over `serde_yaml::Value` for manifests: read a string at a path, build
//! mappings, create a missing mapping or sequence in place. Nothing here knows Kubernetes.

use serde_yaml::{Mapping, Value};

/// The value at `path` (mapping keys), if every step exists.
pub fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

/// The string at `path`, if it is one.
pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

/// A string value.
pub fn s(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

/// A mapping from `(key, value)` pairs, in order.
pub fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    let mut m = Mapping::new();
    for (k, v) in pairs {
        m.insert(s(k), v);
    }
    Value::Mapping(m)
}

/// A sequence of strings.
pub fn strings<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Value {
    Value::Sequence(items.into_iter().map(|i| s(i)).collect())
}

/// The mapping under `key`, created (or replacing a null) when missing. `None` when the key
/// holds something else than a mapping or null.
pub fn child_map<'a>(m: &'a mut Mapping, key: &str) -> Option<&'a mut Mapping> {
    let slot = m.entry(s(key)).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Mapping(Mapping::new());
    }
    slot.as_mapping_mut()
}

/// The sequence under `key`, created (or replacing a null) when missing. `None` when the key
/// holds something else than a sequence or null.
pub fn child_seq<'a>(m: &'a mut Mapping, key: &str) -> Option<&'a mut Vec<Value>> {
    let slot = m.entry(s(key)).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Sequence(Vec::new());
    }
    slot.as_sequence_mut()
}

/// `text` made safe for a one-line YAML comment or a terminal line: control characters
/// (line breaks included) become `?`, so a hostile name cannot end the comment early.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Prints a document in block style for readers that follow YAML 1.1, as Kubernetes' parser
/// does: `serde_yaml` prints strings such as `yes`, `on`, `y` or `1_000` bare, which YAML 1.1
/// reads as booleans and numbers, so an env value `"on"` would turn into `true`. Here a
/// string is bare only when no YAML version can read it as anything else; multi-line strings
/// are literal blocks (`|`), the rest double-quoted.
pub fn emit(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Mapping(m) if !m.is_empty() => emit_map(&mut out, m, 0, false),
        Value::Sequence(s) if !s.is_empty() => emit_seq(&mut out, s, 0),
        other => {
            out.push_str(&scalar(other, 0));
            out.push('\n');
        }
    }
    out
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// Writes `m`; with `inline`, its first key continues the current line (after `- `).
fn emit_map(out: &mut String, m: &Mapping, indent: usize, inline: bool) {
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 || !inline {
            pad(out, indent);
        }
        out.push_str(&scalar(k, indent));
        out.push(':');
        child(out, v, indent.saturating_add(2));
    }
}

fn emit_seq(out: &mut String, items: &[Value], indent: usize) {
    for v in items {
        pad(out, indent);
        out.push('-');
        match v {
            Value::Mapping(m) if !m.is_empty() => {
                out.push(' ');
                emit_map(out, m, indent.saturating_add(2), true);
            }
            _ => child(out, v, indent.saturating_add(2)),
        }
    }
}

/// The value after `key:` or `-`, its nested lines at `indent`.
fn child(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            out.push('\n');
            emit_map(out, m, indent, false);
        }
        Value::Sequence(s) if !s.is_empty() => {
            out.push('\n');
            emit_seq(out, s, indent);
        }
        Value::Tagged(t) => child(out, &t.value, indent),
        other => {
            out.push(' ');
            out.push_str(&scalar(other, indent));
            out.push('\n');
        }
    }
}

/// A scalar (or an empty collection); a literal block's lines are indented by `indent`.
fn scalar(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(t) => string(t, indent),
        Value::Sequence(_) => "[]".into(),
        Value::Mapping(_) => "{}".into(),
        Value::Tagged(t) => scalar(&t.value, indent),
    }
}

fn string(t: &str, indent: usize) -> String {
    if is_plain_safe(t) {
        return t.to_owned();
    }
    if let Some(block) = literal(t, indent) {
        return block;
    }
    double_quoted(t)
}

/// Bare only when it cannot be read as a number, boolean, null, indicator or comment in
/// YAML 1.1 or 1.2.
fn is_plain_safe(t: &str) -> bool {
    let Some(first) = t.chars().next() else {
        return false;
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._/=@+-: ".contains(c);
    if !t.chars().all(allowed)
        || t.ends_with([' ', ':'])
        || t.contains(": ")
        || t.contains(" -")
        || !(first.is_ascii_alphanumeric()
            || "/._".contains(first)
            || (first == '-' && t.len() > 1 && !t.starts_with("- ")))
    {
        return false;
    }
    // Numbers in any notation (ints, floats, octal, hex, binary, sexagesimal, `1_000`).
    let mut chars = t.chars();
    let numeric_start = match (chars.next(), chars.next()) {
        (Some(c), _) if c.is_ascii_digit() => true,
        (Some('+' | '-' | '.'), Some(c)) => c.is_ascii_digit() || c == '.',
        _ => false,
    };
    if numeric_start
        && t.chars()
            .all(|c| c.is_ascii_hexdigit() || "+-._:xXoO".contains(c))
    {
        return false;
    }
    let lower = t.to_ascii_lowercase();
    !matches!(
        lower.as_str(),
        "y" | "n"
            | "yes"
            | "no"
            | "on"
            | "off"
            | "true"
            | "false"
            | "null"
            | ".inf"
            | "-.inf"
            | "+.inf"
            | ".nan"
    )
}

/// `|`, `|-` or `|+` with the lines at `indent`, when a literal block reads back exactly.
fn literal(t: &str, indent: usize) -> Option<String> {
    if !t.contains('\n') || t.starts_with([' ', '\n']) {
        return None;
    }
    if t.chars()
        .any(|c| (c.is_control() && c != '\n' && c != '\t') || c == '\u{feff}')
    {
        return None;
    }
    let body = t.trim_end_matches('\n');
    // A line of blanks only would be read as indentation.
    if body
        .split('\n')
        .any(|l| !l.is_empty() && l.trim().is_empty())
    {
        return None;
    }
    let trailing = t.len().saturating_sub(body.len());
    let mut out = String::from(match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    });
    for line in t.split('\n').take(
        body.split('\n')
            .count()
            .saturating_add(trailing.saturating_sub(1)),
    ) {
        out.push('\n');
        if !line.is_empty() {
            out.extend(std::iter::repeat_n(' ', indent));
            out.push_str(line);
        }
    }
    Some(out)
}

fn double_quoted(t: &str) -> String {
    let mut out = String::from("\"");
    for c in t.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{feff}' || c == '\u{fffe}' || c == '\u{ffff}' => {
                out.push_str(&format!("\\u{:04X}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Kubernetes reads `defaultMode: 0644` as octal (YAML 1.1); `serde_yaml` reads a string.
/// File modes written that way become the number Kubernetes would have read.
pub fn octal_modes(v: &mut Value) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m.iter_mut() {
                if matches!(k.as_str(), Some("defaultMode" | "mode"))
                    && let Some(t) = child.as_str()
                    && t.len() > 1
                    && t.starts_with('0')
                    && let Ok(n) = u64::from_str_radix(t, 8)
                {
                    *child = Value::from(n);
                } else {
                    octal_modes(child);
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(octal_modes),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // reference: issue 11 item 7 (converted manifests validate; Kubernetes reads YAML 1.1)
    #[test]
    fn strings_read_back_as_strings_and_modes_as_octal() {
        let text = "a: \"on\"\nb: \"yes\"\nc: \"1_000\"\nd: \"1:20\"\ne: \"10000\"\nf: --config=/x\ng: registry.k8s.io/busybox:1.29-4\nh: \"line one\\nline two  \\n\"\ni: \"- x\"\nj: \"a: b\"\nk: \"\"\nl: \"x #y\"\nm: \"tab\\there\\u0007\"\nn: \"   \\nx\"\no: [1, true, null, {p: q}, []]\ndefaultMode: 0644\nitems: [{mode: 0400}]\n";
        let mut v: Value = serde_yaml::from_str(text).unwrap();
        octal_modes(&mut v);
        let out = emit(&v);
        assert!(out.contains("a: \"on\"\n"), "{out}");
        assert!(out.contains("f: --config=/x\n"), "{out}");
        assert!(out.contains("g: registry.k8s.io/busybox:1.29-4\n"), "{out}");
        assert!(out.contains("h: |\n  line one\n  line two  \n"), "{out}");
        assert!(out.contains("defaultMode: 420\n"), "{out}");
        let back: Value = serde_yaml::from_str(&out).unwrap();
        let mut want = v.clone();
        octal_modes(&mut want);
        assert_eq!(back, want, "{out}");
        assert_eq!(back["items"][0]["mode"].as_u64(), Some(256));
    }
}
