//! The token cache across brokers on one Redis: a refresh, a reauth flip or a delete on one
//! broker reaches every other broker's cache through Redis pub/sub; a broker whose subscription
//! is cut serves from the store until it is back, and then nothing it kept before is a hit;
//! hostile messages on the channel change nothing.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::broker::{Broker, BrokerOptions, KEY_A, Reserved, client, token_at};
use crate::common::flows::World;
use crate::common::redis::RedisServer;
use crate::common::scrape::{sample, scrape};
use crate::common::sim::{Sim, standard_config};

/// Two brokers on `redis` with the token cache on (the default), sharing one simulator; the
/// first is inside the returned world. Returns once both receive invalidations.
async fn two_brokers(redis: &RedisServer) -> (World, Broker) {
    let reserved: Vec<Reserved> = (0..2).map(|_| Reserved::new()).collect();
    let callbacks: Vec<String> = reserved.iter().map(Reserved::callback).collect();
    let config = standard_config(&callbacks.iter().map(String::as_str).collect::<Vec<_>>());
    let sim = Sim::start(config.clone()).await;
    let mut brokers = Vec::new();
    for r in reserved {
        let opts = BrokerOptions {
            store: format!("backend = \"redis\"\nurl = \"{}\"\n", redis.url()),
            ..Default::default()
        };
        brokers.push(Broker::start(r, sim.base_url(), opts).await);
    }
    let other = brokers.pop().unwrap();
    let first = brokers.pop().unwrap();
    for b in [&first, &other] {
        subscribed(b).await;
    }
    let w = World {
        sim,
        broker: first,
        http: client(),
        sim_config: config,
    };
    (w, other)
}

/// Waits until `broker`'s cache serves hits (it has subscribed to the invalidations).
async fn subscribed(broker: &Broker) {
    eventually("the broker subscribes to invalidations", || async {
        broker.state.token_cache.is_listening()
    })
    .await;
}

/// Polls `check` for up to five seconds (a message crosses Redis in milliseconds; the margin is
/// for a loaded CI machine).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 5 s");
}

fn access_token(body: &Value) -> String {
    body["access_token"].as_str().expect("an access token").to_string()
}

/// `token_cache_lookups_total{result}` of a broker.
async fn lookups(broker: &Broker, result: &str) -> f64 {
    let text = scrape(&client(), &broker.url).await;
    sample(
        &text,
        "consent_broker_token_cache_lookups_total",
        &format!("result=\"{result}\""),
    )
}

/// Fetches twice from `broker`: the second answer must come from its cache.
async fn cached_at(broker: &Broker, conn: &str) -> String {
    let (status, first) = token_at(&client(), &broker.url, conn, Some(0)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let hits = lookups(broker, "hit").await;
    let (_, second) = token_at(&client(), &broker.url, conn, Some(0)).await;
    assert_eq!(access_token(&second), access_token(&first));
    assert_eq!(lookups(broker, "hit").await, hits + 1.0, "served from the cache");
    access_token(&first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_a_flip_and_a_delete_on_one_broker_reach_the_others_cache() {
    let redis = RedisServer::start();
    let (w, other) = two_brokers(&redis).await;
    let alice = w.upn("alice");
    let conn = w.connect(&alice).await;
    let before = cached_at(&other, &conn).await;

    // A quiet subscription outlives its keep-alive pings (every 5 s): the token is still a hit.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let hits = lookups(&other, "hit").await;
    let (_, again) = token_at(&client(), &other.url, &conn, Some(0)).await;
    assert_eq!(access_token(&again), before);
    assert_eq!(lookups(&other, "hit").await, hits + 1.0, "still cached after the pings");
    assert!(
        !other.logs().contains("lost the token cache invalidation subscription"),
        "{}",
        other.logs()
    );

    // A refresh on the first broker: the other serves the new token, not its cached one (which
    // would otherwise live for an hour).
    let (status, refreshed) = token_at(&client(), &w.broker.url, &conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let after = access_token(&refreshed);
    assert_ne!(after, before, "refreshed");
    eventually("the other broker serves the refreshed token", || async {
        token_at(&client(), &other.url, &conn, Some(0)).await.1["access_token"] == after.as_str()
    })
    .await;
    assert_eq!(cached_at(&other, &conn).await, after);

    // A flip to reauth_required on the first broker.
    w.sim.revoke_user(&alice).await;
    let (status, body) = token_at(&client(), &w.broker.url, &conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    eventually("the other broker answers reauth_required", || async {
        token_at(&client(), &other.url, &conn, Some(0)).await.0 == StatusCode::CONFLICT
    })
    .await;

    // A delete on the first broker.
    let bob = w.connect(&w.upn("carol")).await;
    cached_at(&other, &bob).await;
    let (status, _) = w
        .api(Method::DELETE, &format!("/v1/connections/{bob}"), Some(KEY_A), None)
        .await;
    assert!(status.is_success(), "{status}");
    eventually("the other broker answers not found", || async {
        token_at(&client(), &other.url, &bob, Some(0)).await.0 == StatusCode::NOT_FOUND
    })
    .await;
    assert_eq!(w.sim.token_grants("refresh_token").await, 2, "one refresh, one refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_subscription_serves_from_the_store_until_it_is_back_and_nothing_older_is_a_hit() {
    let redis = RedisServer::start();
    let (w, other) = two_brokers(&redis).await;
    let conn = w.connect(&w.upn("alice")).await;
    cached_at(&other, &conn).await;

    // Redis drops every subscriber (as on a restart, a failover or a network cut).
    let mut raw = redis.raw();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut raw)
        .unwrap();
    assert!(killed >= 2, "both brokers were subscribed ({killed})");
    eventually("the other broker notices", || async {
        other.logs().contains("lost the token cache invalidation subscription")
    })
    .await;
    subscribed(&other).await;

    // Whatever was published while it was not subscribed is unknown, so nothing it kept from
    // before is served: the next call goes to the store.
    let (hits, misses) = (lookups(&other, "hit").await, lookups(&other, "miss").await);
    let (status, _) = token_at(&client(), &other.url, &conn, Some(0)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(lookups(&other, "hit").await, hits, "not a hit");
    assert_eq!(lookups(&other, "miss").await, misses + 1.0);

    // Hostile messages on the channel: not UTF-8, empty lines, unknown and huge ids. Nothing
    // breaks, and invalidations still arrive afterwards.
    cached_at(&other, &conn).await;
    for message in [
        b"\xff\xfe\x00".to_vec(),
        b"\n\n\n".to_vec(),
        b"no-such-connection\n../../etc".to_vec(),
        vec![b'x'; 512 * 1024],
    ] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("cb:token-invalidations")
            .arg(message)
            .query(&mut raw)
            .unwrap();
    }
    let (status, _) = w
        .api(Method::DELETE, &format!("/v1/connections/{conn}"), Some(KEY_A), None)
        .await;
    assert!(status.is_success(), "{status}");
    eventually("the delete reaches the other broker", || async {
        token_at(&client(), &other.url, &conn, Some(0)).await.0 == StatusCode::NOT_FOUND
    })
    .await;
    assert!(other.state.token_cache.is_listening(), "still subscribed");
}
