//! Encryption at rest: key rotation end to end (embedded and Redis), no token in the stored
//! bytes, compressed records (format 2) next to uncompressed ones, the store contract's `scan`
//! and `rewrite_in_place` on Redis, and the key commands.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use consent_broker::store::encrypted::{EncryptionKey, FORMAT_V1, FORMAT_V2};
use consent_broker::store::{EncryptedStore, Keyring, RedisStore, Store, conformance};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::common::broker::{Broker, BrokerOptions, KEY_A, Reserved};
use crate::common::cid;
use crate::common::flows::{World, param};
use crate::common::redis::{RedisCluster, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_consent-broker");

/// Writes a fresh key to `dir/<id>.key` and returns its path and hex text.
fn key_file(dir: &Path, id: &str) -> (PathBuf, String) {
    let hex = EncryptionKey::generate().to_hex().expose_secret().to_string();
    let path = dir.join(format!("{id}.key"));
    std::fs::write(&path, format!("{hex}\n")).unwrap();
    (path, hex)
}

/// The body of an `[encryption]` section: `primary` and one `[[encryption.keys]]` per file.
fn encryption(primary: &str, keys: &[(&str, &Path)]) -> String {
    let mut out = format!("primary = \"{primary}\"\n");
    for (id, file) in keys {
        out.push_str(&format!(
            "[[encryption.keys]]\nid = \"{id}\"\nfile = \"{}\"\n",
            file.display()
        ));
    }
    out
}

/// A config file for the `rotate-keys` command: the broker's store and keys.
fn cli_config(dir: &Path, store: &str, encryption: &str) -> PathBuf {
    let path = dir.join("rotate.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1\"\nplain_http = true\n[store]\n{store}\n[encryption]\n{encryption}"
        ),
    )
    .unwrap();
    path
}

