//! One sync cycle over a whole plan: fetch every object in parallel (bounded), convert,
//! assemble one payload, publish it atomically, and report what is mounted.
//!
//! All or nothing: if any object fails, every failure is reported (one line each, naming the
//! object) and nothing is written. Pinned versions are immutable, so each is fetched once per
//! process and served from memory afterwards; within a cycle, objects naming the same version
//! share one GET. Latest objects whose collection-list entry shows no change are served from
//! memory too (see [`crate::detect`]). Objects flow through a pipeline of `--concurrency`
//! slots, so request futures are built only as permits free up; the Key Vault client's
//! request semaphore bounds the rest (history mode's per-version GETs count against it).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::future::join_all;
use tokio::time::Instant;

use crate::auth::Credential;
use crate::config::{ObjectLayout, ObjectSpec, ObjectType, Plan, Settings, ValidateMode};
use crate::convert::Material;
use crate::detect::{ChangeDetection, Detection, FetchCache, Latest, Pages, Step};
use crate::http::{HttpClients, HttpOptions};
use crate::keyvault::list::{Fingerprint, Listing};
use crate::keyvault::model::{Fetched, VersionItem};
use crate::keyvault::{KeyVaultClient, KeyVaultError, KeyVaultOptions};
use crate::publish::{Prepared, Publisher};
// The cycle's outcome types live in `report` (so telemetry, notify and main need not import
// the sync machinery); re-exported here so `syncer::SyncReport` etc. keep working.
use crate::metrics::Metrics;
pub use crate::report::{
    AbsentObject, FailureKind, ObjectFailure, ObjectStatus, RefusedObject, SyncError, SyncReport,
};
use crate::secret::SecretBytes;
use crate::writer::{AtomicWriter, FileProjection, WriteOutcome};

type FetchKey = (ObjectType, String, Option<String>);

/// What listing found before the fetches of a cycle.
#[derive(Default)]
struct Detected {
    unchanged: HashSet<(ObjectType, String)>,
    still_absent: HashSet<(ObjectType, String)>,
}

/// The Key Vault type an object is read as: a certificate in the TLS layout is read through
/// its backing secret, the only place its private key is.
fn fetch_type(spec: &ObjectSpec) -> ObjectType {
    match (spec.object_type, spec.layout) {
        (ObjectType::Cert, ObjectLayout::Tls) => ObjectType::Secret,
        (t, _) => t,
    }
}

/// Whether `e` means an optional object is simply not there (404, or disabled).
fn is_absence(e: &KeyVaultError) -> bool {
    matches!(
        e,
        KeyVaultError::NotFound { .. } | KeyVaultError::Disabled { .. }
    )
}

/// How long before a latest object's `exp` it is fetched again (not trusted to a list).
pub const EXPIRY_LEAD: Duration = Duration::from_secs(60);
type FetchResult = Result<(Arc<Fetched>, u64), KeyVaultError>;

/// Per-cycle state: the deadline, and one shared GET per distinct (type, name, version), so
/// an object mounted twice (e.g. as PEM and as PFX) is fetched once.
struct Cycle {
    deadline: Instant,
    gets: Mutex<HashMap<FetchKey, Arc<tokio::sync::OnceCell<FetchResult>>>>,
    /// Latest objects (type, lowercase name) whose list entry shows no change since their
    /// cached fetch: served from the cache.
    unchanged: HashSet<(ObjectType, String)>,
    /// Optional objects absent last cycle that the list still shows missing or disabled:
    /// absent again without a GET.
    still_absent: HashSet<(ObjectType, String)>,
    /// Optional objects found absent this cycle, in plan order once sorted.
    absent: Mutex<Vec<(usize, AbsentObject)>>,
}

impl Cycle {
    fn new(deadline: Instant, detected: Detected) -> Self {
        Self {
            deadline,
            gets: Mutex::new(HashMap::new()),
            unchanged: detected.unchanged,
            still_absent: detected.still_absent,
            absent: Mutex::new(Vec::new()),
        }
    }

    fn cell(&self, key: FetchKey) -> Arc<tokio::sync::OnceCell<FetchResult>> {
        self.gets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .clone()
    }
}

/// Object futures alive at once (built and not yet dropped) and the most seen: the proof
/// that the pipeline builds a request future only when a slot is free (issue 10 item 6).
#[derive(Debug, Default)]
struct InFlight {
    now: AtomicUsize,
    peak: AtomicUsize,
}

/// Counts one live object future; dropping it (completion or cancellation) uncounts it.
struct InFlightGuard<'a>(&'a InFlight);

impl InFlight {
    fn enter(&self) -> InFlightGuard<'_> {
        let now = self.now.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        self.peak.fetch_max(now, Ordering::Relaxed);
        InFlightGuard(self)
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every file of one fetch, published nowhere ([`Syncer::fetch_set`]).
pub struct FetchedSet {
    /// (path in the set, content), objects in plan order, then templates.
    pub files: Vec<(String, SecretBytes)>,
    /// Optional objects missing or disabled in the vault.
    pub absent: Vec<AbsentObject>,
}

impl std::fmt::Debug for FetchedSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchedSet")
            .field(
                "paths",
                &self.files.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .field("absent", &self.absent)
            .finish()
    }
}

