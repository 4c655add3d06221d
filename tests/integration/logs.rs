//! Logs: a request id on every line of a request (taken from the caller or generated, returned in
//! `x-request-id`), and Entra's trace and correlation ids on lines about failed Entra calls.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::json;

use crate::common::broker::{KEY_A, captured_logs};
use crate::common::flows::World;

/// The captured log lines that carry `request_id=<id>`.
fn lines_of(id: &str) -> Vec<String> {
    let needle = format!("request_id={id}");
    captured_logs()
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

/// Forces a refresh of `conn` (min_ttl beyond an access token's life), sending `x-request-id: id`.
async fn refresh_with_request_id(w: &World, conn: &str, id: &str) -> reqwest::Response {
    w.http
        .get(format!("{}/v1/connections/{conn}/token?min_ttl=7200", w.broker.url))
        .bearer_auth(KEY_A)
        .header("x-request-id", id)
        .send()
        .await
        .unwrap()
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
    let lines = lines_of(id);
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
    assert!(!lines_of("0af7651916cd43dd8448eb211c80319c").is_empty());

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
    let lines = lines_of(id);
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
    let lines = lines_of(id);
    let failed = lines
        .iter()
        .find(|l| l.contains("refresh failed; Entra unavailable"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_names_entra_ids(failed);
}
