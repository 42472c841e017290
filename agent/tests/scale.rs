//! Request budget (issue 10): an unchanged refresh lists instead of GETting every object,
//! only changed objects are fetched, the periodic full sweep catches what a list cannot
//! see, a 403 on list falls back to GETs, pinned versions cost nothing even across a reload.
//! Requests are counted by the emulator (`Counts::kind`), so every figure is what the vault saw.

use std::sync::Arc;
use std::time::Duration;

use keyvault_agent::config::Settings;
use keyvault_agent::sidecar::Sidecar;
use keyvault_agent::syncer::Syncer;
use keyvault_agent::telemetry::metrics::Metrics;
use keyvault_emulator::{RequestKind, Route};

use crate::util::*;

const LIMITED_SECRET: &str = "limited-secret";
const PINNED_V: &str = "000000000000000000000000000000aa";

/// A vault of `v` secrets `s0..`, all created long ago (so their list entries are settled),
/// a pinned-version secret, the `sp` identity (all access) and `limited` (GET on s0 and s1
/// only: listing is forbidden).
fn seed(v: usize) -> String {
    let mut s = String::from("vaults:\n  - name: demo\n    secrets:\n");
    s.push_str(&format!(
        "      - name: pinned\n        versions:\n          - {{ value: pinned-value, created: 1700000000, version: \"{PINNED_V}\" }}\n"
    ));
    for i in 0..v {
        s.push_str(&format!(
            "      - name: s{i}\n        versions:\n          - {{ value: value-{i}, created: 1700000000 }}\n"
        ));
    }
    s.push_str(&format!(
        "identities:\n  - name: sp\n    client_id: {SP_CLIENT_ID}\n    client_secret: {SP_SECRET}\n    access: all\n  - name: limited\n    client_id: {LIMITED_CLIENT_ID}\n    client_secret: {LIMITED_SECRET}\n    access: [\"demo/secrets/s0\", \"demo/secrets/s1\"]\n"
    ));
    s
}

fn objects(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("objectName: s{i}\nobjectType: secret"))
        .collect()
}

fn syncer(
    h: &Harness,
    objs: &[String],
    client: (&str, &str),
    tune: impl FnOnce(&mut Settings),
) -> (Syncer, Arc<Metrics>) {
    let refs: Vec<&str> = objs.iter().map(String::as_str).collect();
    let spc = h.spc(&refs, &[]);
    let mut settings = h.settings(&spc);
    tune(&mut settings);
    let plan =
        keyvault_agent::config::load(&settings, &Harness::env(&h.sp_env(client.0, client.1)))
            .unwrap();
    let metrics = Metrics::new();
    (
        Syncer::new(plan, &settings, metrics.clone()).unwrap(),
        metrics,
    )
}

/// (lists, gets) the vault saw during `f`.
async fn counted<T>(h: &Harness, f: impl std::future::Future<Output = T>) -> (T, u64, u64) {
    h.emu.reset_counts();
    let out = f.await;
    let c = h.emu.counts();
    (out, c.kind(RequestKind::List), c.kind(RequestKind::Get))
}

// reference: issue 10 item 1 (an unchanged refresh costs min(N, ⌈V/25⌉) requests)
#[tokio::test]
async fn an_unchanged_refresh_costs_list_pages_and_a_change_costs_one_get() {
    // N = 30 latest objects in a vault of V = 91 secrets: 4 pages instead of 30 GETs.
    let h = Harness::with_seed(&seed(90)).await;
    let (s, metrics) = syncer(&h, &objects(30), (SP_CLIENT_ID, SP_SECRET), |_| {});
    let (first, lists, gets) = counted(&h, s.sync()).await;
    first.unwrap();
    // The first sync has nothing to compare with: plain GETs (and the challenge probe), no
    // list.
    assert_eq!((lists, gets), (0, 31));

    let (r, lists, gets) = counted(&h, s.sync()).await;
    let r = r.unwrap();
    assert_eq!((lists, gets), (4, 0), "unchanged refresh");
    assert_eq!(r.requests, 4);
    assert!(
        metrics
            .encode()
            .contains("keyvault_agent_objects_unchanged_total{object_type=\"secret\"} 30")
    );

    // One rotation: the list shows it, one GET fetches it, and the new value is published.
    h.emu.set_secret("demo", "s7", "rotated-7", None);
    let (r, lists, gets) = counted(&h, s.sync()).await;
    let r = r.unwrap();
    assert_eq!((lists, gets), (4, 1), "one changed object");
    assert_eq!(h.file("s7"), "rotated-7");
    assert!(matches!(
        r.outcome,
        keyvault_agent::writer::WriteOutcome::Published { .. }
    ));
}

