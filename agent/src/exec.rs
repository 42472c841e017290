//! `keyvault-agent exec` (issue 11 item 4): what `secretObjects` + `env.valueFrom` do with
//! the CSI driver, without a Kubernetes Secret in etcd and without a file on disk. The agent
//! fetches the set once (templates rendered), sets one environment variable per requested
//! file, and replaces itself with the command (execve(2), same PID: signals sent to the
//! container reach the application directly). A failed fetch exits with the agent's exit
//! code and never starts the command.
//!
//! Names: `--env NAME=ALIAS` maps one file of the set (an object's `objectAlias` or
//! `objectName`, `alias/0` in history mode, `alias/tls.crt` in the TLS layout, a template's
//! DEST); `--env-all` maps every other file to [`upper_snake`] of its path. Every problem
//! with the mapping (unknown alias, two files under one name, a name that is not a valid
//! variable name) is found before any request and reported at once (exit 3). A value holding
//! a NUL byte cannot be in an environment: an error naming the variable and the file
//! (exit 7), never the value.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use crate::config::{ConfigError, ConfigErrors, Env, Plan, Settings};
use crate::error::Error;
use crate::report::{ContentError, FailureKind, ObjectFailure, SyncError};

/// `--env NAME=ALIAS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvMap {
    /// The variable.
    pub name: String,
    /// The file of the set.
    pub alias: String,
}

impl EnvMap {
    /// Parses `NAME=ALIAS`; NAME must be a valid variable name.
    pub fn parse(s: &str) -> Result<EnvMap, String> {
        let (name, alias) = s
            .trim()
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected NAME=ALIAS, e.g. DB_PASSWORD=db-password"))?;
        let (name, alias) = (name.trim(), alias.trim());
        if !is_env_name(name) {
            return Err(format!(
                "{name:?} is not an environment variable name: use letters, digits and _, not starting with a digit"
            ));
        }
        if alias.is_empty() {
            return Err(format!("{s:?}: ALIAS is empty"));
        }
        Ok(EnvMap {
            name: name.to_owned(),
            alias: alias.to_owned(),
        })
    }
}

/// What `exec` sets and runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// Explicit mappings.
    pub env: Vec<EnvMap>,
    /// Map every other file by [`upper_snake`].
    pub env_all: bool,
    /// Program and arguments.
    pub command: Vec<OsString>,
}

/// Whether `s` is a portable environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// `--env-all`'s name for a file: ASCII letters upper-cased, digits kept, every other
/// character (`-`, `.`, `/`, non-ASCII) becomes `_`. `db-password` → `DB_PASSWORD`,
/// `web/tls.crt` → `WEB_TLS_CRT`.
pub fn upper_snake(path: &str) -> String {
    path.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' => c.to_ascii_uppercase(),
            _ => '_',
        })
        .collect()
}

/// (variable, file) pairs for `req` over the files a cycle of `plan` publishes, sorted by
/// variable; every problem at once.
pub fn mapping(req: &ExecRequest, paths: &[String]) -> Result<Vec<(String, String)>, Vec<String>> {
    let mut errs = Vec::new();
    let mut by_name: std::collections::BTreeMap<String, String> = Default::default();
    let mut add = |name: String, path: String, errs: &mut Vec<String>, how: &str| {
        match by_name.get(&name) {
            Some(p) if *p == path => {}
            Some(p) => errs.push(format!(
                "exec: {how} sets {name} to \"{path}\", but it is already set to \"{p}\": map one of them with --env OTHER_NAME=ALIAS"
            )),
            None => {
                by_name.insert(name, path);
            }
        }
    };
    for m in &req.env {
        if paths.contains(&m.alias) {
            add(
                m.name.clone(),
                m.alias.clone(),
                &mut errs,
                &format!("--env {}={}", m.name, m.alias),
            );
        } else {
            errs.push(format!(
                "exec: --env {}={}: no file \"{}\" in the set: use an objectAlias (or objectName), alias/N in history mode, alias/tls.crt in the tls layout, or a template's DEST (`check` lists them)",
                m.name, m.alias, m.alias
            ));
        }
    }
    if req.env_all {
        for p in paths {
            if req.env.iter().any(|m| m.alias == *p) {
                continue;
            }
            let name = upper_snake(p);
            if !is_env_name(&name) {
                errs.push(format!(
                    "exec: --env-all: \"{p}\" maps to {name:?}, which is not an environment variable name (it starts with a digit): map it with --env NAME={p}"
                ));
                continue;
            }
            add(name, p.clone(), &mut errs, &format!("--env-all (\"{p}\")"));
        }
    }
    if errs.is_empty() {
        Ok(by_name.into_iter().collect())
    } else {
        Err(errs)
    }
}