/// One output file ready to publish.
struct Item {
    path: String,
    data: SecretBytes,
    mode: u32,
    status: ObjectStatus,
}

/// Runs sync cycles for one plan; keeps credentials, the HTTP pool and pinned versions
/// between cycles.
#[derive(Debug)]
pub struct Syncer {
    /// Shared with the sidecar loop (which compares it with reloaded configurations), not
    /// copied: at thousands of objects a plan is megabytes.
    plan: Arc<Plan>,
    client: KeyVaultClient,
    credential: Credential,
    publisher: Publisher,
    timeout: Duration,
    /// Pinned versions and latest objects kept between cycles (shared across reloads).
    cache: Arc<FetchCache>,
    detection: Detection,
    /// Cycles started (0 = the first sync), for the periodic full sweep.
    cycles: AtomicU64,
    /// Object types whose list was refused (403): detected by GETs from then on.
    list_forbidden: Mutex<HashSet<ObjectType>>,
    metrics: Arc<Metrics>,
    /// Objects in progress at once (`--concurrency`).
    concurrency: usize,
    /// Optional objects (fetch type, lowercase name) absent at the last look: warned
    /// about once, re-checked by the list when there is one.
    absent: Mutex<HashSet<(ObjectType, String)>>,
    /// Object futures alive at once (see [`InFlight`]).
    in_flight: InFlight,
    /// What an expired or not-yet-valid certificate does (`--validate`).
    validate: ValidateMode,
}

