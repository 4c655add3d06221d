//! Every way a flow or an API call can be wrong ends in a clear 4xx, stores nothing, panics nowhere.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::broker::{BrokerOptions, KEY_A, KEY_B, RETURN_A};
use crate::common::cid;
use crate::common::flows::{World, param, with_param};
use crate::common::sim::CONTOSO_TID;
use crate::happy::urlencode;

/// Starts an OOB flow for alice and returns Entra's authorize URL (not yet visited).
async fn authorize_url(w: &World) -> url::Url {
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("alice")}))
        .await;
    w.redirect_of(s["connect_url"].as_str().unwrap()).await
}

/// Visits the authorize URL at the simulator and returns the broker callback URL it redirects to.
async fn callback_url(w: &World, authorize: &url::Url) -> url::Url {
    let cb = w.redirect_of(authorize.as_str()).await;
    assert!(
        cb.as_str().starts_with(&format!("{}/v1/callback", w.broker.url)),
        "{cb}"
    );
    cb
}

async fn get(w: &World, url: &str) -> (StatusCode, String) {
    let r = w.http.get(url).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test]
async fn replayed_state_is_refused_and_stores_nothing_more() {
    let w = World::new().await;
    let cb = callback_url(&w, &authorize_url(&w).await).await;
    let (status, _) = get(&w, cb.as_str()).await;
    assert_eq!(status, StatusCode::OK);
    let conn_before = w
        .broker
        .state
        .records
        .connection_for_user(&"files".into(), &CONTOSO_TID.into(), &w.oid("alice"))
        .await
        .unwrap();
    let (status, body) = get(&w, cb.as_str()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("already completed") || body.contains("expired"), "{body}");
    let conn_after = w
        .broker
        .state
        .records
        .connection_for_user(&"files".into(), &CONTOSO_TID.into(), &w.oid("alice"))
        .await
        .unwrap();
    assert_eq!(
        conn_before.map(|c| c.1),
        conn_after.map(|c| c.1),
        "the replay wrote nothing"
    );
    assert_eq!(
        w.sim.token_grants("authorization_code").await,
        1,
        "the code was not redeemed twice"
    );
}

#[tokio::test]
async fn expired_state_is_refused() {
    let w = World::with(
        |_| {},
        BrokerOptions {
            flow: "state_ttl_secs = 1".into(),
            ..Default::default()
        },
    )
    .await;
    let cb = callback_url(&w, &authorize_url(&w).await).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let (status, _) = get(&w, cb.as_str()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!w.has_connection(CONTOSO_TID, "alice").await);
    assert_eq!(w.sim.token_grants("authorization_code").await, 0);
}

