//! Logging setup: `tracing-subscriber` with the format from `KEYVAULT_AGENT_LOG_FORMAT`
//! (`plain`, the default, or `json`) and the filter from `KEYVAULT_AGENT_LOG`, then
//! `RUST_LOG`, defaulting to `info`. Logs go to stderr so that stdout stays free for
//! command output (`check`, `--version`).
//!
//! Secret values never reach a log line: the types that hold them redact `Debug` and no
//! call site formats their contents.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::EnvFilter;
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
    let (filter, bad) = match EnvFilter::builder().parse(directives) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new(DEFAULT_FILTER), Some(e.to_string())),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(true);
    let result = match format {
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        Format::Plain => builder.with_ansi(false).try_init(),
    };
    result.map_err(|e| e.to_string())?;
    if let Some(e) = bad {
        tracing::warn!(filter = %directives, error = %e, "invalid log filter; using info");
    }
    Ok(())
}

/// A dispatcher that writes to an in-memory buffer, for tests that assert on log output
/// (with `tracing::subscriber::with_default` or `set_default`; never global).
pub fn capture(format: Format, directives: &str) -> (tracing::Dispatch, CapturedLogs) {
    let logs = CapturedLogs::default();
    let filter = EnvFilter::builder()
        .parse(directives)
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(logs.clone())
        .with_ansi(false);
    let dispatch = match format {
        Format::Json => tracing::Dispatch::new(builder.json().flatten_event(true).finish()),
        Format::Plain => tracing::Dispatch::new(builder.finish()),
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
}
