//! Happy paths: both starts, both handoff modes, polling, token fetch, refresh, delete.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::broker::{KEY_A, RETURN_A};
use crate::common::cid;
use crate::common::flows::{World, param};
use crate::common::sim::CONTOSO_TID;

#[tokio::test]
async fn out_of_band_flow_end_to_end() {
    let w = World::new().await;
    let alice = w.upn("alice");
    let s = w
        .session(json!({"connector": "files", "end_user": "user-42", "login_hint": alice}))
        .await;
    let session_id = s["session_id"].as_str().unwrap();
    assert!(
        s["connect_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/v1/connect/", w.broker.url))
    );
    time::OffsetDateTime::parse(
        s["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("expires_at is RFC 3339");

    let (status, poll) = w
        .api(
            Method::GET,
            &format!("/v1/connect-sessions/{session_id}"),
            Some(KEY_A),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(poll["status"], "pending");
    assert_eq!(poll["connection_id"], json!(null));

    // The broker's redirect to Entra carries everything the contract lists.
    let authorize = w.redirect_of(s["connect_url"].as_str().unwrap()).await;
    assert!(
        authorize
            .as_str()
            .starts_with(&format!("{}/organizations/oauth2/v2.0/authorize?", w.sim.base_url()))
    );
    assert_eq!(param(&authorize, "response_type").as_deref(), Some("code"));
    assert_eq!(param(&authorize, "response_mode").as_deref(), Some("query"));
    assert_eq!(param(&authorize, "code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(
        param(&authorize, "redirect_uri"),
        Some(format!("{}/v1/callback", w.broker.url))
    );
    assert_eq!(param(&authorize, "login_hint"), Some(alice.clone()));
    let scope = param(&authorize, "scope").unwrap();
    for s in [
        "Files.Read.All",
        "Sites.Read.All",
        "openid",
        "profile",
        "offline_access",
    ] {
        assert!(scope.split(' ').any(|x| x == s), "scope {scope} lacks {s}");
    }
    assert!(param(&authorize, "nonce").unwrap().len() >= 32);
    assert!(param(&authorize, "state").unwrap().len() >= 32);
    assert_eq!(param(&authorize, "code_challenge").unwrap().len(), 43);

    let landing = w.follow(authorize.as_str()).await;
    assert_eq!(landing.status, StatusCode::OK);
    let code = crate::common::flows::handoff_code_in(&landing.body).expect("code on the page");
    assert!(landing.body.contains("Files Connector"));

    let (status, redeemed) = w.redeem(&code).await;
    assert_eq!(status, StatusCode::OK, "{redeemed}");
    let conn = redeemed["connection_id"].as_str().unwrap().to_string();
    assert_eq!(redeemed["connector"], "files");
    assert_eq!(redeemed["tenant_id"], CONTOSO_TID);
    assert_eq!(redeemed["user"]["oid"], w.oid("alice"));
    assert_eq!(redeemed["user"]["preferred_username"], alice);
    assert!(
        redeemed["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().contains("Files.Read.All"))
    );
    assert_eq!(redeemed["state"], json!(null));

    let (_, poll) = w
        .api(
            Method::GET,
            &format!("/v1/connect-sessions/{session_id}"),
            Some(KEY_A),
            None,
        )
        .await;
    assert_eq!(poll["status"], "completed");
    assert_eq!(poll["connection_id"], conn.as_str());

    // The used connect link does not start a second flow.
    let again = w.follow(s["connect_url"].as_str().unwrap()).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);

    let (status, meta) = w
        .api(Method::GET, &format!("/v1/connections/{conn}"), Some(KEY_A), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta["status"], "active");
    assert_eq!(meta["end_user"], "user-42");
    assert_eq!(meta["tenant_id"], CONTOSO_TID);

    let (status, token) = w.token(&conn, None).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(token["token_type"], "Bearer");
    assert!(!token["access_token"].as_str().unwrap().is_empty());
    assert_eq!(
        w.sim.token_grants("refresh_token").await,
        0,
        "a fresh token is served from the store"
    );

    let (status, _) = w
        .api(Method::DELETE, &format!("/v1/connections/{conn}"), Some(KEY_A), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        w.broker.state.records.connection(&cid(&conn)).await.unwrap().is_none(),
        "tokens are gone from the store"
    );
    let (status, body) = w.token(&conn, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn authorize_start_redirects_back_with_handoff_and_state() {
    let w = World::new().await;
    let url = format!(
        "{}/v1/authorize?connector=files&return_url={}&state=xyz%20123&login_hint={}&tenant={CONTOSO_TID}",
        w.broker.url,
        urlencode(&format!("{RETURN_A}?tab=2")),
        urlencode(&w.upn("alice")),
    );
    let authorize = w.redirect_of(&url).await;
    assert!(
        authorize.path().starts_with(&format!("/{CONTOSO_TID}/")),
        "tenant hint is the authority tenant"
    );
    assert_eq!(param(&authorize, "domain_hint").as_deref(), Some(CONTOSO_TID));

    let landing = w.follow(authorize.as_str()).await;
    assert_eq!(landing.status, StatusCode::FOUND);
    let back = landing.location.expect("redirect to the connector");
    assert_eq!(
        format!("{}://{}{}", back.scheme(), back.host_str().unwrap(), back.path()),
        RETURN_A
    );
    assert_eq!(
        param(&back, "tab").as_deref(),
        Some("2"),
        "the caller's own query is kept"
    );
    assert_eq!(param(&back, "state").as_deref(), Some("xyz 123"));
    let code = param(&back, "handoff").expect("handoff code");

    let (status, redeemed) = w.redeem(&code).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(redeemed["state"], "xyz 123");
}

#[tokio::test]
async fn session_with_return_url_redirects_with_connector_state() {
    let w = World::new().await;
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "return_url": RETURN_A, "state": "st-1", "login_hint": w.upn("alice")}))
        .await;
    let landing = w.follow(s["connect_url"].as_str().unwrap()).await;
    let back = landing.location.expect("redirect to the connector");
    assert!(back.as_str().starts_with(RETURN_A));
    assert_eq!(param(&back, "state").as_deref(), Some("st-1"));
    assert!(param(&back, "handoff").is_some());
}

#[tokio::test]
async fn refresh_when_below_min_ttl_rotates_and_returns_new_token() {
    let w = World::new().await;
    let conn = w.connect(&w.upn("alice")).await;
    let (_, first) = w.token(&conn, None).await;
    let (stored, _) = w.broker.state.records.connection(&cid(&conn)).await.unwrap().unwrap();
    let old_rt = stored.refresh_token.clone().unwrap();

    // Entra's access tokens live about an hour: asking for two hours forces a refresh.
    let (status, second) = w.token(&conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(first["access_token"], second["access_token"]);
    assert_eq!(w.sim.token_grants("refresh_token").await, 1);

    let (stored, _) = w.broker.state.records.connection(&cid(&conn)).await.unwrap().unwrap();
    assert_ne!(
        stored.refresh_token.unwrap(),
        old_rt,
        "the rotated refresh token was stored"
    );
    let (_, meta) = w
        .api(Method::GET, &format!("/v1/connections/{conn}"), Some(KEY_A), None)
        .await;
    assert_eq!(meta["status"], "active");

    // And the new token is then served from the store.
    let (_, third) = w.token(&conn, None).await;
    assert_eq!(third["access_token"], second["access_token"]);
    assert_eq!(w.sim.token_grants("refresh_token").await, 1);
}

#[tokio::test]
async fn returning_user_keeps_their_connection_id() {
    let w = World::new().await;
    let first = w.connect(&w.upn("alice")).await;
    let second = w.connect(&w.upn("alice")).await;
    assert_eq!(first, second);
}

#[tokio::test]
async fn health_endpoints() {
    let w = World::new().await;
    for path in ["/healthz", "/readyz"] {
        let r = w.http.get(format!("{}{path}", w.broker.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn serves_over_tls() {
    use crate::common::broker::{Broker, Reserved};
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let reserved = Reserved::new();
    let port = reserved.url.rsplit(':').next().unwrap().to_string();
    let opts = crate::common::broker::BrokerOptions {
        tls: Some((cert_file, key_file)),
        ..Default::default()
    };
    let broker = Broker::start(reserved, "http://127.0.0.1:9", opts).await;
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let r = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        Some("max-age=31536000"),
        "browsers are told to stay on https"
    );
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
    );
    broker.stop().await;
}

#[tokio::test]
async fn expired_session_says_so_and_its_link_stops_working() {
    let w = World::with(
        |_| {},
        crate::common::broker::BrokerOptions {
            flow: "session_ttl_secs = 1".into(),
            ..Default::default()
        },
    )
    .await;
    let s = w.session(json!({"connector": "files", "end_user": "u"})).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let (status, poll) = w.poll_session(&s).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(poll["status"], "expired");
    let landing = w.follow(s["connect_url"].as_str().unwrap()).await;
    assert_eq!(landing.status, StatusCode::BAD_REQUEST);
    assert!(landing.body.contains("expired"));
}
