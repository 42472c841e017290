//! Templates (issue 11 item 3): MiniJinja templates rendered from the fetched objects into
//! files of the same atomic set, so an application that wants an env-file or a connection
//! string gets it swapped together with the objects it is made of.
//!
//! What a template sees: `objects`, a map from each published file's path (the object's
//! `objectAlias`, or `objectName`; `alias/0` in history mode, `alias/tls.crt` in the TLS
//! layout) to its content as text (bytes that are not UTF-8 are a bytes value: pipe them
//! through `b64encode`). Undefined names are errors (`UndefinedBehavior::Strict`), so a
//! misspelt alias fails the set instead of publishing an empty value. Filters beyond
//! MiniJinja's built-ins (`tojson` among them): `b64encode`, `b64decode`, `fromjson`, and
//! `urlcomponent` (RFC 3986: everything but unreserved characters percent-encoded, for a
//! password inside a connection string's user info).
//! Nothing is auto-escaped: a template named `*.json` does not quote its output on its own.
//!
//! Errors ([`TemplateError`]) say the line, never a value (docs/threat-model.md); the caller
//! puts the template's [`label`] in front, as for any object (`template "NAME": line N: ...`).
//! The message is built from the error's kind, and its detail only for the kinds whose detail comes from
//! the template's source (syntax, unknown filter, undefined name) or from this module's
//! filters, and only when no object's content appears in it. The work of one render is
//! bounded by fuel and its output by [`MAX_OUTPUT`].
//!
//! This module depends on nothing but [`crate::secret`], so `config` can check a template's
//! syntax at load time (`check`, exit 3) and `syncer` can render it in every cycle.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};

use crate::secret::SecretBytes;

/// Largest template source file read (templates are small; this bounds a wrong path).
pub const MAX_TEMPLATE_FILE: u64 = 1 << 20;
/// Largest rendered output of one template, bytes.
pub const MAX_OUTPUT: usize = 4 << 20;
/// Instructions one render may execute (MiniJinja fuel): a loop over `range(10**9)` stops
/// here instead of holding a cycle forever. Real templates use a few thousand.
const FUEL: u64 = 5_000_000;
/// Mode of a rendered file when the spec gives none (as objects, the CSI driver's 0644).
pub const DEFAULT_MODE: u32 = 0o644;

/// Why a template failed to load or render, without its name: callers print it after the
/// template's [`label`] (`template "app.env.tmpl": line 2: undefined value ...`), the shape
/// every object failure has. It never holds a value: the detail is kept only for the kinds
/// whose detail comes from the template's source or this module's filters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// MiniJinja refused the template (at load) or its rendering.
    #[error("{}{kind}{detail}{hint}", line_prefix(*.line))]
    Render {
        /// The line in the template, when MiniJinja knows it.
        line: Option<usize>,
        /// What went wrong (`undefined value`, `syntax error`, ...).
        kind: ErrorKind,
        /// `": <detail>"` when the detail cannot hold a value, else empty.
        detail: String,
        /// The fix, for the kinds that have an obvious one (with its leading space).
        hint: &'static str,
    },
    /// The output grew past [`MAX_OUTPUT`].
    #[error("the output is larger than {MAX_OUTPUT} bytes: is a loop unbounded?")]
    TooLarge,
}

fn line_prefix(line: Option<usize>) -> String {
    line.map(|l| format!("line {l}: ")).unwrap_or_default()
}

/// How messages name a template: `template "NAME"`.
pub fn label(name: &str) -> String {
    format!("template \"{name}\"")
}

/// A template as asked for (`--template SRC:DEST[:MODE]`, or a line of the `templates`
/// parameter), before its source is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateArg {
    /// The template file.
    pub source: PathBuf,
    /// The output path relative to the output directory.
    pub dest: String,
    /// The file mode, `None` for [`DEFAULT_MODE`].
    pub mode: Option<u32>,
}

