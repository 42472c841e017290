//! The `objects` parameter: an outer YAML mapping whose `array` is a list of strings, each a
//! YAML (or JSON) document describing one Key Vault object (`reference-provider.md` §1.3–1.4).
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
    ConfigError, DEFAULT_FILE_MODE, ObjectEncoding, ObjectFormat, ObjectProblem, ObjectSpec,
    ObjectType,
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

    fn wrap(&self, problem: ObjectProblem) -> ConfigError {
        ConfigError::Object {
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
                f.write_str("an int32")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<i32, E> {
                i32::try_from(v).map_err(|_| E::custom(format!("cannot unmarshal !!int `{v}` into int32")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<i32, E> {
                i32::try_from(v).map_err(|_| E::custom(format!("cannot unmarshal !!int `{v}` into int32")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<i32, E> {
                Err(E::custom(format!("cannot unmarshal !!float `{v}` into int32")))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<i32, E> {
                Err(E::custom(format!("cannot unmarshal !!bool `{v}` into int32")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<i32, E> {
                Err(E::custom(format!("cannot unmarshal !!str `{v}` into int32")))
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
                Err(de::Error::custom("cannot unmarshal !!map into int32"))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, _s: A) -> Result<i32, A::Error> {
                Err(de::Error::custom("cannot unmarshal !!seq into int32"))
            }
        }
        d.deserialize_any(V).map(Int32)
    }
}

#[derive(Deserialize)]
#[serde(rename = "StringArray")]
struct StringArray {
    #[serde(default)]
    array: Option<Vec<Text>>,
}

/// Parses the `objects` string into raw, trimmed objects (reference texts on failure).
pub(crate) fn parse_objects(objects: &str) -> Result<Vec<RawObject>, Vec<ConfigError>> {
    // Syntax errors read `yaml: ...`, shape errors `yaml: unmarshal errors: ...`, like
    // yaml.v3.
    if let Err(e) = serde_yaml::from_str::<serde_yaml::Value>(objects) {
        return Err(vec![ConfigError::ObjectsYaml(format!("yaml: {}", one_line(e)))]);
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
        match parse_element(&element.0) {
            Ok(o) => out.push(o.trimmed()),
            Err(reason) => errs.push(ConfigError::ObjectYaml { index, reason }),
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

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
        .map_err(|e| format!("yaml: unmarshal errors: {}", one_line(e)))
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
    let mut valid = Vec::with_capacity(raws.len());
    for raw in &raws {
        let mut problems = Vec::new();
        let spec = validate_object(raw, &mut problems);
        let ok = problems.is_empty();
        errs.extend(problems.into_iter().map(|p| raw.wrap(p)));
        if let Some(spec) = spec.filter(|_| ok) {
            specs.push(spec);
            valid.push(raw);
        }
    }
    check_collisions(&valid, &specs, errs);
    specs
}

/// Validates one trimmed object. Problems are returned unwrapped, in the reference's order
/// (format, encoding, file name) followed by ours.
fn validate_object(raw: &RawObject, problems: &mut Vec<ObjectProblem>) -> Option<ObjectSpec> {
    let type_str = raw.object_type.0.as_str();
    let object_type = match type_str {
        "secret" => Some(ObjectType::Secret),
        "key" => Some(ObjectType::Key),
        "cert" => Some(ObjectType::Cert),
        _ => None,
    };
    let format = validate_object_format(&raw.object_format.0, type_str).map_err(|p| problems.push(p));
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
    }
    let mode = file_permission(&raw.file_permission.0, DEFAULT_FILE_MODE).map_err(|p| problems.push(p));

    let history = raw.object_version_history.0;
    let is_history = history > 1;
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
    })
}

/// The reference's `validateObjectFormat`, with the `pfx`/type check made
/// case-insensitive (reference-provider.md §1.4 [BUG]).
pub(crate) fn validate_object_format(format: &str, object_type: &str) -> Result<ObjectFormat, ObjectProblem> {
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

/// The CSI driver's and AtomicWriter's path rules on top of [`validate_file_name`]: clean
/// form (no empty or `.` component, no trailing slash), components ≤ 255 bytes, total ≤ 4096
/// bytes. Public so other modules (history paths, the writer) can apply the same rules.
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
/// error instead of mode 0 (reference-provider.md §1.4 [BUG]), and only `0`–`0777` is a mode.
pub(crate) fn file_permission(value: &str, default: u32) -> Result<u32, ObjectProblem> {
    if value.is_empty() {
        return Ok(default);
    }
    let syntax = || {
        ObjectProblem::FilePermission(format!(
            "strconv.ParseInt: parsing {value:?}: invalid syntax"
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
    let parsed = i64::from_str_radix(digits, 8).ok().filter(|v| *v <= i64::from(i32::MAX));
    let Some(mode) = parsed else {
        return Err(ObjectProblem::FilePermission(format!(
            "strconv.ParseInt: parsing {value:?}: value out of range"
        )));
    };
    if negative && mode != 0 || mode > 0o777 {
        return Err(ObjectProblem::FilePermission(format!(
            "{value:?} is not a file mode between 0000 and 0777"
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
fn check_collisions(raws: &[&RawObject], specs: &[ObjectSpec], errs: &mut Vec<ConfigError>) {
    // Accepted objects so far, by path.
    let mut singles: BTreeMap<&str, usize> = BTreeMap::new();
    let mut histories: BTreeMap<&str, (usize, u32)> = BTreeMap::new();
    let mut dirs: BTreeMap<&str, usize> = BTreeMap::new();

    for (i, spec) in specs.iter().enumerate() {
        let path = spec.path.as_str();
        let history = spec.is_history().then_some(spec.history);
        // Is `x` a version file of an accepted history object?
        let history_file = |x: &str| -> Option<usize> {
            let (parent, last) = x.rsplit_once('/')?;
            let &(j, n) = histories.get(parent)?;
            history_index(last).filter(|k| *k < n).map(|_| j)
        };
        let owner = |j: usize| raws[j].short_identity();
        let dup = |p: String, j: usize| ObjectProblem::DuplicatePath { path: p, other: owner(j) };
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
                    problem = Some(clash(path.into(), specs[j].path.clone(), j));
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
                        problem = Some(clash(p, specs[j].path.clone(), j));
                    }
                }
            }
        }
        if problem.is_none() {
            // An ancestor directory of this object is a file of an earlier one.
            for (dir, _) in ancestors(path) {
                if let Some(j) = singles.get(dir).copied().or_else(|| history_file(dir)) {
                    problem = Some(clash(path.into(), dir.into(), j));
                    break;
                }
            }
        }

        match problem {
            Some(p) => errs.push(raws[i].wrap(p)),
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
                for (dir, _) in ancestors(path) {
                    dirs.entry(dir).or_insert(i);
                }
            }
        }
    }
}

/// Proper ancestor directories of a clean relative path, nearest last: `a/b/c` → `a`, `a/b`.
fn ancestors(path: &str) -> impl Iterator<Item = (&str, &str)> {
    path.match_indices('/').map(move |(i, _)| (&path[..i], &path[i + 1..]))
}

/// A history file name (`0`, `1`, ... in canonical decimal).
fn history_index(s: &str) -> Option<u32> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}
