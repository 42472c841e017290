//! Prometheus metrics with bounded label values.
//!
//! Every label value comes from a closed set (object type, outcome class, identity mode,
//! refresh result, error class) or from the plan (object ids), so the number of series is
//! bounded by the configuration, never by traffic. Names follow the CSI driver and Azure
//! provider where they have an equivalent (`docs/peers.md` §B.6, §E): a per-object request
//! histogram, a refresh counter by result, an error counter by class, last-success and
//! expiry gauges.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// What the metrics keep about one mounted object (labels and gauges; never a value): a view
/// of [`crate::report::ObjectStatus`] (`ObjectStatus::mounted`), so this module, used by the
/// Key Vault and token clients, does not depend on the report built above them.
#[derive(Debug, Clone, Copy)]
pub struct MountedObject<'a> {
    /// Reference object id (`secret/name`).
    pub id: &'a str,
    /// Key Vault version.
    pub version: &'a str,
    /// Certificate `notAfter` (Unix seconds).
    pub not_after: Option<i64>,
    /// The version's `exp` attribute (Unix seconds).
    pub expires: Option<i64>,
}

/// Outcome class of a Key Vault or token request (bounded label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// 2xx.
    Ok,
    /// 404.
    NotFound,
    /// 403 (disabled, RBAC, policy, firewall).
    Forbidden,
    /// 401 (token rejected).
    Unauthorized,
    /// 429.
    Throttled,
    /// 408/5xx/transport/timeout.
    Transient,
    /// Anything else (bad request, unparseable body).
    Other,
}

/// Result of one refresh cycle, as counted by `keyvault_agent_refreshes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefreshResult {
    /// A new set was published.
    Changed,
    /// The vault had nothing new; nothing was written.
    Unchanged,
    /// The cycle failed; the last published set stays.
    Failed,
}

impl Outcome {
    /// The label value (`ok`, `not_found`, `forbidden`, `unauthorized`, `throttled`,
    /// `transient`, `other`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NotFound => "not_found",
            Outcome::Forbidden => "forbidden",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Throttled => "throttled",
            Outcome::Transient => "transient",
            Outcome::Other => "other",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

impl RefreshResult {
    /// The label value (`changed`, `unchanged`, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshResult::Changed => "changed",
            RefreshResult::Unchanged => "unchanged",
            RefreshResult::Failed => "failed",
        }
    }
}

