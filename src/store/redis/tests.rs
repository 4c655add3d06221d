//! Unit tests of the Redis backend that need no server (the server tests are
//! `tests/integration/redis_store.rs`).

use super::*;
use ::redis::Value;

#[test]
fn ttls_become_pexpire_arguments() {
    assert_eq!(ttl_arg(None), -1);
    assert_eq!(ttl_arg(Some(Duration::ZERO)), 0);
    assert_eq!(ttl_arg(Some(Duration::from_millis(30))), 30);
    assert_eq!(ttl_arg(Some(Duration::from_secs(600))), 600_000);
    assert_eq!(ttl_arg(Some(Duration::MAX)), MAX_TTL_MS);
}

#[test]
fn passwords_are_scrubbed_from_messages() {
    let secrets = passwords(&[
        "redis://user:s3cr%40t@h:1".to_string(),
        "redis://h:2".to_string(),
        "rediss://:other@h:3/0".to_string(),
    ]);
    assert_eq!(secrets, ["s3cr%40t", "s3cr@t", "other"]);
    assert_eq!(
        scrub("AUTH s3cr@t / s3cr%40t / other failed", &secrets),
        "AUTH [redacted] / [redacted] / [redacted] failed"
    );
}

#[test]
fn a_redis_error_keeps_its_kind_as_the_source_without_the_password() {
    let secrets = passwords(&["redis://:s3cr%40t@h:1".to_string()]);
    let client_error = RedisError::from((
        ErrorKind::AuthenticationFailed,
        "refused",
        "redis://:s3cr@t@h:1 said s3cr%40t is wrong".to_string(),
    ));
    assert!(
        client_error.to_string().contains("s3cr@t"),
        "the test's error holds the password"
    );
    let err = failed("redis AUTH failed", &client_error, &secrets);
    let mut texts = vec![err.to_string()];
    let mut source = std::error::Error::source(&err);
    let failure = source
        .and_then(|s| s.downcast_ref::<RedisFailure>())
        .expect("the scrubbed client error is the source");
    assert_eq!(failure.kind(), ErrorKind::AuthenticationFailed);
    while let Some(s) = source {
        texts.push(s.to_string());
        source = s.source();
    }
    assert_eq!(texts.len(), 2, "the chain ends at the scrubbed error: {texts:?}");
    for text in &texts {
        assert!(text.contains("refused") && text.contains("[redacted]"), "{text}");
        assert!(!text.contains("s3cr@t") && !text.contains("s3cr%40t"), "{text}");
    }
    assert!(
        texts[0].starts_with("store backend error: redis AUTH failed: "),
        "{}",
        texts[0]
    );
}

#[test]
fn only_connection_failures_send_sentinel_mode_back_to_the_sentinels() {
    assert!(master_may_have_changed(&RedisError::from((
        ErrorKind::Io,
        "broken pipe"
    ))));
    // The error an unconfirmed WAIT becomes: the replicas lag, the master is fine.
    assert!(!master_may_have_changed(&RedisError::from((
        ErrorKind::Client,
        "write not confirmed by enough replicas"
    ))));
    assert!(!master_may_have_changed(&RedisError::from((
        ErrorKind::UnexpectedReturnType,
        "not an integer"
    ))));
}

#[test]
fn scan_patterns_and_cursors() {
    assert_eq!(glob_escape("cb:"), "cb:");
    assert_eq!(glob_escape("a*b?[c]\\^-"), "a\\*b\\?\\[c\\]\\\\\\^\\-");
    assert_eq!(parse_cluster_cursor("5461:17"), Some((5461, 17)));
    assert_eq!(parse_cluster_cursor("17"), None);
    assert_eq!(parse_cluster_cursor("x:1"), None);
}

#[test]
fn masters_are_named_by_their_lowest_slot() {
    let node = |host: &str, port: i64, id: &str| {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(id.as_bytes().to_vec()),
        ])
    };
    let range = |start: i64, end: i64, master: Value| Value::Array(vec![Value::Int(start), Value::Int(end), master]);
    let reply = Value::Array(vec![
        range(10_923, 16_383, node("127.0.0.1", 7002, "c")),
        range(0, 5_460, node("127.0.0.1", 7000, "a")),
        range(5_461, 10_000, node("127.0.0.1", 7001, "b")),
        range(10_001, 10_922, node("127.0.0.1", 7000, "a")),
    ]);
    assert_eq!(lowest_slot_per_master(&reply), Some(vec![0, 5_461, 10_923]));
    assert_eq!(lowest_slot_per_master(&Value::Int(1)), None);
}

#[test]
fn scripts_touch_only_their_one_key() {
    // Cluster safety: a script may only use KEYS[1] (never build key names itself).
    for script in [
        include_str!("put.lua"),
        include_str!("insert_new.lua"),
        include_str!("take.lua"),
        include_str!("compare_and_swap.lua"),
        include_str!("rewrite.lua"),
    ] {
        assert!(!script.contains("KEYS[2]"), "{script}");
        for call in script.split("redis.call(").skip(1) {
            let args = call.split(')').next().unwrap_or_default();
            assert!(args.contains("KEYS[1]"), "every call names KEYS[1]: {args}");
        }
    }
}

#[test]
fn the_event_script_touches_only_its_two_keys() {
    // Cluster safety as above: the keys are the two it is given, so the caller's slot check holds.
    let script = include_str!("write_with_event.lua");
    assert!(!script.contains("KEYS[3]"), "{script}");
    for call in script.split("redis.call(").skip(1) {
        let args = call.split(')').next().unwrap_or_default();
        // `key` is the parameter of the script's `expire` helper, called with KEYS[1] or KEYS[2].
        let key = args.split(',').nth(1).map(str::trim);
        assert!(
            args.contains("KEYS[1]") || args.contains("KEYS[2]") || key == Some("key"),
            "every call names KEYS[1] or KEYS[2]: {args}"
        );
    }
}

#[test]
fn slots_follow_the_hash_tag() {
    assert!(event::same_slot("cb:conn:{c1}", "cb:event:{c1}:0001"));
    assert!(!event::same_slot("cb:conn:{c1}", "cb:conn:{c2}"));
    // Without a tag the whole key is hashed.
    assert!(!event::same_slot("cb:a", "cb:b"));
}
