//! Several brokers on one Redis: one refresh per connection across all of them (the refresh
//! lease), fencing that keeps the newest rotation when a slow refresher lost its lease, and tokens
//! served only for the identity they were issued for.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::broker::{Broker, BrokerOptions, KEY_A, Reserved, client, token_at};
use crate::common::cid;
use crate::common::flows::World;
use crate::common::redis::RedisServer;
use crate::common::sim::{Sim, standard_config};

/// Three brokers on `redis` with `[store]` extras, sharing one simulator (tweaked by `tweak`) and
/// the default test encryption key. The first is inside the returned world (for sign-ins).
async fn three_brokers(redis: &RedisServer, store_extra: &str, tweak: impl FnOnce(&mut Value)) -> (World, Vec<Broker>) {
    let reserved: Vec<Reserved> = (0..3).map(|_| Reserved::new()).collect();
    let callbacks: Vec<String> = reserved.iter().map(Reserved::callback).collect();
    let mut config = standard_config(&callbacks.iter().map(String::as_str).collect::<Vec<_>>());
    tweak(&mut config);
    let sim = Sim::start(config.clone()).await;
    let mut brokers = Vec::new();
    for r in reserved {
        let opts = BrokerOptions {
            store: format!("backend = \"redis\"\nurl = \"{}\"\n{store_extra}", redis.url()),
            ..Default::default()
        };
        brokers.push(Broker::start(r, sim.base_url(), opts).await);
    }
    let first = brokers.remove(0);
    let w = World {
        sim,
        broker: first,
        http: client(),
        sim_config: config,
    };
    (w, brokers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_brokers_on_one_redis_refresh_once_for_300_callers() {
    let redis = RedisServer::start();
    let (w, others) = three_brokers(&redis, "", |_| {}).await;
    let conn = w.connect(&w.upn("alice")).await;
    let (_, before) = w.token(&conn, None).await;
    let urls = [w.broker.url.clone(), others[0].url.clone(), others[1].url.clone()];

    // Slow Entra down so that every caller on every broker arrives while the refresh runs.
    w.sim
        .fault(json!({"endpoint": "token", "kind": "latency", "latency_ms": 500, "count": 1}))
        .await;
    let mut calls = Vec::new();
    for i in 0..300 {
        let (http, url, conn) = (w.http.clone(), urls[i % 3].clone(), conn.clone());
        calls.push(tokio::spawn(
            async move { token_at(&http, &url, &conn, Some(7_200)).await },
        ));
    }
    let mut tokens = Vec::new();
    for c in calls {
        let (status, body) = c.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        tokens.push(body["access_token"].as_str().unwrap().to_string());
    }
    assert_eq!(
        w.sim.token_grants("refresh_token").await,
        1,
        "exactly one refresh reached Entra from three brokers"
    );
    assert!(
        tokens.iter().all(|t| t == &tokens[0]),
        "all 300 callers got the same token"
    );
    assert_ne!(
        tokens[0],
        before["access_token"].as_str().unwrap(),
        "and it is the new one"
    );
    let (stored, _) = w.broker.state.records.connection(&cid(&conn)).await.unwrap().unwrap();
    assert_eq!(stored.access_token.expose(), tokens[0]);

    // The lease is released once the refresh is done; the connection's key is the only one left.
    let mut raw = redis.raw();
    let leases: Vec<String> = redis::cmd("KEYS").arg("cb:lease:*").query(&mut raw).unwrap();
    assert!(leases.is_empty(), "{leases:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresher_that_lost_its_lease_never_overwrites_the_newer_rotation() {
    // Refresh tokens die the moment they are rotated: a lost rotation would break the next
    // refresh. Broker 1's late refresh is then refused by Entra, and its "needs a new sign-in"
    // must not be written over broker 2's rotation either.
    lost_lease(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_successful_refresh_after_a_lost_lease_is_discarded() {
    // With Entra's rotation grace, broker 1's late refresh succeeds: its tokens are discarded.
    lost_lease(86_400).await;
}

/// Broker 1 refreshes slowly past its (unrenewed) lease, broker 2 takes over and rotates; the
/// stored tokens stay broker 2's, and they work.
async fn lost_lease(rotation_grace_secs: u64) {
    let redis = RedisServer::start();
    // A short lease that is not renewed (the test knob).
    let (w, others) = three_brokers(&redis, "refresh_lease_ms = 300\nrefresh_lease_renew = false", |c| {
        c["refresh_token_rotation_grace_secs"] = json!(rotation_grace_secs)
    })
    .await;
    let conn = w.connect(&w.upn("alice")).await;

    // Broker 1's refresh is held up at Entra for 2 s, well past its 300 ms lease.
    w.sim
        .fault(json!({"endpoint": "token", "kind": "latency", "latency_ms": 2_000, "count": 1}))
        .await;
    let slow = {
        let (http, url, conn) = (w.http.clone(), w.broker.url.clone(), conn.clone());
        tokio::spawn(async move { token_at(&http, &url, &conn, Some(7_200)).await })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;

    // Broker 2 finds the lease expired, takes it and rotates while broker 1 still waits.
    let (status, second) = token_at(&w.http, &others[0].url, &conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let newest = second["access_token"].as_str().unwrap().to_string();
    let (after_second, version) = w.broker.state.records.connection(&cid(&conn)).await.unwrap().unwrap();
    assert_eq!(after_second.access_token.expose(), newest);

    // Broker 1's late answer is not written over it: its caller gets what is stored.
    let (status, first) = slow.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["access_token"], newest.as_str());
    let (stored, stored_version) = w.broker.state.records.connection(&cid(&conn)).await.unwrap().unwrap();
    assert_eq!(stored_version, version, "nothing was written after broker 2's rotation");
    assert_eq!(stored.access_token.expose(), newest);
    assert_eq!(
        stored.refresh_token.as_ref().map(|t| t.expose().to_string()),
        after_second.refresh_token.as_ref().map(|t| t.expose().to_string()),
        "the stored refresh token is broker 2's rotation"
    );
    assert_eq!(w.sim.token_grants("refresh_token").await, 2);

    // And it works: a later refresh (on the third broker) rotates again.
    let (status, third) = token_at(&w.http, &others[1].url, &conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK, "{third}");
    assert_ne!(third["access_token"], newest.as_str());
    let (stored, _) = w.broker.state.records.connection(&cid(&conn)).await.unwrap().unwrap();
    assert_eq!(stored.status, consent_broker::store::records::ConnectionStatus::Active);
}

#[tokio::test]
async fn a_token_is_served_only_for_the_identity_it_was_issued_for() {
    // The test changes stored identities behind the broker's back (as a config change would make
    // them differ), so this broker must read the store on every call: no token cache.
    let w = World::with(
        |_| {},
        crate::common::broker::BrokerOptions {
            store: "backend = \"memory\"\ntoken_cache_capacity = 0".into(),
            ..Default::default()
        },
    )
    .await;
    let conn = w.connect(&w.upn("alice")).await;
    let records = &w.broker.state.records;
    let (stored, version) = records.connection(&cid(&conn)).await.unwrap().unwrap();
    let identity = stored.token_identity.clone().expect("the sign-in records the identity");
    assert_eq!(identity.scopes, ["files.read.all", "sites.read.all"], "sorted");
    let (status, first) = w.token(&conn, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(w.sim.token_grants("refresh_token").await, 0, "served as stored");

    // A token issued for another scope set (the connector's scopes changed since) is not
    // served: the broker refreshes for the current scopes and records them.
    let mut other = stored.clone();
    other.token_identity.as_mut().unwrap().scopes = vec!["files.read.all".into()];
    records.update_connection(&other, version).await.unwrap();
    let (status, second) = w.token(&conn, None).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(second["access_token"], first["access_token"]);
    assert_eq!(w.sim.token_grants("refresh_token").await, 1);
    let (stored, version) = records.connection(&cid(&conn)).await.unwrap().unwrap();
    assert_eq!(stored.token_identity.as_ref(), Some(&identity));

    // A record from before identities were kept is refreshed once, then served.
    let mut legacy = stored.clone();
    legacy.token_identity = None;
    records.update_connection(&legacy, version).await.unwrap();
    let (status, _) = w.token(&conn, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = w.token(&conn, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(w.sim.token_grants("refresh_token").await, 2);

    // Tokens of another client id (the connector's app registration changed) are never served
    // or refreshed: the user must sign in again.
    let (stored, version) = records.connection(&cid(&conn)).await.unwrap().unwrap();
    let mut foreign = stored.clone();
    foreign.token_identity.as_mut().unwrap().client_id = "00000000-0000-4000-8000-000000000000".into();
    records.update_connection(&foreign, version).await.unwrap();
    let (status, body) = w.token(&conn, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "reauth_required");
    assert_eq!(w.sim.token_grants("refresh_token").await, 2, "Entra was not asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_renewed_lease_outlives_a_slow_refresh_and_the_others_wait_for_it() {
    let redis = RedisServer::start();
    // The lease lives 1 s but is renewed every third of it while Entra takes 3 s.
    let (w, others) = three_brokers(&redis, "refresh_lease_ms = 1000", |_| {}).await;
    let conn = w.connect(&w.upn("alice")).await;
    w.sim
        .fault(json!({"endpoint": "token", "kind": "latency", "latency_ms": 3_000, "count": 1}))
        .await;
    let slow = {
        let (http, url, conn) = (w.http.clone(), w.broker.url.clone(), conn.clone());
        tokio::spawn(async move { token_at(&http, &url, &conn, Some(7_200)).await })
    };
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (status, waited) = token_at(&w.http, &others[0].url, &conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK, "{waited}");
    let (status, first) = slow.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(
        waited["access_token"], first["access_token"],
        "broker 2 waited for broker 1's result"
    );
    assert_eq!(w.sim.token_grants("refresh_token").await, 1);
}

#[tokio::test]
async fn callers_never_call_entra_without_the_lease_and_wait_a_bounded_time() {
    let w = World::with(
        |c| c["access_token_lifetime_secs"] = json!(2),
        BrokerOptions {
            store: "backend = \"memory\"\nrefresh_wait_ms = 500".into(),
            ..Default::default()
        },
    )
    .await;
    let conn = w.connect(&w.upn("alice")).await;
    // Another broker holds the lease and never finishes.
    let _held = w
        .broker
        .state
        .records
        .try_lease(&cid(&conn), Duration::from_secs(60))
        .await
        .unwrap()
        .expect("free");

    // Still valid: after the wait, the stored token is served rather than nothing.
    let (status, body) = w.token(&conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let r = w
        .http
        .get(format!("{}/v1/connections/{conn}/token", w.broker.url))
        .bearer_auth(KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "refresh_in_progress", "not an Entra outage: {body}");
    assert_eq!(w.sim.token_grants("refresh_token").await, 0, "Entra was never asked");
}
