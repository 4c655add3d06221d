//! Token lifecycle: concurrency, reauth, Entra outages, restarts on the embedded store.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::broker::{Broker, BrokerOptions, KEY_A, Reserved};
use crate::common::cid;
use crate::common::flows::World;
use crate::common::sim::{CONTOSO_TID, FABRIKAM_TID, Sim, standard_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_callers_cause_one_refresh() {
    let w = World::new().await;
    let conn = w.connect(&w.upn("alice")).await;
    let (_, before) = w.token(&conn, None).await;
    // Slow Entra down so every caller arrives while the refresh is in flight.
    w.sim
        .fault(json!({"endpoint": "token", "kind": "latency", "latency_ms": 300, "count": 1}))
        .await;
    let mut calls = Vec::new();
    for _ in 0..100 {
        let http = w.http.clone();
        let url = format!("{}/v1/connections/{conn}/token?min_ttl=7200", w.broker.url);
        calls.push(tokio::spawn(async move {
            let r = http.get(url).bearer_auth(KEY_A).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<serde_json::Value>().await.unwrap()["access_token"]
                .as_str()
                .unwrap()
                .to_string()
        }));
    }
    let mut tokens = Vec::new();
    for c in calls {
        tokens.push(c.await.unwrap());
    }
    assert_eq!(
        w.sim.token_grants("refresh_token").await,
        1,
        "exactly one refresh reached Entra"
    );
    assert!(
        tokens.iter().all(|t| t == &tokens[0]),
        "all 100 callers got the same token"
    );
    assert_ne!(
        tokens[0],
        before["access_token"].as_str().unwrap(),
        "and it is the new one"
    );
    assert!(w.broker.state.tokens.no_refresh_in_flight(), "no lock is left behind");
}

#[tokio::test]
async fn revoked_grant_flips_to_reauth_required_with_a_reconnect_url() {
    let w = World::new().await;
    let alice = w.upn("alice");
    let conn = w.connect(&alice).await;
    w.sim.revoke_user(&alice).await;
    let (status, body) = w.token(&conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "reauth_required");
    assert_eq!(body["category"], "reauth_required");
    assert_eq!(body["aadsts"], 50173);
    assert!(body["message"].is_string());
    let (_, meta) = w
        .api(Method::GET, &format!("/v1/connections/{conn}"), Some(KEY_A), None)
        .await;
    assert_eq!(meta["status"], "reauth_required");

    // Later calls answer 409 without asking Entra again.
    let (status, _) = w.token(&conn, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(w.sim.token_grants("refresh_token").await, 1);

    // The reconnect URL starts a new flow for the same user and tenant, which revives the connection.
    let reconnect = body["reconnect_url"].as_str().unwrap();
    let authorize = w.redirect_of(reconnect).await;
    assert!(authorize.path().starts_with(&format!("/{CONTOSO_TID}/")));
    let landing = w.follow(authorize.as_str()).await;
    let code = crate::common::flows::handoff_code_in(&landing.body).expect("code");
    let (_, redeemed) = w.redeem(&code).await;
    assert_eq!(
        redeemed["connection_id"],
        conn.as_str(),
        "the same connection id comes back"
    );
    let (status, _) = w.token(&conn, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn consent_withdrawn_and_mfa_required_need_a_new_sign_in() {
    let w = World::new().await;
    let conn = w.connect(&w.upn("alice")).await;
    w.sim.patch_tenant(CONTOSO_TID, json!({"mfa_required": true})).await;
    let (status, body) = w.token(&conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["category"], "interaction_required");
    assert_eq!(body["aadsts"], 50076);
}

#[tokio::test]
async fn expired_token_and_entra_down_gives_503_with_retry_after() {
    let w = World::with(|c| c["access_token_lifetime_secs"] = json!(2), BrokerOptions::default()).await;
    let conn = w.connect(&w.upn("alice")).await;
    w.sim
        .fault(json!({"endpoint": "token", "kind": "throttle", "retry_after_secs": 7}))
        .await;

    // Still valid: served from the store although Entra refuses to refresh.
    let (status, _) = w.token(&conn, Some(60)).await;
    assert_eq!(status, StatusCode::OK);

    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let r = w
        .http
        .get(format!("{}/v1/connections/{conn}/token", w.broker.url))
        .bearer_auth(KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "entra_unavailable"
    );

    w.sim.clear_faults().await;
    w.sim.fault(json!({"endpoint": "token", "kind": "unavailable"})).await;
    let (status, _) = w.token(&conn, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    w.sim.clear_faults().await;
    let (status, _) = w.token(&conn, None).await;
    assert_eq!(status, StatusCode::OK, "recovers once Entra is back");
    let (_, meta) = w
        .api(Method::GET, &format!("/v1/connections/{conn}"), Some(KEY_A), None)
        .await;
    assert_eq!(meta["status"], "active", "an outage never flips the connection");
}

#[tokio::test]
async fn entra_unreachable_gives_503() {
    let reserved = Reserved::new();
    let mut config = standard_config(&[&reserved.callback()]);
    config["access_token_lifetime_secs"] = json!(1);
    let sim = Sim::start(config.clone()).await;
    let broker = Broker::start(reserved, sim.base_url(), BrokerOptions::default()).await;
    let w = World {
        sim,
        broker,
        http: crate::common::broker::client(),
        sim_config: config,
    };
    let conn = w.connect(&w.upn("alice")).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let World { sim, broker, http, .. } = w;
    drop(sim);
    let r = http
        .get(format!("{}/v1/connections/{conn}/token", broker.url))
        .bearer_auth(KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn admin_approval_needed_ends_on_a_page_and_session_says_so() {
    let w = World::new().await;
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("frank"), "tenant": FABRIKAM_TID}))
        .await;
    let landing = w.follow(s["connect_url"].as_str().unwrap()).await;
    assert_eq!(landing.status, StatusCode::OK);
    assert!(landing.body.contains("AADSTS90094"), "{}", landing.body);
    let (_, poll) = w.poll_session(&s).await;
    assert_eq!(poll["status"], "approval_required");
    assert_eq!(poll["category"], "admin_approval_required");
    assert_eq!(poll["aadsts"], 90094);
    assert_eq!(poll["connection_id"], json!(null));
}

#[tokio::test]
async fn failed_flow_offers_a_way_back_to_the_connector() {
    let w = World::new().await;
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("bob"), "return_url": crate::common::broker::RETURN_A, "state": "s9"}))
        .await;
    let landing = w.follow(s["connect_url"].as_str().unwrap()).await;
    assert!(landing.body.contains("AADSTS65004"), "{}", landing.body);
    assert!(landing.body.contains("Back to Files Connector"));
    assert!(
        landing
            .body
            .contains("error=user_declined&#38;aadsts=65004&#38;state=s9"),
        "back link carries category, code and state: {}",
        landing.body
    );
}

#[tokio::test]
async fn embedded_store_keeps_connections_and_rotated_tokens_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "backend = \"embedded\"\npath = \"{}\"",
        dir.path().join("broker.redb").display()
    );
    // Old refresh tokens die the moment they are rotated: only the stored newest one works.
    let opts = BrokerOptions {
        store: store.clone(),
        ..Default::default()
    };
    let w = World::with(|c| c["refresh_token_rotation_grace_secs"] = json!(0), opts).await;
    let url = w.broker.url.clone();
    let conn = w.connect(&w.upn("alice")).await;
    let (status, rotated) = w.token(&conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK);
    let World {
        sim,
        broker,
        http,
        sim_config,
    } = w;
    broker.stop().await;

    let broker = Broker::start(
        Reserved::at(&url),
        sim.base_url(),
        BrokerOptions {
            store,
            ..Default::default()
        },
    )
    .await;
    let w = World {
        sim,
        broker,
        http,
        sim_config,
    };
    let (status, after) = w.token(&conn, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(after["access_token"], rotated["access_token"], "served from disk");
    let (status, refreshed) = w.token(&conn, Some(7_200)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the rotated refresh token survived the restart: {refreshed}"
    );
    assert_eq!(w.sim.token_grants("refresh_token").await, 2);
}

