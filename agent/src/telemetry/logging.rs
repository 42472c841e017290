//! Logging setup: `tracing-subscriber` with the format from `KEYVAULT_AGENT_LOG_FORMAT`
//! (`plain`, the default, or `json`) and the filter from `KEYVAULT_AGENT_LOG`, then
//! `RUST_LOG`, defaulting to `info`. A filter is a comma-separated list of `level` and
//! `target=level` (`info,keyvault_agent::syncer=debug`): `tracing-subscriber`'s `Targets`, the
//! `RUST_LOG` syntax without span and field directives (which would need a regex engine). Logs go to stderr so that stdout stays free for
//! command output (`check`, `--version`).
//!
//! Secret values never reach a log line: the types that hold them redact `Debug` and no
//! call site formats their contents.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;

/// Default filter when neither variable is set.
pub const DEFAULT_FILTER: &str = "info";

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable single lines.
    Plain,
    /// One JSON object per line.
    Json,
}

impl Format {
    /// `json` (any case) selects JSON; anything else, or unset, is plain.
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some(v) if v.trim().eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Plain,
        }
    }
}

/// Filter directives: `KEYVAULT_AGENT_LOG`, else `RUST_LOG`, else `info`.
pub fn filter_directives(env: &crate::config::Env) -> String {
    env.get("KEYVAULT_AGENT_LOG")
        .or_else(|| env.get("RUST_LOG"))
        .unwrap_or(DEFAULT_FILTER)
        .to_owned()
}

/// Installs the global subscriber for the process from its environment. Call once, early in
/// `main`. A bad filter falls back to `info` with a warning rather than losing all logs.
pub fn init_logging() {
    let env = crate::config::Env::from_process();
    let format = Format::parse(env.get("KEYVAULT_AGENT_LOG_FORMAT"));
    let _ = try_init(format, &filter_directives(&env), std::io::stderr);
}

/// Installs a global subscriber writing to `writer`. Fails when one is already installed.
pub fn try_init<W>(format: Format, directives: &str, writer: W) -> Result<(), String>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, bad) = parse_filter(directives);
    // The builder's own level cap stays open: the `Targets` filter decides.
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(writer)
        .with_target(true);
    let result = match format {
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .finish()
            .with(filter)
            .try_init(),
        Format::Plain => builder.with_ansi(false).finish().with(filter).try_init(),
    };
    result.map_err(|e| e.to_string())?;
    if let Some(e) = bad {
        tracing::warn!(filter = %directives, error = %e, "invalid log filter; using info");
    }
    Ok(())
}

/// The filter `directives` describe, or `info` and the parse error.
fn parse_filter(directives: &str) -> (Targets, Option<String>) {
    match directives.trim().parse::<Targets>() {
        Ok(f) => (f, None),
        Err(e) => (fallback_filter(), Some(e.to_string())),
    }
}

fn fallback_filter() -> Targets {
    Targets::new().with_default(tracing::Level::INFO)
}

/// A dispatcher that writes to an in-memory buffer, for tests that assert on log output
/// (with `tracing::subscriber::with_default` or `set_default`; never global).
pub fn capture(format: Format, directives: &str) -> (tracing::Dispatch, CapturedLogs) {
    let logs = CapturedLogs::default();
    use tracing_subscriber::layer::SubscriberExt;
    let (filter, _) = parse_filter(directives);
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false);
    let dispatch = match format {
        Format::Json => {
            tracing::Dispatch::new(builder.json().flatten_event(true).finish().with(filter))
        }
        Format::Plain => tracing::Dispatch::new(builder.finish().with(filter)),
    };
    (dispatch, logs)
}

/// Log output captured in memory by [`capture`].
#[derive(Debug, Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything logged so far.
    pub fn contents(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Write for CapturedLogs {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    #[test]
    fn filter_prefers_agent_variable_then_rust_log_then_info() {
        assert_eq!(filter_directives(&Env::from_pairs(&[])), "info");
        assert_eq!(
            filter_directives(&Env::from_pairs(&[("RUST_LOG", "warn")])),
            "warn"
        );
        assert_eq!(
            filter_directives(&Env::from_pairs(&[
                ("RUST_LOG", "warn"),
                ("KEYVAULT_AGENT_LOG", "debug")
            ])),
            "debug"
        );
        assert_eq!(
            filter_directives(&Env::from_pairs(&[
                ("KEYVAULT_AGENT_LOG", ""),
                ("RUST_LOG", "trace")
            ])),
            "trace"
        );
    }

    #[test]
    fn format_is_json_only_when_asked() {
        assert_eq!(Format::parse(None), Format::Plain);
        assert_eq!(Format::parse(Some("JSON")), Format::Json);
        assert_eq!(Format::parse(Some("text")), Format::Plain);
    }

    #[test]
    fn captured_json_lines_are_json_objects() {
        let (dispatch, logs) = capture(Format::Json, "info");
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!(objects = 3, "refresh done");
            tracing::debug!("filtered out");
        });
        let text = logs.contents();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["message"], "refresh done");
        assert_eq!(v["objects"], 3);
        assert_eq!(v["level"], "INFO");
    }

    // reference: README.md "Command line and environment" (KEYVAULT_AGENT_LOG: level or
    // target=level list; a bad filter falls back to info)
    #[test]
    fn filters_are_levels_per_target_and_a_bad_one_falls_back_to_info() {
        let (dispatch, logs) = capture(Format::Plain, "warn,agent_test=debug");
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::debug!(target: "agent_test", "kept: debug of the named target");
            tracing::info!(target: "other", "dropped: info elsewhere");
            tracing::warn!(target: "other", "kept: warn elsewhere");
        });
        let text = logs.contents();
        assert!(text.contains("kept: debug of the named target"), "{text}");
        assert!(text.contains("kept: warn elsewhere"), "{text}");
        assert!(!text.contains("dropped"), "{text}");

        let (filter, bad) = parse_filter("keyvault_agent=loud");
        assert!(bad.is_some(), "an unknown level is an error");
        assert_eq!(filter.to_string(), fallback_filter().to_string());
        assert!(parse_filter(" info ").1.is_none());
    }
}