/// Runs `consent-broker rotate-keys` and returns (success, stdout, stderr).
async fn rotate_keys(config: &Path, batch: usize) -> (bool, String, String) {
    let config = config.to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["rotate-keys", "--batch", &batch.to_string(), "--config"])
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The number before `label` in a rotate-keys report line.
fn count(report: &str, label: &str) -> u64 {
    let at = report.find(label).unwrap_or_else(|| panic!("no {label:?} in {report}"));
    report[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before {label:?} in {report}"))
}

/// A broker on the world's URL and simulator with other options (a restart).
async fn restart(w: World, url: &str, opts: BrokerOptions) -> World {
    let World {
        sim,
        broker,
        http,
        sim_config,
    } = w;
    broker.stop().await;
    let broker = Broker::start(Reserved::at(url), sim.base_url(), opts).await;
    World {
        sim,
        broker,
        http,
        sim_config,
    }
}

/// A world on `store` with the given `[encryption]` body, and its broker's URL (for restarts).
async fn world(store: &str, encryption: String) -> (World, String) {
    // Old refresh tokens die the moment they are rotated: only the stored newest one works, so a
    // rotated refresh token lost by the re-encryption would show.
    let opts = BrokerOptions {
        store: store.to_string(),
        encryption: Some(encryption),
        ..Default::default()
    };
    let w = World::with(|c| c["refresh_token_rotation_grace_secs"] = json!(0), opts).await;
    let url = w.broker.url.clone();
    (w, url)
}

/// The access token served now for each connection (asserting 200).
async fn served(w: &World, conns: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for conn in conns {
        let (status, body) = w.token(conn, None).await;
        assert_eq!(status, StatusCode::OK, "{conn}: {body}");
        out.push(body["access_token"].clone());
    }
    out
}

/// Every secret a connection's record holds in clear inside the broker.
async fn token_values(w: &World, conns: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for conn in conns {
        let (c, _) = w.broker.state.records.connection(&cid(conn)).await.unwrap().unwrap();
        out.push(c.access_token.expose().to_string());
        out.push(c.refresh_token.expect("a refresh token").expose().to_string());
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The key id a raw stored value names (panics on anything but a blob).
fn key_id(raw: &[u8]) -> String {
    assert!(matches!(raw[0], FORMAT_V1 | FORMAT_V2), "an encrypted value");
    String::from_utf8(raw[2..2 + usize::from(raw[1])].to_vec()).unwrap()
}

/// Must show: records written under key 1 are readable after adding key 2 as primary,
/// `rotate-keys` re-encrypts them all, and removing key 1 afterwards loses nothing.
#[tokio::test]
async fn key_rotation_on_the_embedded_store_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("broker.redb");
    let store = format!("backend = \"embedded\"\npath = \"{}\"", db.display());
    let (k1, k1_hex) = key_file(dir.path(), "k1");
    let (k2, k2_hex) = key_file(dir.path(), "k2");

    // 1. Under key 1 only: three connections (one refreshed once) and a pending session.
    let (w, url) = world(&store, encryption("k1", &[("k1", &k1)])).await;
    let users = [w.upn("alice"), w.upn("carol"), w.upn("erin")];
    let mut conns = Vec::new();
    for user in &users {
        conns.push(w.connect(user).await);
    }
    let (status, _) = w.token(&conns[0], Some(7_200)).await;
    assert_eq!(status, StatusCode::OK);
    let pending = w
        .session(json!({"connector": "files", "end_user": "later", "login_hint": users[0]}))
        .await;
    let session_id = pending["session_id"].as_str().unwrap().to_string();
    let under_k1 = served(&w, &conns).await;
    let secrets = token_values(&w, &conns).await;

    // No token, refresh token or key is anywhere in the database file.
    let w = restart(
        w,
        &url,
        BrokerOptions {
            store: store.clone(),
            encryption: Some(encryption("k2", &[("k1", &k1), ("k2", &k2)])),
            ..Default::default()
        },
    )
    .await;
    let file = std::fs::read(&db).unwrap();
    for secret in secrets.iter().chain([&k1_hex, &k2_hex]) {
        assert!(!contains(&file, secret), "a secret is stored in clear");
    }

    // 2. Key 2 primary, key 1 still configured: everything written under key 1 is served.
    assert_eq!(
        served(&w, &conns).await,
        under_k1,
        "served from the store, decrypted with key 1"
    );
    // A refresh now writes the connection under key 2.
    let (status, _) = w.token(&conns[1], Some(7_200)).await;
    assert_eq!(status, StatusCode::OK);
    let before_rotation = served(&w, &conns).await;

    // The embedded store admits one process: rotate-keys says so rather than waiting or failing
    // obscurely while the broker runs.
    let config = cli_config(dir.path(), &store, &encryption("k2", &[("k1", &k1), ("k2", &k2)]));
    let (ok, _, stderr) = rotate_keys(&config, 2).await;
    assert!(!ok && stderr.contains("in use by another process"), "{stderr}");

    // 3. rotate-keys (broker stopped) re-encrypts everything still under key 1, in batches of 2.
    let World {
        sim,
        broker,
        http,
        sim_config,
    } = w;
    broker.stop().await;
    let (ok, report, stderr) = rotate_keys(&config, 2).await;
    assert!(ok, "rotate-keys failed: {report}\n{stderr}");
    assert!(
        count(&report, "re-encrypted") >= 7,
        "connections, their index, sessions: {report}"
    );
    assert!(
        count(&report, "already under the primary key") >= 1,
        "the refreshed one: {report}"
    );
    assert_eq!(count(&report, "failed"), 0, "{report}");
    for secret in [&k1_hex, &k2_hex] {
        assert!(!report.contains(secret.as_str()) && !stderr.contains(secret.as_str()));
    }
    // Every record in the file now names key 2; a second run has nothing to do.
    {
        let raw = consent_broker::store::EmbeddedStore::open(&db).unwrap();
        let (keys, next) = raw.scan(None, 1_000).await.unwrap();
        assert!(next.is_none() && keys.len() >= 8, "{keys:?}");
        for key in &keys {
            let v = raw.get(key).await.unwrap().unwrap();
            assert_eq!(key_id(&v.value), "k2", "{key}");
        }
    }
    let (ok, again, _) = rotate_keys(&config, 2).await;
    assert!(ok && count(&again, "re-encrypted") == 0, "{again}");

    // 4. Key 1 removed: every connection still serves its token and refreshes; the session is there.
    let broker = Broker::start(
        Reserved::at(&url),
        sim.base_url(),
        BrokerOptions {
            store: store.clone(),
            encryption: Some(encryption("k2", &[("k2", &k2)])),
            ..Default::default()
        },
    )
    .await;
    let w = World {
        sim,
        broker,
        http,
        sim_config,
    };
    assert_eq!(served(&w, &conns).await, before_rotation, "nothing lost");
    for conn in &conns {
        let (status, body) = w.token(conn, Some(7_200)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{conn} refreshes with its stored refresh token: {body}"
        );
    }
    let (status, body) = w
        .api(
            Method::GET,
            &format!("/v1/connect-sessions/{session_id}"),
            Some(KEY_A),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "pending");
}

/// What the memory backend under a broker holds: only blobs, and no token, verifier or nonce.
#[tokio::test]
async fn stored_bytes_hold_no_token_or_flow_secret() {
    let w = World::new().await;
    let conn = w.connect(&w.upn("alice")).await;
    let (status, _) = w.token(&conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK);
    let mut secrets = token_values(&w, std::slice::from_ref(&conn)).await;
    // A sign-in left half-way: its flow record holds the PKCE verifier and the nonce.
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("carol")}))
        .await;
    let authorize = w.redirect_of(s["connect_url"].as_str().unwrap()).await;
    secrets.push(param(&authorize, "nonce").unwrap());
    secrets.push(w.upn("alice"));

    let store = w.broker.state.records.store().clone();
    let inner = store.encryption().expect("test brokers encrypt").inner().clone();
    let (keys, next) = inner.scan(None, 1_000).await.unwrap();
    assert!(next.is_none());
    assert!(keys.iter().any(|k| k.starts_with("flow:")), "{keys:?}");
    for key in &keys {
        let raw = inner.get(key).await.unwrap().unwrap().value;
        assert_eq!(key_id(&raw), "test", "{key}");
        for secret in &secrets {
            assert!(!contains(&raw, secret), "{key} holds a secret in clear");
        }
    }
}

