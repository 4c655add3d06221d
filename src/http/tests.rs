//! Handler tests through `Router::oneshot`: the real router and state on the memory store, no
//! listener, no process, no Entra (these paths never reach it). The integration tests in
//! `tests/integration/` keep the end-to-end and wire-level checks.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt as _;

use crate::app::AppState;
use crate::config::Config;

const KEY: &str = "cbk_unit_test_key_0123456789abcdefghijklmnopqrstuv";

/// A broker state on the memory store with one connector `files` and [`KEY`].
async fn state(dir: &std::path::Path) -> AppState {
    let secret = dir.join("secret");
    let key = dir.join("key");
    std::fs::write(&secret, "s3cret").unwrap();
    std::fs::write(&key, "6b".repeat(32)).unwrap();
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:9"
plain_http = true

[entra]
authority = "http://127.0.0.1:9"

[store]
backend = "memory"

[[encryption.keys]]
id = "k1"
file = "{key}"

[[connectors]]
id = "files"
display_name = "Files"
client_id = "11111111-2222-4333-8444-555555555555"
client_secret_file = "{secret}"
scopes = ["Files.Read.All"]
api_key_hashes = ["{hash}"]
"#,
        key = key.display(),
        secret = secret.display(),
        hash = crate::crypto::api_key_hash(KEY),
    );
    let config = Config::from_toml_str(&toml, "unit test").expect("a valid config");
    AppState::build(config).await.expect("state")
}

