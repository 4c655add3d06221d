//! One behavioural suite run against every backend: the unit tests of the memory, embedded and
//! encrypted stores and the Redis integration tests (`tests/integration/redis_store.rs`,
//! `encryption.rs`) call it. It panics on the first broken expectation.
//!
//! Test code: compiled for the library's own unit tests and, for the integration tests in
//! another crate, only with the `test-support` feature, so release builds do not carry it. It
//! uses only normal dependencies, so that feature needs no optional ones.

use std::time::Duration;

use super::{CasOutcome, Store, Versioned, Write, WriteOutcome};

/// The whole contract on one store. Uses the keys `a`, `b`, `e`, `f`, `g`, `keep`, `l`,
/// `missing` and those of [`write_with_event`]; run it on an empty store.
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
    write_with_event(store).await;
    large_values(store).await;
}

/// Values of a few KB (a connection record's size; what the encryption layer compresses) come
/// back byte for byte through every write. Uses keys starting with `big:` and leaves none.
pub async fn large_values(store: &dyn Store) {
    // Compressible, but not trivially: JSON-like text with a counter.
    let value = |n: u32| -> Vec<u8> {
        (0..300)
            .flat_map(|i| format!("{{\"n\":{n},\"i\":{i}}},").into_bytes())
            .collect()
    };
    assert!(value(1).len() > 4_000);
    assert_eq!(store.put("big:a", value(1), None).await.unwrap(), 1);
    assert_eq!(store.get("big:a").await.unwrap(), versioned(&value(1), 1));
    assert_eq!(
        store.compare_and_swap("big:a", 1, value(2), None).await.unwrap(),
        CasOutcome::Written(2)
    );
    assert!(store.rewrite_in_place("big:a", 2, &value(2), value(3)).await.unwrap());
    assert!(!store.rewrite_in_place("big:a", 2, &value(2), value(4)).await.unwrap());
    assert_eq!(store.get("big:a").await.unwrap(), versioned(&value(3), 2));
    assert!(store.insert_new("big:b", value(5), None).await.unwrap());
    assert_eq!(store.take("big:b").await.unwrap(), Some(value(5)));
    assert_eq!(
        store
            .write_with_event(cas("big:a", 2, &value(6), None), "big:event", value(7), None)
            .await
            .unwrap(),
        WriteOutcome::Applied(3)
    );
    assert_eq!(store.get("big:a").await.unwrap(), versioned(&value(6), 3));
    assert_eq!(store.take("big:event").await.unwrap(), Some(value(7)));
    assert!(store.delete("big:a").await.unwrap());
}

fn put(key: &str, value: &[u8], ttl: Option<Duration>) -> Write {
    Write::Put {
        key: key.into(),
        value: value.to_vec(),
        ttl,
    }
}

fn cas(key: &str, expected_version: u64, value: &[u8], ttl: Option<Duration>) -> Write {
    Write::Cas {
        key: key.into(),
        expected_version,
        value: value.to_vec(),
        ttl,
    }
}

fn insert_new(key: &str, value: &[u8], ttl: Option<Duration>) -> Write {
    Write::InsertNew {
        key: key.into(),
        value: value.to_vec(),
        ttl,
    }
}

fn delete(key: &str) -> Write {
    Write::Delete { key: key.into() }
}

fn versioned(value: &[u8], version: u64) -> Option<Versioned> {
    Some(Versioned {
        value: value.to_vec(),
        version,
    })
}