/// Runs the publish (blocking file I/O) where it does not stall the runtime. On a
/// multi-thread runtime that is in place ([`tokio::task::block_in_place`]: the sidecar's
/// loop runs in `block_on` on the main thread, so nothing else waits for it): the thread that
/// built the set is the one that frees it, and glibc keeps one arena per thread, so a blocking
/// thread of its own kept megabytes of fragments between cycles (issue 10 item 6). A
/// current-thread runtime (unit tests) cannot block in place: a blocking thread there.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, SyncError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        // A panic is a bug reported as one, as from a blocking task (threat-model rule 10).
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tokio::task::block_in_place(f)
        }))
        .map_err(|_| {
            SyncError::Internal(
                "the writer task panicked; the previously published set is intact".to_owned(),
            )
        })
    } else {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(SyncError::writer_task)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Syncer {
    /// Builds the HTTP client, credential and a publisher of its own for `plan`.
    pub fn new(
        plan: impl Into<Arc<Plan>>,
        settings: &Settings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SyncError> {
        Self::with_publisher(plan, settings, metrics, Publisher::for_dir(&settings.dir))
    }

    /// Like [`new`](Self::new), publishing through `publisher` (the sidecar keeps one per
    /// output directory across reloads).
    pub fn with_publisher(
        plan: impl Into<Arc<Plan>>,
        settings: &Settings,
        metrics: Arc<Metrics>,
        publisher: Publisher,
    ) -> Result<Self, SyncError> {
        let http = crate::http::build(&HttpOptions::from_settings(settings))
            .map_err(|e| SyncError::Setup(e.to_string()))?;
        let opts = KeyVaultOptions {
            api_version: settings.api_version.clone(),
            concurrency: settings.concurrency.max(1),
            ..KeyVaultOptions::default()
        };
        Ok(
            Self::with_parts(plan, http, publisher, settings.timeout, opts, metrics)?
                .with_detection(Detection {
                    mode: settings.change_detection,
                    full_sweep_every: settings.full_sweep_every,
                })
                .with_validation(settings.validate),
        )
    }

    /// Uses `cache` for pinned and latest objects (shared with earlier syncers of the same
    /// process, so a reload refetches nothing that did not change).
    pub fn with_cache(mut self, cache: Arc<FetchCache>) -> Self {
        self.cache = cache;
        self
    }

    /// Change detection settings (default: list, full sweep every 10th refresh).
    pub fn with_detection(mut self, detection: Detection) -> Self {
        self.detection = detection;
        self
    }

    /// What an expired or not-yet-valid certificate does (default: warn).
    pub fn with_validation(mut self, mode: ValidateMode) -> Self {
        self.validate = mode;
        self
    }

    /// Builds a syncer from explicit parts (custom backoff, shared clients).
    pub fn with_parts(
        plan: impl Into<Arc<Plan>>,
        http: HttpClients,
        publisher: Publisher,
        timeout: Duration,
        opts: KeyVaultOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SyncError> {
        let plan = plan.into();
        let concurrency = opts.concurrency.max(1);
        let credential = Credential::new(&plan.identity, http.clone(), metrics.clone())
            .map_err(|e| SyncError::Setup(e.to_string()))?;
        let client = KeyVaultClient::new(
            plan.vault_url.clone(),
            http,
            credential.clone(),
            metrics.clone(),
            opts,
        );
        Ok(Self {
            plan,
            client,
            credential,
            publisher,
            timeout,
            cache: FetchCache::new(),
            detection: Detection::default(),
            cycles: AtomicU64::new(0),
            list_forbidden: Mutex::new(HashSet::new()),
            metrics,
            concurrency,
            absent: Mutex::new(HashSet::new()),
            in_flight: InFlight::default(),
            validate: ValidateMode::default(),
        })
    }

    /// The most object futures that were alive at once in any cycle so far: at most
    /// `--concurrency`, however many objects the plan has.
    pub fn peak_in_flight(&self) -> usize {
        self.in_flight.peak.load(Ordering::Relaxed)
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The Key Vault client.
    pub fn client(&self) -> &KeyVaultClient {
        &self.client
    }

    /// The credential.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// The writer (owned by the publisher).
    pub fn writer(&self) -> &AtomicWriter {
        self.publisher.writer()
    }

    /// The publisher.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// One cycle under the settings' overall deadline.
    pub async fn sync(&self) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let before = self.client.requests();
        let (prepared, absent, objects_exp) = self.collect(started).await?;
        self.publish(started, before, prepared, absent, objects_exp)
            .await
    }

    /// One fetch of the whole plan with its templates rendered, published nowhere: what
    /// `keyvault-agent exec` puts in the environment. Paths are the set's file paths.
    pub async fn fetch_set(&self) -> Result<FetchedSet, SyncError> {
        let (prepared, absent, _) = self.collect(Instant::now()).await?;
        Ok(FetchedSet {
            files: prepared
                .into_iter()
                .map(|p| (p.path, p.file.data))
                .collect(),
            absent,
        })
    }

    /// Fetches, converts and renders the templates: every file of the set, the optional
    /// objects found absent, and the `exp` of the latest objects.
    async fn collect(
        &self,
        started: Instant,
    ) -> Result<(Vec<Prepared>, Vec<AbsentObject>, Vec<i64>), SyncError> {
        let deadline = crate::retry::instant_after(started, self.timeout);
        let n = self.cycles.fetch_add(1, Ordering::Relaxed);
        if n == 0 {
            self.forget_unplanned();
        }
        let detected = self.detect_unchanged(n, deadline).await;
        let cycle = Cycle::new(deadline, detected);
        // Every request already stops at the deadline; this is the backstop.
        // A bounded pipeline: at most --concurrency objects are in progress, so an object's
        // request future is built only when a permit is free, and memory does not grow with
        // one future per object up front.
        let backstop = crate::retry::instant_after(deadline, Duration::from_secs(1));
        let fetched = tokio::time::timeout_at(backstop, async {
            let mut pending = self.plan.objects.iter().enumerate();
            let mut running = futures::stream::FuturesUnordered::new();
            let mut done = Vec::with_capacity(self.plan.objects.len());
            loop {
                while running.len() < self.concurrency {
                    match pending.next() {
                        Some((i, spec)) => running.push(self.tracked(i, spec, &cycle)),
                        None => break,
                    }
                }
                match running.next().await {
                    Some(r) => done.push(r),
                    None => break,
                }
            }
            done.sort_unstable_by_key(|(i, _)| *i);
            done
        })
        .await
        .map_err(|_| SyncError::Deadline(self.timeout))?;

        // The cycle's shared GETs hold every fetched bundle: let them go before the
        // publish, the moment the most memory is in use.
        drop(cycle.gets);
        // Straight into what the publisher takes: one list of files, no intermediate
        // copies (at thousands of objects each copy is megabytes).
        let mut prepared: Vec<Prepared> = Vec::with_capacity(fetched.len());
        let mut failures = Vec::new();
        for (_, r) in fetched {
            match r {
                Ok(v) => prepared.extend(v.into_iter().map(|it| Prepared {
                    path: it.path,
                    file: FileProjection {
                        data: it.data,
                        mode: it.mode,
                    },
                    status: it.status,
                })),
                Err(mut f) => failures.append(&mut f),
            }
        }
        if !failures.is_empty() {
            for f in &failures {
                if let FailureKind::Validation(r) = &f.kind {
                    self.metrics.validation_failure(&r.id, r.reason);
                }
            }
            return Err(SyncError::Objects(failures));
        }
        let rendered = self.render_templates(&prepared)?;
        prepared.extend(rendered);

        // Expiry of latest objects only: a pinned version never changes, so looking again
        // cannot help it.
        let objects_exp: Vec<i64> = self
            .plan
            .objects
            .iter()
            .filter(|s| s.version.is_none() && !s.is_history())
            .filter_map(|s| self.cache.latest(self.vault_key(), s.object_type, &s.name))
            .filter_map(|l| l.fingerprint.exp)
            .collect();
        let mut absent = cycle.absent.into_inner().unwrap_or_else(|p| p.into_inner());
        absent.sort_by_key(|(i, _)| *i);
        let absent: Vec<AbsentObject> = absent.into_iter().map(|(_, a)| a).collect();
        Ok((prepared, absent, objects_exp))
    }

    /// Renders every template of the plan from `files` (the objects' files); every failing
    /// template is reported, naming it and the line, never a value.
    fn render_templates(&self, files: &[Prepared]) -> Result<Vec<Prepared>, SyncError> {
        if self.plan.templates.is_empty() {
            return Ok(Vec::new());
        }
        let objects: Vec<(&str, &SecretBytes)> = files
            .iter()
            .map(|p| (p.path.as_str(), &p.file.data))
            .collect();
        let now = unix_now();
        let mut out = Vec::with_capacity(self.plan.templates.len());
        let mut failures = Vec::new();
        for t in &self.plan.templates {
            match crate::template::render(t, &objects) {
                Ok(data) => out.push(Prepared {
                    status: ObjectStatus {
                        id: format!("template/{}", t.dest),
                        version: String::new(),
                        path: t.dest.clone(),
                        digest: String::new(),
                        fetched_at: now,
                        not_after: None,
                        expires: None,
                        validation: None,
                    },
                    path: t.dest.clone(),
                    file: FileProjection { data, mode: t.mode },
                }),
                Err(message) => failures.push(ObjectFailure {
                    label: format!("template \"{}\"", t.name),
                    kind: FailureKind::Template(message),
                }),
            }
        }
        if failures.is_empty() {
            Ok(out)
        } else {
            Err(SyncError::Objects(failures))
        }
    }

    /// Publishes `prepared` (and the manifest naming the `absent` objects) and reports the
    /// cycle.
    async fn publish(
        &self,
        started: Instant,
        before: usize,
        prepared: Vec<Prepared>,
        absent: Vec<AbsentObject>,
        objects_exp: Vec<i64>,
    ) -> Result<SyncReport, SyncError> {
        self.metrics
            .absent(&absent.iter().map(|a| a.id.clone()).collect::<Vec<_>>());
        let publisher = self.publisher.clone();
        let vault = self.plan.vault_name.clone();
        let dir = || self.writer().target_dir().display().to_string();
        let in_manifest = absent.clone();
        let (outcome, objects) =
            blocking(move || publisher.publish_with_absent(&vault, prepared, in_manifest))
                .await?
                .map_err(|source| SyncError::Write { dir: dir(), source })?;
        Ok(SyncReport {
            outcome,
            objects: Arc::new(objects),
            requests: self.client.requests().saturating_sub(before),
            duration: started.elapsed(),
            finished_at: SystemTime::now(),
            list_fallback: self.list_fallback(),
            refresh_within: self.refresh_within(&objects_exp),
            absent,
        })
    }

    /// Time until [`EXPIRY_LEAD`] before the earliest `exp` of a latest object, so it is
    /// looked at again (and fetched, not trusted to a list) before it expires. `None` once
    /// inside that lead, so an unrotated object does not cause a refresh loop.
    fn refresh_within(&self, expires: &[i64]) -> Option<Duration> {
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let lead = EXPIRY_LEAD.as_secs() as i64;
        expires
            .iter()
            .map(|e| e.saturating_sub(lead).saturating_sub(now))
            .filter(|d| *d > 0)
            .min()
            .map(|d| Duration::from_secs(d as u64))
    }

    /// Drops cached objects a previous plan had and this one does not (after a reload).
    /// History versions are not pinned by the plan itself, so the pinned cache keeps every
    /// version of a history object.
    fn forget_unplanned(&self) {
        // Latest objects are cached for change detection by listing only.
        let listing = self.detection.mode == ChangeDetection::List;
        let latest: HashSet<(ObjectType, String)> = self
            .plan
            .objects
            .iter()
            .filter(|s| listing && s.version.is_none() && !s.is_history())
            .map(|s| (fetch_type(s), s.name.to_ascii_lowercase()))
            .collect();
        let history: HashSet<(ObjectType, &str)> = self
            .plan
            .objects
            .iter()
            .filter(|s| s.is_history())
            .map(|s| (s.object_type, s.name.as_str()))
            .collect();
        let mut pinned: HashSet<(ObjectType, String, String)> = self
            .plan
            .objects
            .iter()
            .filter_map(|s| Some((s.object_type, s.name.clone(), s.version.clone()?)))
            .collect();
        if !history.is_empty() {
            for (t, name, version) in self.cache.pinned_keys(self.vault_key()) {
                if history.contains(&(t, name.as_str())) {
                    pinned.insert((t, name, version));
                }
            }
        }
        self.cache.retain(self.vault_key(), &latest, &pinned);
    }

    fn vault_key(&self) -> &str {
        self.plan.vault_url.as_str()
    }

    fn list_fallback(&self) -> Vec<&'static str> {
        let forbidden = self
            .list_forbidden
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        [ObjectType::Secret, ObjectType::Key, ObjectType::Cert]
            .into_iter()
            .filter(|t| forbidden.contains(t))
            .map(ObjectType::as_str)
            .collect()
    }

    /// Lists each object type where that is cheaper than GETs (see [`crate::detect`]) and
    /// returns the latest objects whose cached fetch is still current.
    async fn detect_unchanged(&self, n: u64, deadline: Instant) -> Detected {
        let mut unchanged = HashSet::new();
        let mut still_absent = HashSet::new();
        if self.detection.mode == ChangeDetection::Get {
            return Detected::default();
        }
        if self.detection.is_sweep(n) {
            tracing::debug!(refresh = n, "full sweep: fetching every latest object");
            return Detected::default();
        }
        let absent = self
            .absent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let vault = self.vault_key();
        let mut by_type: HashMap<ObjectType, HashSet<String>> = HashMap::new();
        for s in self
            .plan
            .objects
            .iter()
            .filter(|s| s.version.is_none() && !s.is_history())
        {
            by_type
                .entry(fetch_type(s))
                .or_default()
                .insert(s.name.to_ascii_lowercase());
        }
        let lists = by_type.iter().filter_map(|(&t, names)| {
            let forbidden = self
                .list_forbidden
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&t);
            if forbidden {
                return None;
            }
            // An absent optional object is worth comparing with the list too: its
            // absence is what the list confirms.
            let have = self.cache.has_latest(vault, t, names)
                || names.iter().any(|n| absent.contains(&(t, n.clone())));
            match crate::detect::step(names.len(), self.cache.pages(vault, t), have) {
                Step::GetAll => None,
                Step::List(budget) => Some(async move {
                    (
                        t,
                        names,
                        self.client.list_current(t, budget, deadline).await,
                    )
                }),
            }
        });
        for (t, names, listed) in join_all(lists).await {
            match listed {
                Ok(Listing::Complete { entries, pages }) => {
                    self.cache.set_pages(vault, t, Pages::Known(pages));
                    let mut same = 0u64;
                    for name in names {
                        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
                        let current = self.cache.latest(vault, t, name).is_some_and(|l| {
                            l.settled()
                                && entries.get(name) == Some(&l.fingerprint)
                                && !l.fingerprint.exp.is_some_and(|e| {
                                    e.saturating_sub(now) <= EXPIRY_LEAD.as_secs() as i64
                                })
                        });
                        if current {
                            same += 1;
                            unchanged.insert((t, name.clone()));
                        }
                        let gone = entries.get(name).is_none_or(|f| f.enabled == Some(false));
                        if gone && absent.contains(&(t, name.clone())) {
                            still_absent.insert((t, name.clone()));
                        }
                    }
                    self.metrics.objects_unchanged(t.as_str(), same);
                }
                Ok(Listing::OverBudget { pages }) => {
                    tracing::debug!(
                        object_type = t.as_str(),
                        pages,
                        "listing costs more than one GET per object; using GETs"
                    );
                    self.cache.set_pages(vault, t, Pages::AtLeast(pages));
                }
                Err(KeyVaultError::Forbidden { inner, .. }) => {
                    self.list_forbidden
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(t);
                    self.metrics.list_fallback(t.as_str(), true);
                    tracing::warn!(
                        object_type = t.as_str(),
                        code = %inner,
                        "listing {}s is forbidden (403): detecting their changes with one GET per object; grant the identity list permission to save requests",
                        t.as_str()
                    );
                }
                Err(e) => {
                    tracing::debug!(object_type = t.as_str(), error = %e, "listing failed; using GETs this refresh");
                }
            }
        }
        Detected {
            unchanged,
            still_absent,
        }
    }

    /// GET one version: from memory when it is pinned and was fetched before, or when it is
    /// the latest and its list entry shows no change; else one GET shared by every object of
    /// this cycle that names the same version.
    async fn fetch_version(
        &self,
        spec: &ObjectSpec,
        version: Option<&str>,
        cycle: &Cycle,
    ) -> FetchResult {
        let vault = self.vault_key();
        let t = spec.object_type;
        match version {
            Some(v) => {
                if let Some(hit) = self.cache.pinned(vault, t, &spec.name, v) {
                    return Ok(hit);
                }
            }
            None => {
                if cycle
                    .unchanged
                    .contains(&(t, spec.name.to_ascii_lowercase()))
                    && let Some(l) = self.cache.latest(vault, t, &spec.name)
                {
                    return Ok((l.fetched, l.at));
                }
            }
        }
        let cell = cycle.cell((t, spec.name.clone(), version.map(str::to_owned)));
        cell.get_or_init(|| async {
            let sent_at = unix_now();
            let fetched = Arc::new(
                self.client
                    .get(t, &spec.name, version, cycle.deadline)
                    .await?,
            );
            let at = unix_now();
            match version {
                Some(v) => self
                    .cache
                    .put_pinned(vault, t, &spec.name, v, (fetched.clone(), at)),
                None if self.detection.mode == ChangeDetection::List => self.cache.put_latest(
                    vault,
                    t,
                    &spec.name,
                    Latest {
                        fingerprint: Fingerprint::of(&fetched),
                        fetched: fetched.clone(),
                        at,
                        sent_at,
                    },
                ),
                None => {}
            }
            Ok((fetched, at))
        })
        .await
        .clone()
    }

    #[allow(clippy::too_many_arguments)]
    fn item(
        &self,
        spec: &ObjectSpec,
        label: &str,
        id: String,
        path: String,
        requested: Option<&str>,
        fetched: &Fetched,
        fetched_at: u64,
        check_validity: bool,
    ) -> Result<Item, ObjectFailure> {
        let data = crate::convert::convert(spec, fetched).map_err(|e| ObjectFailure {
            label: label.to_owned(),
            kind: FailureKind::Convert(e.into()),
        })?;
        let data = match &spec.json_pointer {
            Some(p) => crate::shape::json_pointer(data.expose(), p).map_err(|e| ObjectFailure {
                label: label.to_owned(),
                kind: FailureKind::Convert(e.into()),
            })?,
            None => data,
        };
        let version = fetched
            .version()
            .or(requested)
            .unwrap_or_default()
            .to_owned();
        let not_after = crate::convert::not_after(fetched, data.expose());
        // The TLS layout is validated once reshaped (its files are what readers see); a
        // pointer's value is no certificate.
        let validation = if spec.layout == ObjectLayout::Tls || spec.json_pointer.is_some() {
            None
        } else {
            self.validated(
                &id,
                label,
                crate::convert::material(fetched, data.expose()),
                check_validity,
            )?
        };
        tracing::debug!(object = %id, %version, path = %path, bytes = data.len(), "object ready");
        Ok(Item {
            status: ObjectStatus {
                id,
                version,
                path: path.clone(),
                digest: String::new(),
                fetched_at,
                not_after,
                expires: crate::keyvault::list::Fingerprint::of(fetched).exp,
                validation,
            },
            path,
            data,
            mode: spec.mode,
        })
    }

    /// [`fetch_indexed`](Self::fetch_indexed), counted in [`InFlight`] from the moment the
    /// future is built (not first polled) until it is dropped.
    fn tracked<'a>(
        &'a self,
        i: usize,
        spec: &'a ObjectSpec,
        cycle: &'a Cycle,
    ) -> impl std::future::Future<Output = (usize, Result<Vec<Item>, Vec<ObjectFailure>>)> + 'a
    {
        let guard = self.in_flight.enter();
        async move {
            let _guard = guard;
            self.fetch_indexed(i, spec, cycle).await
        }
    }

    async fn fetch_indexed(
        &self,
        i: usize,
        spec: &ObjectSpec,
        cycle: &Cycle,
    ) -> (usize, Result<Vec<Item>, Vec<ObjectFailure>>) {
        let key = (fetch_type(spec), spec.name.to_ascii_lowercase());
        let r = if spec.optional && cycle.still_absent.contains(&key) {
            Err(vec![])
        } else {
            self.fetch_object(spec, cycle).await
        };
        if !spec.optional {
            return (i, r);
        }
        let absent_now = match &r {
            Err(fs) => fs
                .iter()
                .all(|f| matches!(&f.kind, FailureKind::KeyVault(e) if is_absence(e))),
            Ok(_) => false,
        };
        let mut known = self.absent.lock().unwrap_or_else(|p| p.into_inner());
        if !absent_now {
            if known.remove(&key) {
                tracing::info!(object = %spec.id(), path = %spec.path, "optional object is in the vault again: publishing it");
            }
            return (i, r);
        }
        if known.insert(key) {
            let why = match &r {
                Err(fs) if !fs.is_empty() => fs[0].kind.to_string(),
                _ => "not in the vault".to_owned(),
            };
            tracing::warn!(object = %spec.id(), path = %spec.path, reason = %why, "optional object is absent (missing or disabled): skipping it; it is published when it appears");
        }
        drop(known);
        cycle
            .absent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((
                i,
                AbsentObject {
                    id: spec.id(),
                    path: spec.path.clone(),
                },
            ));
        (i, Ok(Vec::new()))
    }

    async fn fetch_object(
        &self,
        spec: &ObjectSpec,
        cycle: &Cycle,
    ) -> Result<Vec<Item>, Vec<ObjectFailure>> {
        if spec.is_history() {
            return self.fetch_history(spec, cycle).await;
        }
        let label = spec.label();
        // A certificate in the TLS layout is read as its backing secret (key and chain).
        let as_secret;
        let read_as = if fetch_type(spec) != spec.object_type {
            as_secret = ObjectSpec {
                object_type: fetch_type(spec),
                ..spec.clone()
            };
            &as_secret
        } else {
            spec
        };
        let (fetched, at) = self
            .fetch_version(read_as, spec.version.as_deref(), cycle)
            .await
            .map_err(|e| {
                vec![ObjectFailure {
                    label: label.clone(),
                    kind: FailureKind::KeyVault(e),
                }]
            })?;
        // At "latest" the spec does not say which version failed to convert; the bundle does.
        let label = match (&spec.version, fetched.version()) {
            (None, Some(v)) => version_label(spec, v),
            _ => label,
        };
        let item = self
            .item(
                read_as,
                &label,
                spec.id(),
                spec.path.clone(),
                spec.version.as_deref(),
                &fetched,
                at,
                true,
            )
            .map_err(|f| vec![f])?;
        if spec.layout == ObjectLayout::Tls {
            return self.tls_items(spec, &label, item).map_err(|f| vec![f]);
        }
        Ok(vec![item])
    }

    /// The TLS layout: one converted PEM (key and chain) becomes `tls.crt`, `tls.key` and
    /// `ca.crt` under the object's path.
    fn tls_items(
        &self,
        spec: &ObjectSpec,
        label: &str,
        item: Item,
    ) -> Result<Vec<Item>, ObjectFailure> {
        let files =
            crate::shape::tls(&spec.name, item.data.expose()).map_err(|e| ObjectFailure {
                label: label.to_owned(),
                kind: FailureKind::Convert(e.into()),
            })?;
        // tls.crt (leaf then chain) with tls.key, as a server loads them.
        let mut pair = files[0].expose().to_vec();
        pair.extend_from_slice(files[1].expose());
        let validation = self.validated(
            &item.status.id,
            label,
            Some(Material::from_pem(&pair)),
            true,
        )?;
        let item = Item {
            status: ObjectStatus {
                validation,
                ..item.status
            },
            ..item
        };
        Ok(crate::shape::TLS_FILES
            .iter()
            .zip(files)
            .map(|(name, data)| {
                let path = format!("{}/{name}", spec.path);
                Item {
                    status: ObjectStatus {
                        path: path.clone(),
                        ..item.status.clone()
                    },
                    path,
                    data,
                    mode: item.mode,
                }
            })
            .collect())
    }

    /// History mode (`docs/reference-provider.md` §2.7, with its bugs fixed): exactly
    /// min(N, enabled) files, newest first, starting at the pinned version if any.
    async fn fetch_history(
        &self,
        spec: &ObjectSpec,
        cycle: &Cycle,
    ) -> Result<Vec<Item>, Vec<ObjectFailure>> {
        let label = spec.label();
        let fail = |kind| {
            vec![ObjectFailure {
                label: label.clone(),
                kind,
            }]
        };
        let items = self
            .client
            .list_versions(spec.object_type, &spec.name, cycle.deadline)
            .await
            .map_err(|e| fail(FailureKind::KeyVault(e)))?;
        let versions = select_history(items, spec.version.as_deref(), spec.history as usize)
            .map_err(|v| fail(FailureKind::StartVersion(v)))?;
        let results = join_all(versions.iter().map(|v| async move {
            let r = self.fetch_version(spec, Some(v), cycle).await;
            (v.clone(), r)
        }))
        .await;
        let mut out = Vec::new();
        let mut failures = Vec::new();
        for (i, (v, r)) in results.into_iter().enumerate() {
            let vlabel = version_label(spec, &v);
            match r {
                // Older versions are kept for rollover and may well be expired.
                Ok((fetched, at)) => match self.item(
                    spec,
                    &vlabel,
                    spec.history_id(i),
                    format!("{}/{i}", spec.path),
                    Some(&v),
                    &fetched,
                    at,
                    i == 0,
                ) {
                    Ok(it) => out.push(it),
                    Err(f) => failures.push(f),
                },
                Err(e) => failures.push(ObjectFailure {
                    label: vlabel,
                    kind: FailureKind::KeyVault(e),
                }),
            }
        }
        if failures.is_empty() {
            Ok(out)
        } else {
            Err(failures)
        }
    }
}