#[tokio::test]
async fn few_objects_in_a_big_vault_are_fetched_by_get_not_by_list() {
    // N = 3, V = 101 (5 pages): GETs are cheaper. The size of a vault is unknown until it is
    // listed, so one refresh reads at most N-1 pages to learn it, then never lists again.
    let h = Harness::with_seed(&seed(100)).await;
    let (s, _) = syncer(&h, &objects(3), (SP_CLIENT_ID, SP_SECRET), |_| {});
    s.sync().await.unwrap();
    let (r, lists, gets) = counted(&h, s.sync()).await;
    r.unwrap();
    assert_eq!((lists, gets), (2, 3), "the one probe stops at its budget");
    for _ in 0..2 {
        let (r, lists, gets) = counted(&h, s.sync()).await;
        r.unwrap();
        assert_eq!(
            (lists, gets),
            (0, 3),
            "the vault is known to be too big to list"
        );
    }
}

// reference: issue 10 item 1 (the periodic full sweep bounds staleness)
#[tokio::test]
async fn two_edits_within_one_second_are_caught_by_the_full_sweep() {
    let h = Harness::with_seed(&seed(4)).await;
    let (s, _) = syncer(&h, &objects(4), (SP_CLIENT_ID, SP_SECRET), |st| {
        st.full_sweep_every = 3
    });
    s.sync().await.unwrap();
    // A new version in the same second as the old one: its list entry is identical.
    h.emu
        .set_secret_at("demo", "s2", "same-second", 1_700_000_000);
    for n in 1..3 {
        let (r, lists, gets) = counted(&h, s.sync()).await;
        r.unwrap();
        assert_eq!((lists, gets), (1, 0), "refresh {n}: the list cannot see it");
        assert_eq!(h.file("s2"), "value-2");
    }
    // Refresh 3 is a full sweep: every latest object is fetched.
    let (r, lists, gets) = counted(&h, s.sync()).await;
    r.unwrap();
    assert_eq!((lists, gets), (0, 4));
    assert_eq!(h.file("s2"), "same-second");
}

#[tokio::test]
async fn get_detection_is_the_reference_behaviour() {
    let h = Harness::with_seed(&seed(10)).await;
    let (s, _) = syncer(&h, &objects(10), (SP_CLIENT_ID, SP_SECRET), |st| {
        st.change_detection = keyvault_agent::detect::ChangeDetection::Get
    });
    s.sync().await.unwrap();
    let (r, lists, gets) = counted(&h, s.sync()).await;
    r.unwrap();
    assert_eq!((lists, gets), (0, 10));
}

// reference: issue 10 item 1 (a 403 on list falls back to GETs, logged once, surfaced)
#[tokio::test]
async fn a_forbidden_list_falls_back_to_gets_and_is_reported() {
    let h = Harness::with_seed(&seed(4)).await;
    let (s, metrics) = syncer(&h, &objects(2), (LIMITED_CLIENT_ID, LIMITED_SECRET), |_| {});
    let first = s.sync().await.unwrap();
    assert!(first.list_fallback.is_empty());
    let (r, lists, gets) = counted(&h, s.sync()).await;
    let r = r.unwrap();
    assert_eq!((lists, gets), (1, 2), "the refused list, then GETs");
    assert_eq!(r.list_fallback, vec!["secret"]);
    // Surfaced in `/status` (runtime state; the file in the volume describes the set only).
    let state = keyvault_agent::telemetry::status::SidecarState::new(
        "demo".into(),
        std::time::Duration::from_secs(60),
        None,
    );
    state.succeeded(&r, None);
    assert_eq!(state.doc().list_fallback, vec!["secret".to_string()]);
    let public: serde_json::Value = serde_json::from_slice(&state.public_json()).unwrap();
    assert_eq!(public["list_fallback"], serde_json::json!(["secret"]));
    assert!(
        metrics
            .encode()
            .contains("keyvault_agent_list_fallback{object_type=\"secret\"} 1"),
        "{}",
        metrics.encode()
    );
    // Not asked again.
    let (r, lists, gets) = counted(&h, s.sync()).await;
    assert_eq!(r.unwrap().list_fallback, vec!["secret"]);
    assert_eq!((lists, gets), (0, 2));
    assert_eq!(h.emu.counts().route(Route::List), 0);
}

