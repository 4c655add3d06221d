//! The Redis store: the shared conformance suite against a real standalone server, a real
//! 3-master cluster, a TLS server and a Sentinel group; errors when Redis is gone (never "not
//! found"), recovery when it is back or has failed over; and the broker end to end on Redis.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use consent_broker::store::{CasOutcome, RedisStore, Store, StoreError, Write, WriteOutcome, conformance};
use reqwest::StatusCode;

use crate::common::broker::BrokerOptions;
use crate::common::cid;
use crate::common::flows::World;
use crate::common::redis::{RedisCluster, RedisSentinel, RedisServer};

async fn connect(config: &consent_broker::config::RedisConfig) -> Arc<RedisStore> {
    Arc::new(RedisStore::connect(config).await.expect("connect to Redis"))
}

/// Export from one key prefix and import into another of the same Redis (both empty): backup
/// and restore's store half, with the names of both walks (records and indexes) by prefix.
async fn export_and_import(config: &consent_broker::config::RedisConfig) {
    let (mut a, mut b) = (config.clone(), config.clone());
    a.key_prefix = "exp-a:".into();
    b.key_prefix = "exp-b:".into();
    conformance::export_and_import(connect(&a).await.as_ref(), connect(&b).await.as_ref()).await;
}

#[tokio::test]
async fn standalone_passes_the_store_suite() {
    let server = RedisServer::start();
    let store = connect(&server.config()).await;
    conformance::run(store.as_ref()).await;
    conformance::concurrent_take(store.clone()).await;
    conformance::concurrent_write_with_event(store.clone()).await;
    export_and_import(&server.config()).await;
}

#[tokio::test]
async fn records_are_prefixed_hashes_with_redis_expiry() {
    let server = RedisServer::start();
    let store = connect(&server.config()).await;
    let mut raw = server.raw();

    store
        .put("k", b"\x00bytes\xff".to_vec(), Some(Duration::from_secs(10)))
        .await
        .unwrap();
    let fields: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL").arg("cb:k").query(&mut raw).unwrap();
    let fields: std::collections::HashMap<_, _> = fields.into_iter().collect();
    assert_eq!(fields["v"], b"1");
    assert_eq!(fields["d"], b"\x00bytes\xff", "values are stored as raw bytes");
    let pttl: i64 = redis::cmd("PTTL").arg("cb:k").query(&mut raw).unwrap();
    assert!(pttl > 0 && pttl <= 10_000, "{pttl}");

    // A write without a TTL removes the old expiry, as in the other backends.
    assert_eq!(store.put("k", b"x".to_vec(), None).await.unwrap(), 2);
    let pttl: i64 = redis::cmd("PTTL").arg("cb:k").query(&mut raw).unwrap();
    assert_eq!(pttl, -1);
    assert_eq!(
        store
            .compare_and_swap("k", 2, b"y".to_vec(), Some(Duration::from_secs(5)))
            .await
            .unwrap(),
        CasOutcome::Written(3)
    );
    let pttl: i64 = redis::cmd("PTTL").arg("cb:k").query(&mut raw).unwrap();
    assert!(pttl > 0 && pttl <= 5_000, "{pttl}");

    // Nothing outside the prefix.
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut raw).unwrap();
    assert_eq!(keys, ["cb:k"]);

    // A record someone else mangled is reported as corrupt, not as absent.
    let _: () = redis::cmd("HDEL").arg("cb:k").arg("v").query(&mut raw).unwrap();
    assert!(matches!(store.get("k").await, Err(StoreError::Corrupt { .. })));
}

fn put(key: &str, value: &[u8]) -> Write {
    Write::Put {
        key: key.into(),
        value: value.to_vec(),
        ttl: None,
    }
}

fn cas(key: &str, expected_version: u64, value: &[u8]) -> Write {
    Write::Cas {
        key: key.into(),
        expected_version,
        value: value.to_vec(),
        ttl: None,
    }
}