/// Loads the configuration, checks the mapping, fetches once and returns the variables to
/// set, sorted by name. Nothing is written to disk.
pub async fn prepare(
    settings: &Settings,
    env: &Env,
    req: &ExecRequest,
) -> Result<Vec<(String, OsString)>, Error> {
    let plan: Plan = crate::config::load(settings, env)?;
    let pairs = mapping(req, &plan.output_paths()).map_err(|lines| {
        Error::Config(ConfigErrors(
            lines.into_iter().map(ConfigError::Other).collect(),
        ))
    })?;
    // The publisher is never asked to publish: `fetch_set` only fetches and renders.
    let syncer = crate::syncer::Syncer::new(plan, settings, crate::metrics::Metrics::new())?;
    let set = syncer.fetch_set().await?;
    let mut vars = Vec::with_capacity(pairs.len());
    let mut failures = Vec::new();
    for (name, path) in pairs {
        let Some((_, data)) = set.files.iter().find(|(p, _)| *p == path) else {
            // Only an absent optional object is planned but not fetched.
            tracing::warn!(variable = %name, path = %path, "exec: optional object is absent: the variable is not set");
            continue;
        };
        if data.expose().contains(&0) {
            failures.push(ObjectFailure {
                label: format!("exec: {name} (file \"{path}\")"),
                kind: FailureKind::Convert(ContentError::NulInEnvironment),
            });
            continue;
        }
        vars.push((name, OsString::from_vec(data.expose().to_vec())));
    }
    if !failures.is_empty() {
        return Err(SyncError::Objects(failures).into());
    }
    Ok(vars)
}

/// Replaces the process with `command` (PATH is searched for a bare name), with `vars` added
/// to the inherited environment. Returns only when execve(2) failed.
pub fn exec(command: &[OsString], vars: Vec<(String, OsString)>) -> Error {
    use std::os::unix::process::CommandExt;
    let Some((program, args)) = command.split_first() else {
        return Error::Internal("exec: no command".into());
    };
    let source = std::process::Command::new(program)
        .args(args)
        .envs(vars)
        .exec();
    Error::Exec {
        program: program.to_string_lossy().into_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(env: &[&str], all: bool) -> ExecRequest {
        ExecRequest {
            env: env.iter().map(|s| EnvMap::parse(s).unwrap()).collect(),
            env_all: all,
            command: vec!["true".into()],
        }
    }

    fn paths(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    // reference: issue 11 item 4 (--env-all maps every alias to an upper-snake name)
    #[test]
    fn env_all_maps_paths_to_upper_snake_names() {
        assert_eq!(upper_snake("db-password"), "DB_PASSWORD");
        assert_eq!(upper_snake("web/tls.crt"), "WEB_TLS_CRT");
        assert_eq!(upper_snake("hist/0"), "HIST_0");
        assert_eq!(upper_snake("café"), "CAF_");
        let m = mapping(&req(&[], true), &paths(&["db-password", "app.env"])).unwrap();
        assert_eq!(
            m,
            [
                ("APP_ENV".to_string(), "app.env".to_string()),
                ("DB_PASSWORD".into(), "db-password".into())
            ]
        );
    }

    #[test]
    fn collisions_bad_names_and_unknown_aliases_are_reported_together() {
        let errs = mapping(
            &req(&["X=nope", "API=api-key", "API=1st"], true),
            &paths(&["db-password", "db.password", "1st", "2nd", "api-key"]),
        )
        .unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(
            errs[0].contains("--env X=nope: no file \"nope\""),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].contains("API") && errs[1].contains("already set"),
            "{}",
            errs[1]
        );
        assert!(
            errs[2].contains("DB_PASSWORD") && errs[2].contains("db.password"),
            "{}",
            errs[2]
        );
        assert!(
            errs[3].contains("\"2nd\"") && errs[3].contains("--env NAME=2nd"),
            "{}",
            errs[3]
        );
        // An explicit mapping takes the file out of --env-all.
        let m = mapping(&req(&["FIRST=1st"], true), &paths(&["1st", "a"])).unwrap();
        assert_eq!(
            m,
            [
                ("A".to_string(), "a".to_string()),
                ("FIRST".into(), "1st".into())
            ]
        );
    }

    #[test]
    fn env_names_are_checked_at_parse_time() {
        assert!(EnvMap::parse("DB=db-password").is_ok());
        assert!(EnvMap::parse("_x1=a/b").is_ok());
        for bad in ["1DB=a", "DB-X=a", "=a", "DB", "DB=", "D B=a"] {
            assert!(EnvMap::parse(bad).is_err(), "{bad}");
        }
    }
}
