//! `consent-broker backup` and `restore` through the real binary: a backup taken while 50 token
//! calls and a refresh run, restored into a fresh embedded store and a fresh Redis key prefix,
//! serves every connection with the same tokens, and a refresh still works; a non-empty store is
//! refused without --force; damaged, truncated and foreign files are refused with nothing
//! written; the file is private (0600); no token or secret in the output; records restored
//! under other encryption keys are reported unreadable and left unchanged; records sealed with
//! and without compression (formats 2 and 1) restore readable, each as it was.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use consent_broker::store::encrypted::EncryptionKey;
use consent_broker::store::records::Records;
use consent_broker::store::{EmbeddedStore, EncryptedStore, Entry, Keyring, Store, StoreError};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::broker::{
    Broker, BrokerOptions, KEY_A, Reserved, TEST_ENCRYPTION_KEY, client, config_toml, token_at,
};
use crate::common::cid;
use crate::common::flows::World;
use crate::common::redis::RedisServer;
use crate::common::sim::{APP_A_SECRET, APP_B_SECRET, Sim, standard_config};

const BIN: &str = env!("CARGO_BIN_EXE_consent-broker");
const USERS: [&str; 3] = ["alice", "carol", "erin"];

/// A config file for the CLI naming `store` (and `encryption`, or the test key), in `dir`.
fn cli_config(dir: &Path, name: &str, sim_url: &str, store: &str, encryption: Option<String>) -> PathBuf {
    let secrets = dir.join(format!("{name}-secrets"));
    std::fs::create_dir_all(&secrets).unwrap();
    let opts = BrokerOptions {
        store: store.to_string(),
        encryption,
        ..Default::default()
    };
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, config_toml("http://127.0.0.1:9", sim_url, opts, &secrets)).unwrap();
    file
}

fn cli(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(BIN).args(args).env_remove("RUST_LOG").output().unwrap()
}

fn backup(config: &Path, to: &Path) -> Output {
    cli(&[
        "backup".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--to".as_ref(),
        to.as_os_str(),
    ])
}

fn restore(config: &Path, from: &Path, force: bool) -> Output {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "restore".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--from".as_ref(),
        from.as_os_str(),
    ];
    if force {
        args.push("--force".as_ref());
    }
    cli(&args)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The world: a simulator that knows two brokers' callbacks, the first broker on `store`.
async fn world(store: String, second: &Reserved) -> World {
    let first = Reserved::new();
    let config = standard_config(&[&first.callback(), &second.callback()]);
    let sim = Sim::start(config.clone()).await;
    let broker = Broker::start(
        first,
        sim.base_url(),
        BrokerOptions {
            store,
            ..Default::default()
        },
    )
    .await;
    World {
        sim,
        broker,
        http: client(),
        sim_config: config,
    }
}

fn access(body: &Value) -> String {
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_string()
}