fn insert_new(key: &str, value: &[u8]) -> Write {
    Write::InsertNew {
        key: key.into(),
        value: value.to_vec(),
        ttl: None,
    }
}

fn delete(key: &str) -> Write {
    Write::Delete { key: key.into() }
}

fn all_keys(raw: &mut redis::Connection) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(raw).unwrap();
    keys.sort();
    keys
}

#[tokio::test]
async fn write_with_event_is_one_script_that_writes_both_or_neither() {
    let server = RedisServer::start();
    let store = connect(&server.config()).await;
    let mut raw = server.raw();

    assert_eq!(
        store
            .write_with_event(
                put("conn:{c}", b"r"),
                "event:{c}:1",
                b"e".to_vec(),
                Some(Duration::from_secs(10))
            )
            .await
            .unwrap(),
        WriteOutcome::Applied(1)
    );
    assert_eq!(all_keys(&mut raw), ["cb:conn:{c}", "cb:event:{c}:1"]);
    let event: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL").arg("cb:event:{c}:1").query(&mut raw).unwrap();
    let event: std::collections::HashMap<_, _> = event.into_iter().collect();
    assert_eq!(
        (&event["v"][..], &event["d"][..]),
        (&b"1"[..], &b"e"[..]),
        "a record like any other"
    );
    let pttl: i64 = redis::cmd("PTTL").arg("cb:event:{c}:1").query(&mut raw).unwrap();
    assert!(pttl > 0 && pttl <= 10_000, "{pttl}");
    let pttl: i64 = redis::cmd("PTTL").arg("cb:conn:{c}").query(&mut raw).unwrap();
    assert_eq!(pttl, -1);

    // A condition that fails leaves no trace of the event: no key at all, not even an empty hash.
    for write in [
        cas("conn:{c}", 5, b"x"),
        insert_new("conn:{c}", b"x"),
        delete("conn:{absent}"),
    ] {
        assert_eq!(
            store
                .write_with_event(write, "event:{c}:2", b"e".to_vec(), None)
                .await
                .unwrap(),
            WriteOutcome::NotApplied
        );
    }
    assert_eq!(all_keys(&mut raw), ["cb:conn:{c}", "cb:event:{c}:1"]);

    // Redis keeps the writes a script made before it failed, so the script checks up front that
    // the event key can take a record: one holding something else fails the call before the
    // record is touched.
    let _: () = redis::cmd("SET")
        .arg("cb:event:{c}:str")
        .arg("x")
        .query(&mut raw)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg("cb:event:{c}:bad")
        .arg("v")
        .arg("not a version")
        .arg("d")
        .arg("x")
        .query(&mut raw)
        .unwrap();
    for event in ["event:{c}:str", "event:{c}:bad"] {
        for write in [
            put("conn:{c}", b"x"),
            cas("conn:{c}", 1, b"x"),
            insert_new("conn:{new}", b"x"),
            delete("conn:{c}"),
        ] {
            let failed = store.write_with_event(write, event, b"e".to_vec(), None).await;
            assert!(matches!(failed, Err(StoreError::Backend { .. })), "{event}: {failed:?}");
        }
    }
    let record: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL").arg("cb:conn:{c}").query(&mut raw).unwrap();
    let record: std::collections::HashMap<_, _> = record.into_iter().collect();
    assert_eq!(
        (&record["v"][..], &record["d"][..]),
        (&b"1"[..], &b"r"[..]),
        "untouched"
    );
    assert_eq!(
        all_keys(&mut raw),
        ["cb:conn:{c}", "cb:event:{c}:1", "cb:event:{c}:bad", "cb:event:{c}:str"]
    );
}

/// `cmd` on every master; the one that owns the key answers, the others redirect (an error).
fn on_owner<T: redis::FromRedisValue>(nodes: &mut [redis::Connection], cmd: &redis::Cmd) -> (usize, T) {
    let mut answers: Vec<(usize, T)> = nodes
        .iter_mut()
        .enumerate()
        .filter_map(|(i, node)| cmd.query::<T>(node).ok().map(|v| (i, v)))
        .collect();
    assert_eq!(answers.len(), 1, "exactly one master owns the key");
    answers.pop().unwrap()
}

