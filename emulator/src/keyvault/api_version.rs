//! The `api-version` query parameter: the versions the emulator accepts, and Key Vault's
//! 400 for a missing or unknown one.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::Response;

use super::errors::error;

/// Every `api-version` the emulator accepts.
pub(crate) const API_VERSIONS: &[&str] = &[
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6-preview.1",
    "7.6-preview.2",
    "7.6",
    "2025-06-01-preview",
    "2025-07-01",
    "2026-01-01-preview",
    "2026-03-01-preview",
    "2026-04-01",
    "2026-05-01-preview",
    "2026-07-01-preview",
];

const LATEST_STABLE: &str = "2026-04-01";

/// The request's `api-version`, or Key Vault's 400 when it is missing or unknown.
pub(super) fn check(query: &HashMap<String, String>) -> Result<String, Response> {
    match query.get("api-version") {
        None => Err(error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The request is missing the required query parameter 'api-version'.",
            None,
        )),
        Some(v) if !API_VERSIONS.contains(&v.as_str()) => Err(error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            &format!(
                "The specified version ({v}) is not recognized. Consider using the latest supported version ({LATEST_STABLE})."
            ),
            None,
        )),
        Some(v) => Ok(v.clone()),
    }
}