/// Connections of every user, their tokens, then a backup to `file` taken while 50 token calls
/// and a (slowed) refresh of the first connection run. Returns the connection ids, the access
/// tokens before, and the refreshed connection's new one. Checks the backup's output and mode.
async fn backup_under_load(w: &World, config: &Path, file: &Path) -> (Vec<String>, Vec<String>, String) {
    let mut conns = Vec::new();
    let mut before = Vec::new();
    for user in USERS {
        let id = w.connect(&w.upn(user)).await;
        let (status, body) = w.token(&id, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        before.push(access(&body));
        conns.push(id);
    }
    w.sim
        .fault(json!({"endpoint": "token", "kind": "latency", "latency_ms": 400, "count": 1}))
        .await;
    let refresh = {
        let (http, url, conn) = (w.http.clone(), w.broker.url.clone(), conns[0].clone());
        tokio::spawn(async move { token_at(&http, &url, &conn, Some(7_200)).await })
    };
    let mut calls = Vec::new();
    for i in 0..50 {
        let (http, url, conn) = (w.http.clone(), w.broker.url.clone(), conns[i % conns.len()].clone());
        calls.push(tokio::spawn(async move { token_at(&http, &url, &conn, None).await }));
    }
    let (config, target) = (config.to_path_buf(), file.to_path_buf());
    let out = tokio::task::spawn_blocking(move || backup(&config, &target))
        .await
        .unwrap();
    for c in calls {
        let (status, body) = c.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, refreshed) = refresh.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let refreshed = access(&refreshed);
    assert_ne!(refreshed, before[0]);

    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("backup: ") && shown.contains("records by kind: ") && shown.contains("conn 3"),
        "{shown}"
    );
    assert!(
        shown.contains("connlist 3") && shown.contains("test "),
        "index entries and key ids: {shown}"
    );
    let mode = std::fs::metadata(file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the backup is private");
    let mut secrets: Vec<String> = vec![
        TEST_ENCRYPTION_KEY.into(),
        APP_A_SECRET.into(),
        APP_B_SECRET.into(),
        refreshed.clone(),
    ];
    secrets.extend(before.iter().cloned());
    for id in &conns {
        let (c, _) = w.broker.state.records.connection(&cid(id)).await.unwrap().unwrap();
        secrets.extend(c.refresh_token.map(|t| t.expose().to_string()));
    }
    let contents = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
    for secret in &secrets {
        assert!(!shown.contains(secret.as_str()), "a secret in the output: {shown}");
        assert!(!contents.contains(secret.as_str()), "a secret in clear in the backup");
    }
    (conns, before, refreshed)
}

/// A broker on the restored store: every connection served with the token the backup holds (the
/// first one's from before or after its refresh, whichever the backup caught), listed, and a
/// refresh of each still works.
async fn serves_every_connection(
    w: &World,
    reserved: Reserved,
    store: String,
    conns: &[String],
    before: &[String],
    refreshed: &str,
) {
    let restored = Broker::start(
        reserved,
        w.sim.base_url(),
        BrokerOptions {
            store,
            ..Default::default()
        },
    )
    .await;
    for (i, id) in conns.iter().enumerate() {
        let (status, body) = token_at(&w.http, &restored.url, id, None).await;
        assert_eq!(status, StatusCode::OK, "{id}: {body}");
        let token = access(&body);
        if i == 0 {
            assert!(
                token == before[0] || token == refreshed,
                "the first connection's token is one it had"
            );
        } else {
            assert_eq!(token, before[i], "{id}: the same token");
        }
    }
    let r = w
        .http
        .get(format!("{}/v1/connections", restored.url))
        .bearer_auth(KEY_A)
        .send()
        .await
        .unwrap();
    let listed: Value = r.json().await.unwrap();
    assert_eq!(
        listed["connections"].as_array().map(Vec::len),
        Some(conns.len()),
        "{listed}"
    );
    let grants = w.sim.token_grants("refresh_token").await;
    for id in conns {
        let (status, body) = token_at(&w.http, &restored.url, id, Some(7_200)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{id}: a refresh works on the restored store: {body}"
        );
    }
    assert_eq!(w.sim.token_grants("refresh_token").await, grants + conns.len() as u64);
    restored.stop().await;
}

/// Damaged, truncated and foreign files: refused by name, and `untouched` says nothing was written.
async fn bad_files_are_refused(dir: &Path, config: &Path, good: &Path, untouched: impl AsyncFn() -> bool) {
    let bytes = std::fs::read(good).unwrap();
    let truncated = dir.join("truncated.backup");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let damaged = dir.join("damaged.backup");
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] = if flipped[middle] == b'A' { b'B' } else { b'A' };
    std::fs::write(&damaged, &flipped).unwrap();
    for (file, says) in [
        (truncated.as_path(), "truncated"),
        (damaged.as_path(), "not a usable backup"),
        (config, "not a consent-broker backup"),
        (dir.join("missing.backup").as_path(), "cannot open the backup"),
    ] {
        let out = restore(config, file, false);
        let shown = text(&out);
        assert!(!out.status.success(), "{}: {shown}", file.display());
        assert!(shown.contains(says), "{}: {shown}", file.display());
        assert!(untouched().await, "{}: nothing written", file.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_embedded_backup_under_load_restores_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let second = Reserved::new();
    let source = dir.path().join("source.redb");
    let w = world(
        format!("backend = \"embedded\"\npath = \"{}\"", source.display()),
        &second,
    )
    .await;
    let source_config = cli_config(
        dir.path(),
        "source",
        w.sim.base_url(),
        &format!("backend = \"embedded\"\npath = \"{}\"", source.display()),
        None,
    );
    let file = dir.path().join("broker.backup");
    // The backup opens the running broker's file read-only beside it.
    let (conns, before, refreshed) = backup_under_load(&w, &source_config, &file).await;

    let fresh = dir.path().join("restored.redb");
    let fresh_store = format!("backend = \"embedded\"\npath = \"{}\"", fresh.display());
    let fresh_config = cli_config(dir.path(), "fresh", w.sim.base_url(), &fresh_store, None);
    bad_files_are_refused(dir.path(), &fresh_config, &file, async || !fresh.exists()).await;

    let out = restore(&fresh_config, &file, false);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("restore: ") && shown.contains("conn 3") && shown.contains("connlist 3"),
        "{shown}"
    );
    assert!(!shown.contains("warning"), "the same keys open every record: {shown}");
    // Into a store that is no longer empty: refused, then allowed with --force.
    let out = restore(&fresh_config, &file, false);
    assert!(
        !out.status.success() && text(&out).contains("not empty"),
        "{}",
        text(&out)
    );
    let out = restore(&fresh_config, &file, true);
    assert!(out.status.success(), "{}", text(&out));
    // While a broker has the file, a restore (a second writer) is refused.
    let out = restore(&source_config, &file, true);
    assert!(
        !out.status.success() && text(&out).contains("in use by another process"),
        "{}",
        text(&out)
    );

    serves_every_connection(&w, second, fresh_store, &conns, &before, &refreshed).await;

    // Other encryption keys: the restore says the records do not open, writes them unchanged, and
    // a broker with those keys reports them unreadable; with the right key they read.
    let other = dir.path().join("other.redb");
    let other_key = dir.path().join("other-key");
    std::fs::write(&other_key, "11".repeat(32)).unwrap();
    let other_config = cli_config(
        dir.path(),
        "other",
        w.sim.base_url(),
        &format!("backend = \"embedded\"\npath = \"{}\"", other.display()),
        Some(format!(
            "[[encryption.keys]]\nid = \"test\"\nfile = \"{}\"",
            other_key.display()
        )),
    );
    let out = restore(&other_config, &file, false);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("do not open with the configured encryption keys"),
        "{}",
        text(&out)
    );
    let raw: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&other).unwrap());
    let backed_up =
        consent_broker::backup::format::read(std::io::BufReader::new(std::fs::File::open(&file).unwrap())).unwrap();
    let conn_key = format!("conn:{{{}}}", conns[1]);
    let sealed = backed_up
        .entries
        .iter()
        .find_map(|e| match e {
            Entry::Record(r) if r.key == conn_key => Some(r.value.clone()),
            _ => None,
        })
        .expect("the connection is in the backup");
    assert_eq!(
        raw.get(&conn_key).await.unwrap().unwrap().value,
        sealed,
        "restored unchanged"
    );
    let keyring =
        |hex: &str| Keyring::new("test", vec![("test".into(), EncryptionKey::from_hex(hex).unwrap())]).unwrap();
    let wrong = Records::new(Arc::new(EncryptedStore::new(raw.clone(), keyring(&"11".repeat(32)))));
    let e = wrong.connection(&cid(&conns[1])).await.unwrap_err();
    assert!(
        matches!(e, StoreError::Corrupt { .. }) && e.to_string().contains("does not decrypt"),
        "{e}"
    );
    assert_eq!(
        raw.get(&conn_key).await.unwrap().unwrap().value,
        sealed,
        "and left unchanged"
    );
    let right = Records::new(Arc::new(EncryptedStore::new(raw, keyring(TEST_ENCRYPTION_KEY))));
    assert!(right.connection(&cid(&conns[1])).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_backup_under_load_restores_every_connection_under_another_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let second = Reserved::new();
    let w = world(redis.store_section(), &second).await;
    let source_config = cli_config(dir.path(), "source", w.sim.base_url(), &redis.store_section(), None);
    let file = dir.path().join("redis.backup");
    let (conns, before, refreshed) = backup_under_load(&w, &source_config, &file).await;

    let fresh_store = format!("{}\nkey_prefix = \"restored:\"", redis.store_section());
    let fresh_config = cli_config(dir.path(), "fresh", w.sim.base_url(), &fresh_store, None);
    let restored_keys = || {
        let mut raw = redis.raw();
        let keys: Vec<String> = redis::cmd("KEYS").arg("restored:*").query(&mut raw).unwrap();
        keys
    };
    bad_files_are_refused(dir.path(), &fresh_config, &file, async || restored_keys().is_empty()).await;
    let out = restore(&fresh_config, &file, false);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("conn 3") && shown.contains("keepalive"), "{shown}");
    // Expiries come along: a record with a TTL in the source has one in the copy.
    let mut raw = redis.raw();
    let expiring: Vec<String> = redis::cmd("KEYS").arg("restored:connect:*").query(&mut raw).unwrap();
    for key in &expiring {
        let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut raw).unwrap();
        assert!(ttl > 0, "{key} keeps an expiry");
    }
    let out = restore(&fresh_config, &file, false);
    assert!(
        !out.status.success() && text(&out).contains("not empty"),
        "{}",
        text(&out)
    );

    // A Redis backup restores into the embedded store as well: same keys, same sealed values.
    let embedded = dir.path().join("from-redis.redb");
    let embedded_config = cli_config(
        dir.path(),
        "embedded",
        w.sim.base_url(),
        &format!("backend = \"embedded\"\npath = \"{}\"", embedded.display()),
        None,
    );
    let out = restore(&embedded_config, &file, false);
    assert!(out.status.success() && text(&out).contains("conn 3"), "{}", text(&out));
    let key = EncryptionKey::from_hex(TEST_ENCRYPTION_KEY).unwrap();
    let keys = Keyring::new("test", vec![("test".into(), key)]).unwrap();
    let records = Records::new(Arc::new(EncryptedStore::new(
        Arc::new(EmbeddedStore::open(&embedded).unwrap()),
        keys,
    )));
    for id in &conns {
        assert!(records.connection(&cid(id)).await.unwrap().is_some(), "{id}");
    }
    drop(records);

    serves_every_connection(&w, second, fresh_store, &conns, &before, &refreshed).await;
}

