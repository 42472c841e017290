//! What the sidecar knows about itself, shared between the refresh loop (writer) and the
//! health/status server (reader): liveness heartbeat, readiness, and the status manifest
//! (object id, version, fetched-at, next refresh, last error; never a value, never a
//! digest: see [`SidecarState::public_json`]).
//!
//! The same [`StatusDoc`] shape is the file `..status.json` in the volume
//! ([`StatusDoc::for_set`]), which describes a published set and nothing else: it is
//! written inside each new generation by [`crate::publish::Publisher`] and carries keyed
//! digests (HMAC-SHA256), and its runtime fields (`next_refresh`, `last_error`) are null.
//!
//! Times used for decisions are `tokio::time::Instant`, so paused-clock tests drive them;
//! wall-clock times appear only in the JSON for people and tools.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::time::Instant;

use crate::report::{ObjectStatus, SyncReport};

/// The status manifest served at `/status` (runtime state, no digests) and written to
/// `..status.json` (the published set, with keyed digests).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatusDoc {
    /// The vault the plan reads from.
    pub vault: String,
    /// Whether a complete set has been published.
    pub ready: bool,
    /// The `..data` target of the last swap this process made, if any.
    pub data_dir: Option<String>,
    /// Unix seconds of the last successful sync.
    pub last_sync: Option<u64>,
    /// Unix seconds of the next scheduled refresh.
    pub next_refresh: Option<u64>,
    /// The last error, one line, when the last cycle failed.
    pub last_error: Option<String>,
    /// Consecutive failed cycles.
    pub consecutive_failures: u32,
    /// What is mounted, one entry per output file, in plan order (shared with the sync
    /// report that produced it).
    pub objects: std::sync::Arc<Vec<ObjectStatus>>,
    /// Object types whose list the vault refused (403): changes are detected by one GET
    /// per object (grant list permission to save requests).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub list_fallback: Vec<String>,
    /// Optional objects (`objectOptional: "true"`) missing or disabled in the vault: not
    /// mounted, not an error. Published as soon as they appear.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<AbsentObject>,
    /// Objects whose new content the last cycle refused at validation (`--validate`): the
    /// published set (`objects`) stays. Runtime state: only in `/status`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedObject>,
}

pub use crate::report::{AbsentObject, RefusedObject};

impl StatusDoc {
    /// The manifest of a published set, as written into its generation: what is mounted
    /// and when it was published. Runtime fields (next refresh, last error, failures)
    /// belong to `/status`, so a failed or unchanged refresh leaves the file alone.
    pub fn for_set(
        vault: &str,
        data_dir: &str,
        published_at: SystemTime,
        objects: Vec<ObjectStatus>,
    ) -> Self {
        StatusDoc {
            vault: vault.to_owned(),
            ready: true,
            data_dir: Some(data_dir.to_owned()),
            last_sync: Some(unix(published_at)),
            next_refresh: None,
            last_error: None,
            consecutive_failures: 0,
            objects: std::sync::Arc::new(objects),
            // Runtime state: only in `/status` (the file changes only with the set).
            list_fallback: Vec::new(),
            absent: Vec::new(),
            refused: Vec::new(),
        }
    }

    /// The set's optional objects that are absent.
    pub fn with_absent(mut self, absent: Vec<AbsentObject>) -> Self {
        self.absent = absent;
        self
    }

    /// Writes the JSON of [`for_set`](Self::for_set)`(..).with_absent(..)` to `w`
    /// without copying the entries or holding the text (at thousands of objects both are
    /// megabytes).
    pub fn write_set_json(
        w: &mut dyn std::io::Write,
        vault: &str,
        data_dir: &str,
        published_at: SystemTime,
        objects: &[ObjectStatus],
        absent: &[AbsentObject],
    ) -> std::io::Result<()> {
        // Field for field the shape of `StatusDoc` (a unit test holds the two together).
        #[derive(Serialize)]
        struct SetDoc<'a> {
            vault: &'a str,
            ready: bool,
            data_dir: &'a str,
            last_sync: u64,
            next_refresh: Option<u64>,
            last_error: Option<&'a str>,
            consecutive_failures: u32,
            objects: &'a [ObjectStatus],
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            absent: &'a [AbsentObject],
        }
        let doc = SetDoc {
            vault,
            ready: true,
            data_dir,
            last_sync: unix(published_at),
            next_refresh: None,
            last_error: None,
            consecutive_failures: 0,
            objects,
            absent,
        };
        serde_json::to_writer_pretty(&mut *w, &doc)?;
        w.write_all(b"\n")
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

#[derive(Debug)]
struct Inner {
    doc: StatusDoc,
    /// The loop must check in again before this instant, else `/healthz` fails.
    alive_until: Instant,
    /// When the published data was last confirmed current (a successful sync).
    last_success: Option<Instant>,
}

/// Shared, lock-protected sidecar state. Cheap to read; writers hold the lock briefly.
#[derive(Debug)]
pub struct SidecarState {
    inner: Mutex<Inner>,
    max_staleness: Option<Duration>,
}

/// Answer of a probe: healthy or not, with a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Whether the probe passes.
    pub ok: bool,
    /// Why, for people reading `kubectl describe`.
    pub reason: String,
}