/// `write_with_event`: each write leaves its record as the single operation would and stores the
/// event with it; a failed condition stores neither; the event's expiry holds; an event key equal
/// to the record's is refused. Uses keys starting with `w:` and `ev:`; run it on an empty store.
pub async fn write_with_event(store: &dyn Store) {
    let write = move |w: Write, event: &'static str| store.write_with_event(w, event, event.as_bytes().to_vec(), None);

    // Put: version 1 on a new record, then the live one's + 1; the event is a put too, so an
    // event key already there gets its next version.
    assert_eq!(
        write(put("w:put", b"p1", None), "ev:put1").await.unwrap(),
        WriteOutcome::Applied(1)
    );
    assert_eq!(store.get("w:put").await.unwrap(), versioned(b"p1", 1));
    assert_eq!(store.get("ev:put1").await.unwrap(), versioned(b"ev:put1", 1));
    assert_eq!(store.put("ev:put2", b"older".to_vec(), None).await.unwrap(), 1);
    assert_eq!(
        write(put("w:put", b"p2", None), "ev:put2").await.unwrap(),
        WriteOutcome::Applied(2)
    );
    assert_eq!(store.get("w:put").await.unwrap(), versioned(b"p2", 2));
    assert_eq!(store.get("ev:put2").await.unwrap(), versioned(b"ev:put2", 2));

    // Cas: only on the live record's exact version.
    assert_eq!(store.put("w:cas", b"c1".to_vec(), None).await.unwrap(), 1);
    assert_eq!(
        write(cas("w:cas", 2, b"no", None), "ev:cas-ahead").await.unwrap(),
        WriteOutcome::NotApplied
    );
    assert_eq!(
        write(cas("w:cas", 1, b"c2", None), "ev:cas").await.unwrap(),
        WriteOutcome::Applied(2)
    );
    assert_eq!(store.get("w:cas").await.unwrap(), versioned(b"c2", 2));
    assert_eq!(store.get("ev:cas").await.unwrap(), versioned(b"ev:cas", 1));
    assert_eq!(
        write(cas("w:cas", 1, b"no", None), "ev:cas-stale").await.unwrap(),
        WriteOutcome::NotApplied,
        "a stale version"
    );
    assert_eq!(store.get("w:cas").await.unwrap(), versioned(b"c2", 2), "untouched");
    assert_eq!(
        write(cas("w:missing", 1, b"no", None), "ev:cas-missing").await.unwrap(),
        WriteOutcome::NotApplied
    );
    assert_eq!(store.get("w:missing").await.unwrap(), None);
    // A zero TTL is a delete conditional on the version, as with compare_and_swap.
    assert_eq!(
        write(cas("w:cas", 2, b"c3", Some(Duration::ZERO)), "ev:cas-zero")
            .await
            .unwrap(),
        WriteOutcome::Applied(3)
    );
    assert_eq!(store.get("w:cas").await.unwrap(), None);
    assert!(store.get("ev:cas-zero").await.unwrap().is_some());

    // InsertNew: only where no live record is.
    assert_eq!(
        write(insert_new("w:new", b"n1", None), "ev:new").await.unwrap(),
        WriteOutcome::Applied(1)
    );
    assert_eq!(store.get("w:new").await.unwrap(), versioned(b"n1", 1));
    assert!(store.get("ev:new").await.unwrap().is_some());
    assert_eq!(
        write(insert_new("w:new", b"no", None), "ev:new-again").await.unwrap(),
        WriteOutcome::NotApplied
    );
    assert_eq!(store.get("w:new").await.unwrap(), versioned(b"n1", 1), "untouched");

    // Delete: only a live record.
    store.put("w:del", b"d".to_vec(), None).await.unwrap();
    assert_eq!(
        write(delete("w:del"), "ev:del").await.unwrap(),
        WriteOutcome::Applied(0)
    );
    assert_eq!(store.get("w:del").await.unwrap(), None);
    assert!(store.get("ev:del").await.unwrap().is_some());
    assert_eq!(
        write(delete("w:del"), "ev:del-again").await.unwrap(),
        WriteOutcome::NotApplied,
        "already absent"
    );

    // Expired records count as absent: no delete, no compare-and-swap, free for an insert.
    store
        .put("w:gone", b"g".to_vec(), Some(Duration::from_millis(20)))
        .await
        .unwrap();
    store
        .put("w:stale", b"s".to_vec(), Some(Duration::from_millis(20)))
        .await
        .unwrap();
    // The expiries of both records of a write: the record's (from the write) and the event's.
    assert_eq!(
        store
            .write_with_event(
                put("w:short", b"s", Some(Duration::from_millis(20))),
                "ev:short",
                b"s".to_vec(),
                Some(Duration::from_millis(20)),
            )
            .await
            .unwrap(),
        WriteOutcome::Applied(1)
    );
    assert_eq!(
        store
            .write_with_event(
                put("w:long", b"l", Some(Duration::from_secs(60))),
                "ev:long",
                b"l".to_vec(),
                Some(Duration::from_secs(60)),
            )
            .await
            .unwrap(),
        WriteOutcome::Applied(1)
    );
    assert!(store.get("ev:short").await.unwrap().is_some(), "not expired yet");
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(store.get("ev:short").await.unwrap(), None, "the event's TTL holds");
    assert_eq!(store.get("w:short").await.unwrap(), None, "the record's TTL holds");
    assert!(store.get("ev:long").await.unwrap().is_some());
    assert!(store.get("w:long").await.unwrap().is_some());
    assert_eq!(
        write(delete("w:gone"), "ev:gone").await.unwrap(),
        WriteOutcome::NotApplied,
        "an expired record is not deleted"
    );
    assert_eq!(
        write(cas("w:stale", 1, b"no", None), "ev:stale-cas").await.unwrap(),
        WriteOutcome::NotApplied,
        "an expired record has no version"
    );
    assert_eq!(
        write(insert_new("w:stale", b"s2", None), "ev:stale-new").await.unwrap(),
        WriteOutcome::Applied(1),
        "an expired record's key is free"
    );
    assert_eq!(store.get("w:stale").await.unwrap(), versioned(b"s2", 1));
    // A zero TTL on the event: stored and expired at once, as put would.
    assert_eq!(
        store
            .write_with_event(
                put("w:put", b"p3", None),
                "ev:zero",
                b"z".to_vec(),
                Some(Duration::ZERO)
            )
            .await
            .unwrap(),
        WriteOutcome::Applied(3)
    );
    assert_eq!(store.get("ev:zero").await.unwrap(), None);

    // No condition that failed stored its event.
    for event in [
        "ev:cas-ahead",
        "ev:cas-stale",
        "ev:cas-missing",
        "ev:new-again",
        "ev:del-again",
        "ev:gone",
        "ev:stale-cas",
    ] {
        assert_eq!(store.get(event).await.unwrap(), None, "{event} was stored");
    }

    // An event key that is the record's own is refused, with nothing written.
    store.put("w:same", b"s".to_vec(), None).await.unwrap();
    for w in [
        put("w:same", b"x", None),
        cas("w:same", 1, b"x", None),
        insert_new("w:same-new", b"x", None),
        delete("w:same"),
    ] {
        let key = w.key().to_string();
        let refused = store.write_with_event(w, &key, b"e".to_vec(), None).await;
        assert!(refused.is_err(), "{key}: {refused:?}");
    }
    assert_eq!(store.get("w:same").await.unwrap(), versioned(b"s", 1), "untouched");
    assert_eq!(store.get("w:same-new").await.unwrap(), None);
}