#[tokio::test]
async fn reconnect_falls_back_to_out_of_band_when_the_return_url_was_unregistered() {
    // A connection made through a return URL that is later removed from the allow-list.
    let w = World::new().await;
    let alice = w.upn("alice");
    let s = w
        .session(
            json!({"connector": "files", "end_user": "u", "login_hint": alice, "return_url": "http://127.0.0.1:9/cb"}),
        )
        .await;
    let landing = w.follow(s["connect_url"].as_str().unwrap()).await;
    let back = landing.location.expect("redirect back");
    let code = crate::common::flows::param(&back, "handoff").unwrap();
    let (_, redeemed) = w.redeem(&code).await;
    let conn = redeemed["connection_id"].as_str().unwrap().to_string();
    let (mut stored, version) = w.broker.state.records.connection(&cid(&conn)).await.unwrap().unwrap();
    stored.return_url = Some("https://unregistered.example.com/cb".into());
    w.broker
        .state
        .records
        .update_connection(&stored, version)
        .await
        .unwrap();

    w.sim.revoke_user(&alice).await;
    let (status, body) = w.token(&conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let landing = w.follow(body["reconnect_url"].as_str().unwrap()).await;
    assert_eq!(landing.status, StatusCode::OK);
    assert!(
        crate::common::flows::handoff_code_in(&landing.body).is_some(),
        "ends on the copy-this-code page"
    );
}

/// Shutdown with a request in flight: the broker stops accepting at once, and the request it
/// already has (a refresh Entra answers slowly) completes normally within the grace period.
#[tokio::test]
async fn shutdown_finishes_requests_in_flight_and_accepts_no_new_ones() {
    let w = World::new().await;
    let conn = w.connect(&w.upn("alice")).await;
    w.sim.reset_stats().await;
    w.sim
        .fault(json!({"endpoint": "token", "grant_type": "refresh_token", "kind": "latency", "latency_ms": 1500, "count": 1}))
        .await;
    let url = format!("{}/v1/connections/{conn}/token?min_ttl=7200", w.broker.url);
    let http = w.http.clone();
    let in_flight = tokio::spawn(async move {
        let r = http.get(url).bearer_auth(KEY_A).send().await?;
        let status = r.status();
        let body: Value = r.json().await?;
        Ok::<_, reqwest::Error>((status, body))
    });
    // The refresh has reached Entra: the request is in the middle of being served.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while w.sim.token_grants("refresh_token").await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the refresh never reached the simulator"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let base = w.broker.url.clone();
    let stopping = tokio::spawn(w.broker.stop());
    // New connections are refused while the in-flight request is still being served.
    let fresh = crate::common::broker::client();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match fresh.get(format!("{base}/healthz")).send().await {
            Err(_) => break,
            Ok(_) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "still accepting after shutdown began"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(
        !in_flight.is_finished(),
        "the slow refresh is still in flight when accepting stops"
    );

    let (status, body) = in_flight.await.unwrap().expect("the in-flight request got its answer");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    stopping.await.unwrap();
}
