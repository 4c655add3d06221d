//! Logs: a request id on every line of a request (taken from the caller or generated, returned in
//! `x-request-id`), and Entra's trace and correlation ids on lines about failed Entra calls.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::json;

use crate::common::broker::{Broker, BrokerOptions, KEY_A, Reserved};
use crate::common::flows::World;

/// The lines `broker` logged that carry `request_id=<id>`.
fn lines_of(broker: &Broker, id: &str) -> Vec<String> {
    let needle = format!("request_id={id}");
    broker
        .logs()
        .lines()
        .filter(|l| l.split([' ', '{', '}', ':']).any(|w| w == needle))
        .map(str::to_string)
        .collect()
}

/// Asserts a log line carries non-empty `trace_id` and `correlation_id` fields.
fn assert_names_entra_ids(line: &str) {
    for field in ["trace_id", "correlation_id"] {
        assert!(
            line.contains(&format!("{field}=")) && !line.contains(&format!("{field}=\"\"")),
            "{field} in {line}"
        );
    }
}

/// A token call on `conn` with `query` (empty, or `?...`), sending `x-request-id: id`.
async fn token_request(w: &World, conn: &str, query: &str, id: &str) -> reqwest::Response {
    w.http
        .get(format!("{}/v1/connections/{conn}/token{query}", w.broker.url))
        .bearer_auth(KEY_A)
        .header("x-request-id", id)
        .send()
        .await
        .unwrap()
}

/// Forces a refresh of `conn` (min_ttl beyond an access token's life), sending `x-request-id: id`.
async fn refresh_with_request_id(w: &World, conn: &str, id: &str) -> reqwest::Response {
    token_request(w, conn, "?min_ttl=7200", id).await
}

/// A client that sends `x-request-id: <id>` on every request.
fn client_with_request_id(id: &str) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    headers.insert("x-request-id", HeaderValue::from_str(id).unwrap());
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .default_headers(headers)
        .build()
        .unwrap()
}

#[tokio::test]
async fn every_line_of_a_request_names_its_request_id() {
    let w = World::new().await;
    let conn = w.connect(&w.upn("alice")).await;

    let id = "it-logs-refresh-7f3a";
    let r = refresh_with_request_id(&w, &conn, id).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-request-id"], id, "the caller's id comes back");
    let lines = lines_of(&w.broker, id);
    assert!(
        lines.iter().any(|l| l.contains("access token refreshed")),
        "the handler's own line carries the id: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("request answered") && l.contains("status=200")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.contains("route=/v1/connections/{connection_id}/token")
                && !l.contains(&format!("/v1/connections/{conn}"))),
        "lines name the route template, not the path: {lines:#?}"
    );

    // A W3C traceparent's trace id is adopted when there is no x-request-id.
    let r = w
        .http
        .get(format!("{}/v1/connections/{conn}", w.broker.url))
        .bearer_auth(KEY_A)
        .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "0af7651916cd43dd8448eb211c80319c");
    assert!(!lines_of(&w.broker, "0af7651916cd43dd8448eb211c80319c").is_empty());

    // Without either, the broker makes one up; a header that could forge log lines is replaced.
    for sent in [None, Some("two words"), Some("x\"y")] {
        let mut req = w.http.get(format!("{}/healthz", w.broker.url));
        if let Some(v) = sent {
            req = req.header("x-request-id", v);
        }
        let r = req.send().await.unwrap();
        let got = r.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(
            got.len() == 32 && got.bytes().all(|b| b.is_ascii_hexdigit()),
            "{sent:?} → {got}"
        );
    }
}

