//! Change detection by listing, and the fetch cache it needs (issue 10, items 1 and 2).
//!
//! An unchanged refresh of N latest objects used to cost N GETs. A collection list page
//! carries 25 objects' current-version attributes (`created`/`updated`, `x5t` for
//! certificates), so per object type a refresh lists ⌈V/25⌉ pages (V = objects of that type
//! in the vault) when that is cheaper than N GETs, and GETs only objects whose list entry
//! differs from the fingerprint of what was fetched last (new, changed, absent). Rules:
//!
//! - the list must be strictly cheaper: at most N−1 pages are read, otherwise that type is
//!   fetched by GETs (remembered, so later refreshes do not try again unless N grows);
//! - nothing cached to compare with (the first sync, `--once`): no list, plain GETs;
//! - `updated` has one-second resolution, so an entry is trusted only once it is *settled*:
//!   its `updated` second lies more than one second before the GET that fetched it (two
//!   edits in the second of a fetch look identical). An unsettled entry is fetched again;
//! - every `--full-sweep-every`th refresh (default 10) fetches every latest object anyway,
//!   bounding staleness from what the rules above cannot see (e.g. clock skew);
//! - a 403 on a list (an identity granted only `get` is common) switches that type to GETs
//!   for the life of the plan: logged once, `keyvault_agent_list_fallback{object_type}` = 1,
//!   and named in the sync report (`/status` shows it).
//!
//! Pinned versions are immutable: fetched once, then served from memory. The cache is
//! shared through the cycle factory, so a configuration reload (which builds a new
//! [`crate::syncer::Syncer`]) does not refetch unchanged pinned or latest objects. Entries are
//! keyed by vault URL, type and name, so a reload pointing elsewhere never reuses them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::config::ObjectType;
use crate::keyvault::list::Fingerprint;
use crate::keyvault::model::Fetched;

// The setting itself belongs to the configuration (which this module reads); re-exported so
// `detect::ChangeDetection` keeps working.
pub use crate::config::{ChangeDetection, DEFAULT_FULL_SWEEP_EVERY};

/// Detection settings of a syncer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detection {
    /// List or GET.
    pub mode: ChangeDetection,
    /// Every Nth refresh fetches every latest object (0 = never).
    pub full_sweep_every: u32,
}

impl Default for Detection {
    fn default() -> Self {
        Self {
            mode: ChangeDetection::List,
            full_sweep_every: DEFAULT_FULL_SWEEP_EVERY,
        }
    }
}

impl Detection {
    /// Whether cycle number `n` (0 = the first sync) fetches every latest object.
    pub fn is_sweep(&self, n: u64) -> bool {
        n > 0 && self.full_sweep_every > 0 && n.is_multiple_of(u64::from(self.full_sweep_every))
    }
}

/// The last fetch of a latest object.
#[derive(Debug, Clone)]
pub struct Latest {
    /// What the GET returned, shared with the cycle that fetched it (not copied: at
    /// thousands of objects a bundle per object per copy is most of the agent's memory).
    pub fetched: Arc<Fetched>,
    /// When (Unix seconds), reported as `fetched_at`.
    pub at: u64,
    /// Its fingerprint, compared with list entries.
    pub fingerprint: Fingerprint,
    /// Unix seconds just before the GET was sent.
    pub sent_at: u64,
}

impl Latest {
    /// Whether an equal list entry proves the object unchanged since this fetch: its
    /// `updated` second ended more than a second before the GET went out (one second of
    /// margin for clock skew).
    pub fn settled(&self) -> bool {
        let sent = i64::try_from(self.sent_at).unwrap_or(i64::MAX);
        self.fingerprint
            .updated
            .is_some_and(|u| u < sent.saturating_sub(1))
    }
}

/// How many list pages an object type took last time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pages {
    /// A complete listing took this many pages.
    Known(usize),
    /// Listing stopped at this many pages (the budget); there were more.
    AtLeast(usize),
}

/// What to do for one object type this refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// List, reading at most this many pages.
    List(usize),
    /// GET every latest object of the type.
    GetAll,
}

/// Chooses between listing and GETs for `n_latest` latest objects of one type, given the
/// pages it took last time and whether anything is cached to compare with.
pub fn step(n_latest: usize, pages: Option<Pages>, have_cache: bool) -> Step {
    // Strictly cheaper than one GET per object, or not at all.
    let budget = n_latest.saturating_sub(1);
    if !have_cache || budget == 0 {
        return Step::GetAll;
    }
    match pages {
        Some(Pages::Known(p)) if p > budget => Step::GetAll,
        Some(Pages::AtLeast(p)) if p >= budget => Step::GetAll,
        _ => Step::List(budget),
    }
}