impl Syncer {
    /// Validation before the swap (issue 11 item 6) of one output's `material`: `Err` when
    /// it is refused (a key/leaf mismatch or a disordered chain always; a validity problem
    /// with `--validate strict`), else the warning published with it, if any.
    fn validated(
        &self,
        id: &str,
        label: &str,
        material: Option<Material>,
        check_validity: bool,
    ) -> Result<Option<String>, ObjectFailure> {
        let Some(material) = material else {
            return Ok(None);
        };
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let problems = crate::validate::check(&material, now, check_validity);
        let strict = self.validate == ValidateMode::Strict;
        if let Some(p) = problems
            .iter()
            .find(|p| strict || p.reason.always_refused())
        {
            return Err(ObjectFailure {
                label: label.to_owned(),
                kind: FailureKind::Validation(RefusedObject {
                    id: id.to_owned(),
                    reason: p.reason.as_str(),
                    message: p.message.clone(),
                }),
            });
        }
        let warning = problems
            .first()
            .map(|p| format!("{}: {}", p.reason.as_str(), p.message));
        if let Some(w) = &warning {
            tracing::warn!(object = %id, warning = %w, "certificate validation: published anyway (--validate warn; strict refuses it)");
        }
        Ok(warning)
    }
}

/// `secret "db-password" (version 3f2a…)` for one version of `spec`'s object; the version is
/// shown in full, as [`ObjectSpec::label`] shows a pinned one.
fn version_label(spec: &ObjectSpec, version: &str) -> String {
    format!(
        "{} \"{}\" (version {version})",
        spec.object_type.as_str(),
        spec.name
    )
}