/// 16 tasks race `write_with_event` with a `Cas` on one record, all with the version they read,
/// each with its own event key: exactly one applies, and only its event is stored. Uses the keys
/// `w:race` and `ev:race:*`.
pub async fn concurrent_write_with_event(store: std::sync::Arc<dyn Store>) {
    let read = store.put("w:race", b"start".to_vec(), None).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let value = format!("by {i}").into_bytes();
            let outcome = s
                .write_with_event(
                    cas("w:race", read, &value, None),
                    &format!("ev:race:{i}"),
                    value.clone(),
                    None,
                )
                .await
                .unwrap();
            (i, outcome)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (i, outcome) = t.await.unwrap();
        match outcome {
            WriteOutcome::Applied(version) => {
                assert_eq!(version, read + 1);
                winners.push(i);
            }
            WriteOutcome::NotApplied => {}
        }
    }
    assert_eq!(winners.len(), 1, "exactly one write applies: {winners:?}");
    let winner = winners[0];
    assert_eq!(
        store.get("w:race").await.unwrap(),
        versioned(format!("by {winner}").as_bytes(), read + 1)
    );
    for i in 0..16 {
        let event = store.get(&format!("ev:race:{i}")).await.unwrap();
        assert_eq!(event.is_some(), i == winner, "event {i} (winner {winner})");
    }
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