impl TemplateArg {
    /// Parses `SRC:DEST[:MODE]`: MODE is octal (`0600`, `600`); SRC may contain `:`, DEST may
    /// not. The error says what was expected.
    pub fn parse(s: &str) -> Result<TemplateArg, String> {
        let s = s.trim();
        let usage =
            || format!("{s:?}: expected SRC:DEST[:MODE], e.g. /etc/tmpl/app.env.tmpl:app.env:0600");
        let (rest, mode) = match s.rsplit_once(':') {
            Some((rest, m))
                if rest.contains(':') && !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()) =>
            {
                let mode = u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|v| *v <= 0o777)
                    .ok_or_else(|| {
                        format!("{s:?}: mode {m:?} is not an octal file mode between 0000 and 0777")
                    })?;
                (rest, Some(mode))
            }
            _ => (s, None),
        };
        let (source, dest) = rest.rsplit_once(':').ok_or_else(usage)?;
        let (source, dest) = (source.trim(), dest.trim());
        if source.is_empty() || dest.is_empty() {
            return Err(usage());
        }
        Ok(TemplateArg {
            source: PathBuf::from(source),
            dest: dest.to_owned(),
            mode,
        })
    }
}

/// A template ready to render: its source text, read and syntax-checked at load time.
#[derive(Clone, PartialEq, Eq)]
pub struct TemplateSpec {
    /// The template's name in messages: its path as given.
    pub name: String,
    /// The output path relative to the output directory.
    pub dest: String,
    /// The file mode.
    pub mode: u32,
    /// The template text (not secret: it comes from the configuration).
    pub source: String,
}

impl std::fmt::Debug for TemplateSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateSpec")
            .field("name", &self.name)
            .field("dest", &self.dest)
            .field("mode", &format_args!("{:04o}", self.mode))
            .field("source_bytes", &self.source.len())
            .finish()
    }
}

/// The environment every template is compiled and rendered in.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_fuel(Some(FUEL));
    // A file's last newline is part of it (an env-file ends with one); Jinja drops it.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.add_filter("b64encode", b64encode);
    env.add_filter("b64decode", b64decode);
    env.add_filter("fromjson", fromjson);
    env.add_filter("urlcomponent", urlcomponent);
    env
}

/// Prefix of the details this module's filters write: safe to show.
const OWN: &str = "filter ";

fn own_error(what: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("{OWN}{what}"))
}