/// Enabled versions with attributes, newest `created` first (missing = epoch), starting at
/// `start` when given, at most `n`. `Err(start)` when `start` is not among them.
pub fn select_history(
    items: Vec<VersionItem>,
    start: Option<&str>,
    n: usize,
) -> Result<Vec<String>, String> {
    let mut enabled: Vec<(i64, String)> = items
        .iter()
        .filter_map(|it| {
            let a = it.attributes.as_ref()?;
            if a.enabled != Some(true) {
                return None;
            }
            Some((a.created.unwrap_or(0), it.version()?.to_owned()))
        })
        .collect();
    enabled.sort_by_key(|e| std::cmp::Reverse(e.0));
    let from = match start {
        None => 0,
        Some(v) => enabled
            .iter()
            .position(|(_, x)| x == v)
            .ok_or_else(|| v.to_owned())?,
    };
    Ok(enabled
        .into_iter()
        .skip(from)
        .take(n)
        .map(|(_, v)| v)
        .collect())
}

/// `--once`: load, sync once, exit. See [`crate::run_once`].
pub async fn run_once(
    settings: Settings,
    env: crate::config::Env,
) -> Result<SyncReport, crate::error::Error> {
    let plan = crate::config::load(&settings, &env)?;
    let by_type = counts(&plan);
    let metrics = Metrics::new();
    // One cycle: nothing to compare a list with later, so no latest object is kept for it
    // (at thousands of objects the cache's table is a megabyte; issue 10 item 6).
    let syncer = Syncer::new(plan, &settings, metrics)?.with_detection(Detection {
        mode: ChangeDetection::Get,
        full_sweep_every: settings.full_sweep_every,
    });
    let report = syncer.sync().await?;
    let changed = matches!(report.outcome, WriteOutcome::Published { .. });
    tracing::info!(
        objects = ?by_type,
        files = report.objects.len(),
        requests = report.requests,
        duration_ms = report.duration.as_millis() as u64,
        changed,
        dir = %settings.dir.display(),
        "sync complete"
    );
    Ok(report)
}

