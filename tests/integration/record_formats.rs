//! Frozen record formats: the records the previous release wrote (`tests/fixtures/records-v1.json`,
//! one of every kind) read by this build on the memory, embedded and Redis stores through the
//! encryption layer, and written back byte for byte; a record of a newer format is refused with
//! an error naming it and left in the store untouched.

use std::sync::Arc;

use consent_broker::crypto::sha256_hex;
use consent_broker::ids::{ConnectionId, ConnectorId};
use consent_broker::store::encrypted::EncryptionKey;
use consent_broker::store::records::{Records, compat};
use consent_broker::store::{EmbeddedStore, EncryptedStore, Keyring, MemoryStore, RedisStore, Store, StoreError};

use crate::common::redis::RedisServer;

const FIXTURES: &str = include_str!("../fixtures/records-v1.json");

fn fixtures() -> Vec<(String, String, Vec<u8>)> {
    let doc: serde_json::Value = serde_json::from_str(FIXTURES).expect("fixtures are JSON");
    doc["records"]
        .as_array()
        .expect("a record list")
        .iter()
        .map(|r| {
            let field = |name: &str| r[name].as_str().expect("a string field").to_string();
            (field("kind"), field("key"), field("value").into_bytes())
        })
        .collect()
}

fn encrypted(inner: Arc<dyn Store>) -> Arc<dyn Store> {
    let key = EncryptionKey::from_hex(&"ab".repeat(32)).expect("a key");
    let ring = Keyring::new("k1", vec![("k1".to_string(), key)]).expect("a keyring");
    Arc::new(EncryptedStore::new(inner, ring))
}

/// The three backends, each behind the encryption layer. The guards keep the embedded file and
/// the Redis server alive for the test.
async fn stores() -> (Vec<(&'static str, Arc<dyn Store>)>, tempfile::TempDir, RedisServer) {
    let dir = tempfile::tempdir().unwrap();
    let embedded = EmbeddedStore::open(&dir.path().join("store.redb")).expect("open redb");
    let server = RedisServer::start();
    let redis = RedisStore::connect(&server.config()).await.expect("connect to Redis");
    let stores = vec![
        ("memory", encrypted(Arc::new(MemoryStore::new()))),
        ("embedded", encrypted(Arc::new(embedded))),
        ("redis", encrypted(Arc::new(redis))),
    ];
    (stores, dir, server)
}

#[test]
fn the_fixtures_hold_every_record_kind_once() {
    let mut kinds: Vec<String> = fixtures().into_iter().map(|(kind, _, _)| kind).collect();
    kinds.sort();
    let mut expected: Vec<String> = compat::KINDS.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(kinds, expected);
}

#[tokio::test]
async fn the_previous_releases_records_read_and_write_back_unchanged_on_every_store() {
    let (stores, _dir, _server) = stores().await;
    for (name, store) in stores {
        for (kind, key, value) in fixtures() {
            store.put(&key, value.clone(), None).await.unwrap();
            let stored = store.get(&key).await.unwrap().expect("just written");
            let again = compat::reencode(&kind, &key, &stored.value)
                .unwrap_or_else(|e| panic!("{name}: the previous release's {kind} does not read: {e}"));
            // Byte for byte: this build reads every field and writes what the previous release reads.
            assert_eq!(
                String::from_utf8_lossy(&again),
                String::from_utf8_lossy(&value),
                "{name}: {kind}"
            );
        }
        // And through the typed API, as a token call would.
        let records = Records::new(store.clone());
        let (conn, _) = records
            .connection(&ConnectionId::new("conn_1"))
            .await
            .unwrap()
            .expect("the connection");
        assert_eq!(conn.refresh_token.as_ref().map(|t| t.expose()), Some("rt"), "{name}");
        let approved = records.approved_tenants(&ConnectorId::new("files")).await.unwrap();
        assert_eq!(approved.len(), 2, "{name}");
    }
}

/// A record as a broker of format 2 would write it: the tag, the format, the body.
fn newer(body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0u8, 2];
    bytes.extend_from_slice(body);
    bytes
}

fn names_the_newer_format(e: &StoreError) -> bool {
    let text = e.to_string();
    matches!(e, StoreError::NewerFormat { format: 2, .. })
        && text.contains("format 2")
        && text.contains("written by a newer consent-broker; upgrade this broker")
}

#[tokio::test]
async fn a_record_of_a_newer_format_is_reported_and_left_untouched() {
    let (stores, _dir, _server) = stores().await;
    let fixtures = fixtures();
    let body = |kind: &str| fixtures.iter().find(|f| f.0 == kind).unwrap().2.clone();
    for (name, store) in stores {
        let records = Records::new(store.clone());
        let conn_key = "conn:{conn_9}";
        store.put(conn_key, newer(&body("connection")), None).await.unwrap();
        let e = records.connection(&ConnectionId::new("conn_9")).await.unwrap_err();
        assert!(names_the_newer_format(&e), "{name}: {e}");

        // A single-use record is not consumed when it cannot be read.
        let flow_key = format!("flow:{}", sha256_hex("state-9"));
        store.put(&flow_key, newer(&body("flow")), None).await.unwrap();
        let e = records.take_flow("state-9").await.unwrap_err();
        assert!(names_the_newer_format(&e), "{name}: {e}");

        // The listing backfill skips it rather than failing or touching it.
        records.list_unlisted_connections().await.unwrap();

        for key in [conn_key, flow_key.as_str()] {
            let left = store.get(key).await.unwrap().expect("still there");
            assert_eq!(left.version, 1, "{name}: {key} not rewritten");
            assert_eq!(left.value[..2], [0, 2], "{name}: {key} unchanged");
        }
    }
}
