//! One behavioural suite run against every backend: the unit tests of the memory, embedded and
//! encrypted stores and the Redis integration tests (`tests/integration/redis_store.rs`,
//! `encryption.rs`) call it. It panics on the first broken expectation.
//!
//! Test code: compiled for the library's own unit tests and, for the integration tests in
//! another crate, only with the `test-support` feature, so release builds do not carry it. It
//! uses only normal dependencies, so that feature needs no optional ones.

use std::time::Duration;

use super::{CasOutcome, Store, Versioned};

/// The whole contract on one store. Uses the keys `a`, `b`, `e`, `f`, `g`, `keep`, `l` and
/// `missing`; run it on an empty store.
pub async fn run(store: &dyn Store) {
    // get / put / versions
    assert_eq!(store.get("a").await.unwrap(), None);
    assert_eq!(store.put("a", b"1".to_vec(), None).await.unwrap(), 1);
    assert_eq!(store.put("a", b"2".to_vec(), None).await.unwrap(), 2);
    assert_eq!(
        store.get("a").await.unwrap(),
        Some(Versioned {
            value: b"2".to_vec(),
            version: 2
        })
    );

    // insert_new refuses a live record
    assert!(!store.insert_new("a", b"x".to_vec(), None).await.unwrap());
    assert!(store.insert_new("b", b"x".to_vec(), None).await.unwrap());

    // take is single-use
    assert_eq!(store.take("b").await.unwrap(), Some(b"x".to_vec()));
    assert_eq!(store.take("b").await.unwrap(), None);

    // compare_and_swap
    assert_eq!(
        store.compare_and_swap("a", 1, b"3".to_vec(), None).await.unwrap(),
        CasOutcome::Conflict
    );
    assert_eq!(
        store.compare_and_swap("a", 2, b"3".to_vec(), None).await.unwrap(),
        CasOutcome::Written(3)
    );
    assert_eq!(
        store.compare_and_swap("missing", 1, b"3".to_vec(), None).await.unwrap(),
        CasOutcome::Conflict
    );

    // compare_and_swap with a zero TTL is a delete conditional on the version
    store.put("l", b"1".to_vec(), None).await.unwrap();
    assert_eq!(
        store
            .compare_and_swap("l", 2, b"1".to_vec(), Some(Duration::ZERO))
            .await
            .unwrap(),
        CasOutcome::Conflict
    );
    assert!(matches!(
        store
            .compare_and_swap("l", 1, b"1".to_vec(), Some(Duration::ZERO))
            .await
            .unwrap(),
        CasOutcome::Written(_)
    ));
    assert_eq!(store.get("l").await.unwrap(), None);
    assert!(store.insert_new("l", b"2".to_vec(), None).await.unwrap(), "free again");

    // delete
    assert!(store.delete("a").await.unwrap());
    assert!(!store.delete("a").await.unwrap());
    assert_eq!(store.get("a").await.unwrap(), None);

    // expiry hides records before the purge removes them
    store
        .put("e", b"1".to_vec(), Some(Duration::from_millis(30)))
        .await
        .unwrap();
    assert!(
        store
            .insert_new("f", b"1".to_vec(), Some(Duration::from_millis(30)))
            .await
            .unwrap()
    );
    store
        .put("keep", b"1".to_vec(), Some(Duration::from_secs(60)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(store.get("e").await.unwrap(), None);
    assert_eq!(store.take("f").await.unwrap(), None);
    assert!(
        store.insert_new("e", b"2".to_vec(), None).await.unwrap(),
        "expired key is free again"
    );
    store
        .put("g", b"1".to_vec(), Some(Duration::from_millis(1)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    // How many records a purge removes is the backend's business (Redis expires keys itself
    // and reports 0; see `purge_counts` for the backends that sweep); what must hold is that
    // the expired record stays gone and the live one stays.
    store.purge_expired().await.unwrap();
    assert_eq!(store.get("g").await.unwrap(), None);
    assert!(store.get("keep").await.unwrap().is_some());
    store.ping().await.unwrap();
    indexes(store).await;
}

/// Ordered indexes: byte order, exclusive paging, idempotent adds, removal, separate
/// indexes, and no index in a scan of the records. Uses the indexes `ix` and `iy`.
pub async fn indexes(store: &dyn Store) {
    assert!(store.index_range("ix", None, 10).await.unwrap().is_empty());
    for m in ["b", "a", "c:2", "c:10", "d"] {
        store.index_add("ix", m).await.unwrap();
    }
    store.index_add("ix", "a").await.unwrap();
    store.index_add("iy", "a").await.unwrap();
    assert_eq!(
        store.index_range("ix", None, 10).await.unwrap(),
        ["a", "b", "c:10", "c:2", "d"],
        "byte order, each member once"
    );
    assert_eq!(store.index_range("ix", None, 2).await.unwrap(), ["a", "b"]);
    assert_eq!(store.index_range("ix", Some("b"), 2).await.unwrap(), ["c:10", "c:2"]);
    assert_eq!(
        store.index_range("ix", Some("bz"), 10).await.unwrap(),
        ["c:10", "c:2", "d"],
        "after a member that is not there"
    );
    assert!(store.index_range("ix", Some("d"), 10).await.unwrap().is_empty());
    assert!(store.index_remove("ix", "b").await.unwrap());
    assert!(!store.index_remove("ix", "b").await.unwrap());
    assert!(!store.index_remove("none", "b").await.unwrap());
    assert_eq!(
        store.index_range("ix", None, 10).await.unwrap(),
        ["a", "c:10", "c:2", "d"]
    );
    assert_eq!(
        store.index_range("iy", None, 10).await.unwrap(),
        ["a"],
        "indexes are apart"
    );
    let mut cursor = None;
    loop {
        let (keys, next) = store.scan(cursor, 100).await.unwrap();
        assert!(
            keys.iter().all(|k| !k.contains("ix") && !k.contains("iy")),
            "a scan lists records only: {keys:?}"
        );
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    for m in ["a", "c:10", "c:2", "d"] {
        assert!(store.index_remove("ix", m).await.unwrap());
    }
    assert!(store.index_remove("iy", "a").await.unwrap());
}

/// For backends whose purge sweeps expired records itself (memory, embedded): it counts them.
pub async fn purge_counts(store: &dyn Store) {
    store
        .put("p", b"1".to_vec(), Some(Duration::from_millis(1)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(store.purge_expired().await.unwrap() >= 1);
    assert_eq!(store.purge_expired().await.unwrap(), 0, "nothing left to purge");
}

/// `scan` pages through every live record exactly as its contract says, and `rewrite_in_place`
/// replaces only an unchanged record, keeping its version and expiry. Uses keys starting with
/// `s:`, `r` and `t`; run it on an empty store.
pub async fn scan_and_rewrite(store: &dyn Store) {
    assert!(scan_all(store, 10).await.is_empty(), "an empty store scans empty");

    let mut expected = std::collections::BTreeSet::new();
    for i in 0..25 {
        let key = format!("s:{i:02}");
        let ttl = (i % 3 == 0).then(|| Duration::from_secs(60));
        store.put(&key, b"v".to_vec(), ttl).await.unwrap();
        expected.insert(key);
    }
    store
        .put("s:expired", b"v".to_vec(), Some(Duration::from_millis(1)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let seen = scan_all(store, 7).await;
    assert_eq!(
        seen.iter().cloned().collect::<std::collections::BTreeSet<_>>(),
        expected,
        "every live record, no expired one"
    );

    // rewrite_in_place: only the exact version and bytes, version and expiry kept.
    store.put("r", b"a".to_vec(), None).await.unwrap();
    assert_eq!(
        store.compare_and_swap("r", 1, b"b".to_vec(), None).await.unwrap(),
        CasOutcome::Written(2)
    );
    assert!(!store.rewrite_in_place("r", 1, b"b", b"x".to_vec()).await.unwrap());
    assert!(!store.rewrite_in_place("r", 2, b"a", b"x".to_vec()).await.unwrap());
    assert!(!store.rewrite_in_place("missing", 1, b"a", b"x".to_vec()).await.unwrap());
    assert!(store.rewrite_in_place("r", 2, b"b", b"c".to_vec()).await.unwrap());
    assert_eq!(
        store.get("r").await.unwrap(),
        Some(Versioned {
            value: b"c".to_vec(),
            version: 2
        })
    );
    assert_eq!(
        store.compare_and_swap("r", 2, b"d".to_vec(), None).await.unwrap(),
        CasOutcome::Written(3),
        "a writer holding the version read before the rewrite still wins"
    );
    store
        .put("t", b"a".to_vec(), Some(Duration::from_millis(150)))
        .await
        .unwrap();
    assert!(store.rewrite_in_place("t", 1, b"a", b"b".to_vec()).await.unwrap());
    assert_eq!(store.get("t").await.unwrap().map(|v| v.value), Some(b"b".to_vec()));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(store.get("t").await.unwrap(), None, "the expiry was kept");
    assert!(!store.rewrite_in_place("t", 1, b"b", b"c".to_vec()).await.unwrap());
}

/// For the backends that page in key order (memory, embedded): pages of at most `limit` keys,
/// sorted, each key once. Uses the keys `o:0` to `o:9`; run it on an empty store.
pub async fn ordered_scan(store: &dyn Store) {
    for i in 0..10 {
        store.put(&format!("o:{i}"), b"v".to_vec(), None).await.unwrap();
    }
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let (keys, next) = store.scan(cursor, 3).await.unwrap();
        pages.push(keys);
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let expected: Vec<Vec<String>> = [&[0, 1, 2][..], &[3, 4, 5], &[6, 7, 8], &[9]]
        .iter()
        .map(|page| page.iter().map(|i| format!("o:{i}")).collect())
        .collect();
    assert_eq!(pages, expected);
    assert_eq!(
        store.scan(None, 0).await.unwrap().0,
        ["o:0"],
        "a limit of 0 counts as 1"
    );
}

/// Every key a whole scan returns, in page order (Redis may repeat one).
async fn scan_all(store: &dyn Store, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..1_000 {
        let (keys, next) = store.scan(cursor, limit).await.unwrap();
        seen.extend(keys);
        match next {
            Some(c) => cursor = Some(c),
            None => return seen,
        }
    }
    panic!("the scan does not end");
}

/// 32 concurrent `take`s of one value: exactly one wins. Uses the key `once`.
pub async fn concurrent_take(store: std::sync::Arc<dyn Store>) {
    store.put("once", b"v".to_vec(), None).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move { s.take("once").await.unwrap() }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap().is_some() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "a single-use value is taken exactly once");
}
