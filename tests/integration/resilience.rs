//! Calls to Entra that survive Entra, driven by the simulator's fault injection: transient
//! failures are retried (bounded, Retry-After honoured), other errors never are, and a failing
//! authority opens its circuit so callers get fast 503s instead of piled-up requests.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::broker::BrokerOptions;
use crate::common::flows::World;
use crate::common::scrape::{sample, scrape};

/// The value of `name{labels}` on the broker's /metrics.
async fn metric(w: &World, name_and_labels: &str) -> f64 {
    let (name, labels) = name_and_labels
        .split_once('{')
        .map_or((name_and_labels, ""), |(n, l)| (n, l.trim_end_matches('}')));
    sample(&scrape(&w.http, &w.broker.url).await, name, labels)
}

fn entra_opts(entra: &str) -> BrokerOptions {
    BrokerOptions {
        entra: format!("jwks_min_refetch_interval_secs = 300\n{entra}"),
        ..Default::default()
    }
}

const TOKEN_UNAVAILABLE: &str = "consent_broker_entra_requests_total{endpoint=\"token\",result=\"unavailable\"}";
const TOKEN_THROTTLED: &str = "consent_broker_entra_requests_total{endpoint=\"token\",result=\"throttled\"}";
const TOKEN_REJECTED: &str = "consent_broker_entra_requests_total{endpoint=\"token\",result=\"rejected\"}";
const TOKEN_SHORT: &str = "consent_broker_entra_requests_total{endpoint=\"token\",result=\"short_circuited\"}";
const TOKEN_RETRIES: &str = "consent_broker_entra_retries_total{endpoint=\"token\"}";

#[tokio::test]
async fn transient_failures_are_retried_and_other_errors_are_not() {
    let w = World::with(
        |_| {},
        entra_opts("max_retries = 2\nretry_base_delay_ms = 10\nretry_max_delay_ms = 1500"),
    )
    .await;
    let alice = w.upn("alice");
    let conn = w.connect(&alice).await;
    w.sim.reset_stats().await;

    // Two 503s (AADSTS90033), then Entra answers: the caller never notices.
    w.sim
        .fault(json!({"endpoint": "token", "grant_type": "refresh_token", "kind": "unavailable", "count": 2}))
        .await;
    let (status, body) = w.token(&conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        w.sim.token_grants("refresh_token").await,
        3,
        "two failures and the retry that worked"
    );
    assert_eq!(metric(&w, TOKEN_UNAVAILABLE).await, 2.0);
    assert_eq!(metric(&w, TOKEN_RETRIES).await, 2.0);

    // A 429 whose Retry-After (1 s) fits within retry_max_delay_ms is waited out.
    w.sim
        .fault(json!({"endpoint": "token", "grant_type": "refresh_token", "kind": "throttle", "retry_after_secs": 1, "count": 1}))
        .await;
    assert_eq!(w.token(&conn, Some(7_200)).await.0, StatusCode::OK);
    assert_eq!(metric(&w, TOKEN_THROTTLED).await, 1.0);
    assert_eq!(metric(&w, TOKEN_RETRIES).await, 3.0);

    // A revoked grant (invalid_grant) is final: one call, no retry.
    w.sim.reset_stats().await;
    w.sim.revoke_user(&alice).await;
    assert_eq!(w.token(&conn, Some(7_200)).await.0, StatusCode::CONFLICT);
    assert_eq!(w.sim.token_grants("refresh_token").await, 1);
    assert_eq!(metric(&w, TOKEN_REJECTED).await, 1.0);
    assert_eq!(metric(&w, TOKEN_RETRIES).await, 3.0);
}

#[tokio::test]
async fn a_long_retry_after_is_passed_to_the_caller_not_waited_out() {
    let w = World::with(|_| {}, entra_opts("max_retries = 3\nretry_max_delay_ms = 2000")).await;
    w.sim
        .fault(json!({"endpoint": "token", "grant_type": "authorization_code", "kind": "throttle", "retry_after_secs": 30}))
        .await;
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("alice")}))
        .await;
    let landing = w.follow(s["connect_url"].as_str().unwrap()).await;
    assert_eq!(landing.status, StatusCode::SERVICE_UNAVAILABLE, "{}", landing.body);
    assert_eq!(landing.retry_after.as_deref(), Some("30"), "Entra's own Retry-After");
    assert_eq!(w.sim.token_grants("authorization_code").await, 1, "not retried");
    assert_eq!(metric(&w, TOKEN_RETRIES).await, 0.0);
}

#[tokio::test]
async fn a_failing_authority_opens_the_circuit_and_recovers() {
    let w = World::with(
        |_| {},
        entra_opts("max_retries = 0\ncircuit_failure_threshold = 2\ncircuit_open_secs = 3"),
    )
    .await;
    let conn = w.connect(&w.upn("alice")).await;
    let gauge = format!(
        "consent_broker_entra_circuit_open{{authority=\"{}/\"}}",
        w.sim.base_url().trim_end_matches('/')
    );
    assert_eq!(metric(&w, &gauge).await, 0.0, "closed, and present from the start");

    w.sim.fault(json!({"endpoint": "token", "kind": "server_error"})).await;
    w.sim.reset_stats().await;
    for _ in 0..2 {
        // Entra fails; the stored token is still valid, so callers are served.
        assert_eq!(w.token(&conn, Some(7_200)).await.0, StatusCode::OK);
    }
    assert_eq!(metric(&w, &gauge).await, 1.0, "two consecutive failures open it");
    assert_eq!(w.sim.token_grants("refresh_token").await, 2);

    // While open, nothing is sent: a sign-in gets a fast 503 page with Retry-After.
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("carol")}))
        .await;
    let landing = w.follow(s["connect_url"].as_str().unwrap()).await;
    assert_eq!(landing.status, StatusCode::SERVICE_UNAVAILABLE, "{}", landing.body);
    let wait: u64 = landing.retry_after.as_deref().unwrap_or_default().parse().unwrap();
    assert!((1..=3).contains(&wait), "the rest of the open period: {wait}");
    assert_eq!(w.token(&conn, Some(7_200)).await.0, StatusCode::OK, "stale but valid");
    assert_eq!(
        w.sim.token_grants("authorization_code").await + w.sim.token_grants("refresh_token").await,
        2,
        "the open circuit sent nothing"
    );
    assert_eq!(metric(&w, TOKEN_SHORT).await, 2.0);

    // Entra recovers; after the open period one trial call goes through and closes the circuit.
    w.sim.clear_faults().await;
    tokio::time::sleep(std::time::Duration::from_millis(3_100)).await;
    let (status, body) = w.token(&conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(w.sim.token_grants("refresh_token").await, 3);
    assert_eq!(metric(&w, &gauge).await, 0.0);
}
