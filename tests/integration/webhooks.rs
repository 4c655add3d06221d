//! Webhooks through the real broker to a loopback receiver: every event type once per occurrence,
//! signed (checked by the receiver's own HMAC code and by the Standard Webhooks reference library
//! from PyPI), retried with the same id, kept across a restart, delivered once by two brokers,
//! and dead-lettered then re-sent.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::approval::{approval_page, approve_via_admin_link};
use crate::common::broker::{Broker, BrokerOptions, KEY_A, KEY_B, RETURN_A, Reserved, client};
use crate::common::flows::World;
use crate::common::redis::RedisServer;
use crate::common::scrape::{sample, scrape};
use crate::common::sim::{CONTOSO_TID, FABRIKAM_TID, Sim, standard_config};
use crate::common::webhook::{OTHER_SECRET, Receiver, SECRET, endpoints};

fn opts(receiver: &Receiver, window_secs: u64) -> BrokerOptions {
    BrokerOptions {
        configure: Some(endpoints(vec![receiver.url.clone()], &[SECRET], window_secs)),
        // Outages are not retried inside one call, so a test's single fault is one failed refresh.
        entra: "jwks_min_refetch_interval_secs = 300\nmax_retries = 0\ndefault_retry_after_secs = 1".into(),
        ..Default::default()
    }
}

/// Every delivery carries a signature the receiver's own HMAC code accepts, and `webhook-id` is
/// one per event: the same id never carries two different bodies.
fn assert_signed_and_consistent(receiver: &Receiver) {
    let mut bodies: HashMap<String, String> = HashMap::new();
    for d in receiver.deliveries() {
        assert!(d.signed_with(SECRET), "signature of {} verifies", d.id);
        assert!(d.id.starts_with("evt_"), "{}", d.id);
        let ts: i64 = d.timestamp.parse().expect("unix seconds");
        assert!(
            (consent_broker::clock::now_unix() - ts).abs() < 120,
            "a current timestamp"
        );
        assert!(
            !d.body.contains("access_token") && !d.body.contains("refresh_token"),
            "no token: {}",
            d.body
        );
        if let Some(before) = bodies.insert(d.id.clone(), d.body.clone()) {
            assert_eq!(before, d.body, "a retry sends the same body");
        }
    }
}

/// Verifies every acknowledged delivery with the `standardwebhooks` package, as a connector
/// developer's Python backend would.
fn verify_with_reference_library(receiver: &Receiver, secret: &str) {
    let python = std::env::var("WEBHOOK_VERIFIER_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/webhook-verifier/bin/python").to_string());
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} is missing: run scripts/test, which installs the standardwebhooks package from PyPI into it"
    );
    let deliveries: Vec<Value> = receiver
        .deliveries()
        .iter()
        .map(|d| {
            json!({
                "body": d.body,
                "headers": {"webhook-id": d.id, "webhook-timestamp": d.timestamp, "webhook-signature": d.signature},
            })
        })
        .collect();
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
secret, deliveries = sys.argv[1], json.load(sys.stdin)
wh = Webhook(secret)
for d in deliveries:
    event = wh.verify(d["body"], d["headers"])
    assert event["type"] and event["timestamp"] and isinstance(event["data"], dict), event
try:
    bad = dict(deliveries[0]["headers"])
    wh.verify(deliveries[0]["body"] + " ", bad)
except Exception:
    print("verified", len(deliveries))
else:
    sys.exit("a changed body verified")