impl EncodeLabelValue for RefreshResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    object_type: String,
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ModeLabels {
    mode: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: RefreshResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClassLabels {
    class: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ObjectLabels {
    id: String,
    version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TypeLabels {
    object_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct IdLabels {
    id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ValidationLabels {
    id: String,
    reason: String,
}

/// The agent's metrics registry.
pub struct Metrics {
    registry: Registry,
    kv_duration: Family<RequestLabels, Histogram>,
    kv_queue_wait: Histogram,
    requests: Family<KindLabels, Counter>,
    list_fallback: Family<TypeLabels, Gauge>,
    unchanged: Family<TypeLabels, Counter>,
    token_requests: Family<ModeLabels, Counter>,
    token_failures: Family<ModeLabels, Counter>,
    refreshes: Family<ResultLabels, Counter>,
    swaps: Counter,
    errors: Family<ClassLabels, Counter>,
    last_success: Gauge<i64, AtomicI64>,
    object_info: Family<ObjectLabels, Gauge>,
    cert_not_after: Family<IdLabels, Gauge<i64, AtomicI64>>,
    expires_in: Family<IdLabels, Gauge<i64, AtomicI64>>,
    /// `exp` per mounted object id, turned into seconds-to-expiry at each scrape.
    expiries: Mutex<Vec<(String, i64)>>,
    notifications: Family<ClassLabels, Counter<u64, AtomicU64>>,
    absent: Family<IdLabels, Gauge>,
    validation_failures: Family<ValidationLabels, Counter>,
    /// Serialises the clear-then-set of the per-object families so a scrape never sees a
    /// half-updated set (the families themselves are individually locked).
    objects_lock: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("keyvault_agent");
        // 5 ms .. ~41 s: Key Vault answers in tens of milliseconds; throttled retries and
        // timeouts land in the top buckets.
        let kv_duration = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register(
            "keyvault_request_duration_seconds",
            "Duration of Key Vault HTTP requests by object type and outcome class",
            kv_duration.clone(),
        );
        let kv_queue_wait = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "keyvault_queue_wait_seconds",
            "Time Key Vault requests waited for a concurrency permit (--concurrency), not part of the request duration",
            kv_queue_wait.clone(),
        );
        let requests = Family::<KindLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests sent by kind: get (object reads), list (collection and version lists), token (Entra/IMDS)",
            requests.clone(),
        );
        let list_fallback = Family::<TypeLabels, Gauge>::default();
        registry.register(
            "list_fallback",
            "1 when listing an object type was refused (403) and changes are detected by GETs instead",
            list_fallback.clone(),
        );
        let unchanged = Family::<TypeLabels, Counter>::default();
        registry.register(
            "objects_unchanged",
            "Latest objects served from memory because their list entry did not change",
            unchanged.clone(),
        );
        let token_requests = Family::<ModeLabels, Counter>::default();
        registry.register(
            "token_acquisitions",
            "Access token acquisition attempts by identity mode",
            token_requests.clone(),
        );
        let token_failures = Family::<ModeLabels, Counter>::default();
        registry.register(
            "token_failures",
            "Failed access token acquisitions by identity mode",
            token_failures.clone(),
        );
        let refreshes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "refreshes",
            "Sync cycles by result (changed, unchanged, failed)",
            refreshes.clone(),
        );
        let swaps = Counter::default();
        registry.register(
            "swaps",
            "Atomic ..data swaps (new sets published)",
            swaps.clone(),
        );
        let errors = Family::<ClassLabels, Counter>::default();
        registry.register("errors", "Errors by class", errors.clone());
        let last_success = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "last_successful_sync_timestamp_seconds",
            "Unix time of the last successful sync",
            last_success.clone(),
        );
        let object_info = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "object_info",
            "Mounted object versions (value is always 1)",
            object_info.clone(),
        );
        let cert_not_after = Family::<IdLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "certificate_not_after_timestamp_seconds",
            "Certificate notAfter (Unix time) per mounted object",
            cert_not_after.clone(),
        );
        let expires_in = Family::<IdLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "object_expiry_seconds",
            "Seconds until the exp attribute of each mounted object with one (negative: expired), as of the scrape",
            expires_in.clone(),
        );
        let notifications = Family::<ClassLabels, Counter>::default();
        registry.register(
            "notifications",
            "Application notifications by notifier and result",
            notifications.clone(),
        );
        let absent = Family::<IdLabels, Gauge>::default();
        registry.register(
            "object_absent",
            "Optional objects (objectOptional) missing or disabled in the vault at the last sync (value is always 1)",
            absent.clone(),
        );
        let validation_failures = Family::<ValidationLabels, Counter>::default();
        registry.register(
            "validation_failures",
            "Sync cycles whose set was refused because an object's certificate failed validation, by object id and reason (key_mismatch, chain_order, unparseable, chain_incomplete, expired, not_yet_valid)",
            validation_failures.clone(),
        );
        Self {
            absent,
            validation_failures,
            registry,
            kv_duration,
            kv_queue_wait,
            requests,
            list_fallback,
            unchanged,
            token_requests,
            token_failures,
            refreshes,
            swaps,
            errors,
            last_success,
            object_info,
            cert_not_after,
            expires_in,
            expiries: Mutex::new(Vec::new()),
            notifications,
            objects_lock: Mutex::new(()),
        }
    }
}