#[tokio::test]
async fn cluster_write_with_event_is_atomic_within_a_slot_and_write_first_across_slots() {
    let cluster = RedisCluster::start();
    let store = connect(&cluster.config()).await;
    let mut nodes = cluster.raw_nodes();
    let mut slot = |key: &str| -> i64 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut nodes[0])
            .unwrap()
    };
    assert_eq!(slot("cb:conn:{c1}"), slot("cb:event:{c1}:1"));
    assert_ne!(slot("cb:conn:{d1}"), slot("cb:event:{d2}:1"));
    let exists = |key: &str| {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(key);
        cmd
    };

    // One slot: one script, both on the same master, atomic.
    assert_eq!(
        store
            .write_with_event(insert_new("conn:{c1}", b"r"), "event:{c1}:1", b"e".to_vec(), None)
            .await
            .unwrap(),
        WriteOutcome::Applied(1)
    );
    let (record_node, n): (usize, i64) = on_owner(&mut nodes, &exists("cb:conn:{c1}"));
    assert_eq!(n, 1);
    assert_eq!(
        on_owner::<i64>(&mut nodes, &exists("cb:event:{c1}:1")),
        (record_node, 1)
    );
    assert_eq!(
        store
            .write_with_event(cas("conn:{c1}", 7, b"x"), "event:{c1}:2", b"e".to_vec(), None)
            .await
            .unwrap(),
        WriteOutcome::NotApplied
    );
    assert_eq!(
        on_owner::<i64>(&mut nodes, &exists("cb:event:{c1}:2")),
        (record_node, 0)
    );
    // An event key that cannot take a record fails the call with the record untouched: what
    // only the one script gives (the two-step path would have written the record first).
    let mut set = redis::cmd("SET");
    set.arg("cb:event:{c1}:str").arg("x");
    on_owner::<()>(&mut nodes, &set);
    assert!(
        store
            .write_with_event(cas("conn:{c1}", 1, b"x"), "event:{c1}:str", b"e".to_vec(), None)
            .await
            .is_err()
    );
    assert_eq!(store.get("conn:{c1}").await.unwrap().map(|v| v.version), Some(1));

    // Two slots: the write, then the event.
    assert_eq!(
        store
            .write_with_event(insert_new("conn:{d1}", b"r"), "event:{d2}:1", b"e".to_vec(), None)
            .await
            .unwrap(),
        WriteOutcome::Applied(1)
    );
    assert_eq!(
        store.get("conn:{d1}").await.unwrap().map(|v| v.value),
        Some(b"r".to_vec())
    );
    assert_eq!(
        store.get("event:{d2}:1").await.unwrap().map(|v| v.value),
        Some(b"e".to_vec())
    );
    for write in [
        insert_new("conn:{d1}", b"x"),
        cas("conn:{d1}", 9, b"x"),
        delete("conn:{none}"),
    ] {
        assert_eq!(
            store
                .write_with_event(write, "event:{d2}:2", b"e".to_vec(), None)
                .await
                .unwrap(),
            WriteOutcome::NotApplied
        );
    }
    assert_eq!(
        store.get("event:{d2}:2").await.unwrap(),
        None,
        "no event for a write that did not apply"
    );
    assert_eq!(
        store
            .write_with_event(cas("conn:{d1}", 1, b"r2"), "event:{d2}:3", b"e".to_vec(), None)
            .await
            .unwrap(),
        WriteOutcome::Applied(2)
    );
    assert_eq!(store.get("event:{d2}:3").await.unwrap().map(|v| v.version), Some(1));
    // Not atomic, as documented: when the event cannot be stored the write has applied, and the
    // caller is told so.
    let mut set = redis::cmd("SET");
    set.arg("cb:event:{d2}:str").arg("x");
    on_owner::<()>(&mut nodes, &set);
    let err = store
        .write_with_event(cas("conn:{d1}", 2, b"r3"), "event:{d2}:str", b"e".to_vec(), None)
        .await
        .expect_err("the event cannot be stored");
    assert!(err.to_string().contains("applied"), "{err}");
    assert_eq!(store.get("conn:{d1}").await.unwrap().map(|v| v.version), Some(3));
}