/// `export` hands out every live record (value, version, expiry) and index member, and `import`
/// of that into `target` gives the same store; an import replaces a record of the same key and
/// skips one already expired; `is_empty` sees records and index members. Run it on two empty
/// stores; uses keys starting with `x:` and the indexes `ix`, `iy`, `iz`.
pub async fn export_and_import(source: &dyn Store, target: &dyn Store) {
    assert!(source.is_empty().await.unwrap() && target.is_empty().await.unwrap());
    target.index_add("iz", "m").await.unwrap();
    assert!(!target.is_empty().await.unwrap(), "an index member is content");
    target.index_remove("iz", "m").await.unwrap();
    assert!(target.is_empty().await.unwrap());

    source.put("x:a", b"a".to_vec(), None).await.unwrap();
    source.put("x:b", b"b1".to_vec(), None).await.unwrap();
    source
        .put("x:b", b"b2".to_vec(), Some(Duration::from_secs(60)))
        .await
        .unwrap();
    source
        .put("x:gone", b"g".to_vec(), Some(Duration::from_millis(1)))
        .await
        .unwrap();
    for (ix, m) in [("ix", "2"), ("ix", "1"), ("iy", "a:b")] {
        source.index_add(ix, m).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!source.is_empty().await.unwrap());

    let exported = export_all(source).await;
    let now = super::now_millis();
    let records: Vec<&super::RawRecord> = exported
        .iter()
        .filter_map(|e| match e {
            super::Entry::Record(r) => Some(r),
            _ => None,
        })
        .collect();
    let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["x:a", "x:b"], "live records only");
    assert_eq!((records[0].version, records[0].expires_at_ms), (1, 0));
    assert_eq!(records[1].version, 2);
    assert!(
        (now + 55_000..=now + 60_000).contains(&records[1].expires_at_ms),
        "the expiry is absolute: {} (now {now})",
        records[1].expires_at_ms
    );
    let members: Vec<(&str, &str)> = exported
        .iter()
        .filter_map(|e| match e {
            super::Entry::IndexMember { index, member } => Some((index.as_str(), member.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(members, [("ix", "1"), ("ix", "2"), ("iy", "a:b")]);

    // A record of the same key is replaced; an expired one is not written.
    target.put("x:a", b"older".to_vec(), None).await.unwrap();
    let mut entries = exported.clone();
    entries.push(super::Entry::Record(super::RawRecord {
        key: "x:expired".into(),
        value: b"e".to_vec(),
        version: 1,
        expires_at_ms: 1,
    }));
    target.import(entries).await.unwrap();
    for key in ["x:a", "x:b"] {
        assert_eq!(target.get(key).await.unwrap(), source.get(key).await.unwrap(), "{key}");
    }
    assert_eq!(target.get("x:expired").await.unwrap(), None);
    assert_eq!(target.index_range("ix", None, 10).await.unwrap(), ["1", "2"]);
    let again = export_all(target).await;
    assert_eq!(again.len(), exported.len());
    for (a, b) in again.iter().zip(&exported) {
        match (a, b) {
            (super::Entry::Record(a), super::Entry::Record(b)) => {
                assert_eq!((&a.key, &a.value, a.version), (&b.key, &b.value, b.version));
                assert!(a.expires_at_ms.abs_diff(b.expires_at_ms) < 2_000, "{a:?} {b:?}");
            }
            (a, b) => assert_eq!(a, b),
        }
    }
    // The imported records are ordinary ones: a compare-and-swap on the restored version works.
    assert_eq!(
        target.compare_and_swap("x:b", 2, b"b3".to_vec(), None).await.unwrap(),
        CasOutcome::Written(3)
    );
}

/// Everything `store` exports, records sorted by key, then members by index and member.
pub async fn export_all(store: &dyn Store) -> Vec<super::Entry> {
    let mut out = Vec::new();
    store
        .export(&mut |e| {
            out.push(e);
            Ok(())
        })
        .await
        .unwrap();
    out.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    out
}

fn sort_key(e: &super::Entry) -> (u8, &str, &str) {
    match e {
        super::Entry::Record(r) => (0, r.key.as_str(), ""),
        super::Entry::IndexMember { index, member } => (1, index.as_str(), member.as_str()),
    }
}