/// Object counts by type, for logs.
pub fn counts(plan: &Plan) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for o in &plan.objects {
        *m.entry(o.object_type.as_str()).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyvault::model::Attributes;

    fn v(id: &str, enabled: Option<bool>, created: Option<i64>) -> VersionItem {
        VersionItem {
            id: Some(format!("https://x.vault.azure.net/secrets/s/{id}")),
            kid: None,
            attributes: Some(Attributes {
                enabled,
                created,
                ..Default::default()
            }),
        }
    }

    // reference: docs/reference-provider.md §2.7 (TestGetLatestNKeyVaultObjects + [BUG] fixes)
    #[test]
    fn history_selection() {
        let t = 1_700_000_000;
        let all = || {
            vec![
                v("c", Some(true), Some(t + 8)),
                v("a", Some(true), Some(t + 10)),
                v("e", Some(true), Some(t + 6)),
                v("b", Some(true), Some(t + 9)),
                v("d", Some(true), Some(t + 7)),
            ]
        };
        assert_eq!(
            select_history(all(), None, 5).unwrap(),
            ["a", "b", "c", "d", "e"]
        );
        // Exactly N, not N+1.
        assert_eq!(select_history(all(), None, 2).unwrap(), ["a", "b"]);
        assert_eq!(select_history(all(), None, 200).unwrap().len(), 5);
        assert_eq!(
            select_history(all(), Some("c"), 5).unwrap(),
            ["c", "d", "e"]
        );
        // A start version that is not there is an error, not an empty set.
        assert_eq!(select_history(all(), Some("zzz"), 5), Err("zzz".into()));
        // Disabled and attribute-less versions are skipped; a disabled start is an error.
        let mut items = all();
        items.push(v("new-disabled", Some(false), Some(t + 100)));
        items.push(VersionItem {
            id: Some("https://x/secrets/s/noattr".into()),
            kid: None,
            attributes: None,
        });
        items.push(v("nocreated", Some(true), None));
        assert_eq!(
            select_history(items.clone(), None, 10).unwrap(),
            ["a", "b", "c", "d", "e", "nocreated"]
        );
        assert!(select_history(items, Some("new-disabled"), 2).is_err());
    }

    // reference: docs/threat-model.md rule 10 (a writer panic is a bug: exit 1, not exit 3), and
    // the previous set stays (the panic happens before the swap)
    #[tokio::test]
    async fn a_panicking_writer_is_an_internal_error() {
        a_panicking_writer().await;
    }

    // reference: docs/threat-model.md rule 10, where the publish runs in place (issue 10 item 6)
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_panicking_writer_in_place_is_an_internal_error() {
        a_panicking_writer().await;
    }

    // reference: issue 10 item 6 (glibc keeps an arena per allocating thread: the publish
    // runs on the thread that built the set, where the runtime allows it)
    #[test]
    fn the_publish_runs_on_the_calling_thread_of_a_multi_thread_runtime() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let here = std::thread::current().id();
        let ran_on = rt
            .block_on(blocking(|| std::thread::current().id()))
            .unwrap();
        assert_eq!(ran_on, here);
        // A current-thread runtime cannot block in place: a blocking thread there.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ran_on = rt
            .block_on(blocking(|| std::thread::current().id()))
            .unwrap();
        assert_ne!(ran_on, here);
    }

    async fn a_panicking_writer() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::with_defaults(dir.path().join("spc.yaml"), dir.path());
        let plan = Plan {
            vault_url: "https://demo.vault.localhost/".parse().unwrap(),
            vault_name: "demo".into(),
            cloud: crate::config::cloud_by_name("AzurePublicCloud").unwrap(),
            identity: crate::config::Identity::ManagedIdentity {
                client_id: None,
                endpoint: "http://127.0.0.1:1/".parse().unwrap(),
            },
            objects: vec![],
            templates: vec![],
        };
        let writer = AtomicWriter::new(dir.path().join("out")).with_stage_hook(Arc::new(|stage| {
            if matches!(stage, crate::writer::Stage::Inspected) {
                panic!("injected writer panic");
            }
        }));
        let syncer =
            Syncer::with_publisher(plan, &settings, Metrics::new(), Publisher::new(writer))
                .unwrap();
        let e = syncer.sync().await.unwrap_err();
        assert!(matches!(e, SyncError::Internal(_)), "{e}");
        assert_eq!(e.exit_code(), crate::error::EXIT_INTERNAL);
        assert!(e.to_string().contains("writer task panicked"), "{e}");
        assert!(!dir.path().join("out").join("..data").exists());
    }
}