#[tokio::test]
async fn cluster_passes_the_store_suite() {
    let cluster = RedisCluster::start();
    let store = connect(&cluster.config()).await;
    conformance::run(store.as_ref()).await;
    conformance::concurrent_take(store.clone()).await;
    conformance::concurrent_write_with_event(store.clone()).await;
    export_and_import(&cluster.config()).await;
}

#[tokio::test]
async fn cluster_spreads_connection_keys_over_slots_and_nodes() {
    let cluster = RedisCluster::start();
    let store = connect(&cluster.config()).await;
    let ids: Vec<String> = (0..50).map(|i| format!("conn_{i:02}")).collect();

    for id in &ids {
        let key = format!("conn:{{{id}}}");
        assert_eq!(store.put(&key, id.as_bytes().to_vec(), None).await.unwrap(), 1);
        assert_eq!(
            store.compare_and_swap(&key, 1, b"v2".to_vec(), None).await.unwrap(),
            CasOutcome::Written(2)
        );
        assert!(!store.insert_new(&key, b"no".to_vec(), None).await.unwrap());
        assert_eq!(store.get(&key).await.unwrap().map(|v| v.version), Some(2));
        let once = format!("handoff:{{{id}}}");
        store
            .put(&once, b"h".to_vec(), Some(Duration::from_secs(60)))
            .await
            .unwrap();
        assert_eq!(store.take(&once).await.unwrap(), Some(b"h".to_vec()));
    }

    let mut nodes = cluster.raw_nodes();
    // The hash tag decides the slot: the prefixed record key and any other key tagged with the
    // same connection id (its refresh lease) share it.
    let mut slots = HashSet::new();
    for id in &ids {
        let slot = |key: String, node: &mut redis::Connection| -> i64 {
            redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(node).unwrap()
        };
        let record = slot(format!("cb:conn:{{{id}}}"), &mut nodes[0]);
        assert_eq!(record, slot(id.clone(), &mut nodes[0]));
        assert_eq!(record, slot(format!("cb:lease:{{{id}}}"), &mut nodes[0]));
        slots.insert(record);
    }
    assert!(slots.len() > 40, "50 ids fall into many slots: {}", slots.len());

    // Every master holds some of them, and together exactly the 50 records (takes left none).
    let mut total = 0;
    for node in &mut nodes {
        let keys: Vec<String> = redis::cmd("KEYS").arg("cb:conn:*").query(node).unwrap();
        assert!(!keys.is_empty(), "a master holds none of the 50 keys");
        total += keys.len();
    }
    assert_eq!(total, 50);

    for id in &ids {
        assert!(store.delete(&format!("conn:{{{id}}}")).await.unwrap());
    }
    store.ping().await.unwrap();
}

#[tokio::test]
async fn tls_passes_the_store_suite_with_a_trusted_certificate() {
    let server = RedisServer::start_tls();
    assert!(server.url().starts_with("rediss://localhost:"));
    let store = connect(&server.config()).await;
    conformance::run(store.as_ref()).await;
    conformance::concurrent_take(store.clone()).await;
    conformance::concurrent_write_with_event(store.clone()).await;
}

#[tokio::test]
async fn tls_refuses_an_untrusted_certificate() {
    let server = RedisServer::start_tls();
    let mut config = server.config();
    config.tls_ca_file = None; // the system roots do not know the test certificate
    let err = RedisStore::connect(&config).await.expect_err("must not connect");
    assert!(matches!(err, StoreError::Backend { .. }), "{err}");

    // Plain text to the TLS port fails too, rather than talking in the clear.
    let mut config = server.config();
    config.urls = vec![format!("redis://127.0.0.1:{}", server.port())];
    config.tls_ca_file = None;
    assert!(RedisStore::connect(&config).await.is_err());
}

