//! The templates of a plan (issue 11 item 3): `--template SRC:DEST[:MODE]` flags and the
//! `templates` parameter (one `SRC:DEST[:MODE]` per line; a relative SRC is read next to the
//! config file, so one ConfigMap can carry both). Each source is read here (bounded, like
//! every file the configuration names) and its syntax checked, so `check` and a reload
//! report a broken template before any fetch; its output path obeys the objects' path rules
//! and may not meet an object's file or directory, nor another template's.

use std::path::Path;

use super::objects::{unsafe_character, validate_path};
use super::{ConfigError, ObjectLayout, ObjectSpec, Parameters};
use crate::template::{DEFAULT_MODE, MAX_TEMPLATE_FILE, TemplateArg, TemplateSpec};

pub use super::params::TEMPLATES as PARAMETER;

/// Every template of `args` (flags, relative to the working directory) then of the
/// `templates` parameter (relative to `base_dir`), read and checked; problems go to `errs`.
pub(crate) fn from_sources(
    args: &[TemplateArg],
    params: &Parameters,
    base_dir: &Path,
    objects: &[ObjectSpec],
    errs: &mut Vec<ConfigError>,
) -> Vec<TemplateSpec> {
    let mut wanted: Vec<TemplateArg> = args.to_vec();
    for (i, line) in params.get(PARAMETER).lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match TemplateArg::parse(line) {
            Ok(mut a) => {
                if a.source.is_relative() {
                    a.source = base_dir.join(&a.source);
                }
                wanted.push(a);
            }
            Err(e) => errs.push(ConfigError::Other(format!(
                "parameter {PARAMETER} line {}: {e}",
                i.saturating_add(1)
            ))),
        }
    }
    let mut out: Vec<TemplateSpec> = Vec::with_capacity(wanted.len());
    for a in wanted {
        let name = a.source.display().to_string();
        let mut ok = true;
        let mut fail = |msg: String| {
            errs.push(ConfigError::Other(format!(
                "{}: {msg}",
                crate::template::label(&name)
            )));
            ok = false;
        };
        if let Err(p) = validate_path(&a.dest) {
            fail(format!("output path {:?}: {p}", a.dest));
        } else if let Some(ch) = unsafe_character(&a.dest) {
            fail(format!(
                "output path {:?} contains U+{:04X}: control, bidi and zero-width characters are not allowed",
                a.dest,
                u32::from(ch)
            ));
        } else if let Some(other) = clash(&a.dest, objects, &out) {
            fail(format!(
                "output path {:?} meets {other}: give the template another DEST",
                a.dest
            ));
        }
        let source = match crate::files::read_to_string(&a.source, MAX_TEMPLATE_FILE, "template") {
            Ok(text) => Some(text),
            Err(e) => {
                errs.push(ConfigError::Other(e.to_string()));
                ok = false;
                None
            }
        };
        if let Some(text) = &source
            && let Err(e) = crate::template::check(&name, text)
        {
            errs.push(ConfigError::Other(format!(
                "{}: {e}",
                crate::template::label(&name)
            )));
            ok = false;
        }
        if let (true, Some(source)) = (ok, source) {
            out.push(TemplateSpec {
                name,
                dest: a.dest,
                mode: a.mode.unwrap_or(DEFAULT_MODE),
                source,
            });
        }
    }
    out
}

/// What `dest` would overwrite or put a directory over: the file of an object, anything
/// under an object's directory (history, TLS layout) or a file of an earlier template.
fn clash(dest: &str, objects: &[ObjectSpec], earlier: &[TemplateSpec]) -> Option<String> {
    let meets = |p: &str| {
        dest == p
            || dest.strip_prefix(p).is_some_and(|r| r.starts_with('/'))
            || p.strip_prefix(dest).is_some_and(|r| r.starts_with('/'))
    };
    for o in objects {
        let dir = o.is_history() || o.layout == ObjectLayout::Tls;
        if meets(&o.path) {
            let what = if dir { "the directory" } else { "the file" };
            return Some(format!("{what} {:?} of {}", o.path, o.label()));
        }
    }
    earlier
        .iter()
        .find(|t| meets(&t.dest))
        .map(|t| format!("the output {:?} of template \"{}\"", t.dest, t.name))
}