/// Must show: a store holding records sealed before and after `[encryption] compress` was
/// turned on (formats 1 and 2) backs up and restores through the binary with every record
/// readable, each kept in the format it was written in.
#[tokio::test]
async fn records_of_both_encryption_formats_back_up_and_restore_readable() {
    use consent_broker::store::encrypted::{FORMAT_V1, FORMAT_V2};
    let dir = tempfile::tempdir().unwrap();
    let keyring = |compress: bool| {
        Keyring::new(
            "test",
            vec![("test".into(), EncryptionKey::from_hex(TEST_ENCRYPTION_KEY).unwrap())],
        )
        .unwrap()
        .with_compression(compress)
    };
    let value = |i: usize| format!("{{\"n\":{i},\"scopes\":\"{}\"}}", "Files.Read.All ".repeat(30)).into_bytes();
    let source = dir.path().join("source.redb");
    {
        let inner: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&source).unwrap());
        for i in 0..4 {
            let store = EncryptedStore::new(inner.clone(), keyring(i % 2 == 1));
            store.put(&format!("outbox:{i}"), value(i), None).await.unwrap();
        }
    }
    let store_of = |path: &Path| format!("backend = \"embedded\"\npath = \"{}\"", path.display());
    let source_config = cli_config(dir.path(), "source", "http://127.0.0.1:9", &store_of(&source), None);
    let file = dir.path().join("mixed.backup");
    let out = backup(&source_config, &file);
    assert!(out.status.success(), "{}", text(&out));

    let target = dir.path().join("target.redb");
    let target_config = cli_config(dir.path(), "target", "http://127.0.0.1:9", &store_of(&target), None);
    let out = restore(&target_config, &file, false);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(!shown.contains("do not open"), "every record opens: {shown}");
    assert!(shown.contains("test 4"), "{shown}");

    let inner: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&target).unwrap());
    let store = EncryptedStore::new(inner.clone(), keyring(false));
    for i in 0..4 {
        let key = format!("outbox:{i}");
        let sealed = inner.get(&key).await.unwrap().unwrap().value;
        assert_eq!(sealed[0], if i % 2 == 1 { FORMAT_V2 } else { FORMAT_V1 }, "{key}");
        assert_eq!(store.get(&key).await.unwrap().unwrap().value, value(i), "{key}");
    }
}