"#;
    let mut child = std::process::Command::new(&python)
        .args(["-c", script, secret])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python runs");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&deliveries).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "standardwebhooks refused a delivery: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("verified {}", deliveries.len())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_is_delivered_once_per_occurrence_and_verifies_with_the_reference_library() {
    let receiver = Receiver::start().await;
    let w = World::with(|_| {}, opts(&receiver, 60)).await;

    // connection.created, with the connector's state echoed.
    let s = w
        .session(json!({"connector": "files", "end_user": "u-alice", "state": "st-1", "return_url": RETURN_A, "login_hint": w.upn("alice")}))
        .await;
    let landing = w.follow(s["connect_url"].as_str().unwrap()).await;
    let code =
        crate::common::flows::param(landing.location.as_ref().expect("back to the connector"), "handoff").unwrap();
    let (_, redeemed) = w.redeem(&code).await;
    let alice = redeemed["connection_id"].as_str().unwrap().to_string();
    let created = receiver.wait_for("connection.created", 1, 10).await;
    let data = &created[0].json()["data"];
    assert_eq!(data["connection_id"], alice.as_str());
    assert_eq!(data["connector"], "files");
    assert_eq!(data["tenant_id"], CONTOSO_TID);
    assert_eq!(data["end_user"], "u-alice");
    assert_eq!(data["state"], "st-1");
    assert_eq!(data["user"]["oid"], w.oid("alice").as_str());

    // connection.reauth_required: the grant is revoked and a refresh finds it gone.
    w.sim.revoke_user(&w.upn("alice")).await;
    let (status, _) = w.token(&alice, Some(7_200)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let reauth = receiver.wait_for("connection.reauth_required", 1, 10).await;
    let data = &reauth[0].json()["data"];
    assert_eq!(data["connection_id"], alice.as_str());
    assert_eq!(data["category"], "reauth_required");
    assert_eq!(data["aadsts"], 50173);
    let reconnect = data["reconnect_url"].as_str().expect("a reconnect URL");
    assert!(
        reconnect.starts_with(&format!("{}/v1/connect/", w.broker.url)),
        "{reconnect}"
    );
    // Asking again flips nothing anew: no second event.
    let (status, _) = w.token(&alice, Some(7_200)).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // connection.recovered: a refresh fails while Entra is down, then succeeds.
    let carol = w.connect(&w.upn("carol")).await;
    w.sim
        .fault(json!({"endpoint": "token", "grant_type": "refresh_token", "kind": "unavailable", "count": 1}))
        .await;
    let (status, _) = w.token(&carol, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK, "the stored token while Entra is down");
    let (_, meta) = w
        .api(Method::GET, &format!("/v1/connections/{carol}"), Some(KEY_A), None)
        .await;
    assert_eq!(meta["status"], "active", "a transient failure flips nothing");
    assert_eq!(meta["transient_failure"]["category"], "transient", "{meta}");
    let (status, _) = w.token(&carol, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK);
    let recovered = receiver.wait_for("connection.recovered", 1, 10).await;
    assert_eq!(
        recovered[0].json()["data"],
        json!({"connection_id": carol, "connector": "files", "tenant_id": CONTOSO_TID})
    );
    let (_, meta) = w
        .api(Method::GET, &format!("/v1/connections/{carol}"), Some(KEY_A), None)
        .await;
    assert!(meta["transient_failure"].is_null(), "{meta}");
    // Refreshing again is no recovery.
    let (status, _) = w.token(&carol, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK);

    // connection.deleted.
    let (status, _) = w
        .api(Method::DELETE, &format!("/v1/connections/{carol}"), Some(KEY_A), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let deleted = receiver.wait_for("connection.deleted", 1, 10).await;
    assert_eq!(deleted[0].json()["data"]["connection_id"], carol.as_str());
    let (status, _) = w
        .api(Method::DELETE, &format!("/v1/connections/{carol}"), Some(KEY_A), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a second delete raises nothing");

    // approval.pending, once for the tenant however many users wait, then approval.granted.
    let (page, html) = approval_page(&w, "frank").await;
    approval_page(&w, "frank").await;
    let pending = receiver.wait_for("approval.pending", 1, 10).await;
    let data = &pending[0].json()["data"];
    assert_eq!(data["tenant_id"], FABRIKAM_TID);
    assert_eq!(data["tenant_domain"], "fabrikam.onmicrosoft.com");
    assert_eq!(data["approval_url"], page.as_str());
    assert_eq!(data["category"], "admin_approval_required");
    let (code, _) = approve_via_admin_link(&w, &html, |u| u).await;
    assert_eq!(code, StatusCode::OK);
    let granted = receiver.wait_for("approval.granted", 1, 10).await;
    let data = &granted[0].json()["data"];
    assert_eq!(data["tenant_id"], FABRIKAM_TID);
    assert!(data["scopes"].as_array().is_some_and(|s| !s.is_empty()), "{data}");

    // Settle, then count: exactly one of each, each acknowledged once.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for kind in [
        "connection.created",
        "connection.reauth_required",
        "connection.recovered",
        "connection.deleted",
        "approval.pending",
        "approval.granted",
    ] {
        let n = if kind == "connection.created" { 2 } else { 1 };
        assert_eq!(receiver.acknowledged(kind).len(), n, "{kind}");
    }
    assert_signed_and_consistent(&receiver);
    verify_with_reference_library(&receiver, SECRET);
    let text = scrape(&w.http, &w.broker.url).await;
    assert_eq!(
        sample(
            &text,
            "consent_broker_webhook_deliveries_total",
            "connector=\"files\",outcome=\"delivered\""
        ),
        receiver.deliveries().len() as f64
    );
    assert!(
        !w.broker.logs().contains(SECRET.trim_start_matches("whsec_")),
        "no secret in logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_fails_twice_gets_the_event_with_the_same_id_and_both_rotation_signatures() {
    let receiver = Receiver::start().await;
    receiver.answer_next(&[503, 500]);
    let mut o = opts(&receiver, 60);
    o.configure = Some(endpoints(vec![receiver.url.clone()], &[SECRET, OTHER_SECRET], 60));
    let w = World::with(|_| {}, o).await;
    w.connect(&w.upn("alice")).await;
    receiver.wait_for("connection.created", 1, 15).await;
    let all = receiver.deliveries();
    assert_eq!(
        all.iter().map(|d| d.answered).collect::<Vec<_>>(),
        [503, 500, 204],
        "retried until acknowledged, then not again"
    );
    assert!(all.iter().all(|d| d.id == all[0].id), "one webhook-id on every attempt");
    for d in &all {
        assert_eq!(d.signature.split(' ').count(), 2, "one signature per secret");
        assert!(d.signed_with(SECRET) && d.signed_with(OTHER_SECRET));
    }
    let gap = |a: &crate::common::webhook::Delivery, b: &crate::common::webhook::Delivery| {
        b.timestamp.parse::<i64>().unwrap() - a.timestamp.parse::<i64>().unwrap()
    };
    assert!(
        gap(&all[0], &all[1]) >= 1 && gap(&all[1], &all[2]) >= 2,
        "backoff doubles"
    );
    verify_with_reference_library(&receiver, OTHER_SECRET);
    let text = scrape(&w.http, &w.broker.url).await;
    assert_eq!(
        sample(
            &text,
            "consent_broker_webhook_deliveries_total",
            "connector=\"files\",outcome=\"failed\""
        ),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_not_yet_delivered_are_delivered_by_the_restarted_broker() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "backend = \"embedded\"\npath = \"{}\"",
        dir.path().join("wh.redb").display()
    );
    let receiver = Receiver::start().await;
    // Down for the first broker's whole life.
    receiver.answer_next(&[503; 100]);
    let reserved = Reserved::new();
    let url = reserved.url.clone();
    let config = standard_config(&[&reserved.callback()]);
    let sim = Sim::start(config.clone()).await;
    let mut first = opts(&receiver, 600);
    first.store = store.clone();
    let broker = Broker::start(reserved, sim.base_url(), first).await;
    let w = World {
        sim,
        broker,
        http: client(),
        sim_config: config,
    };
    let conn = w.connect(&w.upn("alice")).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(receiver.acknowledged("connection.created").is_empty());
    let failed_ids: Vec<String> = receiver.deliveries().iter().map(|d| d.id.clone()).collect();
    assert!(!failed_ids.is_empty(), "the first broker tried");
    let World { sim, broker, .. } = w;
    broker.stop().await;

    // The endpoint is back; a new broker on the same store delivers the event the first never
    // got through.
    receiver.clear_script();
    let mut second = opts(&receiver, 600);
    second.store = store;
    let broker = Broker::start(Reserved::at(&url), sim.base_url(), second).await;
    let delivered = receiver.wait_for("connection.created", 1, 20).await;
    assert_eq!(delivered[0].id, failed_ids[0], "the same event");
    assert_eq!(delivered[0].json()["data"]["connection_id"], conn.as_str());
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_on_one_redis_deliver_each_event_once() {
    let redis = RedisServer::start();
    let receiver = Receiver::start().await;
    let reserved = [Reserved::new(), Reserved::new()];
    let callbacks: Vec<String> = reserved.iter().map(Reserved::callback).collect();
    let config = standard_config(&callbacks.iter().map(String::as_str).collect::<Vec<_>>());
    let sim = Sim::start(config.clone()).await;
    let [first, second] = reserved;
    let with_store = || {
        let mut o = opts(&receiver, 60);
        o.store = redis.store_section();
        o
    };
    let broker = Broker::start(first, sim.base_url(), with_store()).await;
    let other = Broker::start(second, sim.base_url(), with_store()).await;
    let w = World {
        sim,
        broker,
        http: client(),
        sim_config: config,
    };
    // Connected through one broker, deleted through the other, twice over.
    let mut conns = Vec::new();
    for who in ["alice", "carol", "alice", "carol"] {
        let conn = w.connect(&w.upn(who)).await;
        let r = w
            .http
            .delete(format!("{}/v1/connections/{conn}", other.url))
            .bearer_auth(KEY_A)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        conns.push(conn);
    }
    receiver.wait_for("connection.created", conns.len(), 15).await;
    receiver.wait_for("connection.deleted", conns.len(), 15).await;
    // Both brokers looked for due events every second meanwhile; give them a few more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for d in receiver.deliveries() {
        *per_id.entry(d.id).or_default() += 1;
    }
    assert_eq!(per_id.len(), 2 * conns.len(), "one event per occurrence");
    assert!(per_id.values().all(|n| *n == 1), "each delivered once: {per_id:?}");
    assert_signed_and_consistent(&receiver);
    other.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_past_its_retry_window_is_a_dead_letter_that_can_be_listed_and_resent() {
    let receiver = Receiver::start().await;
    receiver.answer_next(&[503; 3]);
    // Retries after 1 s and 2 s; the third failure falls past the 3 s window.
    let w = World::with(|_| {}, opts(&receiver, 3)).await;
    w.connect(&w.upn("alice")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let listed = loop {
        let (status, body) = w.api(Method::GET, "/v1/webhooks/dead-letters", Some(KEY_A), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if !body["dead_letters"].as_array().unwrap().is_empty() {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no dead letter: {:?}",
            receiver.deliveries()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let letter = &listed["dead_letters"][0];
    assert_eq!(letter["type"], "connection.created");
    assert_eq!(letter["deliveries"][0]["state"], "dead");
    assert_eq!(letter["deliveries"][0]["last_error"], "HTTP 503");
    assert!(listed["next_cursor"].is_null());
    let event_id = letter["event_id"].as_str().unwrap().to_string();
    let text = scrape(&w.http, &w.broker.url).await;
    assert_eq!(
        sample(
            &text,
            "consent_broker_webhook_dead_letters_total",
            "connector=\"files\""
        ),
        1.0
    );
    assert!(receiver.acknowledged("connection.created").is_empty());

    // Another connector sees none of it and cannot re-send it; hostile ids and cursors are refused.
    let (status, body) = w.api(Method::GET, "/v1/webhooks/dead-letters", Some(KEY_B), None).await;
    assert_eq!(
        (status, body["dead_letters"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0))
    );
    let retry = format!("/v1/webhooks/dead-letters/{event_id}/retry");
    let (status, _) = w.api(Method::POST, &retry, Some(KEY_B), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = w.api(Method::POST, &retry, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for bad in ["evt_nope", "..%2F..%2Fx", &"e".repeat(300)] {
        let (status, body) = w
            .api(
                Method::POST,
                &format!("/v1/webhooks/dead-letters/{bad}/retry"),
                Some(KEY_A),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}: {body}");
    }
    for (query, code) in [
        ("?cursor=%%%", "invalid_cursor"),
        ("?limit=0", "invalid_parameter"),
        ("?x=1", "invalid_query"),
    ] {
        let (status, body) = w
            .api(
                Method::GET,
                &format!("/v1/webhooks/dead-letters{query}"),
                Some(KEY_A),
                None,
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{query}"
        );
    }

    // Re-sent: the same webhook-id arrives, and the letter is gone.
    let (status, body) = w.api(Method::POST, &retry, Some(KEY_A), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "queued");
    let delivered = receiver.wait_for("connection.created", 1, 10).await;
    assert_eq!(delivered[0].id, event_id);
    let (_, body) = w.api(Method::GET, "/v1/webhooks/dead-letters", Some(KEY_A), None).await;
    assert!(body["dead_letters"].as_array().unwrap().is_empty(), "{body}");
    let (status, _) = w.api(Method::POST, &retry, Some(KEY_A), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a letter is re-sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_does_not_answer_in_time_is_retried() {
    let receiver = Receiver::start().await;
    receiver.answer_next(&[0]);
    let mut o = opts(&receiver, 60);
    let base = endpoints(vec![receiver.url.clone()], &[SECRET], 60);
    o.configure = Some(std::sync::Arc::new(move |c: &mut consent_broker::Config| {
        base(c);
        c.webhooks.timeout = Duration::from_secs(1);
    }));
    let w = World::with(|_| {}, o).await;
    let started = std::time::Instant::now();
    w.connect(&w.upn("alice")).await;
    let delivered = receiver.wait_for("connection.created", 1, 15).await;
    assert!(
        started.elapsed() < crate::common::webhook::HANG + Duration::from_secs(2),
        "retried after the 1 s timeout, not after the receiver finally answered"
    );
    let all = receiver.deliveries();
    assert!(all.len() >= 2 && all.iter().all(|d| d.id == delivered[0].id), "{all:?}");
    let text = scrape(&w.http, &w.broker.url).await;
    assert!(
        sample(
            &text,
            "consent_broker_webhook_deliveries_total",
            "connector=\"files\",outcome=\"failed\""
        ) >= 1.0
    );
    assert!(w.broker.logs().contains("no answer in time"), "the log says why");
}
