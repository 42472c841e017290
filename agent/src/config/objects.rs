//! The `objects` parameter: an outer YAML mapping whose `array` is a list of strings, each a
//! YAML (or JSON) document describing one Key Vault object (`docs/reference-provider.md` §1.3–1.4).
//!
//! Parsing mirrors the reference's yaml.v3 decoding: string fields take the literal scalar
//! text (`filePermission: 0755` is the text `0755`, an octal mode), `objectVersionHistory`
//! must be an integer (a quoted `"5"` fails), unknown fields are ignored, string fields are
//! trimmed. Validation keeps the reference's texts and order (format, encoding, file name)
//! and adds what the reference misses: object type, file permission, the CSI driver's path
//! rules, duplicate output paths and file/directory collisions, all reported at once.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::params::{Parameters, Text, one_line};
use super::{
    ConfigError, DEFAULT_FILE_MODE, ObjectEncoding, ObjectFormat, ObjectLayout, ObjectProblem,
    ObjectSpec, ObjectType,
};

/// Longest path the AtomicWriter accepts.
const MAX_PATH_LEN: usize = 4096;
/// Longest path component the AtomicWriter accepts.
const MAX_COMPONENT_LEN: usize = 255;

/// One element of `objects.array`, as parsed (the reference's `KeyVaultObject`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename = "KeyVaultObject")]
pub(crate) struct RawObject {
    #[serde(rename = "objectName")]
    pub object_name: Text,
    #[serde(rename = "objectAlias")]
    pub object_alias: Text,
    #[serde(rename = "objectVersion")]
    pub object_version: Text,
    #[serde(rename = "objectVersionHistory")]
    pub object_version_history: Int32,
    #[serde(rename = "objectType")]
    pub object_type: Text,
    #[serde(rename = "objectFormat")]
    pub object_format: Text,
    #[serde(rename = "objectEncoding")]
    pub object_encoding: Text,
    #[serde(rename = "filePermission")]
    pub file_permission: Text,
    // Agent extensions: the reference unmarshals into a struct without these fields, so it
    // ignores them and one SecretProviderClass serves both.
    #[serde(rename = "objectOptional")]
    pub object_optional: Text,
    #[serde(rename = "objectJsonPointer")]
    pub object_json_pointer: Text,
    #[serde(rename = "objectLayout")]
    pub object_layout: Text,
}

impl RawObject {
    /// The reference's `formatKeyVaultObject`: trim every string field, not the int.
    fn trimmed(mut self) -> Self {
        for f in [
            &mut self.object_name,
            &mut self.object_alias,
            &mut self.object_version,
            &mut self.object_type,
            &mut self.object_format,
            &mut self.object_encoding,
            &mut self.file_permission,
            &mut self.object_optional,
            &mut self.object_layout,
        ] {
            let t = f.0.trim();
            if t.len() != f.0.len() {
                f.0 = t.to_owned();
            }
        }
        self
    }

    /// The reference's `GetFileName`: alias wins over name.
    fn file_name(&self) -> &str {
        if self.object_alias.0.is_empty() {
            &self.object_name.0
        } else {
            &self.object_alias.0
        }
    }

    fn wrap(&self, index: usize, problem: ObjectProblem) -> ConfigError {
        ConfigError::Object {
            index,
            object_type: self.object_type.0.clone(),
            name: self.object_name.0.clone(),
            version: self.object_version.0.clone(),
            problem,
        }
    }

    /// `objectType:secret, objectName:x`: how other objects are named in collision messages.
    fn short_identity(&self) -> String {
        format!(
            "objectType:{}, objectName:{}",
            self.object_type.0, self.object_name.0
        )
    }
}

/// yaml.v3 decoding into an `int32`: integers only; a string, even `"5"`, is an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Int32(pub i32);

