//! Keep-alive with seconds-scale settings: idle connections refreshed once per idle period across
//! two brokers on one Redis; an Entra outage flips nothing; a revoked grant flips the connection.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::broker::{Broker, BrokerOptions, KEY_A, Reserved, client};
use crate::common::flows::World;
use crate::common::redis::RedisServer;
use crate::common::sim::{Sim, standard_config};
use crate::common::webhook::{Receiver, SECRET, endpoints};

/// A connection is idle after 3 s; brokers look every second. (3 / 10 rounds to no jitter.)
const KEEPALIVE: &str = "min_refresh_interval_secs = 0\n\n[keepalive]\nidle_after_secs = 3\ncheck_interval_secs = 1";

fn opts(store: String) -> BrokerOptions {
    BrokerOptions {
        store,
        tokens: KEEPALIVE.into(),
        // An outage is retried by keep-alive after this, not the default 30 s.
        entra: "jwks_min_refetch_interval_secs = 300\ndefault_retry_after_secs = 1\nmax_retries = 0".into(),
        ..Default::default()
    }
}

/// Waits until entra-sim has answered `n` refresh grants; panics after `secs`.
async fn refreshes_reach(w: &World, n: u64, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = w.sim.token_grants("refresh_token").await;
        assert!(got <= n, "more refreshes than expected: {got} > {n}");
        if got == n {
            return;
        }
        assert!(Instant::now() < deadline, "only {got} of {n} refreshes after {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status_of(w: &World, conn: &str) -> String {
    let (status, body) = w
        .api(Method::GET, &format!("/v1/connections/{conn}"), Some(KEY_A), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["status"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_refreshed_once_per_idle_period_across_two_brokers() {
    let redis = RedisServer::start();
    let reserved = [Reserved::new(), Reserved::new()];
    let callbacks: Vec<String> = reserved.iter().map(Reserved::callback).collect();
    let config = standard_config(&callbacks.iter().map(String::as_str).collect::<Vec<_>>());
    let sim = Sim::start(config.clone()).await;
    let [first, second] = reserved;
    let broker = Broker::start(first, sim.base_url(), opts(redis.store_section())).await;
    let other_broker = Broker::start(second, sim.base_url(), opts(redis.store_section())).await;
    let w = World {
        sim,
        broker,
        http: client(),
        sim_config: config,
    };
    let alice = w.connect(&w.upn("alice")).await;
    let carol = w.connect(&w.upn("carol")).await;
    assert_eq!(w.sim.token_grants("refresh_token").await, 0);

    // Each idle period, each connection is refreshed once, by one of the two brokers.
    for period in 1..=2 {
        refreshes_reach(&w, 2 * period, 10).await;
        // Nothing more until the next period (3 s from these refreshes).
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(w.sim.token_grants("refresh_token").await, 2 * period, "once per period");
    }
    for conn in [&alice, &carol] {
        assert_eq!(status_of(&w, conn).await, "active");
        let (status, body) = w.token(conn, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let metrics = crate::common::scrape::scrape(&w.http, &w.broker.url).await;
    let other = crate::common::scrape::scrape(&w.http, &other_broker.url).await;
    let refreshed = |text: &str| {
        crate::common::scrape::sample(text, "consent_broker_keepalive_refreshed_total", "connector=\"files\"")
    };
    assert!(
        refreshed(&metrics) + refreshed(&other) >= 4.0,
        "keep-alive counted its refreshes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_during_keepalive_flips_nothing_and_a_revoked_grant_flips_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let mut o = opts(format!(
        "backend = \"embedded\"\npath = \"{}\"",
        dir.path().join("ka.redb").display()
    ));
    o.configure = Some(endpoints(vec![receiver.url.clone()], &[SECRET], 60));
    let w = World::with(|_| {}, o).await;
    let conn = w.connect(&w.upn("alice")).await;

    // Entra is down when the connection comes due: it stays active and is tried again later.
    w.sim
        .fault(json!({"endpoint": "token", "grant_type": "refresh_token", "kind": "unavailable", "count": 1000}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = || async {
        let text = crate::common::scrape::scrape(&w.http, &w.broker.url).await;
        crate::common::scrape::sample(
            &text,
            "consent_broker_keepalive_failed_total",
            "connector=\"files\",category=\"transient\"",
        )
    };
    while failed().await < 1.0 {
        assert!(Instant::now() < deadline, "keep-alive never tried during the outage");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status_of(&w, &conn).await, "active", "an outage flips nothing");
    w.sim.clear_faults().await;
    w.sim.reset_stats().await;
    refreshes_reach(&w, 1, 10).await;
    assert_eq!(status_of(&w, &conn).await, "active");
    // The refresh after the outage announces the recovery, once.
    let recovered = receiver.wait_for("connection.recovered", 1, 10).await;
    assert_eq!(recovered[0].json()["data"]["connection_id"], conn.as_str());
    assert!(
        receiver.acknowledged("connection.reauth_required").is_empty(),
        "the outage flipped nothing"
    );

    // The user's grant is revoked: the next keep-alive finds it gone and flips the connection.
    w.sim.revoke_user(&w.upn("alice")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_of(&w, &conn).await != "reauth_required" {
        assert!(Instant::now() < deadline, "keep-alive never noticed the revoked grant");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = w.token(&conn, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("reauth_required"))
    );
    let reauth = receiver.wait_for("connection.reauth_required", 1, 10).await;
    let data = &reauth[0].json()["data"];
    assert_eq!(
        (data["connection_id"].as_str(), data["aadsts"].as_u64()),
        (Some(conn.as_str()), Some(50173))
    );
    assert!(
        data["reconnect_url"]
            .as_str()
            .is_some_and(|u| u.contains("/v1/connect/"))
    );
    assert!(reauth.iter().all(|d| d.signed_with(SECRET)));
    assert_eq!(receiver.acknowledged("connection.recovered").len(), 1, "recovered once");
    // A dead connection is not tried again.
    let attempts = w.sim.token_grants("refresh_token").await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(w.sim.token_grants("refresh_token").await, attempts);
}

/// During a rolling upgrade a newer broker may write a connection in a format this one does not
/// read: keep-alive on this broker never refreshes it, never rewrites it, and keeps it filed to
/// look at again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_of_a_newer_format_is_left_untouched_by_keepalive() {
    let redis = RedisServer::start();
    let w = World::with(|_| {}, opts(redis.store_section())).await;
    let conn = w.connect(&w.upn("alice")).await;
    let store = w.broker.state.records.store().clone();
    let key = format!("conn:{{{conn}}}");
    let body = store.get(&key).await.unwrap().expect("stored").value;
    // As a broker of record format 2 would write it (through the same encryption layer).
    let mut newer = vec![0u8, 2];
    newer.extend_from_slice(&body);
    let version = store.put(&key, newer.clone(), None).await.unwrap();

    // Idle after 3 s, looked at every second: a readable connection would be refreshed by now.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        w.sim.token_grants("refresh_token").await,
        0,
        "no refresh of a record it cannot read"
    );
    let left = store.get(&key).await.unwrap().expect("still there");
    assert_eq!((left.value, left.version), (newer, version), "left byte for byte");
    let filed = w.broker.state.records.keepalive_due(i64::MAX, 100).await.unwrap();
    assert_eq!(
        filed.iter().filter(|(_, id)| id.as_str() == conn).count(),
        1,
        "still filed, once: {filed:?}"
    );
    assert!(w.broker.logs().contains("keep-alive cannot read a connection"));
}
