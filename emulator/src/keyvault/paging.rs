//! Paging of every list: `maxresults`, the opaque `$skiptoken`, an absolute `nextLink` with an
//! explicit port (docs/protocol.md §1.4).

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::errors::{bad, json_response};
use super::{Ctx, R};

impl Ctx {
    /// Pages `items` per `maxresults`/`$skiptoken`, building an absolute `nextLink`.
    pub(super) fn page(&self, path: &str, items: Vec<Value>) -> R {
        let max = match self.query.get("maxresults") {
            None => None,
            Some(m) => match m.parse::<usize>() {
                Ok(n) if (1..=25).contains(&n) => Some(n),
                _ => {
                    return Err(bad(&format!(
                        "Invalid value {m} for maxresults: it must be an integer from 1 to 25."
                    )));
                }
            },
        };
        let start = match self.query.get("$skiptoken") {
            None => 0,
            Some(t) => decode_skiptoken(t).ok_or_else(|| bad("The $skiptoken is invalid."))?,
        };
        let size = max.unwrap_or(25);
        let end = (start + size).min(items.len());
        let page: Vec<Value> = items
            .get(start..end)
            .map(<[Value]>::to_vec)
            .unwrap_or_default();
        let next = if end < items.len() {
            let api = self
                .s
                .next_link_api_version
                .clone()
                .unwrap_or_else(|| self.api_version.clone());
            let mut link = format!(
                "{}{}?api-version={api}&$skiptoken={}",
                self.base_with_port,
                path.trim_end_matches('/'),
                encode_skiptoken(end)
            );
            if let Some(m) = max {
                link.push_str(&format!("&maxresults={m}"));
            }
            Value::String(link)
        } else {
            Value::Null
        };
        Ok(json_response(
            StatusCode::OK,
            &json!({"value": page, "nextLink": next}),
        ))
    }
}

fn encode_skiptoken(offset: usize) -> String {
    let marker = format!(
        "2!{}!{}",
        offset,
        URL_SAFE_NO_PAD.encode(format!("emulator-offset-{offset}"))
    );
    URL_SAFE_NO_PAD.encode(json!({"NextMarker": marker, "TargetLocation": 0}).to_string())
}

fn decode_skiptoken(token: &str) -> Option<usize> {
    let raw = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .or_else(|_| STANDARD.decode(token))
        .ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    v["NextMarker"].as_str()?.split('!').nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skiptoken_round_trips_and_is_opaque_base64_json() {
        let t = encode_skiptoken(7);
        assert_eq!(decode_skiptoken(&t), Some(7));
        let raw: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&t).unwrap()).unwrap();
        assert_eq!(raw["TargetLocation"], 0);
        assert!(decode_skiptoken("garbage").is_none());
    }
}