#[test]
fn the_memory_store_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_config(dir.path(), "memory", "http://127.0.0.1:9", "backend = \"memory\"", None);
    let file = dir.path().join("m.backup");
    let out = backup(&config, &file);
    assert!(
        !out.status.success() && text(&out).contains("nothing to back up"),
        "{}",
        text(&out)
    );
    assert!(!file.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no partial file left: config and secrets only"
    );
}

/// The store failing: a Redis that is gone fails the backup with a reason and leaves the previous
/// file as it was (and no partial file); an embedded store file that is not there is named; a
/// restore into a Redis that is gone fails before anything is written.
#[tokio::test]
async fn a_store_that_is_not_there_fails_with_a_reason_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start();
    let config = cli_config(dir.path(), "redis", "http://127.0.0.1:9", &redis.store_section(), None);
    redis.stop();
    let target = dir.path().join("r.backup");
    std::fs::write(&target, b"previous backup").unwrap();
    let out = backup(&config, &target);
    assert!(
        !out.status.success() && text(&out).contains("cannot connect to Redis"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read(&target).unwrap(),
        b"previous backup",
        "the previous backup is kept"
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("partial")), "{names:?}");

    let missing = dir.path().join("none.redb");
    let embedded = cli_config(
        dir.path(),
        "embedded",
        "http://127.0.0.1:9",
        &format!("backend = \"embedded\"\npath = \"{}\"", missing.display()),
        None,
    );
    let out = backup(&embedded, &dir.path().join("e.backup"));
    assert!(
        !out.status.success() && text(&out).contains("there is no store file"),
        "{}",
        text(&out)
    );
    assert!(
        !dir.path().join("e.backup").exists() && !missing.exists(),
        "nothing created"
    );

    let empty = dir.path().join("empty.backup");
    let writer =
        consent_broker::backup::format::Writer::new(Vec::new(), &consent_broker::backup::format::Header::new("redis"))
            .unwrap();
    std::fs::write(&empty, writer.finish().unwrap()).unwrap();
    let out = restore(&config, &empty, false);
    assert!(
        !out.status.success() && text(&out).contains("cannot connect to Redis"),
        "{}",
        text(&out)
    );
}