/// rotate-keys against Redis while a broker serves (and refreshes) from it: nothing is lost,
/// expiries stay, and the broker then runs with the new key alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_on_redis_runs_online() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = format!("backend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"rot:\"", server.url());
    let (k1, _) = key_file(dir.path(), "k1");
    let (k2, _) = key_file(dir.path(), "k2");

    let (w, url) = world(&store, encryption("k1", &[("k1", &k1)])).await;
    let mut conns = Vec::new();
    for user in [w.upn("alice"), w.upn("carol")] {
        conns.push(w.connect(&user).await);
    }
    let pending = w.session(json!({"connector": "files", "end_user": "later"})).await;
    let session_key = format!("rot:session:files:{}", pending["session_id"].as_str().unwrap());

    let both = encryption("k2", &[("k1", &k1), ("k2", &k2)]);
    let w = restart(
        w,
        &url,
        BrokerOptions {
            store: store.clone(),
            encryption: Some(both.clone()),
            ..Default::default()
        },
    )
    .await;
    served(&w, &conns).await;

    // Online: refreshes (compare-and-swap writes under key 2) run while rotate-keys works.
    let config = cli_config(dir.path(), &store, &both);
    let refreshes = {
        let http = w.http.clone();
        let base = w.broker.url.clone();
        let conns = conns.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                for conn in &conns {
                    let r = http
                        .get(format!("{base}/v1/connections/{conn}/token?min_ttl=7200"))
                        .bearer_auth(KEY_A)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::OK);
                }
            }
        })
    };
    let (ok, report, stderr) = rotate_keys(&config, 1).await;
    refreshes.await.unwrap();
    assert!(ok, "rotate-keys failed: {report}\n{stderr}");
    assert_eq!(count(&report, "failed"), 0, "{report}");
    let (ok, again, _) = rotate_keys(&config, 1).await;
    assert!(ok && count(&again, "re-encrypted") == 0, "{again}");

    let mut raw = server.raw();
    let names: Vec<String> = redis::cmd("KEYS").arg("rot:*").query(&mut raw).unwrap();
    // The ordered indexes (sorted sets of ids and times, never secrets) are not records.
    let names: Vec<String> = names.into_iter().filter(|n| !n.starts_with("rot:idx:")).collect();
    assert!(names.len() >= 5, "{names:?}");
    for name in &names {
        let value: Vec<u8> = redis::cmd("HGET").arg(name).arg("d").query(&mut raw).unwrap();
        assert_eq!(key_id(&value), "k2", "{name}");
    }
    let pttl: i64 = redis::cmd("PTTL").arg(&session_key).query(&mut raw).unwrap();
    assert!(
        pttl > 0,
        "the session kept its expiry through the re-encryption: {pttl}"
    );

    let w = restart(
        w,
        &url,
        BrokerOptions {
            store,
            encryption: Some(encryption("k2", &[("k2", &k2)])),
            ..Default::default()
        },
    )
    .await;
    for conn in &conns {
        let (status, body) = w.token(conn, Some(7_200)).await;
        assert_eq!(status, StatusCode::OK, "{conn}: {body}");
    }
}