impl SidecarState {
    /// Fresh state: alive for `startup` (the first sync's deadline plus slack), not ready.
    pub fn new(vault: String, startup: Duration, max_staleness: Option<Duration>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                doc: StatusDoc {
                    vault,
                    ready: false,
                    data_dir: None,
                    last_sync: None,
                    next_refresh: None,
                    last_error: None,
                    consecutive_failures: 0,
                    objects: Default::default(),
                    list_fallback: Vec::new(),
                    absent: Vec::new(),
                    refused: Vec::new(),
                },
                alive_until: crate::retry::deadline_in(startup),
                last_success: None,
            }),
            max_staleness,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The loop checks in: it promises to check in again within `within`.
    pub fn heartbeat(&self, within: Duration) {
        self.lock().alive_until = crate::retry::deadline_in(within);
    }

    /// A successful cycle.
    pub fn succeeded(&self, report: &SyncReport, data_dir: Option<String>) {
        let mut inner = self.lock();
        inner.last_success = Some(Instant::now());
        let doc = &mut inner.doc;
        doc.ready = true;
        if data_dir.is_some() {
            doc.data_dir = data_dir;
        }
        doc.last_sync = Some(unix(report.finished_at));
        doc.last_error = None;
        doc.consecutive_failures = 0;
        doc.objects = report.objects.clone();
        doc.list_fallback = report.list_fallback.iter().map(|t| t.to_string()).collect();
        doc.absent = report.absent.clone();
        doc.refused = Vec::new();
    }

    /// A failed cycle; what is published stays.
    pub fn failed(&self, error: &str) {
        self.failed_with(error, Vec::new());
    }

    /// A failed cycle that refused `refused` at validation; what is published stays.
    pub fn failed_with(&self, error: &str, refused: Vec<RefusedObject>) {
        let mut inner = self.lock();
        inner.doc.refused = refused;
        inner.doc.last_error = Some(error.to_owned());
        inner.doc.consecutive_failures = inner.doc.consecutive_failures.saturating_add(1);
    }

    /// The vault name changed with a reloaded plan.
    pub fn set_vault(&self, vault: &str) {
        self.lock().doc.vault = vault.to_owned();
    }

    /// The next refresh is due in `after`.
    pub fn scheduled(&self, after: Duration) {
        // Saturating: `SystemTime + Duration` panics on overflow.
        let at = SystemTime::now()
            .checked_add(after)
            .unwrap_or_else(SystemTime::now);
        self.lock().doc.next_refresh = Some(unix(at));
    }

    /// A snapshot of the manifest.
    pub fn doc(&self) -> StatusDoc {
        self.lock().doc.clone()
    }

    /// The manifest for the network (`/status`): without digests. Even a keyed digest
    /// says nothing a reader of `/status` needs (the version says when content changed),
    /// and logs, `/status` and notifications carry names and versions only
    /// (docs/threat-model.md rule 8).
    pub fn public_json(&self) -> Vec<u8> {
        let mut doc = self.doc();
        for o in std::sync::Arc::make_mut(&mut doc.objects) {
            o.digest.clear();
        }
        doc.to_json()
    }

    /// `/healthz`: the loop checked in on time.
    pub fn liveness(&self) -> Probe {
        let inner = self.lock();
        let now = Instant::now();
        if now <= inner.alive_until {
            Probe {
                ok: true,
                reason: "ok".into(),
            }
        } else {
            Probe {
                ok: false,
                reason: format!(
                    "refresh loop overdue by {}",
                    humantime::format_duration(round(
                        now.saturating_duration_since(inner.alive_until)
                    ))
                ),
            }
        }
    }

    /// `/readyz`: a complete set is published and, with `--max-staleness`, recent enough.
    pub fn readiness(&self) -> Probe {
        let inner = self.lock();
        let Some(last) = inner.last_success else {
            return Probe {
                ok: false,
                reason: "first sync not published yet".into(),
            };
        };
        if let Some(max) = self.max_staleness {
            let age = Instant::now().saturating_duration_since(last);
            if age > max {
                return Probe {
                    ok: false,
                    reason: format!(
                        "published data is stale: last successful sync {} ago (max {})",
                        humantime::format_duration(round(age)),
                        humantime::format_duration(max)
                    ),
                };
            }
        }
        Probe {
            ok: true,
            reason: "ok".into(),
        }
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::WriteOutcome;

    // reference: issue 10 item 6 (the publish serialises the manifest without copying it)
    #[test]
    fn the_streamed_manifest_is_the_set_manifest_byte_for_byte() {
        let objects = report().objects.to_vec();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for absent in [
            vec![],
            vec![AbsentObject {
                id: "secret/opt".into(),
                path: "opt".into(),
            }],
        ] {
            let owned = StatusDoc::for_set("demo", "..2026_x", at, objects.clone())
                .with_absent(absent.clone())
                .to_json();
            let mut borrowed = Vec::new();
            StatusDoc::write_set_json(&mut borrowed, "demo", "..2026_x", at, &objects, &absent)
                .unwrap();
            assert_eq!(
                String::from_utf8(borrowed).unwrap(),
                String::from_utf8(owned).unwrap()
            );
        }
    }

    fn report() -> SyncReport {
        SyncReport {
            outcome: WriteOutcome::Unchanged,
            objects: std::sync::Arc::new(vec![ObjectStatus {
                id: "secret/a".into(),
                version: "v1".into(),
                path: "a".into(),
                digest: "ab".into(),
                fetched_at: 5,
                not_after: None,
                expires: None,
                validation: None,
            }]),
            requests: 1,
            duration: Duration::from_millis(3),
            finished_at: SystemTime::now(),
            list_fallback: Vec::new(),
            absent: Vec::new(),
            refresh_within: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_needs_a_sync_and_fresh_data() {
        let s = SidecarState::new(
            "demo".into(),
            Duration::from_secs(60),
            Some(Duration::from_secs(300)),
        );
        assert!(!s.readiness().ok);
        s.succeeded(&report(), Some("..x".into()));
        assert!(s.readiness().ok);
        tokio::time::advance(Duration::from_secs(301)).await;
        let p = s.readiness();
        assert!(!p.ok);
        assert!(p.reason.contains("stale"), "{}", p.reason);
        // A failure does not make stale data fresh, a success does.
        s.failed("boom");
        assert!(!s.readiness().ok);
        s.succeeded(&report(), None);
        assert!(s.readiness().ok);
        assert_eq!(s.doc().data_dir.as_deref(), Some("..x"));
    }

    // reference: issue 11 item 6 (a refused update shows at /status until a cycle succeeds;
    // the published objects stay)
    #[test]
    fn refused_objects_show_until_a_cycle_succeeds() {
        let s = SidecarState::new("demo".into(), Duration::from_secs(10), None);
        s.succeeded(&report(), Some("..x".into()));
        let refused = RefusedObject {
            id: "secret/a".into(),
            reason: "chain_order",
            message: "the chain is not in order".into(),
        };
        s.failed_with("secret \"a\": certificate validation", vec![refused]);
        let v: serde_json::Value = serde_json::from_slice(&s.public_json()).unwrap();
        assert_eq!(v["refused"][0]["id"], "secret/a");
        assert_eq!(v["refused"][0]["reason"], "chain_order");
        assert_eq!(v["objects"][0]["version"], "v1", "the mounted set stays");
        s.failed("timeout");
        assert!(s.doc().refused.is_empty(), "only the last cycle's refusals");
        s.failed_with(
            "x",
            vec![RefusedObject {
                id: "secret/a".into(),
                reason: "expired",
                message: String::new(),
            }],
        );
        s.succeeded(&report(), None);
        let v: serde_json::Value = serde_json::from_slice(&s.public_json()).unwrap();
        assert!(v.get("refused").is_none(), "{v}");
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_follows_the_heartbeat() {
        let s = SidecarState::new("demo".into(), Duration::from_secs(10), None);
        assert!(s.liveness().ok);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!s.liveness().ok);
        s.heartbeat(Duration::from_secs(10));
        assert!(s.liveness().ok);
    }

    #[test]
    fn status_json_has_no_values_only_metadata() {
        let s = SidecarState::new("demo".into(), Duration::from_secs(10), None);
        s.succeeded(&report(), Some("..x".into()));
        let v: serde_json::Value = serde_json::from_slice(
            &StatusDoc::for_set("demo", "..x", SystemTime::now(), report().objects.to_vec())
                .to_json(),
        )
        .unwrap();
        assert_eq!(v["objects"][0]["id"], "secret/a");
        assert_eq!(v["objects"][0]["hmac_sha256"], "ab");
        assert!(v["objects"][0].get("sha256").is_none());
        assert_eq!(v["ready"], true);
        assert_eq!(v["data_dir"], "..x");
        assert!(v["next_refresh"].is_null() && v["last_error"].is_null());
        assert!(v["objects"][0].get("value").is_none());
        // reference: docs/threat-model.md rule 8 (/status carries names and versions only)
        let public: serde_json::Value = serde_json::from_slice(&s.public_json()).unwrap();
        assert_eq!(public["objects"][0]["id"], "secret/a");
        assert_eq!(public["objects"][0]["version"], "v1");
        assert!(public["objects"][0].get("sha256").is_none());
        assert!(public["objects"][0].get("hmac_sha256").is_none());
    }
}