type PinKey = (String, ObjectType, String, String);
/// One vault's latest objects by (type, lowercase name). Boxed: a hash table keeps an eighth
/// or more of its slots empty, and an empty slot of a boxed entry costs a pointer, not a
/// whole entry (issue 10 item 6).
type LatestByObject = HashMap<(ObjectType, String), Box<Latest>>;

/// Fetched objects kept between cycles and across reloads.
#[derive(Debug, Default)]
pub struct FetchCache {
    pinned: Mutex<HashMap<PinKey, (Arc<Fetched>, u64)>>,
    /// By vault URL, then (type, lowercase name): the URL is not repeated per object.
    latest: Mutex<HashMap<String, LatestByObject>>,
    pages: Mutex<HashMap<(String, ObjectType), Pages>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FetchCache {
    /// An empty cache.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A pinned version fetched before.
    pub fn pinned(
        &self,
        vault: &str,
        t: ObjectType,
        name: &str,
        version: &str,
    ) -> Option<(Arc<Fetched>, u64)> {
        lock(&self.pinned)
            .get(&(vault.to_owned(), t, name.to_owned(), version.to_owned()))
            .cloned()
    }

    /// (type, name, version) of every pinned version cached for `vault`.
    pub fn pinned_keys(&self, vault: &str) -> Vec<(ObjectType, String, String)> {
        lock(&self.pinned)
            .keys()
            .filter(|k| k.0 == vault)
            .map(|k| (k.1, k.2.clone(), k.3.clone()))
            .collect()
    }

    /// Remembers a pinned version.
    pub fn put_pinned(
        &self,
        vault: &str,
        t: ObjectType,
        name: &str,
        version: &str,
        v: (Arc<Fetched>, u64),
    ) {
        lock(&self.pinned).insert(
            (vault.to_owned(), t, name.to_owned(), version.to_owned()),
            v,
        );
    }

    /// The last fetch of a latest object.
    pub fn latest(&self, vault: &str, t: ObjectType, name: &str) -> Option<Latest> {
        lock(&self.latest)
            .get(vault)?
            .get(&(t, name.to_ascii_lowercase()))
            .map(|l| Latest::clone(l))
    }

    /// Whether any of `names` (latest objects of type `t`) has been fetched before.
    pub fn has_latest(&self, vault: &str, t: ObjectType, names: &HashSet<String>) -> bool {
        let m = lock(&self.latest);
        let Some(objects) = m.get(vault) else {
            return false;
        };
        names.iter().any(|n| objects.contains_key(&(t, n.clone())))
    }

    /// Remembers the fetch of a latest object.
    pub fn put_latest(&self, vault: &str, t: ObjectType, name: &str, latest: Latest) {
        lock(&self.latest)
            .entry(vault.to_owned())
            .or_default()
            .insert((t, name.to_ascii_lowercase()), Box::new(latest));
    }

    /// Forgets every object of other vaults or not in `latest`/`pinned` (objects that left
    /// the plan on a reload), so memory follows the plan in effect.
    pub fn retain(
        &self,
        vault: &str,
        latest: &HashSet<(ObjectType, String)>,
        pinned: &HashSet<(ObjectType, String, String)>,
    ) {
        let mut by_vault = lock(&self.latest);
        by_vault.retain(|v, _| v == vault);
        let objects = by_vault.entry(vault.to_owned()).or_default();
        objects.retain(|key, _| latest.contains(key));
        // Room for the whole plan at once: growing by doubling leaves each outgrown table
        // behind as a fragment. A smaller plan gives the rest back.
        objects.shrink_to(latest.len());
        objects.reserve(latest.len().saturating_sub(objects.len()));
        drop(by_vault);
        lock(&self.pinned).retain(|(v, t, n, ver), _| {
            v == vault && pinned.contains(&(*t, n.clone(), ver.clone()))
        });
    }

    /// How many latest objects of `vault` are cached, and room for how many without growing
    /// the table.
    pub fn latest_len(&self, vault: &str) -> (usize, usize) {
        lock(&self.latest)
            .get(vault)
            .map_or((0, 0), |m| (m.len(), m.capacity()))
    }

    /// Pages a listing of `t` took last time.
    pub fn pages(&self, vault: &str, t: ObjectType) -> Option<Pages> {
        lock(&self.pages).get(&(vault.to_owned(), t)).copied()
    }

    /// Records what a listing of `t` took.
    pub fn set_pages(&self, vault: &str, t: ObjectType, p: Pages) {
        lock(&self.pages).insert((vault.to_owned(), t), p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyvault::model::{Attributes, SecretBundle};

    #[test]
    fn listing_is_chosen_only_when_strictly_cheaper_and_useful() {
        // Nothing cached (first sync, --once): plain GETs.
        assert_eq!(step(50, None, false), Step::GetAll);
        // One object: a GET is as cheap as a page.
        assert_eq!(step(1, None, true), Step::GetAll);
        // Unknown size: list, at most N-1 pages.
        assert_eq!(step(50, None, true), Step::List(49));
        assert_eq!(step(50, Some(Pages::Known(6)), true), Step::List(49));
        // 2000 latest in a vault of 6000: 240 pages, fewer than 2000 GETs.
        assert_eq!(step(2000, Some(Pages::Known(240)), true), Step::List(1999));
        // A vault too big to be worth listing stays on GETs until N grows past it.
        assert_eq!(step(5, Some(Pages::AtLeast(4)), true), Step::GetAll);
        assert_eq!(step(5, Some(Pages::Known(5)), true), Step::GetAll);
        assert_eq!(step(9, Some(Pages::AtLeast(4)), true), Step::List(8));
    }

    #[test]
    fn objects_that_left_the_plan_are_forgotten() {
        let c = FetchCache::default();
        let f = || (Arc::new(Fetched::Secret(SecretBundle::default())), 1);
        let l = || Latest {
            fetched: f().0,
            at: 1,
            fingerprint: Fingerprint::default(),
            sent_at: 1,
        };
        c.put_latest("v1", ObjectType::Secret, "Keep", l());
        c.put_latest("v1", ObjectType::Secret, "gone", l());
        c.put_latest("v2", ObjectType::Secret, "keep", l());
        c.put_pinned("v1", ObjectType::Key, "k", "1", f());
        c.put_pinned("v1", ObjectType::Key, "k", "2", f());
        let latest = HashSet::from([(ObjectType::Secret, "keep".to_owned())]);
        let pinned = HashSet::from([(ObjectType::Key, "k".to_owned(), "2".to_owned())]);
        c.retain("v1", &latest, &pinned);
        assert!(c.latest("v1", ObjectType::Secret, "keep").is_some());
        assert!(c.latest("v1", ObjectType::Secret, "gone").is_none());
        assert!(c.latest("v2", ObjectType::Secret, "keep").is_none());
        assert!(c.pinned("v1", ObjectType::Key, "k", "1").is_none());
        assert!(c.pinned("v1", ObjectType::Key, "k", "2").is_some());
    }

    // reference: issue 10 item 6 (memory follows the plan: the table is sized for the plan's
    // latest objects once, and a syncer that never lists, like `--once`, keeps none)
    #[test]
    fn the_latest_table_is_sized_for_the_plan_once_and_empty_without_listing() {
        let c = FetchCache::default();
        let plan: HashSet<(ObjectType, String)> = (0..5000)
            .map(|i| (ObjectType::Secret, format!("s{i}")))
            .collect();
        c.retain("v", &plan, &HashSet::new());
        let (len, room) = c.latest_len("v");
        assert_eq!(len, 0);
        assert!(room >= 5000, "room for {room}");
        let l = Latest {
            fetched: Arc::new(Fetched::Secret(SecretBundle::default())),
            at: 1,
            fingerprint: Fingerprint::default(),
            sent_at: 1,
        };
        for (_, name) in &plan {
            c.put_latest("v", ObjectType::Secret, name, l.clone());
        }
        // Filled without growing: no outgrown table was left behind.
        assert_eq!(c.latest_len("v"), (5000, room));
        // No listing (`--once`, `--change-detection get`): the plan's latest set is empty.
        c.retain("v", &HashSet::new(), &HashSet::new());
        assert_eq!(c.latest_len("v"), (0, 0));
    }

    #[test]
    fn sweeps_fall_on_every_nth_refresh_never_the_first_sync() {
        let d = Detection::default();
        let sweeps: Vec<u64> = (0..31).filter(|n| d.is_sweep(*n)).collect();
        assert_eq!(sweeps, vec![10, 20, 30]);
        let never = Detection {
            full_sweep_every: 0,
            ..d
        };
        assert!((0..100).all(|n| !never.is_sweep(n)));
    }

    #[test]
    fn an_entry_updated_in_the_second_of_its_fetch_is_not_trusted() {
        let latest = |updated: Option<i64>, sent_at: u64| Latest {
            fetched: Arc::new(Fetched::Secret(SecretBundle {
                attributes: Some(Attributes {
                    updated,
                    ..Default::default()
                }),
                ..Default::default()
            })),
            at: sent_at,
            fingerprint: Fingerprint {
                updated,
                ..Default::default()
            },
            sent_at,
        };
        assert!(!latest(Some(100), 100).settled());
        assert!(!latest(Some(100), 101).settled());
        assert!(latest(Some(100), 102).settled());
        assert!(!latest(None, 1000).settled());
        assert!(!latest(Some(i64::MAX), u64::MAX).settled());
    }
}
