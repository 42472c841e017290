//! What a fired fault or an empty throttle bucket answers, before the router sees the request:
//! the route's own error shape (Key Vault, Entra or IMDS) with `Retry-After` or
//! `x-ms-retry-after-ms`, or the hostile answers (raw headers, huge, endless, slow or reset
//! bodies) whose body bytes are counted as they are handed to the connection.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::faults::FaultKind;
use crate::routes::Route;
use crate::state::{Shared, lock};
use crate::{entra, imds, keyvault};

/// The answer to a request on `route` that fault `action` fired on; `None`: close the
/// connection without answering.
pub(crate) fn fault(route: Route, action: &FaultKind, shared: Arc<Shared>) -> Option<Response> {
    if action.is_hostile() {
        return Some(hostile(action, shared));
    }
    let (status, retry_after, retry_after_ms) = match action {
        FaultKind::Drop => return None,
        FaultKind::Status(s) => (*s, None, None),
        FaultKind::Throttle { retry_after } => (429, *retry_after, None),
        FaultKind::ThrottleMs { retry_after_ms } => (429, None, Some(*retry_after_ms)),
        FaultKind::Latency(_) => unreachable!("latency is never terminal"),
        other => unreachable!("{other:?} is hostile"),
    };
    let mut resp = match route {
        Route::Token => entra::fault_error(&shared, status, retry_after),
        Route::Imds => imds::fault_error(status, retry_after),
        _ => {
            let mut r = keyvault::fault_error(status, retry_after);
            keyvault::add_common_headers(&mut r, &crate::util::guid(), None);
            r
        }
    };
    if let Some(ms) = retry_after_ms {
        resp.headers_mut()
            .insert("x-ms-retry-after-ms", HeaderValue::from(ms));
    }
    Some(resp)
}

/// Key Vault's 429 `Throttled` for an empty bucket, `Retry-After` in whole seconds as the
/// service sends it.
pub(crate) fn throttled(retry_after: Duration) -> Response {
    let mut resp = keyvault::fault_error(429, Some(retry_after.as_secs()));
    keyvault::add_common_headers(&mut resp, &crate::util::guid(), None);
    resp
}

/// Size of each chunk of the body faults.
const CHUNK: usize = 64 * 1024;

/// The answer of a hostile fault (`kind.is_hostile()`); body bytes are added to
/// `counts.body_bytes` as they are handed to the connection.
fn hostile(kind: &FaultKind, shared: Arc<Shared>) -> Response {
    let count = move |n: usize| {
        lock(&shared.counts).body_bytes += n as u64;
    };
    let json = |body: Body| {
        let mut r = (StatusCode::OK, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        r
    };
    match kind.clone() {
        FaultKind::RawHeader {
            status,
            name,
            value,
        } => {
            let st = StatusCode::from_u16(status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
            let mut r = keyvault::fault_error(st.as_u16(), None);
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                r.headers_mut().insert(n, v);
            }
            r
        }
        FaultKind::HugeBody { bytes } => {
            let head: &'static [u8] = b"{\"value\":\"";
            let tail: &'static [u8] = b"\",\"attributes\":{\"enabled\":true}}";
            let total = bytes.saturating_add((head.len() + tail.len()) as u64);
            // 0: head, 1..: value chunks, then the tail.
            let stream = futures::stream::unfold((0u64, false), move |(sent, done)| {
                let count = count.clone();
                async move {
                    if done {
                        return None;
                    }
                    let chunk: Vec<u8> = if sent == 0 {
                        head.to_vec()
                    } else if sent < bytes.saturating_add(head.len() as u64) {
                        let left = bytes + head.len() as u64 - sent;
                        vec![b'A'; (left.min(CHUNK as u64)) as usize]
                    } else {
                        count(tail.len());
                        return Some((
                            Ok::<_, std::io::Error>(Bytes::from_static(tail)),
                            (sent, true),
                        ));
                    };
                    count(chunk.len());
                    let n = chunk.len() as u64;
                    Some((Ok(Bytes::from(chunk)), (sent + n, false)))
                }
            });
            let mut r = json(Body::from_stream(stream));
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(total));
            r
        }
        FaultKind::EndlessBody => {
            let stream = futures::stream::unfold(true, move |first| {
                let count = count.clone();
                async move {
                    let chunk = if first {
                        Bytes::from_static(b"{\"value\":\"")
                    } else {
                        Bytes::from(vec![b'A'; CHUNK])
                    };
                    count(chunk.len());
                    Some((Ok::<_, std::io::Error>(chunk), false))
                }
            });
            json(Body::from_stream(stream))
        }
        FaultKind::SlowBody { every_ms } => {
            let every = Duration::from_millis(every_ms.max(1));
            let stream = futures::stream::unfold((), move |()| {
                let count = count.clone();
                async move {
                    tokio::time::sleep(every).await;
                    count(1);
                    Some((Ok::<_, std::io::Error>(Bytes::from_static(b" ")), ()))
                }
            });
            json(Body::from_stream(stream))
        }
        FaultKind::HugeHeaders { bytes } => {
            let mut r = keyvault::fault_error(503, None);
            let value = "a".repeat(usize::try_from(bytes).unwrap_or(usize::MAX).min(64 << 20));
            if let Ok(v) = HeaderValue::from_str(&value) {
                r.headers_mut()
                    .insert(HeaderName::from_static("x-hostile-padding"), v);
            }
            *r.status_mut() = StatusCode::OK;
            r
        }
        FaultKind::ResetBody { after_bytes } => {
            let stream = futures::stream::unfold(0u64, move |sent| {
                let count = count.clone();
                async move {
                    if sent >= after_bytes {
                        return Some((
                            Err(std::io::Error::new(
                                std::io::ErrorKind::ConnectionReset,
                                "reset by an injected fault",
                            )),
                            u64::MAX,
                        ));
                    }
                    if sent == u64::MAX {
                        return None;
                    }
                    let n = (after_bytes - sent).min(CHUNK as u64) as usize;
                    count(n);
                    Some((Ok(Bytes::from(vec![b' '; n])), sent + n as u64))
                }
            });
            json(Body::from_stream(stream))
        }
        other => unreachable!("{other:?} is not a hostile fault"),
    }
}