#[tokio::test]
async fn a_store_error_is_an_error_not_none_and_the_store_reconnects() {
    let mut server = RedisServer::start();
    // With a password in the URL, which must never show up in an error.
    let require_password = |server: &RedisServer| {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg("s3cret")
            .query(&mut server.raw())
            .unwrap();
    };
    require_password(&server);
    let mut config = server.config();
    config.urls = vec![format!("redis://:s3cret@127.0.0.1:{}", server.port())];
    let timeout = Duration::from_millis(300);
    config.response_timeout = timeout;
    config.connect_timeout = Duration::from_millis(200);
    let store = connect(&config).await;
    store.put("a", b"1".to_vec(), None).await.unwrap();

    server.stop();
    // The first call finds the connection dropped; later ones wait for a reconnect that cannot
    // succeed. Every one fails within the response timeout (plus scheduling slack), as an error.
    for _ in 0..3 {
        let started = Instant::now();
        let got = store.get("a").await;
        let took = started.elapsed();
        match got {
            Err(StoreError::Backend { message, source }) => {
                assert!(message.starts_with("redis "), "{message}");
                assert!(!message.contains("s3cret"), "the password leaked: {message}");
                let source = source.expect("the client's error or the timeout is kept as the source");
                assert!(!source.to_string().contains("s3cret"), "the password leaked: {source}");
            }
            other => panic!("a dead Redis must be an error, got {other:?}"),
        }
        assert!(took < timeout + Duration::from_millis(400), "took {took:?}");
    }
    assert!(store.ping().await.is_err());
    assert!(store.take("a").await.is_err());
    assert!(store.insert_new("z", b"1".to_vec(), None).await.is_err());

    // Back on the same port (empty: nothing was persisted): the store reconnects by itself.
    server.restart();
    require_password(&server);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.ping().await {
            Ok(()) => break,
            Err(e) if Instant::now() > deadline => panic!("no reconnect: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(store.get("a").await.unwrap(), None);
    assert_eq!(store.put("a", b"2".to_vec(), None).await.unwrap(), 1);
}

#[tokio::test]
async fn broker_signs_in_serves_and_refreshes_tokens_on_redis() {
    let server = RedisServer::start();
    let w = World::with(
        |_| {},
        BrokerOptions {
            store: format!("backend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"e2e:\"", server.url()),
            ..Default::default()
        },
    )
    .await;
    let r = w.http.get(format!("{}/readyz", w.broker.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let conn = w.connect(&w.upn("alice")).await;
    let (status, first) = w.token(&conn, None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(w.sim.token_grants("refresh_token").await, 0);

    // Entra's access tokens live about an hour: asking for two hours forces a refresh.
    let (status, second) = w.token(&conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(first["access_token"], second["access_token"]);
    assert_eq!(w.sim.token_grants("refresh_token").await, 1);
    let (_, third) = w.token(&conn, None).await;
    assert_eq!(third["access_token"], second["access_token"]);

    // The connection lives in Redis under its hash-tagged key, written by the sign-in and the
    // refresh's compare-and-swap; the single-use flow state and handoff code are gone.
    let mut raw = server.raw();
    let version: u64 = redis::cmd("HGET")
        .arg(format!("e2e:conn:{{{conn}}}"))
        .arg("v")
        .query(&mut raw)
        .unwrap();
    assert!(version >= 2, "{version}");
    let flows: Vec<String> = redis::cmd("KEYS").arg("e2e:flow:*").query(&mut raw).unwrap();
    let handoffs: Vec<String> = redis::cmd("KEYS").arg("e2e:handoff:*").query(&mut raw).unwrap();
    assert!(flows.is_empty() && handoffs.is_empty(), "{flows:?} {handoffs:?}");
}

/// What the background token calls saw: each answer's status and access token.
type Answers = tokio::task::JoinHandle<Vec<(StatusCode, Option<String>)>>;

/// Calls connector A's token endpoint for `conn` every 20 ms until the returned flag is set.
fn token_calls_in_the_background(w: &World, conn: &str) -> (Arc<std::sync::atomic::AtomicBool>, Answers) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (http, url, flag) = (
        w.http.clone(),
        format!("{}/v1/connections/{conn}/token", w.broker.url),
        stop.clone(),
    );
    let task = tokio::spawn(async move {
        let mut answers = Vec::new();
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            let r = http
                .get(&url)
                .bearer_auth(crate::common::broker::KEY_A)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            answers.push((status, body["access_token"].as_str().map(str::to_string)));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        answers
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_serves_valid_tokens_from_memory_and_loses_nothing() {
    let mut server = RedisServer::start_persistent();
    let w = World::with(
        |_| {},
        BrokerOptions {
            store: server.store_section(),
            ..Default::default()
        },
    )
    .await;
    let served = w.connect(&w.upn("alice")).await;
    let unserved = w.connect(&w.upn("carol")).await;
    let (status, before) = w.token(&served, None).await;
    assert_eq!(status, StatusCode::OK, "{before}");
    let token = before["access_token"].as_str().unwrap().to_string();

    // Token calls keep running while Redis dies and comes back.
    let (stop, background) = token_calls_in_the_background(&w, &served);
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop();

    // The token this broker served is still valid: it keeps answering, even for a min_ttl the
    // token no longer meets (nothing better can be had without the store).
    for min_ttl in [None, Some(7_200)] {
        let (status, body) = w.token(&served, min_ttl).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["access_token"], token.as_str());
    }
    // A connection this broker has served nothing for: 503 with Retry-After.
    let r = w
        .http
        .get(format!("{}/v1/connections/{unserved}/token", w.broker.url))
        .bearer_auth(crate::common::broker::KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    // New flows get a readable page; readiness is red.
    let landing = w
        .http
        .get(format!(
            "{}/v1/authorize?connector=files&return_url={}",
            w.broker.url,
            crate::common::broker::RETURN_A
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(landing.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(landing.headers().contains_key("retry-after"));
    let page = landing.text().await.unwrap();
    assert!(page.contains("temporarily unavailable"), "{page}");
    let r = w.http.get(format!("{}/readyz", w.broker.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Back on the same port with its data: ready again, and every connection is intact.
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = w.http.get(format!("{}/readyz", w.broker.url)).send().await.unwrap();
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the broker did not become ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let answers = background.await.unwrap();
    assert!(answers.len() > 5, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(s, t)| *s == StatusCode::OK && t.as_deref() == Some(token.as_str())),
        "every call during the outage was answered with the valid token: {answers:?}"
    );
    for conn in [&served, &unserved] {
        let (stored, _) = w
            .broker
            .state
            .records
            .connection(&cid(conn))
            .await
            .unwrap()
            .expect("kept");
        assert_eq!(stored.status, consent_broker::store::records::ConnectionStatus::Active);
        let (status, body) = w.token(conn, Some(7_200)).await;
        assert_eq!(status, StatusCode::OK, "a refresh works again: {body}");
    }
    assert_eq!(w.sim.token_grants("refresh_token").await, 2);
}

#[tokio::test]
async fn sentinel_passes_the_store_suite_with_a_password() {
    let group = RedisSentinel::start(Some("s3cret"));
    let store = connect(&group.config()).await;
    conformance::run(store.as_ref()).await;
    conformance::concurrent_take(store.clone()).await;
    conformance::concurrent_write_with_event(store.clone()).await;
    export_and_import(&group.config()).await;

    // The store talks to the master the sentinels name, with the data nodes' password.
    store.put("where", b"m".to_vec(), None).await.unwrap();
    let on_master: Option<Vec<u8>> = redis::cmd("HGET")
        .arg("cb:where")
        .arg("d")
        .query(&mut group.raw(group.master_port()))
        .unwrap();
    assert_eq!(on_master.as_deref(), Some(&b"m"[..]));

    // A wrong password fails start-up, and the error does not show it.
    let mut config = group.config();
    config.sentinel.as_mut().unwrap().password = Some("wr0ng-pw".into());
    let err = RedisStore::connect(&config)
        .await
        .expect_err("a wrong password must fail");
    assert!(!err.to_string().contains("wr0ng-pw"), "{err}");
    // So does a master name the sentinels do not know.
    let mut config = group.config();
    config.sentinel.as_mut().unwrap().master = "other".into();
    assert!(RedisStore::connect(&config).await.is_err());
}

#[tokio::test]
async fn sentinel_over_tls_passes_the_store_suite_and_refuses_an_untrusted_certificate() {
    let group = RedisSentinel::start_tls();
    assert!(
        group
            .sentinel_urls()
            .iter()
            .all(|u| u.starts_with("rediss://localhost:"))
    );
    let store = connect(&group.config()).await;
    conformance::run(store.as_ref()).await;
    store.put("tls", b"t".to_vec(), None).await.unwrap();
    let on_master: Option<u64> = redis::cmd("HGET")
        .arg("cb:tls")
        .arg("v")
        .query(&mut group.raw(group.master_port()))
        .unwrap();
    assert_eq!(on_master, Some(1));

    // The system roots do not know the test certificate: no connection to the sentinels.
    let mut config = group.config();
    config.tls_ca_file = None;
    assert!(RedisStore::connect(&config).await.is_err());
    // Plain text to the TLS ports fails too.
    let mut config = group.config();
    config.urls = config.urls.iter().map(|u| u.replace("rediss://", "redis://")).collect();
    config.tls_ca_file = None;
    assert!(RedisStore::connect(&config).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_wait_confirms_writes_and_the_store_follows_a_failover() {
    let mut group = RedisSentinel::start(None);
    let mut config = group.config();
    config.sentinel.as_mut().unwrap().wait_replicas = 1;
    let confirmed = connect(&config).await;
    config.sentinel.as_mut().unwrap().wait_replicas = 2;
    config.response_timeout = Duration::from_millis(400);
    let too_many = connect(&config).await;
    let plain = connect(&group.config()).await;

    // With WAIT 1, a write returns only once the replica has it.
    let mut replica = group.raw(group.replica_port());
    for i in 0..20 {
        let key = format!("k{i}");
        assert_eq!(confirmed.put(&key, key.as_bytes().to_vec(), None).await.unwrap(), 1);
        let version: Option<u64> = redis::cmd("HGET")
            .arg(format!("cb:{key}"))
            .arg("v")
            .query(&mut replica)
            .unwrap();
        assert_eq!(
            version,
            Some(1),
            "{key} is on the replica as soon as the write returned"
        );
    }
    // One replica cannot confirm for two: the write is an error naming the setting, in time.
    let started = Instant::now();
    match too_many.put("two", b"x".to_vec(), None).await {
        Err(StoreError::Backend { message, .. }) => assert!(message.contains("sentinel_wait_replicas"), "{message}"),
        other => panic!("an unconfirmed write must be an error, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
    // Reads do not wait, and the unconfirmed connection is kept (it was the replicas' fault).
    assert!(too_many.get("k0").await.unwrap().is_some());

    group.kill_master();
    // Until the replica is promoted every call fails as an error, never as "not found"; then
    // the same store answers from the new master, with every confirmed write.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut errors = 0;
    loop {
        match plain.get("k0").await {
            Ok(Some(_)) => break,
            Ok(None) => panic!("a failover must never look like a missing record"),
            Err(StoreError::Backend { .. }) => errors += 1,
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline, "the store did not follow the failover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(errors > 0, "the master's death went unnoticed");
    assert_eq!(group.reported_master_port(), Some(group.replica_port()));
    // The other stores still hold the dead master's connection: their first call fails (and
    // drops it), the next asks the sentinels.
    for store in [&confirmed, &too_many] {
        assert!(
            store.ping().await.is_err(),
            "a call on the dead master's connection succeeded"
        );
        store.ping().await.expect("reconnected to the new master");
    }
    for i in 0..20 {
        let got = confirmed.get(&format!("k{i}")).await.unwrap();
        assert_eq!(
            got.map(|v| v.value),
            Some(format!("k{i}").into_bytes()),
            "k{i} survived"
        );
    }
    // Writes go to the new master. It has no replica left, so WAIT 1 can no longer be met:
    // the price of confirmed writes is refusing them when no replica is there.
    assert_eq!(plain.put("after", b"a".to_vec(), None).await.unwrap(), 1);
    let on_new_master: Option<u64> = redis::cmd("HGET")
        .arg("cb:after")
        .arg("v")
        .query(&mut group.raw(group.replica_port()))
        .unwrap();
    assert_eq!(on_new_master, Some(1));
    assert!(confirmed.put("after", b"b".to_vec(), None).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_on_sentinel_follows_a_failover_without_a_restart() {
    let mut group = RedisSentinel::start(None);
    let w = World::with(
        |_| {},
        BrokerOptions {
            store: format!(
                "{}\nresponse_timeout_ms = 300\nconnect_timeout_ms = 200",
                group.store_toml()
            ),
            ..Default::default()
        },
    )
    .await;
    let served = w.connect(&w.upn("alice")).await;
    let unserved = w.connect(&w.upn("carol")).await;
    let (status, before) = w.token(&served, None).await;
    assert_eq!(status, StatusCode::OK, "{before}");
    let token = before["access_token"].as_str().unwrap().to_string();

    // Token calls keep running while the master dies and the replica takes over.
    let (stop, background) = token_calls_in_the_background(&w, &served);
    tokio::time::sleep(Duration::from_millis(200)).await;
    group.kill_master();

    // Without a restart the broker becomes ready again, on the promoted replica.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut saw_unready = false;
    loop {
        let r = w.http.get(format!("{}/readyz", w.broker.url)).send().await.unwrap();
        if r.status() == StatusCode::OK && saw_unready {
            break;
        }
        saw_unready |= r.status() == StatusCode::SERVICE_UNAVAILABLE;
        assert!(Instant::now() < deadline, "the broker did not follow the failover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(group.reported_master_port(), Some(group.replica_port()));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let answers = background.await.unwrap();
    assert!(answers.len() > 5, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(s, t)| *s == StatusCode::OK && t.as_deref() == Some(token.as_str())),
        "every call during the failover was answered with the valid token: {answers:?}"
    );

    // Every connection made before the failover is intact, and a forced refresh (a
    // compare-and-swap on the new master) works.
    for conn in [&served, &unserved] {
        let (stored, _) = w
            .broker
            .state
            .records
            .connection(&cid(conn))
            .await
            .unwrap()
            .expect("kept");
        assert_eq!(stored.status, consent_broker::store::records::ConnectionStatus::Active);
        let (status, body) = w.token(conn, Some(7_200)).await;
        assert_eq!(status, StatusCode::OK, "a refresh works after the failover: {body}");
        assert_ne!(body["access_token"], token.as_str());
    }
    assert_eq!(w.sim.token_grants("refresh_token").await, 2);
    let versions: Vec<Option<u64>> = [&served, &unserved]
        .iter()
        .map(|c| {
            redis::cmd("HGET")
                .arg(format!("cb:conn:{{{c}}}"))
                .arg("v")
                .query(&mut group.raw(group.replica_port()))
                .unwrap()
        })
        .collect();
    assert!(versions.iter().all(|v| v.is_some_and(|v| v >= 2)), "{versions:?}");
}