// reference: issue 10 item 2 (pinned versions cost nothing; a reload refetches nothing unchanged)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_refetches_no_unchanged_pinned_or_latest_object() {
    let h = Harness::with_seed(&seed(3)).await;
    let pinned = format!("objectName: pinned\nobjectType: secret\nobjectVersion: {PINNED_V}");
    let plan1 = [
        pinned.clone(),
        "objectName: s0\nobjectType: secret".to_owned(),
    ];
    let refs: Vec<&str> = plan1.iter().map(String::as_str).collect();
    let spc = h.spc(&refs, &[]);
    let mut settings = h.settings(&spc);
    settings.interval = Duration::from_secs(3600);
    let env = Harness::env(&h.sp_env(SP_CLIENT_ID, SP_SECRET));
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<()>(4);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sidecar = Sidecar::new(settings, env)
        .reload_trigger(futures::stream::poll_fn(move |cx| reload_rx.poll_recv(cx)));
    let task = tokio::spawn(sidecar.run(async move {
        let _ = stop_rx.await;
    }));
    let wait_for = |name: &'static str| {
        let path = h.dir.join(name);
        async move {
            tokio::time::timeout(Duration::from_secs(20), async {
                while !path.exists() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{name} was never published"));
        }
    };
    wait_for("s0").await;
    // Two objects and the challenge probe.
    assert_eq!(h.emu.counts().route(Route::SecretGet), 3);

    // The plan gains s1; pinned and s0 are unchanged.
    h.emu.reset_counts();
    let plan2 = [
        pinned,
        "objectName: s0\nobjectType: secret".to_owned(),
        "objectName: s1\nobjectType: secret".to_owned(),
    ];
    let refs: Vec<&str> = plan2.iter().map(String::as_str).collect();
    let text = std::fs::read_to_string(h.spc(&refs, &[])).unwrap();
    std::fs::write(&spc, text).unwrap();
    reload_tx.send(()).await.unwrap();
    wait_for("s1").await;
    let _ = stop_tx.send(());
    task.await.unwrap().unwrap();
    assert_eq!(h.file("pinned"), "pinned-value");
    assert_eq!(
        h.emu.counts().route(Route::SecretGet),
        1,
        "only the new object is fetched after the reload"
    );
}

// reference: issue 10 item 6 (a permit is taken before a request is built) and item 9
// (queue wait is measured apart from request time)
#[tokio::test]
async fn objects_flow_through_a_bounded_pipeline_so_requests_never_queue_for_a_permit() {
    use keyvault_emulator::{Fault, FaultKind};
    let h = Harness::with_seed(&seed(12)).await;
    h.emu.add_fault(Fault::new(
        Route::SecretGet,
        FaultKind::Latency(Duration::from_millis(200)),
    ));
    let (s, metrics) = syncer(&h, &objects(12), (SP_CLIENT_ID, SP_SECRET), |st| {
        st.concurrency = 3
    });
    s.sync().await.unwrap();
    // Counted from the moment each object's future is built: with one future per object up
    // front (the old pipeline) the peak would be 12.
    assert_eq!(s.peak_in_flight(), 3);
    let text = metrics.encode();
    let value = |needle: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(needle))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {needle} in:\n{text}"))
    };
    // Queue wait and request time are separate series: every request observed both.
    assert!(
        value("keyvault_agent_keyvault_queue_wait_seconds_count") >= 12.0,
        "{text}"
    );
    assert!(
        value("keyvault_agent_keyvault_request_duration_seconds_count") >= 12.0,
        "{text}"
    );
}

// reference: issue 10 item 4 (an object with `exp` is fetched again before it expires)
#[tokio::test]
async fn an_expiring_object_is_fetched_before_it_expires_not_trusted_to_the_list() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut text = seed(2);
    text = text.replace(
        "identities:",
        &format!(
            "      - name: soon\n        versions: [{{ value: soon-1, created: 1700000000, exp: {} }}]\n      - name: later\n        versions: [{{ value: later-1, created: 1700000000, exp: {} }}]\nidentities:",
            now + 30,
            now + 3600
        ),
    );
    let h = Harness::with_seed(&text).await;
    let mut objs = objects(2);
    objs.push("objectName: soon\nobjectType: secret".into());
    let (s, _) = syncer(&h, &objs, (SP_CLIENT_ID, SP_SECRET), |_| {});
    let first = s.sync().await.unwrap();
    // Already inside the lead: no early refresh is asked for (no refresh loop) ...
    assert_eq!(first.refresh_within, None);
    assert_eq!(
        first
            .objects
            .iter()
            .find(|o| o.id == "secret/soon")
            .unwrap()
            .expires,
        Some(now + 30)
    );
    // ... but each refresh fetches it rather than trusting its unchanged list entry.
    let (r, lists, gets) = counted(&h, s.sync()).await;
    r.unwrap();
    assert_eq!((lists, gets), (1, 1));

    // An object expiring in an hour asks for a refresh a minute before.
    let (s, _) = syncer(
        &h,
        &[
            "objectName: later\nobjectType: secret".to_owned(),
            objs[0].clone(),
        ],
        (SP_CLIENT_ID, SP_SECRET),
        |_| {},
    );
    let within = s
        .sync()
        .await
        .unwrap()
        .refresh_within
        .expect("an early refresh");
    assert!((3530..=3540).contains(&within.as_secs()), "{within:?}");
}