#[tokio::test]
async fn failed_entra_calls_are_logged_with_entra_trace_and_correlation_ids() {
    let mut w = World::new().await;
    let conn = w.connect(&w.upn("alice")).await;

    // A sign-in Entra refuses (Frank's tenant requires admin approval, AADSTS90094).
    let id = "it-logs-signin-frank";
    w.http = client_with_request_id(id);
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("frank")}))
        .await;
    w.follow(s["connect_url"].as_str().unwrap()).await;
    let lines = lines_of(&w.broker, id);
    let failed = lines
        .iter()
        .find(|l| l.contains("sign-in failed at Entra"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_names_entra_ids(failed);

    // A refresh Entra cannot answer (503 AADSTS90033, every attempt).
    w.sim.fault(json!({"endpoint": "token", "kind": "unavailable"})).await;
    let id = "it-logs-refresh-503";
    let r = refresh_with_request_id(&w, &conn, id).await;
    assert_eq!(r.status(), StatusCode::OK, "the stored token is still valid");
    let lines = lines_of(&w.broker, id);
    let failed = lines
        .iter()
        .find(|l| l.contains("refresh failed; Entra unavailable"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_names_entra_ids(failed);
}

#[tokio::test]
async fn each_broker_captures_only_its_own_lines() {
    let w = World::new().await;
    let conn = w.connect(&w.upn("alice")).await;
    // A second broker in the same test, on the same runtime: its tasks interleave with the first's.
    let other = Broker::start(Reserved::new(), w.sim.base_url(), BrokerOptions::default()).await;

    let (mine, theirs) = ("it-logs-mine-51c2", "it-logs-theirs-9d0e");
    let (r, o) = tokio::join!(
        refresh_with_request_id(&w, &conn, mine),
        w.http
            .get(format!("{}/v1/connections/{conn}", other.url))
            .bearer_auth(KEY_A)
            .header("x-request-id", theirs)
            .send(),
    );
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        o.unwrap().status(),
        StatusCode::NOT_FOUND,
        "the other broker has its own store"
    );

    // The refresh runs on a task of its own, and each request on its connection's task: their
    // lines still reach their broker's capture, and only it.
    let mine_lines = lines_of(&w.broker, mine);
    assert!(
        mine_lines.iter().any(|l| l.contains("access token refreshed")),
        "{mine_lines:#?}"
    );
    assert!(lines_of(&w.broker, theirs).is_empty());
    let theirs_lines = lines_of(&other, theirs);
    assert!(
        theirs_lines
            .iter()
            .any(|l| l.contains("request answered") && l.contains("status=404")),
        "{theirs_lines:#?}"
    );
    assert!(lines_of(&other, mine).is_empty());
    assert!(
        !other.logs().contains(&conn),
        "the sign-in was logged by the first broker only"
    );
    // Start-up lines belong to the broker that started.
    for broker in [&w.broker, &other] {
        assert_eq!(broker.logs().matches("store values are encrypted at rest").count(), 1);
    }
    other.stop().await;
}

/// The level of the access line ("request answered") among `lines`.
fn access_level(lines: &[String]) -> &'static str {
    let line = lines
        .iter()
        .find(|l| l.contains("request answered"))
        .unwrap_or_else(|| panic!("no access line: {lines:#?}"));
    ["DEBUG", "INFO", "WARN"]
        .into_iter()
        .find(|level| line.split_whitespace().any(|w| w == *level))
        .unwrap_or_else(|| panic!("no level in {line}"))
}

/// A token call on `conn` sending `x-request-id: id`; its status.
async fn token_call(w: &World, conn: &str, id: &str) -> StatusCode {
    token_request(w, conn, "", id).await.status()
}

#[tokio::test]
async fn successful_token_calls_log_their_access_line_at_debug_and_failed_ones_at_info() {
    let w = World::new().await;
    let conn = w.connect(&w.upn("alice")).await;
    assert_eq!(token_call(&w, &conn, "tok-ok-1").await, StatusCode::OK);
    assert_eq!(token_call(&w, &conn, "tok-ok-2").await, StatusCode::OK, "a cache hit");
    assert_eq!(token_call(&w, "conn_missing", "tok-404").await, StatusCode::NOT_FOUND);
    assert_eq!(access_level(&lines_of(&w.broker, "tok-ok-1")), "DEBUG");
    assert_eq!(access_level(&lines_of(&w.broker, "tok-ok-2")), "DEBUG");
    assert_eq!(access_level(&lines_of(&w.broker, "tok-404")), "INFO");

    // `[log] successful_token_calls = true` puts them back at info.
    let loud = World::with(
        |_| {},
        BrokerOptions {
            configure: Some(std::sync::Arc::new(|c| c.log.successful_token_calls = true)),
            ..Default::default()
        },
    )
    .await;
    let conn = loud.connect(&loud.upn("alice")).await;
    assert_eq!(token_call(&loud, &conn, "tok-loud").await, StatusCode::OK);
    assert_eq!(access_level(&lines_of(&loud.broker, "tok-loud")), "INFO");
}