async fn call(state: &AppState, method: &str, path: &str, key: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(k) = key {
        req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    let answer = super::router(state.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = answer.status();
    let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn api_calls_need_a_key_and_get_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(dir.path()).await;
    for path in ["/v1/connections", "/v1/connections/conn_x", "/v1/webhooks/dead-letters"] {
        let (status, body) = call(&s, "GET", path, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized")),
            "{path}"
        );
        let (status, _) = call(&s, "GET", path, Some("cbk_not_the_key")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let (status, body) = call(&s, "GET", "/v1/connections/conn_nope", Some(KEY)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = call(&s, "GET", "/v1/nothing-here", Some(KEY)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test]
async fn listings_refuse_bad_paging_and_start_empty() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(dir.path()).await;
    for base in ["/v1/connections", "/v1/webhooks/dead-letters"] {
        let (status, body) = call(&s, "GET", base, Some(KEY)).await;
        assert_eq!(status, StatusCode::OK, "{base}: {body}");
        assert!(body["next_cursor"].is_null(), "{base}: {body}");
        for (query, code) in [
            ("?limit=0", "invalid_parameter"),
            ("?limit=501", "invalid_parameter"),
            ("?cursor=not-base64!", "invalid_cursor"),
            ("?cursor=ZmlsZXMKeA", "invalid_cursor"),
            ("?other=1", "invalid_query"),
        ] {
            let (status, body) = call(&s, "GET", &format!("{base}{query}"), Some(KEY)).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (StatusCode::BAD_REQUEST, Some(code)),
                "{base}{query}"
            );
        }
    }
    let (status, body) = call(&s, "POST", "/v1/webhooks/dead-letters/evt_nope/retry", Some(KEY)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test]
async fn a_connection_is_read_and_deleted_and_without_endpoints_keeps_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(dir.path()).await;
    let conn: crate::store::records::Connection = serde_json::from_value(serde_json::json!({
        "id": "conn_unit", "connector": "files", "end_user": "u1",
        "tenant_id": "7d3e5a9f-0000-4000-8000-00000000f00d",
        "user": {"oid": "o1", "name": "Ada", "preferred_username": "ada@example.com"},
        "scopes": ["Files.Read.All"], "access_token": "at", "access_expires_at": 0, "refresh_token": "rt",
        "created_at": 100, "refreshed_at": 100, "status": "active", "reauth": null, "return_url": null
    }))
    .unwrap();
    s.records.put_connection(&conn).await.unwrap();
    let (status, body) = call(&s, "GET", "/v1/connections/conn_unit", Some(KEY)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["end_user"], "u1");
    assert!(
        body.get("access_token").is_none() && !body.to_string().contains("\"rt\""),
        "never a token: {body}"
    );
    let (status, _) = call(&s, "DELETE", "/v1/connections/conn_unit", Some(KEY)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&s, "GET", "/v1/connections/conn_unit", Some(KEY)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        s.records.due_events(i64::MAX, 10).await.unwrap().is_empty(),
        "a connector without webhooks keeps no events"
    );
}

/// Sends one request through `service` (as a browser's navigation with `browser`) and keeps
/// what a caller sees: status, headers and body, but the request id, fresh per request.
async fn answer_of(
    service: axum::Router,
    method: &str,
    uri: &str,
    key: Option<&str>,
    browser: bool,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(k) = key {
        req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    if browser {
        // A navigation: its error answers become pages.
        req = req
            .header(header::ACCEPT, "text/html,application/xhtml+xml")
            .header("sec-fetch-mode", "navigate")
            .header(header::ACCEPT_LANGUAGE, "de");
    }
    let answer = service.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = answer.status().as_u16();
    let mut headers: Vec<(String, String)> = answer
        .headers()
        .iter()
        .filter(|(name, _)| *name != super::observe::REQUEST_ID)
        .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    headers.sort();
    let id = answer.headers()[&super::observe::REQUEST_ID]
        .to_str()
        .unwrap()
        .to_string();
    let body = axum::body::to_bytes(answer.into_body(), 1 << 20).await.unwrap();
    // Pages name the request id (their support reference); it is fresh per request.
    let body = String::from_utf8_lossy(&body).replace(&id, "<request id>").into_bytes();
    (status, headers, body)
}

#[tokio::test]
async fn the_token_call_answers_the_same_before_the_router_as_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(dir.path()).await;
    let in_an_hour = crate::clock::now_unix() + 3_600;
    let conn: crate::store::records::Connection = serde_json::from_value(serde_json::json!({
        "id": "conn_unit", "connector": "files", "end_user": "u1",
        "tenant_id": "7d3e5a9f-0000-4000-8000-00000000f00d",
        "user": {"oid": "o1", "name": "Ada", "preferred_username": "ada@example.com"},
        "scopes": ["Files.Read.All"], "access_token": "at", "access_expires_at": in_an_hour, "refresh_token": "rt",
        "created_at": 100, "refreshed_at": 100, "status": "active", "reauth": null, "return_url": null
    }))
    .unwrap();
    let mut conn = conn;
    conn.token_identity = Some(crate::store::records::TokenIdentity::new(
        &conn.tenant_id,
        "11111111-2222-4333-8444-555555555555",
        &conn.scopes,
    ));
    s.records.put_connection(&conn).await.unwrap();
    let calls = [
        ("GET", "/v1/connections/conn_unit/token", Some(KEY)),
        ("GET", "/v1/connections/conn_unit/token?min_ttl=60", Some(KEY)),
        ("GET", "/v1/connections/conn_unit/token?min_ttl=86401", Some(KEY)),
        ("GET", "/v1/connections/conn_unit/token?min_ttl=soon", Some(KEY)),
        ("GET", "/v1/connections/conn_unit/token?other=1", Some(KEY)),
        ("GET", "/v1/connections/conn_unit/token?min_ttl=soon", None),
        ("GET", "/v1/connections/conn_unit/token", Some("cbk_not_the_key")),
        ("GET", "/v1/connections/conn_other/token", Some(KEY)),
        ("GET", "/v1/connections/../token", Some(KEY)),
        ("GET", "/v1/connections/conn%5Funit/token", Some(KEY)),
        ("GET", "/v1/connections/%FF/token", Some(KEY)),
        ("HEAD", "/v1/connections/conn_unit/token", Some(KEY)),
        ("POST", "/v1/connections/conn_unit/token", Some(KEY)),
        ("GET", "/v1/connections/conn_unit/token/", Some(KEY)),
    ];
    let mut served = 0;
    for browser in [false, true] {
        for (method, uri, key) in calls {
            let through_router = answer_of(super::routes(s.clone()), method, uri, key, browser).await;
            let first = answer_of(super::router(s.clone()), method, uri, key, browser).await;
            assert_eq!(
                first,
                through_router,
                "{method} {uri} key: {} browser: {browser}",
                key.is_some()
            );
            served += usize::from(first.0 == 200);
        }
    }
    // Not only errors: the warm token itself is answered the same both ways.
    assert_eq!(served, 8, "plain, with min_ttl, escaped (conn%5Funit) and HEAD, twice");
}