#[tokio::test]
async fn unknown_missing_or_malformed_callback_parameters() {
    let w = World::new().await;
    let base = format!("{}/v1/callback", w.broker.url);
    let long = "x".repeat(20_000);
    for query in [
        String::new(),
        "code=abc".to_string(),
        "state=unknown-state&code=abc".to_string(),
        "state=&code=abc".to_string(),
        format!("state={}&code=abc", "s".repeat(600)),
        format!("state=abc&code={long}"),
        "state=a&state=b&code=c".to_string(),
        "state=%ZZ&code=%".to_string(),
        "error=access_denied".to_string(),
    ] {
        let (status, body) = get(&w, &format!("{base}?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "query {query:.60}");
        assert!(body.contains("<h1>"), "a readable page for {query:.60}");
    }
    // A real state with no code is refused too, and the state is spent.
    let cb = callback_url(&w, &authorize_url(&w).await).await;
    let no_code = with_param(&cb, "code", "");
    let (status, _) = get(&w, no_code.as_str()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!w.has_connection(CONTOSO_TID, "alice").await);
}

#[tokio::test]
async fn tampered_code_ends_on_an_error_page_and_stores_nothing() {
    let w = World::new().await;
    let cb = callback_url(&w, &authorize_url(&w).await).await;
    let code = param(&cb, "code").unwrap();
    let tampered = with_param(&cb, "code", &format!("{}X", &code[..code.len() - 1]));
    let (status, body) = get(&w, tampered.as_str()).await;
    assert!(status.is_success() || status.is_client_error(), "{status}");
    assert!(body.contains("AADSTS70000") || body.contains("AADSTS9002313"), "{body}");
    assert!(!w.has_connection(CONTOSO_TID, "alice").await);
}

#[tokio::test]
async fn pkce_mismatch_is_refused_by_entra_and_stores_nothing() {
    let w = World::new().await;
    let authorize = authorize_url(&w).await;
    // An attacker swaps the challenge: Entra then refuses the broker's verifier.
    let swapped = with_param(
        &authorize,
        "code_challenge",
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    );
    let cb = callback_url(&w, &swapped).await;
    let (_, body) = get(&w, cb.as_str()).await;
    assert!(body.contains("AADSTS50148"), "{body}");
    assert!(!w.has_connection(CONTOSO_TID, "alice").await);
}

#[tokio::test]
async fn wrong_nonce_is_refused() {
    let w = World::new().await;
    let authorize = authorize_url(&w).await;
    let cb = callback_url(&w, &with_param(&authorize, "nonce", "attacker-chosen-nonce")).await;
    let (status, body) = get(&w, cb.as_str()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("could not be verified"), "{body}");
    assert!(!w.has_connection(CONTOSO_TID, "alice").await);
}

#[tokio::test]
async fn id_token_from_unknown_key_or_other_tenant_is_refused() {
    for kind in ["id_token_unknown_key", "id_token_wrong_tenant", "id_token_expired"] {
        let w = World::new().await;
        w.sim
            .fault(json!({"endpoint": "token", "kind": kind, "count": 1}))
            .await;
        let cb = callback_url(&w, &authorize_url(&w).await).await;
        let (status, body) = get(&w, cb.as_str()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{kind}");
        assert!(body.contains("could not be verified"), "{kind}: {body}");
        assert!(!w.has_connection(CONTOSO_TID, "alice").await, "{kind}");
    }
}

#[tokio::test]
async fn unknown_kid_refetches_keys_at_most_once_per_interval() {
    let w = World::new().await;
    w.connect(&w.upn("alice")).await;
    let fetched = |s: Value| s["requests"]["keys"].as_u64().unwrap();
    assert_eq!(fetched(w.sim.stats().await), 1);
    for _ in 0..3 {
        w.sim
            .fault(json!({"endpoint": "token", "kind": "id_token_unknown_key", "count": 1}))
            .await;
        let cb = callback_url(&w, &authorize_url(&w).await).await;
        let (status, _) = get(&w, cb.as_str()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    assert_eq!(
        fetched(w.sim.stats().await),
        1,
        "forged kids do not make the broker hammer Entra"
    );
}

const BAD_RETURN_URLS: &[&str] = &[
    "https://app-a.example.com.evil.com/oauth/done",
    "https://evil-app-a.example.com/oauth/done",
    "https://app-a.example.com@evil.com/oauth/done",
    "https://user:pass@app-a.example.com/oauth/done",
    "https://app-a.example.com:8443/oauth/done",
    "http://app-a.example.com/oauth/done",
    "javascript://app-a.example.com/oauth/done",
    "https://app-a.example.com/oauth/done%2F..%2F..%2Fevil",
    "https://app-a.example.com/oauth%2Fdone",
    "https://app-a.example.com/oauth/done/../../evil",
    "https://app-a.example.com\\@evil.com/oauth/done",
    "//evil.com/oauth/done",
    "https://app-b.example.com/return",
    "not a url",
];

#[tokio::test]
async fn return_url_not_on_the_allow_list_is_refused() {
    let w = World::new().await;
    for bad in BAD_RETURN_URLS {
        let (status, body) = w
            .api(
                Method::POST,
                "/v1/connect-sessions",
                Some(KEY_A),
                Some(json!({"connector": "files", "end_user": "u", "return_url": bad})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["error"], "return_url_not_allowed", "{bad}");

        let (status, page) = get(
            &w,
            &format!(
                "{}/v1/authorize?connector=files&return_url={}",
                w.broker.url,
                urlencode(bad)
            ),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(page.contains("not allowed"), "{bad}");
    }
    assert_eq!(w.sim.stats().await["requests"]["authorize"], 0);
}

#[tokio::test]
async fn handoff_codes_are_single_use_and_per_connector() {
    let w = World::new().await;
    let code = w.sign_in_oob(&w.upn("alice")).await;
    let redeem = |key: &'static str, code: String| {
        let w = &w;
        async move {
            w.api(
                Method::POST,
                "/v1/handoff/redeem",
                Some(key),
                Some(json!({"code": code})),
            )
            .await
        }
    };
    let (status, body) = redeem(KEY_B, code.clone()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_handoff_code"))
    );
    let (status, _) = redeem(KEY_A, code.clone()).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "another connector's attempt did not burn the code"
    );
    let (status, body) = redeem(KEY_A, code.clone()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_handoff_code"))
    );
    for junk in ["", "nope", &"x".repeat(5_000)] {
        let (status, body) = redeem(KEY_A, junk.to_string()).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_handoff_code"))
        );
    }
}

#[tokio::test]
async fn expired_handoff_code_is_refused() {
    let w = World::with(
        |_| {},
        BrokerOptions {
            flow: "handoff_ttl_secs = 1".into(),
            ..Default::default()
        },
    )
    .await;
    let code = w.sign_in_oob(&w.upn("alice")).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let (status, body) = w.redeem(&code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_handoff_code"))
    );
}

#[tokio::test]
async fn api_keys_are_required_and_scoped_to_their_connector() {
    let w = World::new().await;
    let conn = w.connect(&w.upn("alice")).await;
    let s = w.session(json!({"connector": "files", "end_user": "u"})).await;
    let sid = s["session_id"].as_str().unwrap();
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/v1/connect-sessions".into(),
            Some(json!({"connector": "files", "end_user": "u"})),
        ),
        (Method::GET, format!("/v1/connect-sessions/{sid}"), None),
        (Method::POST, "/v1/handoff/redeem".into(), Some(json!({"code": "x"}))),
        (Method::GET, format!("/v1/connections/{conn}"), None),
        (Method::GET, format!("/v1/connections/{conn}/token"), None),
        (Method::DELETE, format!("/v1/connections/{conn}"), None),
    ];
    for (method, path, body) in &calls {
        for key in [None, Some("wrong-key"), Some(&KEY_A[..KEY_A.len() - 1])] {
            let (status, answer) = w.api(method.clone(), path, key, body.clone()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with {key:?}");
            assert_eq!(answer["error"], "unauthorized");
        }
    }
    // Connector B can see none of A's things: 404, not 403.
    for (method, path, body) in &calls[1..] {
        if path.ends_with("redeem") {
            continue;
        }
        let (status, answer) = w.api(method.clone(), path, Some(KEY_B), body.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(answer["error"], "not_found");
    }
    let (status, _) = w
        .api(
            Method::POST,
            "/v1/connect-sessions",
            Some(KEY_B),
            Some(json!({"connector": "files", "end_user": "u"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "B cannot start A's sessions");
    let (status, _) = w.token(&conn, None).await;
    assert_eq!(status, StatusCode::OK, "A's connection survived B's attempts");
}

#[tokio::test]
async fn missing_garbage_and_oversized_api_input() {
    let w = World::new().await;
    let post = |body: reqwest::Body, ctype: &'static str| {
        let w = &w;
        async move {
            let r = w
                .http
                .post(format!("{}/v1/connect-sessions", w.broker.url))
                .bearer_auth(KEY_A)
                .header("content-type", ctype)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for (body, ctype) in [
        ("".to_string(), "application/json"),
        ("{".to_string(), "application/json"),
        ("[]".to_string(), "application/json"),
        ("{\"connector\": 5}".to_string(), "application/json"),
        ("{\"connector\": \"files\"}".to_string(), "application/json"),
        (
            "{\"connector\": \"files\", \"end_user\": \"u\", \"extra\": 1}".to_string(),
            "application/json",
        ),
        (
            "{\"connector\": \"files\", \"end_user\": \"u\"}".to_string(),
            "text/plain",
        ),
        (
            format!("{{\"connector\": \"files\", \"end_user\": \"{}\"}}", "u".repeat(300)),
            "application/json",
        ),
        (
            format!(
                "{{\"connector\": \"files\", \"end_user\": \"u\", \"state\": \"{}\"}}",
                "s".repeat(600)
            ),
            "application/json",
        ),
        (
            "{\"connector\": \"files\", \"end_user\": \"u\", \"tenant\": \"../evil\"}".to_string(),
            "application/json",
        ),
        (
            "{\"connector\": \"files\", \"end_user\": \"u\", \"login_hint\": \"a b\"}".to_string(),
            "application/json",
        ),
        (
            "{\"connector\": \"files\", \"end_user\": \"\\u0000\"}".to_string(),
            "application/json",
        ),
    ] {
        let (status, answer) = post(body.clone().into(), ctype).await;
        assert!(status.is_client_error(), "{status} for {body:.80}");
        assert!(
            answer["error"].is_string() && answer["message"].is_string(),
            "JSON error for {body:.80}: {answer}"
        );
    }
    let (status, answer) = post(
        format!("{{\"connector\":\"files\",\"end_user\":\"{}\"}}", "x".repeat(200_000)).into(),
        "application/json",
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer["error"], "body_too_large");

    let conn = w.connect(&w.upn("alice")).await;
    for q in ["min_ttl=abc", "min_ttl=-1", "min_ttl=999999999", "bogus=1"] {
        let (status, answer) = w
            .api(
                Method::GET,
                &format!("/v1/connections/{conn}/token?{q}"),
                Some(KEY_A),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert!(answer["error"].is_string(), "{q}");
    }
    let (status, answer) = w
        .api(Method::GET, "/v1/connections/%FF%FE/token", Some(KEY_A), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"], "invalid_path");
    let (status, _) = w
        .api(
            Method::GET,
            "/v1/connections/conn_doesnotexist/token",
            Some(KEY_A),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = w
        .api(
            Method::GET,
            &format!("/v1/connections/{}", "x".repeat(4_000)),
            Some(KEY_A),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_browser_starts_get_readable_pages() {
    let w = World::new().await;
    let b = &w.broker.url;
    for url in [
        format!("{b}/v1/authorize"),
        format!("{b}/v1/authorize?connector=files"),
        format!("{b}/v1/authorize?connector=nope&return_url={}", urlencode(RETURN_A)),
        format!(
            "{b}/v1/authorize?connector=files&return_url={}&state={}",
            urlencode(RETURN_A),
            "s".repeat(600)
        ),
        format!(
            "{b}/v1/authorize?connector=files&return_url={}&tenant=a%2Fb",
            urlencode(RETURN_A)
        ),
        format!(
            "{b}/v1/authorize?connector=files&connector=crm&return_url={}",
            urlencode(RETURN_A)
        ),
        format!("{b}/v1/connect/not-a-token"),
        format!("{b}/v1/connect/{}", "t".repeat(3_000)),
    ] {
        let (status, body) = get(&w, &url).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url:.120}");
        assert!(body.contains("<h1>"), "{url:.120}");
    }
    assert_eq!(w.sim.stats().await["requests"]["authorize"], 0);
}

#[tokio::test]
async fn pages_and_api_carry_security_headers() {
    let w = World::new().await;
    for url in [
        format!("{}/v1/callback?state=x&code=y", w.broker.url),
        format!("{}/v1/connect-sessions", w.broker.url),
    ] {
        let r = w.http.get(&url).send().await.unwrap();
        let h = r.headers();
        assert_eq!(h["cache-control"], "no-store", "{url}");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["x-frame-options"], "DENY", "{url}");
    }
}

#[tokio::test]
async fn markup_in_entras_error_fields_is_escaped_on_the_page() {
    let w = World::new().await;
    let authorize = authorize_url(&w).await;
    let state = param(&authorize, "state").unwrap();
    let cb = format!(
        "{}/v1/callback?state={state}&error=invalid_request&error_description={}&trace_id={}",
        w.broker.url,
        urlencode("AADSTS90014: <script>alert(1)</script><img src=x onerror=alert(2)>"),
        urlencode("<b id=x>\"'</b>")
    );
    let (status, body) = get(&w, &cb).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for raw in ["<script>alert", "<img src=x", "<b id=x>"] {
        assert!(!body.contains(raw), "{raw} came out as markup: {body}");
    }
    assert!(body.contains("&#60;b id=x&#62;"), "the value is shown, escaped: {body}");
}

#[tokio::test]
async fn no_secret_reaches_the_logs() {
    let w = World::with(
        |c| c["access_token_lifetime_secs"] = json!(600),
        BrokerOptions::default(),
    )
    .await;
    let mut secrets: Vec<String> = vec![KEY_A.into(), crate::common::sim::APP_A_SECRET.into()];
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("alice")}))
        .await;
    let connect_token = s["connect_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let authorize = w.redirect_of(s["connect_url"].as_str().unwrap()).await;
    let cb = callback_url(&w, &authorize).await;
    let (_, page) = get(&w, cb.as_str()).await;
    let handoff = crate::common::flows::handoff_code_in(&page).unwrap();
    let (_, redeemed) = w.redeem(&handoff).await;
    let conn = redeemed["connection_id"].as_str().unwrap().to_string();
    let (_, first) = w.token(&conn, None).await;
    let (stored, _) = w.broker.state.records.connection(&cid(&conn)).await.unwrap().unwrap();
    let first_rt = stored.refresh_token.unwrap().expose().to_string();
    let (_, second) = w.token(&conn, Some(7_200)).await;
    let (stored, _) = w.broker.state.records.connection(&cid(&conn)).await.unwrap().unwrap();
    // A refused refresh and a failed sign-in log their errors too.
    w.sim.revoke_user(&w.upn("alice")).await;
    let (status, _) = w.token(&conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    secrets.extend([
        connect_token,
        param(&authorize, "state").unwrap(),
        param(&authorize, "nonce").unwrap(),
        param(&cb, "code").unwrap(),
        handoff,
        first["access_token"].as_str().unwrap().to_string(),
        second["access_token"].as_str().unwrap().to_string(),
        first_rt,
        stored.refresh_token.unwrap().expose().to_string(),
    ]);
    // The store's encryption key as configured (hex, either case) and as its bytes would print
    // (a byte list, base64).
    let key = crate::common::broker::TEST_ENCRYPTION_KEY;
    let key_bytes: Vec<u8> = (0..key.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&key[i..i + 2], 16).unwrap())
        .collect();
    secrets.extend([
        key.to_string(),
        key.to_ascii_uppercase(),
        format!("{key_bytes:?}"),
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &key_bytes)[..40].to_string(),
    ]);
    let logs = w.broker.logs();
    assert!(logs.contains(&conn), "the capture works: the flow was logged");
    for secret in &secrets {
        assert!(secret.len() >= 16, "a real secret");
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
    }
}