impl<'de> Deserialize<'de> for Int32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = i32;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<i32, E> {
                i32::try_from(v).map_err(|_| E::custom(too_big(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<i32, E> {
                i32::try_from(v).map_err(|_| E::custom(too_big(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<i32, E> {
                // yaml.v3 stores a float that fits, truncated.
                if v.is_finite() && v >= f64::from(i32::MIN) && v <= f64::from(i32::MAX) {
                    Ok(v as i32)
                } else {
                    Err(E::custom(too_big(v)))
                }
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<i32, E> {
                Err(E::custom(not_a_number(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<i32, E> {
                Err(E::custom(not_a_number(format!("{v:?}"))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<i32, E> {
                Ok(0)
            }
            fn visit_none<E: de::Error>(self) -> Result<i32, E> {
                Ok(0)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<i32, D::Error> {
                d.deserialize_any(V)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, _m: A) -> Result<i32, A::Error> {
                Err(de::Error::custom(not_a_number("a mapping")))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, _s: A) -> Result<i32, A::Error> {
                Err(de::Error::custom(not_a_number("a list")))
            }
        }
        d.deserialize_any(V).map(Int32)
    }
}

/// Our words for a value `objectVersionHistory` cannot take (the only integer field; serde
/// puts the field name in front).
fn not_a_number(v: impl fmt::Display) -> String {
    format!("{v} is not a number: use a whole number of versions such as 3 (unquoted)")
}

fn too_big(v: impl fmt::Display) -> String {
    format!("{v} is too large: use a whole number of versions from 0 to 2147483647")
}

#[derive(Deserialize)]
#[serde(rename = "StringArray")]
struct StringArray {
    #[serde(default)]
    array: Option<Vec<Text>>,
}

/// Parses the `objects` string into raw, trimmed objects (reference texts on failure).
pub(crate) fn parse_objects(objects: &str) -> Result<Vec<RawObject>, Vec<ConfigError>> {
    // The outer file's limits do not see inside the `objects` block scalar. One token
    // budget covers this string and all its elements, so many small elements cannot add
    // up to unbounded parser work.
    let mut budget = super::limits::MAX_TOKENS;
    if let Err(e) = super::limits::check_within(objects, &mut budget) {
        return Err(vec![ConfigError::ObjectsYaml(format!(
            "the objects parameter {e}"
        ))]);
    }
    // Syntax errors read `yaml: ...`, shape errors `yaml: unmarshal errors: ...`, like
    // yaml.v3.
    if let Err(e) = serde_yaml::from_str::<serde_yaml::Value>(objects) {
        return Err(vec![ConfigError::ObjectsYaml(format!(
            "yaml: {}",
            one_line(e)
        ))]);
    }
    let outer: StringArray = serde_yaml::from_str(objects).map_err(|e| {
        vec![ConfigError::ObjectsYaml(format!(
            "yaml: unmarshal errors: {}",
            one_line(e)
        ))]
    })?;
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for (index, element) in outer.array.unwrap_or_default().into_iter().enumerate() {
        if let Err(e) = super::limits::check_within(&element.0, &mut budget) {
            errs.push(ConfigError::ObjectYaml {
                index,
                reason: format!("the object {e}"),
            });
            if matches!(e, super::limits::YamlLimit::TooManyTokens { .. }) {
                break; // every later element would fail the same way
            }
            continue;
        }
        match parse_element(&element.0) {
            Ok(o) => out.push(o.trimmed()),
            Err(reason) => errs.push(ConfigError::ObjectYaml { index, reason }),
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

/// Parses one element (already through [`super::limits::check_within`]).
fn parse_element(text: &str) -> Result<RawObject, String> {
    // yaml.v3 decodes an empty document into the zero value without complaint.
    if text.trim().is_empty() {
        return Ok(RawObject::default());
    }
    if let Err(e) = serde_yaml::from_str::<serde_yaml::Value>(text) {
        return Err(format!("yaml: {}", one_line(e)));
    }
    serde_yaml::from_str::<Option<RawObject>>(text)
        .map(Option::unwrap_or_default)
        .map_err(one_line)
}

/// Warnings for keys of `objects` elements the agent does not read (the reference ignores
/// them silently), with a did-you-mean for slips: `objects[0]: unknown key "objectname" is
/// ignored: did you mean "objectName"?`. Nothing when the string does not parse (that is
/// an error reported elsewhere).
pub(crate) fn unknown_keys(objects: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut budget = super::limits::MAX_TOKENS;
    if objects.trim().is_empty() || super::limits::check_within(objects, &mut budget).is_err() {
        return out;
    }
    let Ok(outer) = serde_yaml::from_str::<StringArray>(objects) else {
        return out;
    };
    let known = super::names::struct_fields::<RawObject>();
    for (index, element) in outer.array.unwrap_or_default().iter().enumerate() {
        if super::limits::check_within(&element.0, &mut budget).is_err() {
            break;
        }
        let Ok(serde_yaml::Value::Mapping(m)) = serde_yaml::from_str(&element.0) else {
            continue;
        };
        for key in m.keys().filter_map(serde_yaml::Value::as_str) {
            if known.contains(&key) {
                continue;
            }
            let key = one_line(key);
            out.push(match super::names::did_you_mean(&key, known) {
                Some(k) => {
                    format!("objects[{index}]: unknown key {key:?} is ignored: did you mean {k:?}?")
                }
                None => format!("objects[{index}]: unknown key {key:?} is ignored"),
            });
        }
    }
    out
}

/// Reads and validates the `objects` parameter, pushing every problem onto `errs`.
/// Returns the valid objects (only meaningful when no error was pushed).
pub(crate) fn from_parameters(params: &Parameters, errs: &mut Vec<ConfigError>) -> Vec<ObjectSpec> {
    let objects = params.get("objects");
    if objects.is_empty() {
        errs.push(ConfigError::ObjectsNotSet);
        return Vec::new();
    }
    let raws = match parse_objects(objects) {
        Ok(r) => r,
        Err(mut e) => {
            errs.append(&mut e);
            return Vec::new();
        }
    };
    let mut specs = Vec::with_capacity(raws.len());
    // Every object with a valid path takes part in the collision check, even when another
    // of its fields is wrong, so one run reports everything.
    let mut outputs = Vec::with_capacity(raws.len());
    // A TLS layout object owns three files under its path, checked like three objects.
    let tls_files: Vec<Vec<String>> = raws
        .iter()
        .map(|r| match r.object_layout.0.eq_ignore_ascii_case("tls") {
            true => super::TLS_FILES
                .iter()
                .map(|f| format!("{}/{f}", r.file_name()))
                .collect(),
            false => Vec::new(),
        })
        .collect();
    for (index, raw) in raws.iter().enumerate() {
        let mut problems = Vec::new();
        let spec = validate_object(index, raw, &mut problems);
        let ok = problems.is_empty();
        let lines: Vec<ConfigError> = problems.into_iter().map(|p| raw.wrap(index, p)).collect();
        let history = raw.object_version_history.0;
        let valid = validate_path(raw.file_name()).is_ok();
        if tls_files[index].is_empty() {
            outputs.push(Out {
                raw,
                index,
                path: valid.then(|| raw.file_name()),
                history: (history > 1).then_some(history as u32),
                errs: lines,
            });
        } else {
            let mut lines = Some(lines);
            for f in &tls_files[index] {
                outputs.push(Out {
                    raw,
                    index,
                    path: valid.then_some(f.as_str()),
                    history: None,
                    errs: lines.take().unwrap_or_default(),
                });
            }
        }
        if let Some(spec) = spec.filter(|_| ok) {
            specs.push(spec);
        }
    }
    check_collisions(&mut outputs);
    // Keep plan order in the messages: each object's own problems, then its clash.
    for o in outputs {
        errs.extend(o.errs);
    }
    specs
}

/// One object's output for the collision check, with its problems so far.
struct Out<'a> {
    raw: &'a RawObject,
    /// Index of the object in `objects.array`.
    index: usize,
    /// `None` when the path itself is invalid (already reported).
    path: Option<&'a str>,
    /// `Some(n)` in history mode.
    history: Option<u32>,
    errs: Vec<ConfigError>,
}

/// Validates one trimmed object. Problems are returned unwrapped, in the reference's order
/// (format, encoding, file name) followed by ours.
fn validate_object(
    index: usize,
    raw: &RawObject,
    problems: &mut Vec<ObjectProblem>,
) -> Option<ObjectSpec> {
    let type_str = raw.object_type.0.as_str();
    let object_type = match type_str {
        "secret" => Some(ObjectType::Secret),
        "key" => Some(ObjectType::Key),
        "cert" => Some(ObjectType::Cert),
        _ => None,
    };
    let format =
        validate_object_format(&raw.object_format.0, type_str).map_err(|p| problems.push(p));
    let encoding =
        validate_object_encoding(&raw.object_encoding.0, type_str).map_err(|p| problems.push(p));
    let path = raw.file_name();
    if let Err(p) = validate_file_name(path) {
        problems.push(p);
    } else if let Err(p) = validate_path(path) {
        problems.push(p);
    }
    if object_type.is_none() {
        problems.push(ObjectProblem::InvalidType);
    }
    if raw.object_name.0.is_empty() && !raw.object_alias.0.is_empty() {
        // Without an alias the empty name already failed as an empty file name.
        problems.push(ObjectProblem::EmptyName);
    } else if !raw.object_name.0.is_empty() && !is_object_name(&raw.object_name.0) {
        problems.push(ObjectProblem::InvalidName {
            index,
            name: shorten(&raw.object_name.0),
        });
    }
    if !is_object_version(&raw.object_version.0) {
        problems.push(ObjectProblem::InvalidVersion {
            index,
            version: shorten(&raw.object_version.0),
        });
    }
    // Without an alias the path is the name, already held to the stricter name rule.
    if let Some(ch) = (!raw.object_alias.0.is_empty())
        .then(|| unsafe_character(path))
        .flatten()
    {
        problems.push(ObjectProblem::UnsafeCharacter {
            index,
            path: shorten(path),
            ch: format!("U+{:04X}", u32::from(ch)),
        });
    }
    let mode =
        file_permission(&raw.file_permission.0, DEFAULT_FILE_MODE).map_err(|p| problems.push(p));

    let history = raw.object_version_history.0;
    let is_history = history > 1;
    let (optional, json_pointer, layout) = extensions(raw, is_history, problems);
    let version = match raw.object_version.0.as_str() {
        "" => None,
        // In history mode `latest` means "start at the newest"; in single-version mode the
        // reference sends it to Key Vault unchanged.
        "latest" if is_history => None,
        v => Some(v.to_owned()),
    };
    Some(ObjectSpec {
        name: raw.object_name.0.clone(),
        object_type: object_type?,
        version,
        history: u32::try_from(history.max(0)).unwrap_or(0),
        format: format.ok()?,
        encoding: encoding.ok()?,
        path: path.to_owned(),
        mode: mode.ok()?,
        optional,
        json_pointer,
        layout,
    })
}

/// The agent's extension keys (`objectOptional`, `objectJsonPointer`, `objectLayout`).
fn extensions(
    raw: &RawObject,
    is_history: bool,
    problems: &mut Vec<ObjectProblem>,
) -> (bool, Option<String>, ObjectLayout) {
    let optional = match raw.object_optional.0.to_ascii_lowercase().as_str() {
        "" | "false" => false,
        "true" => true,
        _ => {
            problems.push(ObjectProblem::InvalidOptional(shorten(
                &raw.object_optional.0,
            )));
            false
        }
    };
    let layout = match raw.object_layout.0.to_ascii_lowercase().as_str() {
        "" => ObjectLayout::File,
        "tls" => ObjectLayout::Tls,
        _ => {
            problems.push(ObjectProblem::InvalidLayout(shorten(&raw.object_layout.0)));
            ObjectLayout::File
        }
    };
    let t = raw.object_type.0.as_str();
    let pfx = raw.object_format.0.eq_ignore_ascii_case("pfx");
    if layout == ObjectLayout::Tls
        && (is_history
            || !(t == "cert" || t == "secret")
            || pfx
            || !raw.object_encoding.0.is_empty())
    {
        problems.push(ObjectProblem::TlsLayoutType);
    }
    // Not trimmed: a pointer's reference tokens may hold spaces.
    let pointer = raw.object_json_pointer.0.as_str();
    let json_pointer = if pointer.is_empty() {
        None
    } else if !pointer.starts_with('/') {
        problems.push(ObjectProblem::InvalidJsonPointer(shorten(pointer)));
        None
    } else {
        if t != "secret" || is_history || layout != ObjectLayout::File {
            problems.push(ObjectProblem::JsonPointerNotSecret);
        }
        Some(pointer.to_owned())
    };
    (optional, json_pointer, layout)
}

/// The reference's `validateObjectFormat`, with the `pfx`/type check made
/// case-insensitive (docs/reference-provider.md §1.4 [BUG]).
pub(crate) fn validate_object_format(
    format: &str,
    object_type: &str,
) -> Result<ObjectFormat, ObjectProblem> {
    if format.is_empty() || format.eq_ignore_ascii_case("pem") {
        return Ok(ObjectFormat::Pem);
    }
    if !format.eq_ignore_ascii_case("pfx") {
        return Err(ObjectProblem::InvalidFormat(format.to_owned()));
    }
    if object_type != "secret" {
        return Err(ObjectProblem::PfxNotSecret);
    }
    Ok(ObjectFormat::Pfx)
}

/// The reference's `validateObjectEncoding` (type checked first, then the value).
pub(crate) fn validate_object_encoding(
    encoding: &str,
    object_type: &str,
) -> Result<ObjectEncoding, ObjectProblem> {
    if encoding.is_empty() {
        return Ok(ObjectEncoding::Utf8);
    }
    if object_type != "secret" {
        return Err(ObjectProblem::EncodingNotSecret);
    }
    if encoding.eq_ignore_ascii_case("utf-8") {
        Ok(ObjectEncoding::Utf8)
    } else if encoding.eq_ignore_ascii_case("hex") {
        Ok(ObjectEncoding::Hex)
    } else if encoding.eq_ignore_ascii_case("base64") {
        Ok(ObjectEncoding::Base64)
    } else {
        Err(ObjectProblem::InvalidEncoding(encoding.to_owned()))
    }
}

/// The reference's `validateFileName`: non-empty, relative, no `..` element or substring.
pub(crate) fn validate_file_name(name: &str) -> Result<(), ObjectProblem> {
    if name.is_empty() {
        return Err(ObjectProblem::EmptyFileName);
    }
    if name.starts_with('/') {
        return Err(ObjectProblem::AbsoluteFileName);
    }
    if name.split('/').any(|c| c == "..") || name.contains("..") {
        return Err(ObjectProblem::DotDot);
    }
    Ok(())
}

/// Key Vault's object-name rule: 1 to 127 ASCII letters, digits and dashes. This also
/// keeps `.`, `..` and `a/b` out of request paths (`GET /secrets/..` is `GET /secrets/`).
pub fn is_object_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Key Vault's version ids are 32 hexadecimal characters. Empty means the latest; the
/// literal `latest` is kept too (the reference sends it unchanged, history mode reads it as
/// the newest).
pub fn is_object_version(version: &str) -> bool {
    version.is_empty()
        || version == "latest"
        || (version.len() == 32 && version.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The first character of `path` that must not appear in a file name the agent writes:
/// control characters (C0, DEL, C1: a newline in a name breaks every line-based tool),
/// bidi overrides, embeddings, isolates and marks (a name that displays differently from
/// what it is), and zero-width characters (two names that look identical).
pub fn unsafe_character(path: &str) -> Option<char> {
    path.chars().find(|c| {
        c.is_control()
            || matches!(
                c,
                '\u{202A}'..='\u{202E}'
                    | '\u{2066}'..='\u{2069}'
                    | '\u{200E}'
                    | '\u{200F}'
                    | '\u{061C}'
                    | '\u{200B}'..='\u{200D}'
                    | '\u{2060}'
                    | '\u{FEFF}'
            )
    })
}

/// A value for an error message: at most 64 characters (a name can be megabytes long).
fn shorten(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// The CSI driver's and AtomicWriter's path rules on top of the reference's file-name
/// check: clean form (no empty or `.` component, no trailing slash), components ≤ 255
/// bytes, total ≤ 4096 bytes. Public so the writer can apply the same rules.
pub fn validate_path(path: &str) -> Result<(), ObjectProblem> {
    validate_file_name(path)?;
    if path.len() > MAX_PATH_LEN {
        return Err(ObjectProblem::PathTooLong);
    }
    for c in path.split('/') {
        if c.is_empty() || c == "." {
            return Err(ObjectProblem::UncleanPath(path.to_owned()));
        }
        if c.len() > MAX_COMPONENT_LEN {
            return Err(ObjectProblem::ComponentTooLong);
        }
    }
    Ok(())
}

/// `filePermission` parsed like Go `strconv.ParseInt(s, 8, 32)`, but an invalid value is an
/// error instead of mode 0 (docs/reference-provider.md §1.4 [BUG]), and only `0`–`0777` is a mode.
pub(crate) fn file_permission(value: &str, default: u32) -> Result<u32, ObjectProblem> {
    if value.is_empty() {
        return Ok(default);
    }
    let syntax = || {
        ObjectProblem::FilePermission(format!(
            "{value:?}: not an octal number: use a mode such as \"0644\" or \"0440\""
        ))
    };
    let (negative, digits) = match value.as_bytes()[0] {
        b'+' => (false, &value[1..]),
        b'-' => (true, &value[1..]),
        _ => (false, value),
    };
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(syntax());
    }
    let parsed = i64::from_str_radix(digits, 8)
        .ok()
        .filter(|v| *v <= i64::from(i32::MAX));
    let Some(mode) = parsed else {
        return Err(ObjectProblem::FilePermission(format!(
            "{value:?}: not a file mode between 0000 and 0777"
        )));
    };
    if negative && mode != 0 || mode > 0o777 {
        return Err(ObjectProblem::FilePermission(format!(
            "{value:?}: not a file mode between 0000 and 0777"
        )));
    }
    Ok(mode as u32)
}

/// Rejects duplicate output paths and file/directory collisions (the reference and driver
/// let the last one win, or fail inside the writer). Each object writes files `F` and needs
/// directories `D`: a plain object `p` writes `{p}` under its ancestors; a history object
/// writes `{p/0 .. p/n-1}` and needs `p` too. Two objects clash when their `F` meet
/// (duplicate) or one's `F` meets the other's `D` (collision). History sets are tested by
/// membership, never expanded: `objectVersionHistory` may be large.
fn check_collisions(outs: &mut [Out<'_>]) {
    // Accepted objects so far, by path.
    let mut singles: BTreeMap<&str, usize> = BTreeMap::new();
    let mut histories: BTreeMap<&str, (usize, u32)> = BTreeMap::new();
    let mut dirs: BTreeMap<&str, usize> = BTreeMap::new();

    for i in 0..outs.len() {
        let Some(path) = outs[i].path else { continue };
        let history = outs[i].history;
        // Is `x` a version file of an accepted history object?
        let history_file = |x: &str| -> Option<usize> {
            let (parent, last) = x.rsplit_once('/')?;
            let &(j, n) = histories.get(parent)?;
            history_index(last).filter(|k| *k < n).map(|_| j)
        };
        let owner = |j: usize| outs[j].raw.short_identity();
        // A file object `j` writes (its first version file in history mode).
        let file_of = |j: usize| {
            let p = outs[j].path.unwrap_or_default();
            match outs[j].history {
                Some(_) => format!("{p}/0"),
                None => p.to_owned(),
            }
        };
        let dup = |p: String, j: usize| ObjectProblem::DuplicatePath {
            path: p,
            other: owner(j),
        };
        let clash = |p: String, other_path: String, j: usize| ObjectProblem::PathCollision {
            path: p,
            other_path,
            other: owner(j),
        };

        let mut problem = None;
        match history {
            None => {
                if let Some(&j) = singles.get(path) {
                    problem = Some(dup(path.into(), j));
                } else if let Some(j) = history_file(path) {
                    problem = Some(dup(path.into(), j));
                } else if let Some(&j) = dirs.get(path) {
                    problem = Some(clash(path.into(), file_of(j), j));
                }
            }
            Some(n) => {
                let first = format!("{path}/0");
                if let Some(&(j, _)) = histories.get(path) {
                    problem = Some(dup(first, j));
                } else if let Some(&j) = singles.get(path) {
                    problem = Some(clash(first, path.into(), j));
                } else if let Some(j) = history_file(path) {
                    problem = Some(clash(first, path.into(), j));
                } else {
                    // Earlier files or directories inside this history directory.
                    let prefix = format!("{path}/");
                    let inside = |m: &BTreeMap<&str, usize>| {
                        m.range(prefix.as_str()..)
                            .take_while(|(p, _)| p.starts_with(&prefix))
                            .find(|(p, _)| history_index(&p[prefix.len()..]).is_some_and(|k| k < n))
                            .map(|(p, j)| (p.to_string(), *j))
                    };
                    if let Some((p, j)) = inside(&singles) {
                        problem = Some(dup(p, j));
                    } else if let Some((p, j)) = inside(&dirs) {
                        problem = Some(clash(p, file_of(j), j));
                    }
                }
            }
        }
        if problem.is_none() {
            // An ancestor directory of this object is a file of an earlier one.
            for dir in ancestors(path) {
                if let Some(j) = singles.get(dir).copied().or_else(|| history_file(dir)) {
                    problem = Some(clash(path.into(), dir.into(), j));
                    break;
                }
            }
        }

        match problem {
            Some(p) => {
                let e = outs[i].raw.wrap(outs[i].index, p);
                outs[i].errs.push(e);
            }
            None => {
                match history {
                    None => {
                        singles.insert(path, i);
                    }
                    Some(n) => {
                        histories.insert(path, (i, n));
                        dirs.entry(path).or_insert(i);
                    }
                }
                for dir in ancestors(path) {
                    dirs.entry(dir).or_insert(i);
                }
            }
        }
    }
}

/// Proper ancestor directories of a clean relative path: `a/b/c` → `a`, `a/b`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// A history file name (`0`, `1`, ... in canonical decimal).
fn history_index(s: &str) -> Option<u32> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(o: &RawObject) -> Vec<ObjectProblem> {
        let mut p = Vec::new();
        validate_object(0, o, &mut p);
        p
    }

    fn raw(yaml: &str) -> RawObject {
        parse_element(yaml).unwrap().trimmed()
    }

    /// Validates a whole `objects` string; returns specs and error lines.
    fn run(objects: &str) -> (Vec<ObjectSpec>, Vec<String>) {
        let mut errs = Vec::new();
        let specs = from_parameters(&Parameters::from_pairs([("objects", objects)]), &mut errs);
        (specs, errs.iter().map(ToString::to_string).collect())
    }

    /// An `objects` string from one YAML document per element.
    fn objects(elements: &[&str]) -> String {
        let mut s = String::from("array:\n");
        for e in elements {
            s.push_str("  - |\n");
            for line in e.lines() {
                s.push_str("    ");
                s.push_str(line);
                s.push('\n');
            }
        }
        s
    }

    // reference: docs/reference-provider.md §1.5 validateObjectFormat
    #[test]
    fn object_format_vectors() {
        assert_eq!(validate_object_format("", "cert"), Ok(ObjectFormat::Pem));
        assert_eq!(
            validate_object_format("pkcs", "secret")
                .unwrap_err()
                .to_string(),
            "invalid objectFormat: pkcs, should be PEM or PFX"
        );
        assert_eq!(
            validate_object_format("pfx", "cert")
                .unwrap_err()
                .to_string(),
            "PFX format only supported for objectType: secret"
        );
        assert_eq!(
            validate_object_format("PFX", "secret"),
            Ok(ObjectFormat::Pfx)
        );
        assert_eq!(
            validate_object_format("pfx", "secret"),
            Ok(ObjectFormat::Pfx)
        );
        assert_eq!(validate_object_format("PEM", "key"), Ok(ObjectFormat::Pem));
    }

    // reference: docs/reference-provider.md §1.4 [BUG] the pfx/type check was case-sensitive
    #[test]
    fn upper_case_pfx_with_cert_is_rejected() {
        assert_eq!(
            validate_object_format("PFX", "cert"),
            Err(ObjectProblem::PfxNotSecret)
        );
        assert_eq!(
            validate_object_format("Pfx", "key"),
            Err(ObjectProblem::PfxNotSecret)
        );
    }

    // reference: docs/reference-provider.md §1.5 validateObjectEncoding
    #[test]
    fn object_encoding_vectors() {
        assert_eq!(
            validate_object_encoding("", "cert"),
            Ok(ObjectEncoding::Utf8)
        );
        assert_eq!(
            validate_object_encoding("utf-16", "secret")
                .unwrap_err()
                .to_string(),
            "invalid objectEncoding: utf-16, should be hex, base64 or utf-8"
        );
        assert_eq!(
            validate_object_encoding("base64", "cert")
                .unwrap_err()
                .to_string(),
            "objectEncoding only supported for objectType: secret"
        );
        assert_eq!(
            validate_object_encoding("BasE64", "secret"),
            Ok(ObjectEncoding::Base64)
        );
        assert_eq!(
            validate_object_encoding("HEX", "secret"),
            Ok(ObjectEncoding::Hex)
        );
        assert_eq!(
            validate_object_encoding("UTF-8", "secret"),
            Ok(ObjectEncoding::Utf8)
        );
    }

    // reference: docs/reference-provider.md §1.5 validateFileName
    #[test]
    fn file_name_vectors() {
        let msg = |n: &str| validate_file_name(n).map_err(|e| e.to_string());
        assert_eq!(
            msg("/secret1"),
            Err("file name must be a relative path".into())
        );
        assert_eq!(
            msg("secret1/.."),
            Err("file name must not contain '..'".into())
        );
        assert_eq!(
            msg("../secret1"),
            Err("file name must not contain '..'".into())
        );
        assert_eq!(msg(""), Err("file name must not be empty".into()));
        assert_eq!(msg("secret1"), Ok(()));
        // The reference's substring fallback also catches names like `my..secret`.
        assert_eq!(
            msg("my..secret"),
            Err("file name must not contain '..'".into())
        );
        assert_eq!(msg("dir/file"), Ok(()));
    }

    // reference: docs/reference-provider.md §1.4 (driver path rules) and docs/atomic-writer.md §A.4
    #[test]
    fn driver_path_rules() {
        let msg = |n: &str| validate_path(n).map_err(|e| e.to_string());
        assert_eq!(msg("./a"), Err("invalid filepath: \"./a\"".into()));
        assert_eq!(msg("a//b"), Err("invalid filepath: \"a//b\"".into()));
        assert_eq!(msg("a/"), Err("invalid filepath: \"a/\"".into()));
        assert_eq!(msg("a/./b"), Err("invalid filepath: \"a/./b\"".into()));
        assert_eq!(msg("."), Err("invalid filepath: \".\"".into()));
        assert_eq!(msg("..data"), Err("file name must not contain '..'".into()));
        assert_eq!(msg(&"a".repeat(255)), Ok(()));
        assert_eq!(
            msg(&"a".repeat(256)),
            Err("invalid path: filenames must be less than or equal to 255 characters".into())
        );
        let long = vec!["a".repeat(200); 21].join("/");
        assert!(long.len() > 4096);
        assert_eq!(
            msg(&long),
            Err("invalid path: must be less than or equal to 4096 characters".into())
        );
        let ok = vec!["a".repeat(200); 20].join("/");
        assert_eq!(msg(&ok), Ok(()));
    }

    // reference: docs/reference-provider.md §1.5 file permission vectors
    #[test]
    fn file_permission_vectors() {
        assert_eq!(file_permission("0600", 0o644), Ok(0o600));
        assert_eq!(file_permission("", 0o644), Ok(0o644));
        assert_eq!(file_permission("600", 0o644), Ok(0o600));
        assert_eq!(file_permission("0755", 0o644), Ok(0o755));
        assert_eq!(file_permission("755", 0o644), Ok(0o755));
        assert_eq!(file_permission("0", 0o644), Ok(0));
        assert_eq!(file_permission("+0440", 0o644), Ok(0o440));
    }

    // reference: docs/reference-provider.md §1.4 [BUG] invalid filePermission written as mode 0
    #[test]
    fn invalid_file_permissions_are_rejected() {
        for v in ["0900", "900", "rw", "0x1ff", "6 4 4"] {
            let e = file_permission(v, 0o644).unwrap_err().to_string();
            // reference: issue 12 item 4 (our words, not Go's strconv.ParseInt)
            assert_eq!(
                e,
                format!(
                    "filePermission {v:?}: not an octal number: use a mode such as \"0644\" or \"0440\""
                )
            );
        }
        let e = file_permission("777777777777", 0o644)
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("not a file mode between 0000 and 0777"), "{e}");
        for v in ["-1", "1000", "4755"] {
            let e = file_permission(v, 0o644).unwrap_err().to_string();
            assert!(e.starts_with("filePermission "), "{e}");
            assert!(e.contains("between 0000 and 0777"), "{e}");
        }
    }

    // reference: docs/reference-provider.md §1.3 (yaml.v3 keeps the literal text `0755`)
    #[test]
    fn unquoted_octal_permission_is_octal() {
        let (specs, errs) = run(&objects(&[
            "objectName: a\nobjectType: secret\nfilePermission: 0755",
        ]));
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(specs[0].mode, 0o755);
        let (specs, _) = run(&objects(&[
            "objectName: a\nobjectType: secret\nfilePermission: 600",
        ]));
        assert_eq!(specs[0].mode, 0o600);
        let (specs, _) = run(&objects(&[
            "objectName: a\nobjectType: secret\nfilePermission: \"0440\"",
        ]));
        assert_eq!(specs[0].mode, 0o440);
        let (specs, _) = run(&objects(&["objectName: a\nobjectType: secret"]));
        assert_eq!(specs[0].mode, 0o644);
    }

    // reference: docs/reference-provider.md §1.5 whitespace trimming (int field untouched)
    #[test]
    fn string_fields_are_trimmed() {
        let o = raw(
            "objectName: \"secret1     \"\nobjectEncoding: \"base64   \"\nobjectType: \"  secret\"\nobjectVersionHistory: 3",
        );
        assert_eq!(o.object_name.0, "secret1");
        assert_eq!(o.object_encoding.0, "base64");
        assert_eq!(o.object_type.0, "secret");
        assert_eq!(o.object_version_history.0, 3);
    }

    // reference: docs/reference-provider.md §1.5 object-level helpers (file name, ids)
    #[test]
    fn file_name_and_ids() {
        let (specs, errs) = run(&objects(&[
            "objectName: single-version\nobjectType: secret",
            "objectName: aliased\nobjectAlias: other\nobjectType: secret",
            "objectName: multiple-versions\nobjectAlias: alias\nobjectType: secret\nobjectVersionHistory: 2",
        ]));
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(specs[0].path, "single-version");
        assert_eq!(specs[0].id(), "secret/single-version");
        assert_eq!(specs[1].path, "other");
        assert!(specs[2].is_history());
        assert_eq!(specs[2].history_id(0), "secret/multiple-versions/0");
        // An empty name and no alias is an empty file name.
        let o = raw("objectType: secret");
        assert_eq!(o.file_name(), "");
        assert_eq!(problems(&o), vec![ObjectProblem::EmptyFileName]);
    }

    #[test]
    fn versions_latest_and_history() {
        let (specs, errs) = run(&objects(&[
            "objectName: a\nobjectType: secret\nobjectVersion: latest",
            "objectName: b\nobjectType: secret\nobjectVersion: latest\nobjectVersionHistory: 3",
            "objectName: c\nobjectType: key\nobjectVersion: \" 3f2a0000000000000000000000000000 \"",
            "objectName: d\nobjectType: cert\nobjectVersionHistory: 1",
            "objectName: e\nobjectType: cert\nobjectVersionHistory: -4",
        ]));
        assert!(errs.is_empty(), "{errs:?}");
        // Single-version mode sends `latest` unchanged, like the reference.
        assert_eq!(specs[0].version.as_deref(), Some("latest"));
        assert_eq!((specs[1].version.as_deref(), specs[1].history), (None, 3));
        assert_eq!(
            specs[2].version.as_deref(),
            Some("3f2a0000000000000000000000000000")
        );
        assert!(!specs[3].is_history());
        assert!(!specs[4].is_history());
    }

    // reference: docs/reference-provider.md §1.4 [BUG] objectType only checked at fetch time
    #[test]
    fn unknown_object_type_is_rejected_at_validation() {
        let (specs, errs) = run(&objects(&["objectName: a\nobjectType: Secret"]));
        assert!(specs.is_empty());
        assert_eq!(
            errs,
            [
                "failed to get objectType:Secret, objectName:a, objectVersion:: Invalid vaultObjectTypes. Should be secret, key, or cert"
            ]
        );
        let (_, errs) = run(&objects(&["objectName: a"]));
        assert_eq!(errs.len(), 1);
    }

    // reference: docs/reference-provider.md §1.4 (wrapped error example)
    #[test]
    fn errors_are_wrapped_with_the_object_identity() {
        let (_, errs) = run(&objects(&[
            "objectName: secret1\nobjectType: secret\nobjectFormat: pkcs",
        ]));
        assert_eq!(
            errs,
            [
                "failed to get objectType:secret, objectName:secret1, objectVersion:: invalid objectFormat: pkcs, should be PEM or PFX"
            ]
        );
        let (_, errs) = run(&objects(&[
            "objectName: secret1\nobjectType: secret\nobjectEncoding: utf-16\nobjectVersion: 0123456789abcdef0123456789ABCDEF",
        ]));
        assert_eq!(
            errs,
            [
                "failed to get objectType:secret, objectName:secret1, objectVersion:0123456789abcdef0123456789ABCDEF: invalid objectEncoding: utf-16, should be hex, base64 or utf-8"
            ]
        );
    }

    #[test]
    fn every_problem_of_every_object_is_reported_in_order() {
        let (specs, errs) = run(&objects(&[
            "objectName: ok1\nobjectType: secret",
            "objectName: bad\nobjectType: cert\nobjectFormat: pkcs\nobjectEncoding: hex\nobjectAlias: /abs\nfilePermission: 0900",
            "objectName: x\nobjectType: nope",
        ]));
        assert_eq!(specs.len(), 1);
        assert_eq!(errs.len(), 5, "{errs:#?}");
        let pre = "failed to get objectType:cert, objectName:bad, objectVersion:: ";
        assert_eq!(
            errs[0],
            format!("{pre}invalid objectFormat: pkcs, should be PEM or PFX")
        );
        assert_eq!(
            errs[1],
            format!("{pre}objectEncoding only supported for objectType: secret")
        );
        assert_eq!(errs[2], format!("{pre}file name must be a relative path"));
        assert!(errs[3].starts_with(&format!("{pre}filePermission \"")));
        assert!(
            errs[4].contains("objectName:x") && errs[4].ends_with("Should be secret, key, or cert")
        );
    }

    #[test]
    fn empty_name_with_alias_is_rejected() {
        let (_, errs) = run(&objects(&["objectAlias: a\nobjectType: secret"]));
        assert_eq!(
            errs,
            [
                "failed to get objectType:secret, objectName:, objectVersion:: objectName must not be empty"
            ]
        );
    }

    // reference: docs/reference-provider.md §1.3 (yaml.v3 shapes and texts)
    #[test]
    fn objects_yaml_shapes() {
        // Bare list.
        let (_, errs) = run("- |\n  objectName: a\n");
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("failed to yaml unmarshal objects, error: yaml: unmarshal errors"),
            "{errs:?}"
        );
        // `array:` alone: zero objects, no error.
        let (specs, errs) = run("array:");
        assert!(specs.is_empty() && errs.is_empty(), "{errs:?}");
        let (specs, errs) = run("array: []");
        assert!(specs.is_empty() && errs.is_empty());
        // Elements that are mappings, not strings.
        let (_, errs) = run("array:\n  - objectName: a\n");
        assert!(
            errs[0].contains("expected a text value, found a mapping"),
            "{errs:?}"
        );
        // Syntax error.
        let (_, errs) = run("array: [\n");
        assert!(
            errs[0].starts_with("failed to yaml unmarshal objects, error: yaml: "),
            "{errs:?}"
        );
        assert!(!errs[0].contains('\n'));
        // Unknown outer keys are ignored.
        let (specs, errs) =
            run("other: 1\narray:\n  - |\n    objectName: a\n    objectType: key\n");
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(specs.len(), 1);
    }

    // reference: docs/reference-provider.md §1.3 (quoted objectVersionHistory fails; index in text)
    #[test]
    fn element_errors_carry_the_index() {
        let (_, errs) = run(&objects(&[
            "objectName: a\nobjectType: secret",
            "objectName: b\nobjectType: secret\nobjectVersionHistory: \"5\"",
            "objectName: [c]",
        ]));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with(
                "objects[1]: objectVersionHistory: \"5\" is not a number: use a whole number"
            ),
            "{}",
            errs[0]
        );
        // reference: issue 12 item 4 (no foreign-language error text reaches the user)
        assert!(
            !errs[0].contains("int32") && !errs[0].contains("unmarshal"),
            "{}",
            errs[0]
        );
        assert!(errs[1].starts_with("objects[2]: "), "{}", errs[1]);
        assert!(
            errs[1].contains("expected a text value, found a list"),
            "{}",
            errs[1]
        );
    }

    // yaml.v3 integer decoding: plain ints (also hex), floats that fit, null as zero.
    #[test]
    fn history_accepts_what_yaml_v3_accepts() {
        for (text, want) in [
            ("3", 3),
            ("0x10", 16),
            ("2.0", 2),
            ("~", 0),
            ("", 0),
            ("-1", -1),
        ] {
            let o = raw(&format!("objectName: a\nobjectVersionHistory: {text}"));
            assert_eq!(o.object_version_history.0, want, "{text:?}");
        }
        for bad in ["true", "\"2\"", "3000000000", "[1]"] {
            assert!(
                parse_element(&format!("objectName: a\nobjectVersionHistory: {bad}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn json_elements_and_unknown_fields() {
        let objs = "array:\n  - '{\"objectName\": \"j\", \"objectType\": \"secret\", \"objectVersionHistory\": 2, \"somethingNew\": {\"a\": 1}}'\n  - |\n    objectName: y\n    objectType: cert\n    objectNotAfter: 2026-01-01T00:00:00Z\n";
        let (specs, errs) = run(objs);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(specs[0].name, "j");
        assert_eq!(specs[0].history, 2);
        assert_eq!(specs[1].object_type, ObjectType::Cert);
    }

    #[test]
    fn objects_not_set() {
        let (_, errs) = run("   ");
        assert_eq!(errs, ["objects is not set"]);
    }

    // [BUG] docs/reference-provider.md §1.4: duplicate output paths (the driver keeps the last)
    #[test]
    fn duplicate_paths_are_rejected() {
        let (specs, errs) = run(&objects(&[
            "objectName: db\nobjectType: secret",
            "objectName: other\nobjectAlias: db\nobjectType: secret",
        ]));
        assert_eq!(specs.len(), 2);
        assert_eq!(
            errs,
            [
                "failed to get objectType:secret, objectName:other, objectVersion:: output path \"db\" is also written by objectType:secret, objectName:db: give one of them a different objectAlias"
            ]
        );
        // Two history objects on the same directory both write `dir/0`.
        let (_, errs) = run(&objects(&[
            "objectName: a\nobjectAlias: h\nobjectType: secret\nobjectVersionHistory: 2",
            "objectName: b\nobjectAlias: h\nobjectType: key\nobjectVersionHistory: 3",
        ]));
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0]
                .contains("output path \"h/0\" is also written by objectType:secret, objectName:a"),
            "{errs:?}"
        );
        // A plain object named like a history version file.
        let (_, errs) = run(&objects(&[
            "objectName: a\nobjectAlias: h\nobjectType: secret\nobjectVersionHistory: 2",
            "objectName: b\nobjectAlias: h/1\nobjectType: secret",
        ]));
        assert!(
            errs[0].contains("output path \"h/1\" is also written by"),
            "{errs:?}"
        );
        // ... in either order.
        let (_, errs) = run(&objects(&[
            "objectName: b\nobjectAlias: h/1\nobjectType: secret",
            "objectName: a\nobjectAlias: h\nobjectType: secret\nobjectVersionHistory: 2",
        ]));
        assert!(
            errs[0].contains("objectName:a")
                && errs[0].contains("\"h/1\" is also written by objectType:secret, objectName:b"),
            "{errs:?}"
        );
        // Beyond the history length there is no clash; nor for a non-index name.
        let (_, errs) = run(&objects(&[
            "objectName: a\nobjectAlias: h\nobjectType: secret\nobjectVersionHistory: 2",
            "objectName: b\nobjectAlias: h/2\nobjectType: secret",
            "objectName: c\nobjectAlias: h/01\nobjectType: secret",
            "objectName: d\nobjectAlias: h/readme\nobjectType: secret",
        ]));
        assert!(errs.is_empty(), "{errs:?}");
    }

    // [BUG] docs/reference-provider.md §1.4: file/directory collisions only failed in the writer
    #[test]
    fn file_directory_collisions_are_rejected() {
        // alias `a` + history object `a/0`.
        let (_, errs) = run(&objects(&[
            "objectName: x\nobjectAlias: a\nobjectType: secret",
            "objectName: hist\nobjectAlias: a\nobjectType: secret\nobjectVersionHistory: 3",
        ]));
        assert_eq!(
            errs,
            [
                "failed to get objectType:secret, objectName:hist, objectVersion:: output path \"a/0\" collides with \"a\" of objectType:secret, objectName:x: a file cannot also be a directory"
            ]
        );
        // `a` and `a/b`, both orders.
        let (_, errs) = run(&objects(&[
            "objectName: x\nobjectAlias: a\nobjectType: secret",
            "objectName: y\nobjectAlias: a/b\nobjectType: secret",
        ]));
        assert_eq!(
            errs,
            [
                "failed to get objectType:secret, objectName:y, objectVersion:: output path \"a/b\" collides with \"a\" of objectType:secret, objectName:x: a file cannot also be a directory"
            ]
        );
        let (_, errs) = run(&objects(&[
            "objectName: y\nobjectAlias: a/b/c\nobjectType: secret",
            "objectName: x\nobjectAlias: a\nobjectType: secret",
        ]));
        assert!(
            errs[0].contains("objectName:x")
                && errs[0].contains("output path \"a\" collides with \"a/b/c\""),
            "{errs:?}"
        );
        // A file below a history version file: `h/0/x` with history `h`.
        let (_, errs) = run(&objects(&[
            "objectName: h\nobjectType: secret\nobjectVersionHistory: 2",
            "objectName: y\nobjectAlias: h/0/x\nobjectType: secret",
        ]));
        assert!(
            errs[0].contains("output path \"h/0/x\" collides with \"h/0\""),
            "{errs:?}"
        );
        let (_, errs) = run(&objects(&[
            "objectName: y\nobjectAlias: h/0/x\nobjectType: secret",
            "objectName: h\nobjectType: secret\nobjectVersionHistory: 2",
        ]));
        assert!(
            errs[0].contains("objectName:h,")
                && errs[0].contains("\"h/0\" collides with \"h/0/x\""),
            "{errs:?}"
        );
        // A history directory inside another history's version file.
        let (_, errs) = run(&objects(&[
            "objectName: h\nobjectType: secret\nobjectVersionHistory: 2",
            "objectName: g\nobjectAlias: h/1\nobjectType: secret\nobjectVersionHistory: 2",
        ]));
        assert!(
            errs[0].contains("\"h/1/0\" collides with \"h/1\""),
            "{errs:?}"
        );
        // A plain file where a history object needs its directory, both orders.
        let (_, errs) = run(&objects(&[
            "objectName: h\nobjectType: secret\nobjectVersionHistory: 2",
            "objectName: x\nobjectAlias: h\nobjectType: key",
        ]));
        assert!(
            errs[0].contains("objectName:x")
                && errs[0].contains("output path \"h\" collides with \"h/0\""),
            "{errs:?}"
        );
        let (_, errs) = run(&objects(&[
            "objectName: x\nobjectAlias: d/h/9/z\nobjectType: key",
            "objectName: h\nobjectAlias: d/h\nobjectType: secret\nobjectVersionHistory: 10",
        ]));
        assert!(
            errs[0].contains("output path \"d/h/9\" collides with \"d/h/9/z\""),
            "{errs:?}"
        );
        // Siblings are fine.
        let (_, errs) = run(&objects(&[
            "objectName: x\nobjectAlias: dir/a\nobjectType: secret",
            "objectName: y\nobjectAlias: dir/b\nobjectType: secret",
            "objectName: h\nobjectAlias: dir/h\nobjectType: secret\nobjectVersionHistory: 9",
        ]));
        assert!(errs.is_empty(), "{errs:?}");
    }

    // reference: docs/threat-model.md rule 4; docs/reference-provider.md §1.4 (objectName not validated
    // by the reference: `.`/`..` send `GET /secrets/`). Stricter than the reference.
    #[test]
    fn object_names_follow_key_vault_rules() {
        let long = "a".repeat(128);
        let names = [
            ".",
            "..",
            "a/b",
            "a.b",
            "a_b",
            "db password",
            "é",
            long.as_str(),
        ];
        let elements: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("objectName: '{n}'\nobjectAlias: out{i}\nobjectType: secret"))
            .collect();
        let refs: Vec<&str> = elements.iter().map(String::as_str).collect();
        let (specs, errs) = run(&objects(&refs));
        assert!(specs.is_empty(), "{specs:?}");
        assert_eq!(errs.len(), names.len(), "{errs:#?}");
        for (i, (e, n)) in errs.iter().zip(names).enumerate() {
            assert!(
                e.contains(&format!(
                    "objects[{i}]: objectName \"{}",
                    &n[..n.len().min(64)]
                )) && e.ends_with("use 1 to 127 ASCII letters, digits and dashes"),
                "{e}"
            );
        }
        let ok = "a".repeat(127);
        let (specs, errs) = run(&objects(&[
            &format!("objectName: {ok}\nobjectType: secret"),
            "objectName: Db-Password-2\nobjectType: secret",
        ]));
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(specs.len(), 2);
        // Without an alias the reference's file-name text comes first, ours after it.
        let (_, errs) = run(&objects(&["objectName: ..\nobjectType: secret"]));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].ends_with("file name must not contain '..'"));
        assert!(errs[1].contains("objects[0]: objectName \"..\""));
    }

    #[test]
    fn object_versions_are_32_hex_characters() {
        let (specs, errs) = run(&objects(&[
            "objectName: a\nobjectType: secret\nobjectVersion: 1234",
            "objectName: b\nobjectType: secret\nobjectVersion: 0123456789abcdef0123456789abcdeg",
            "objectName: c\nobjectType: secret\nobjectVersion: ../keys/x",
            "objectName: d\nobjectType: secret\nobjectVersion: 0123456789abcdef0123456789abcdef",
            "objectName: e\nobjectType: secret\nobjectVersion: latest",
            "objectName: f\nobjectType: secret",
        ]));
        assert_eq!(specs.len(), 3);
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert_eq!(
            errs[0],
            "failed to get objectType:secret, objectName:a, objectVersion:1234: objects[0]: objectVersion \"1234\" is not a Key Vault version: use the 32 hexadecimal characters of a version id, or leave it empty for the latest"
        );
        assert!(errs[1].contains("objects[1]: objectVersion"), "{}", errs[1]);
        assert!(
            errs[2].contains("objects[2]: objectVersion \"../keys/x\""),
            "{}",
            errs[2]
        );
    }

    // reference: docs/threat-model.md rule 4 (aliases as safe relative paths)
    #[test]
    fn aliases_with_control_bidi_or_zero_width_characters_are_refused() {
        let bad = [
            "a\nb",
            "a\rb",
            "tab\there",
            "del\u{7f}",
            "c1\u{85}x",
            "nul\u{0}",
            "evil\u{202e}txt.exe",
            "lre\u{202a}",
            "iso\u{2066}",
            "pdi\u{2069}",
            "lrm\u{200e}",
            "rlm\u{200f}",
            "alm\u{061c}",
            "zw\u{200b}sp",
            "zwj\u{200d}",
            "wj\u{2060}",
            "bom\u{feff}",
            "dir/\u{202e}x",
        ];
        let elements: Vec<String> = bad
            .iter()
            .enumerate()
            .map(|(i, a)| {
                // JSON `\uXXXX` escapes carry any character through YAML unchanged.
                let alias: String = a
                    .encode_utf16()
                    .map(|u| format!("\\u{u:04x}"))
                    .collect();
                let alias = format!("\"{alias}\"");
                format!("{{\"objectName\": \"n{i}\", \"objectType\": \"secret\", \"objectAlias\": {alias}}}")
            })
            .collect();
        let refs: Vec<&str> = elements.iter().map(String::as_str).collect();
        let (specs, errs) = run(&objects(&refs));
        assert!(specs.is_empty(), "{specs:?}");
        assert_eq!(errs.len(), bad.len(), "{errs:#?}");
        for (i, e) in errs.iter().enumerate() {
            assert!(e.contains(&format!("objects[{i}]: output path ")), "{e}");
            assert!(e.contains("control, bidi and zero-width characters"), "{e}");
            assert!(
                !e.contains('\n') && !e.contains('\u{202e}') && !e.contains('\u{200b}'),
                "{e:?}"
            );
        }
        assert!(errs[6].contains("contains U+202E"), "{}", errs[6]);
        // Everyday non-ASCII names stay allowed.
        let (_, errs) = run(&objects(&[
            "objectName: a\nobjectAlias: café/naïve-файл\nobjectType: secret",
        ]));
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn wrapped_identity_is_printed_on_one_line() {
        let (_, errs) = run(&objects(&[
            "{\"objectName\": \"a\\nb\\u202e\", \"objectType\": \"secret\\u0007\"}",
        ]));
        assert!(!errs.is_empty());
        for e in &errs {
            assert!(
                !e.contains('\n') && !e.contains('\u{202e}') && !e.contains('\u{7}'),
                "{e:?}"
            );
            assert!(
                e.starts_with(
                    "failed to get objectType:secret\\u{0007}, objectName:a\\u{000a}b\\u{202e}, "
                ),
                "{e}"
            );
        }
    }

    #[test]
    fn huge_history_is_not_expanded() {
        let (specs, errs) = run(&objects(&[
            "objectName: h\nobjectType: secret\nobjectVersionHistory: 2147483647",
            "objectName: y\nobjectAlias: h/2147483646\nobjectType: secret",
        ]));
        assert_eq!(specs[0].history, i32::MAX as u32);
        assert_eq!(errs.len(), 1, "{errs:?}");
    }
}