impl Metrics {
    /// A new registry.
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self::default())
    }

    /// One Key Vault HTTP request. `object_type` is `secret`, `key`, `cert`.
    pub fn kv_request(&self, object_type: &str, outcome: Outcome, elapsed: Duration) {
        self.kv_duration
            .get_or_create(&RequestLabels {
                object_type: bounded(object_type, &["secret", "key", "cert"]),
                outcome,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Time one Key Vault request waited for a concurrency permit.
    pub fn kv_queue_wait(&self, waited: Duration) {
        self.kv_queue_wait.observe(waited.as_secs_f64());
    }

    /// One HTTP request of `kind` (`get`, `list`; tokens are counted by [`Self::token_request`]).
    pub fn request_kind(&self, kind: &str) {
        self.requests
            .get_or_create(&KindLabels {
                kind: bounded(kind, &["get", "list", "token"]),
            })
            .inc();
    }

    /// Listing `object_type` is refused (`true`) and GETs stand in, or works again.
    pub fn list_fallback(&self, object_type: &str, on: bool) {
        self.list_fallback
            .get_or_create(&TypeLabels {
                object_type: bounded(object_type, &["secret", "key", "cert"]),
            })
            .set(i64::from(on));
    }

    /// `n` latest objects of `object_type` were current per their list entry (no GET).
    pub fn objects_unchanged(&self, object_type: &str, n: u64) {
        self.unchanged
            .get_or_create(&TypeLabels {
                object_type: bounded(object_type, &["secret", "key", "cert"]),
            })
            .inc_by(n);
    }

    /// One token acquisition attempt; `mode` is `workload_identity`, `managed_identity`
    /// or `client_secret`.
    pub fn token_request(&self, mode: &str, ok: bool) {
        let labels = ModeLabels {
            mode: bounded(
                mode,
                &["workload_identity", "managed_identity", "client_secret"],
            ),
        };
        self.token_requests.get_or_create(&labels).inc();
        self.request_kind("token");
        if !ok {
            self.token_failures.get_or_create(&labels).inc();
        }
    }

    /// One refresh cycle finished with `result`.
    pub fn refresh(&self, result: RefreshResult) {
        self.refreshes.get_or_create(&ResultLabels { result }).inc();
        if result == RefreshResult::Changed {
            self.swaps.inc();
        }
    }

    /// One error of `class` (a short fixed word such as `transient`, `config`, `notify`).
    pub fn error(&self, class: &'static str) {
        self.errors
            .get_or_create(&ClassLabels {
                class: class.to_owned(),
            })
            .inc();
    }

    /// One application notification by `notifier` (`signal`, `exec`, `http`).
    pub fn notification(&self, notifier: &'static str, ok: bool) {
        let class = format!("{notifier}_{}", if ok { "ok" } else { "failed" });
        self.notifications
            .get_or_create(&ClassLabels { class })
            .inc();
    }

    /// A successful sync at `at`: records the time and replaces the per-object series with
    /// what is mounted now (objects removed from the plan disappear).
    pub fn synced<'a>(&self, at: SystemTime, objects: impl IntoIterator<Item = MountedObject<'a>>) {
        let objects: Vec<MountedObject<'a>> = objects.into_iter().collect();
        self.last_success.set(unix(at));
        let _guard = self
            .objects_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.object_info.clear();
        self.cert_not_after.clear();
        for o in &objects {
            self.object_info
                .get_or_create(&ObjectLabels {
                    id: o.id.to_owned(),
                    version: o.version.to_owned(),
                })
                .set(1);
            if let Some(not_after) = o.not_after {
                self.cert_not_after
                    .get_or_create(&IdLabels {
                        id: o.id.to_owned(),
                    })
                    .set(not_after);
            }
        }
        *self.expiries.lock().unwrap_or_else(|p| p.into_inner()) = objects
            .iter()
            .filter_map(|o| Some((o.id.to_owned(), o.expires?)))
            .collect();
    }

    /// A cycle refused `id` at validation for `reason` (a closed set, see
    /// [`crate::report::RefusedObject`]); ids come from the plan.
    pub fn validation_failure(&self, id: &str, reason: &str) {
        self.validation_failures
            .get_or_create(&ValidationLabels {
                id: id.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The optional objects missing at the last sync (replaces the previous set).
    pub fn absent(&self, ids: &[String]) {
        let _guard = self
            .objects_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.absent.clear();
        for id in ids {
            self.absent
                .get_or_create(&IdLabels { id: id.clone() })
                .set(1);
        }
    }

    /// Prometheus text exposition format (OpenMetrics 1.0 text, which Prometheus parses).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _guard = self
            .objects_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.expires_in.clear();
        let now = unix(SystemTime::now());
        for (id, exp) in self
            .expiries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            self.expires_in
                .get_or_create(&IdLabels { id: id.clone() })
                .set(exp.saturating_sub(now));
        }
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Keeps label values inside a closed set: anything unexpected is reported as `other`.
fn bounded(value: &str, allowed: &[&str]) -> String {
    if allowed.contains(&value) {
        value.to_owned()
    } else {
        "other".to_owned()
    }
}

fn unix(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status<'a>(id: &'a str, version: &'a str, not_after: Option<i64>) -> MountedObject<'a> {
        MountedObject {
            id,
            version,
            not_after,
            expires: None,
        }
    }

    #[test]
    fn every_family_is_exposed_with_its_full_name() {
        let m = Metrics::new();
        m.kv_request("secret", Outcome::Ok, Duration::from_millis(12));
        m.token_request("workload_identity", false);
        m.refresh(RefreshResult::Changed);
        m.error("transient");
        m.notification("exec", true);
        m.synced(
            UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            [status("cert/web", "v1", Some(1_900_000_000))],
        );
        let text = m.encode();
        for needle in [
            "keyvault_agent_keyvault_request_duration_seconds_bucket{",
            "object_type=\"secret\"",
            "outcome=\"ok\"",
            "keyvault_agent_token_acquisitions_total{mode=\"workload_identity\"} 1",
            "keyvault_agent_token_failures_total{mode=\"workload_identity\"} 1",
            "keyvault_agent_refreshes_total{result=\"changed\"} 1",
            "keyvault_agent_swaps_total 1",
            "keyvault_agent_errors_total{class=\"transient\"} 1",
            "keyvault_agent_last_successful_sync_timestamp_seconds 1800000000",
            "keyvault_agent_object_info{id=\"cert/web\",version=\"v1\"} 1",
            "keyvault_agent_certificate_not_after_timestamp_seconds{id=\"cert/web\"} 1900000000",
            "keyvault_agent_notifications_total{class=\"exec_ok\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn queue_wait_and_requests_by_kind_are_separate_series() {
        let m = Metrics::new();
        m.kv_queue_wait(Duration::from_millis(40));
        m.kv_request("secret", Outcome::Ok, Duration::from_millis(3));
        m.request_kind("get");
        m.request_kind("list");
        m.request_kind("list");
        m.token_request("client_secret", true);
        m.list_fallback("key", true);
        m.objects_unchanged("secret", 7);
        let text = m.encode();
        for needle in [
            "keyvault_agent_keyvault_queue_wait_seconds_count 1",
            "keyvault_agent_keyvault_queue_wait_seconds_sum 0.04",
            "keyvault_agent_requests_total{kind=\"get\"} 1",
            "keyvault_agent_requests_total{kind=\"list\"} 2",
            "keyvault_agent_requests_total{kind=\"token\"} 1",
            "keyvault_agent_list_fallback{object_type=\"key\"} 1",
            "keyvault_agent_objects_unchanged_total{object_type=\"secret\"} 7",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    // reference: issue 10 item 4 (a metric shows seconds to expiry)
    #[test]
    fn seconds_to_expiry_are_computed_at_scrape_time() {
        let m = Metrics::new();
        let now = unix(SystemTime::now());
        let mut o = status("secret/a", "v1", None);
        o.expires = Some(now + 3600);
        m.synced(SystemTime::now(), [o, status("secret/b", "v1", None)]);
        let text = m.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("keyvault_agent_object_expiry_seconds{id=\"secret/a\"}"))
            .unwrap_or_else(|| panic!("{text}"));
        let secs: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((3590..=3600).contains(&secs), "{line}");
        assert!(!text.contains("object_expiry_seconds{id=\"secret/b\"}"));
    }

    #[test]
    fn label_values_stay_in_a_closed_set() {
        let m = Metrics::new();
        m.kv_request("../../etc/passwd", Outcome::Other, Duration::ZERO);
        m.token_request("surprise", true);
        let text = m.encode();
        assert!(text.contains("object_type=\"other\""), "{text}");
        assert!(text.contains("mode=\"other\""), "{text}");
        assert!(!text.contains("passwd") && !text.contains("surprise"));
    }

    #[test]
    fn object_series_follow_the_mounted_set() {
        let m = Metrics::new();
        m.synced(SystemTime::now(), [status("secret/a", "v1", None)]);
        m.synced(SystemTime::now(), [status("secret/a", "v2", None)]);
        let text = m.encode();
        assert!(text.contains("version=\"v2\""), "{text}");
        assert!(
            !text.contains("version=\"v1\""),
            "old version still exported:\n{text}"
        );
    }
}
