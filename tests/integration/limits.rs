//! Rate limits: a burst over a limit gets 429 with Retry-After (JSON on the API, a page in the
//! browser), is counted in metrics, and leaves other clients unaffected.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::broker::{BrokerOptions, KEY_A, KEY_B};
use crate::common::flows::World;
use crate::common::scrape::{sample, scrape};
use crate::common::sim::FABRIKAM_TID;

async fn rate_limited(w: &World, scope: &str) -> f64 {
    let m = scrape(&w.http, &w.broker.url).await;
    sample(&m, "consent_broker_rate_limited_total", &format!("scope=\"{scope}\""))
}

fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()["retry-after"].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_connector_over_its_api_limit_gets_429_and_others_do_not() {
    let w = World::with(
        |_| {},
        BrokerOptions {
            limits: "connector_per_minute = 60\nconnector_burst = 5".into(),
            ..Default::default()
        },
    )
    .await;
    let get = |key: &'static str| {
        w.http
            .get(format!("{}/v1/connections/conn_unknown", w.broker.url))
            .bearer_auth(key)
            .send()
    };
    for _ in 0..5 {
        assert_eq!(get(KEY_A).await.unwrap().status(), StatusCode::NOT_FOUND);
    }
    let r = get(KEY_A).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(&r);
    assert!((1..=2).contains(&wait), "one request per second refills: {wait}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert_eq!(body["retry_after"], wait, "{body}");

    // Connector B has its own budget; a wrong key is refused as unauthenticated, not limited.
    assert_eq!(get(KEY_B).await.unwrap().status(), StatusCode::NOT_FOUND);
    let r = w
        .http
        .get(format!("{}/v1/connections/conn_unknown", w.broker.url))
        .bearer_auth("cbk_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(rate_limited(&w, "connector").await, 1.0);

    // After Retry-After, the connector is served again.
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    assert_eq!(get(KEY_A).await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_browser_over_its_ip_limit_gets_a_429_page_keyed_by_the_trusted_proxy_header() {
    let w = World::with(
        |_| {},
        BrokerOptions {
            server: "trusted_proxy_header = \"x-forwarded-for\"".into(),
            limits: "ip_per_minute = 60\nip_burst = 3".into(),
            ..Default::default()
        },
    )
    .await;
    let open = |client_ip: &'static str| {
        w.http
            .get(format!("{}/v1/connect/cst_unknown", w.broker.url))
            .header("x-forwarded-for", format!("10.9.9.9, {client_ip}"))
            .header("accept-language", "de")
            .send()
    };
    for _ in 0..3 {
        assert_ne!(
            open("203.0.113.5").await.unwrap().status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    let r = open("203.0.113.5").await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&r) >= 1);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Zu viele Versuche"),
        "a readable page, in the reader's language: {page}"
    );

    // Another client behind the same proxy is unaffected, and so is the API.
    assert_ne!(
        open("203.0.113.6").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let s = w.session(json!({"connector": "files", "end_user": "u"})).await;
    assert!(s["connect_url"].is_string());
    assert_eq!(rate_limited(&w, "ip").await, 1.0);
}

#[tokio::test]
async fn flow_starts_are_limited_per_tenant() {
    let w = World::with(
        |_| {},
        BrokerOptions {
            limits: "tenant_flow_starts_per_minute = 1\ntenant_flow_starts_burst = 2".into(),
            ..Default::default()
        },
    )
    .await;
    let w = &w;
    let start = |tenant: &'static str| async move {
        let s = w
            .session(json!({"connector": "files", "end_user": "u", "tenant": tenant}))
            .await;
        w.http.get(s["connect_url"].as_str().unwrap()).send().await.unwrap()
    };
    for _ in 0..2 {
        assert_eq!(start("contoso.onmicrosoft.com").await.status(), StatusCode::FOUND);
    }
    let r = start("Contoso.onmicrosoft.com").await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "tenants compare case-insensitively"
    );
    assert!(retry_after(&r) > 30, "one start per minute refills");
    assert!(r.text().await.unwrap().contains("Too many attempts"));
    assert_eq!(
        start(FABRIKAM_TID).await.status(),
        StatusCode::FOUND,
        "other tenants are unaffected"
    );
    assert_eq!(rate_limited(w, "tenant").await, 1.0);
}