/// A connection record as Redis holds it (the sealed bytes).
fn stored_connection(raw: &mut redis::Connection, prefix: &str, conn: &str) -> Vec<u8> {
    redis::cmd("HGET")
        .arg(format!("{prefix}conn:{{{conn}}}"))
        .arg("d")
        .query(raw)
        .unwrap()
}

/// Must show: turning `compress` on over a Redis store that holds format-1 records keeps them
/// served, new connection records are written as format 2 and are smaller than their plaintext,
/// and `rotate-keys` re-encrypts the mix under the new key (compressing what was not), after
/// which a broker with the new key alone serves every connection unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_turned_on_reads_format_1_and_rotation_handles_the_mix() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = format!("backend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"cmp:\"", server.url());
    let (k1, _) = key_file(dir.path(), "k1");
    let (k2, _) = key_file(dir.path(), "k2");
    let mut raw = server.raw();

    // 1. Written before compression was turned on: format 1.
    let (w, url) = world(&store, encryption("k1", &[("k1", &k1)])).await;
    let alice = w.connect(&w.upn("alice")).await;
    assert_eq!(stored_connection(&mut raw, "cmp:", &alice)[0], FORMAT_V1);
    let alice_token = served(&w, std::slice::from_ref(&alice)).await;

    // 2. Compression on: the old record is still served; a new one is format 2 and smaller.
    let compressed = |body: String| format!("compress = true\n{body}");
    let w = restart(
        w,
        &url,
        BrokerOptions {
            store: store.clone(),
            encryption: Some(compressed(encryption("k1", &[("k1", &k1)]))),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(served(&w, std::slice::from_ref(&alice)).await, alice_token);
    let carol = w.connect(&w.upn("carol")).await;
    let sealed = stored_connection(&mut raw, "cmp:", &carol);
    assert_eq!(sealed[0], FORMAT_V2);
    let plaintext = w
        .broker
        .state
        .records
        .store()
        .get(&format!("conn:{{{carol}}}"))
        .await
        .unwrap()
        .unwrap()
        .value;
    assert!(
        sealed.len() < plaintext.len(),
        "sealed {} bytes, plaintext {}",
        sealed.len(),
        plaintext.len()
    );
    let before = served(&w, &[alice.clone(), carol.clone()]).await;

    // 3. rotate-keys under key 2 with compression on: both records re-encrypted, both format 2.
    let both = compressed(encryption("k2", &[("k1", &k1), ("k2", &k2)]));
    let config = cli_config(dir.path(), &store, &both);
    let (ok, report, stderr) = rotate_keys(&config, 2).await;
    assert!(ok, "rotate-keys failed: {report}\n{stderr}");
    assert_eq!(count(&report, "failed"), 0, "{report}");
    for conn in [&alice, &carol] {
        let sealed = stored_connection(&mut raw, "cmp:", conn);
        assert_eq!((sealed[0], key_id(&sealed).as_str()), (FORMAT_V2, "k2"), "{conn}");
    }

    // 4. Key 2 alone opens everything.
    let w = restart(
        w,
        &url,
        BrokerOptions {
            store,
            encryption: Some(compressed(encryption("k2", &[("k2", &k2)]))),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(served(&w, &[alice, carol]).await, before);
}

/// The store contract over Redis through the encryption layer with compression on.
#[tokio::test]
async fn redis_with_compressed_records_follows_the_store_contract() {
    let server = RedisServer::start();
    let key = EncryptionKey::generate();
    let keys = Keyring::new("k1", vec![("k1".into(), key)])
        .unwrap()
        .with_compression(true);
    let inner = Arc::new(RedisStore::connect(&server.config()).await.unwrap());
    let store = Arc::new(EncryptedStore::new(inner, keys.clone()));
    conformance::run(store.as_ref()).await;
    conformance::concurrent_take(store.clone()).await;
    conformance::concurrent_write_with_event(store.clone()).await;
    // `scan_and_rewrite` wants an empty store: a keyspace of its own.
    let mut config = server.config();
    config.key_prefix = "scan:".into();
    let empty = EncryptedStore::new(Arc::new(RedisStore::connect(&config).await.unwrap()), keys);
    conformance::scan_and_rewrite(&empty).await;
    // What the suite's large values went through: format 2 in Redis.
    store.put("big:check", vec![b'x'; 4096], None).await.unwrap();
    let sealed: Vec<u8> = redis::cmd("HGET")
        .arg("cb:big:check")
        .arg("d")
        .query(&mut server.raw())
        .unwrap();
    assert_eq!(sealed[0], FORMAT_V2);
    assert!(sealed.len() < 200, "{}", sealed.len());
}

#[tokio::test]
async fn redis_scan_and_rewrite_follow_the_store_contract() {
    let server = RedisServer::start();
    let store = Arc::new(RedisStore::connect(&server.config()).await.unwrap());
    conformance::scan_and_rewrite(store.as_ref()).await;
    // Only the prefix's keys are listed, and a rewrite keeps Redis's own expiry.
    let mut raw = server.raw();
    let _: () = redis::cmd("SET").arg("other:key").arg("x").query(&mut raw).unwrap();
    store
        .put("ttl", b"a".to_vec(), Some(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(store.rewrite_in_place("ttl", 1, b"a", b"b".to_vec()).await.unwrap());
    let pttl: i64 = redis::cmd("PTTL").arg("cb:ttl").query(&mut raw).unwrap();
    assert!(pttl > 20_000 && pttl <= 30_000, "{pttl}");
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (keys, next) = store.scan(cursor, 3).await.unwrap();
        seen.extend(keys);
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert!(
        seen.contains(&"ttl".to_string()) && !seen.iter().any(|k| k.contains("other")),
        "{seen:?}"
    );

    let cluster = RedisCluster::start();
    let store = RedisStore::connect(&cluster.config()).await.unwrap();
    conformance::scan_and_rewrite(&store).await;
}

#[test]
fn new_encryption_key_prints_a_fresh_key() {
    let run = || Command::new(BIN).arg("new-encryption-key").output().unwrap();
    let (a, b) = (run(), run());
    assert!(a.status.success());
    let key = String::from_utf8_lossy(&a.stdout).trim().to_string();
    assert_eq!(key.len(), 64, "{key}");
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(EncryptionKey::from_hex(&key).is_ok());
    assert_ne!(key, String::from_utf8_lossy(&b.stdout).trim());
    assert!(String::from_utf8_lossy(&a.stderr).contains("[[encryption.keys]]"));
}