fn b64encode(v: &Value) -> Result<String, Error> {
    let bytes: &[u8] = match v.as_bytes() {
        Some(b) => b,
        None => return Err(own_error("b64encode: expects a string or bytes")),
    };
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn urlcomponent(v: &Value) -> Result<String, Error> {
    let bytes = v
        .as_bytes()
        .ok_or_else(|| own_error("urlcomponent: expects a string or bytes"))?;
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

fn b64decode(v: &Value) -> Result<Value, Error> {
    let text = v
        .as_str()
        .ok_or_else(|| own_error("b64decode: expects a string"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| own_error("b64decode: the input is not standard base64"))?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => Value::from(s),
        Err(e) => Value::from_bytes(e.into_bytes()),
    })
}

fn fromjson(v: &Value) -> Result<Value, Error> {
    let text = v
        .as_str()
        .ok_or_else(|| own_error("fromjson: expects a string"))?;
    let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        own_error(&format!(
            "fromjson: not JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    Ok(json_value(doc))
}

/// A JSON document as a template value (serde_json's recursion limit bounds the depth).
fn json_value(v: serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(b),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (_, Some(u), _) => Value::from(u),
            (_, _, Some(f)) => Value::from(f),
            _ => Value::from(n.to_string()),
        },
        J::String(s) => Value::from(s),
        J::Array(a) => Value::from(a.into_iter().map(json_value).collect::<Vec<_>>()),
        J::Object(o) => Value::from_pairs(o.into_iter().map(|(k, v)| (k, json_value(v)))),
    }
}

/// Checks `source`'s syntax; the error is one line naming the template and the line.
pub fn check(name: &str, source: &str) -> Result<(), TemplateError> {
    let env = environment();
    env.template_from_named_str(name, source)
        .map(drop)
        .map_err(|e| describe(&e, &[]))
}

/// `e` as a [`TemplateError`]: `line N: KIND[: DETAIL]`, the detail only when it cannot
/// hold a value (see the module doc).
fn describe(e: &Error, values: &[&[u8]]) -> TemplateError {
    let safe_kind = matches!(
        e.kind(),
        ErrorKind::SyntaxError
            | ErrorKind::UndefinedError
            | ErrorKind::UnknownFilter
            | ErrorKind::UnknownTest
            | ErrorKind::UnknownFunction
            | ErrorKind::UnknownMethod
            | ErrorKind::MissingArgument
            | ErrorKind::TooManyArguments
            | ErrorKind::BadEscape
            | ErrorKind::OutOfFuel
    );
    let detail = e
        .detail()
        .filter(|d| safe_kind || d.starts_with(OWN))
        .filter(|d| {
            !values
                .iter()
                .any(|v| !v.is_empty() && d.as_bytes().windows(v.len()).any(|w| w == *v))
        })
        .map(|d| format!(": {}", d.replace('\n', " ")))
        .unwrap_or_default();
    let hint = match e.kind() {
        ErrorKind::UndefinedError => {
            " (objects holds each published file by its path; test optional ones with `\"alias\" in objects`)"
        }
        ErrorKind::OutOfFuel => " (the template does too much work: simplify its loops)",
        _ => "",
    };
    TemplateError::Render {
        line: e.line(),
        kind: e.kind(),
        detail,
        hint,
    }
}

/// A [`std::io::Write`] that fails past [`MAX_OUTPUT`] bytes.
struct Bounded(Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.0.len().saturating_add(b.len()) > MAX_OUTPUT {
            return Err(std::io::Error::other("output limit"));
        }
        self.0.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Renders `spec` with `objects` (published path → content). The error is one line naming
/// the line in the template, never a value.
pub fn render(
    spec: &TemplateSpec,
    objects: &[(&str, &SecretBytes)],
) -> Result<SecretBytes, TemplateError> {
    let env = environment();
    let values: Vec<&[u8]> = objects.iter().map(|(_, v)| v.expose()).collect();
    let tmpl = env
        .template_from_named_str(&spec.name, &spec.source)
        .map_err(|e| describe(&e, &values))?;
    let map: BTreeMap<String, Value> = objects
        .iter()
        .map(|(k, v)| {
            let value = match std::str::from_utf8(v.expose()) {
                Ok(s) => Value::from(s),
                Err(_) => Value::from_bytes(v.expose().to_vec()),
            };
            ((*k).to_owned(), value)
        })
        .collect();
    let ctx = minijinja::context! { objects => Value::from(map) };
    let mut out = Bounded(Vec::new());
    match tmpl.render_captured_to(ctx, &mut out) {
        Ok(_) => Ok(SecretBytes::new(out.0)),
        Err(e) if e.kind() == ErrorKind::WriteFailure => Err(TemplateError::TooLarge),
        Err(e) => Err(describe(&e, &values)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(source: &str) -> TemplateSpec {
        TemplateSpec {
            name: "app.env.tmpl".into(),
            dest: "app.env".into(),
            mode: 0o600,
            source: source.into(),
        }
    }

    fn run(source: &str, objects: &[(&str, &str)]) -> Result<String, TemplateError> {
        let owned: Vec<(String, SecretBytes)> = objects
            .iter()
            .map(|(k, v)| (k.to_string(), SecretBytes::new(v.as_bytes())))
            .collect();
        let refs: Vec<(&str, &SecretBytes)> = owned.iter().map(|(k, v)| (k.as_str(), v)).collect();
        render(&spec(source), &refs).map(|b| String::from_utf8(b.into_inner()).unwrap())
    }

    #[test]
    fn parses_src_dest_and_mode() {
        let a = TemplateArg::parse("/t/app.env.tmpl:app.env:0600").unwrap();
        assert_eq!(a.source, PathBuf::from("/t/app.env.tmpl"));
        assert_eq!((a.dest.as_str(), a.mode), ("app.env", Some(0o600)));
        let a = TemplateArg::parse("t.tmpl:conf/db.url").unwrap();
        assert_eq!((a.dest.as_str(), a.mode), ("conf/db.url", None));
        // A colon in SRC is kept; a numeric last part after two colons is the mode.
        let a = TemplateArg::parse("c:/x.tmpl:out:400").unwrap();
        assert_eq!(a.source, PathBuf::from("c:/x.tmpl"));
        assert_eq!(a.mode, Some(0o400));
        for bad in ["nodest", ":out", "src:", "s:d:0999", "s:d:1777"] {
            assert!(TemplateArg::parse(bad).is_err(), "{bad}");
        }
    }

    // reference: issue 11 item 3 (objects map, filters for base64 and JSON)
    #[test]
    fn renders_objects_with_base64_and_json_filters() {
        let out = run(
            "DB_PASSWORD={{ objects[\"db-password\"] }}\nURL={{ objects.user | urlcomponent }}:{{ \"p@ss w/rd:~\" | urlcomponent }}\nB64={{ objects.user | b64encode }}\nPLAIN={{ \"aGk=\" | b64decode }}\nPORT={{ (objects.cfg | fromjson).port }}\nJ={{ objects.user | tojson }}\n",
            &[("db-password", "pw-1"), ("user", "app"), ("cfg", r#"{"port":5432}"#)],
        )
        .unwrap();
        assert_eq!(
            out,
            "DB_PASSWORD=pw-1\nURL=app:p%40ss%20w%2Frd%3A~\nB64=YXBw\nPLAIN=hi\nPORT=5432\nJ=\"app\"\n"
        );
    }

    // reference: issue 11 item 3 (undefined names are errors; errors name the line), issue 13
    // item 2 (a typed cause, without the template's name: the caller labels it)
    #[test]
    fn undefined_names_are_errors_naming_the_line() {
        let e = run("ok\n{{ objects[\"nope\"] }}", &[("db", "hunter2-value")]).unwrap_err();
        assert!(
            matches!(
                e,
                TemplateError::Render {
                    line: Some(2),
                    kind: ErrorKind::UndefinedError,
                    ..
                }
            ),
            "{e:?}"
        );
        let m = e.to_string();
        assert!(m.starts_with("line 2: undefined value"), "{m}");
        assert!(
            !m.contains("app.env.tmpl"),
            "the caller names the template: {m}"
        );
        assert_eq!(
            format!("{}: {e}", label("app.env.tmpl")),
            format!("template \"app.env.tmpl\": {m}")
        );
        let e = run("{{ missing }}", &[]).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("undefined"), "{e}");
        // Optional objects can be tested for.
        assert_eq!(
            run("{% if \"x\" in objects %}x{% else %}none{% endif %}", &[]).unwrap(),
            "none"
        );
    }

    // reference: docs/threat-model.md (no value in errors), issue 11 item 3
    #[test]
    fn errors_never_hold_a_value() {
        let secret = "hunter2-secret-9";
        for source in [
            "{{ objects.s | int }}",
            "{{ objects.s | fromjson }}",
            "{{ objects.s | b64decode }}",
            "{{ objects.s + 1 }}",
            "{{ objects.s[objects.s] }}",
            "{{ objects[objects.s] }}",
            "{{ objects.s.foo }}",
            "{{ objects.s() }}",
            "{% for a, b in objects.s %}{% endfor %}",
            "{{ (objects.n | int) // 0 }}",
        ] {
            let e = run(source, &[("s", secret), ("n", "987654")])
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("line 1: "), "{source}: {e}");
            assert!(
                !e.contains(secret) && !e.contains("987654"),
                "{source}: {e}"
            );
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn syntax_errors_are_reported_at_load_with_the_line() {
        let e = check("t.tmpl", "a\nb\n{{ objects[ }}").unwrap_err();
        assert!(
            matches!(
                e,
                TemplateError::Render {
                    line: Some(3),
                    kind: ErrorKind::SyntaxError,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("line 3: syntax error"), "{e}");
        assert!(check("t.tmpl", "{{ objects.a | b64encode }}").is_ok());
    }

    #[test]
    fn work_and_output_are_bounded() {
        let e = run(
            "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("fuel") && e.contains("line 1"), "{e}");
        let e = run(
            "{% for i in range(100000) %}{{ objects.big }}{% endfor %}",
            &[("big", &"x".repeat(1000))],
        )
        .unwrap_err();
        assert_eq!(e, TemplateError::TooLarge);
        assert!(e.to_string().contains("larger than"), "{e}");
    }

    #[test]
    fn no_auto_escaping_and_trailing_newline_kept() {
        let mut s = spec("{{ objects.a }}\n");
        s.name = "conf.json".into();
        let v = SecretBytes::new(b"<a&\"b\">".to_vec());
        let out = render(&s, &[("a", &v)]).unwrap();
        assert_eq!(out.expose(), b"<a&\"b\">\n");
    }
}
