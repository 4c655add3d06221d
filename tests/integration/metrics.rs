//! `GET /metrics`: scripted flows against the simulator, then exact counter values by label.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::broker::BrokerOptions;
use crate::common::flows::World;
use crate::common::scrape::{sample, scrape as scrape_at};

async fn scrape(w: &World) -> String {
    scrape_at(&w.http, &w.broker.url).await
}

#[tokio::test]
async fn scripted_flows_show_up_as_exact_counts() {
    let w = World::new().await;
    let before = scrape(&w).await;
    assert_eq!(
        sample(
            &before,
            "consent_broker_build_info",
            &format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))
        ),
        1.0
    );
    // Known series exist at zero before anything happens, so rate() sees the first event.
    assert!(
        before.contains("\nconsent_broker_rate_limited_total{scope=\"ip\"} 0\n"),
        "{before}"
    );
    assert!(
        before.contains("\nconsent_broker_token_requests_total{connector=\"crm\",outcome=\"refreshed\"} 0\n"),
        "{before}"
    );

    // A connection, a cached token, a forced refresh.
    let alice = w.upn("alice");
    let conn = w.connect(&alice).await;
    assert_eq!(w.token(&conn, None).await.0, StatusCode::OK);
    assert_eq!(w.token(&conn, Some(7_200)).await.0, StatusCode::OK);

    // Frank's tenant must approve (90094): the approval page opens.
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("frank")}))
        .await;
    let landing = w.follow(s["connect_url"].as_str().unwrap()).await;
    assert!(
        landing.body.contains("AADSTS90094") || landing.body.contains("approval"),
        "{}",
        landing.body
    );

    // Bob declines (65004).
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("bob")}))
        .await;
    let landing = w.follow(s["connect_url"].as_str().unwrap()).await;
    assert!(landing.body.contains("AADSTS65004"), "{}", landing.body);

    // The grant is revoked: the refresh fails and the caller must reconnect.
    w.sim.revoke_user(&alice).await;
    assert_eq!(w.token(&conn, Some(7_200)).await.0, StatusCode::CONFLICT);
    assert_eq!(w.token("cn_nonexistent", None).await.0, StatusCode::NOT_FOUND);

    let m = scrape(&w).await;
    let files = "connector=\"files\"";
    assert_eq!(sample(&m, "consent_broker_flows_started_total", files), 3.0, "{m}");
    assert_eq!(sample(&m, "consent_broker_flows_completed_total", files), 1.0, "{m}");
    assert_eq!(
        sample(
            &m,
            "consent_broker_flows_failed_total",
            &format!("{files},category=\"admin_approval_required\"")
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "consent_broker_flows_failed_total",
            &format!("{files},category=\"user_declined\"")
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "consent_broker_entra_errors_total", "code=\"90094\""),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "consent_broker_entra_errors_total", "code=\"65004\""),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "consent_broker_entra_errors_total", "code=\"50173\""),
        1.0,
        "{m}"
    );
    for (outcome, n) in [
        ("cache_hit", 1.0),
        ("refreshed", 1.0),
        ("reauth", 1.0),
        ("not_found", 1.0),
        ("unavailable", 0.0),
    ] {
        assert_eq!(
            sample(
                &m,
                "consent_broker_token_requests_total",
                &format!("{files},outcome=\"{outcome}\"")
            ),
            n,
            "{outcome}: {m}"
        );
    }
    assert_eq!(
        sample(&m, "consent_broker_refresh_duration_seconds_count", ""),
        2.0,
        "{m}"
    );
    assert!(
        sample(&m, "consent_broker_store_duration_seconds_count", "op=\"get\"") >= 1.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "consent_broker_pending_approvals",
            &format!("{files},tenant=\"{}\"", crate::common::sim::FABRIKAM_TID)
        ),
        1.0,
        "{m}"
    );
    for scope in ["ip", "connector", "tenant"] {
        let labels = format!("scope=\"{scope}\"");
        assert_eq!(sample(&m, "consent_broker_rate_limited_total", &labels), 0.0, "{m}");
    }

    // HTTP requests by route template and status: ids never become labels.
    let route = |method: &str, route: &str, status: u16| {
        sample(
            &m,
            "consent_broker_http_requests_total",
            &format!("method=\"{method}\",route=\"{route}\",status=\"{status}\""),
        )
    };
    assert_eq!(route("GET", "/v1/connections/{connection_id}/token", 200), 2.0, "{m}");
    assert_eq!(route("GET", "/v1/connections/{connection_id}/token", 409), 1.0, "{m}");
    assert_eq!(route("GET", "/v1/connections/{connection_id}/token", 404), 1.0, "{m}");
    assert_eq!(route("POST", "/v1/connect-sessions", 201), 3.0, "{m}");
    assert_eq!(route("GET", "/metrics", 200), 1.0, "the first scrape: {m}");
    assert!(
        sample(
            &m,
            "consent_broker_http_request_duration_seconds_count",
            "method=\"GET\",route=\"/v1/connections/{connection_id}/token\""
        ) == 4.0,
        "{m}"
    );
    assert!(!m.contains(&conn), "connection ids are not labels: {m}");
    for secret in ["access_token", "refresh_token", "client_secret", "Bearer"] {
        assert!(!m.contains(secret), "no secrets in /metrics: {secret}");
    }
}

#[tokio::test]
async fn unknown_paths_share_one_label_and_the_store_is_reported_up() {
    let w = World::new().await;
    for path in ["/nope/1", "/nope/2", "/v1/connection"] {
        let r = w.http.get(format!("{}{path}", w.broker.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    assert_eq!(
        w.http
            .get(format!("{}/readyz", w.broker.url))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let m = scrape(&w).await;
    assert_eq!(
        sample(
            &m,
            "consent_broker_http_requests_total",
            "method=\"GET\",route=\"unmatched\",status=\"404\""
        ),
        3.0,
        "{m}"
    );
    assert!(!m.contains("/nope"), "{m}");
    assert_eq!(sample(&m, "consent_broker_store_up", ""), 1.0, "{m}");
}

#[tokio::test]
async fn a_separate_metrics_listener_takes_metrics_off_the_public_one() {
    let w = World::with(
        |_| {},
        BrokerOptions {
            server: "metrics_listen = \"127.0.0.1:0\"".into(),
            ..Default::default()
        },
    )
    .await;
    let r = w.http.get(format!("{}/metrics", w.broker.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "not on the public listener");
    let admin = w.broker.metrics_url.clone().expect("metrics listener bound");
    let m = scrape_at(&w.http, &admin).await;
    // The public listener's 404 above is counted; the metrics listener serves nothing else.
    assert_eq!(
        sample(
            &m,
            "consent_broker_http_requests_total",
            "method=\"GET\",route=\"unmatched\",status=\"404\""
        ),
        1.0,
        "{m}"
    );
    let r = w.http.get(format!("{admin}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pages_whose_tenant_approved_through_another_broker_leave_the_pending_gauge() {
    let w = World::with(
        |_| {},
        BrokerOptions {
            store: "backend = \"memory\"\npurge_interval_secs = 1".into(),
            ..Default::default()
        },
    )
    .await;
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("frank")}))
        .await;
    w.follow(s["connect_url"].as_str().unwrap()).await;
    let labels = format!("connector=\"files\",tenant=\"{}\"", crate::common::sim::FABRIKAM_TID);
    let pending = |m: &str| sample(m, "consent_broker_pending_approvals", &labels);
    assert_eq!(pending(&scrape(&w).await), 1.0);

    // The admin's consent came back through another broker: only the shared store knows.
    w.broker
        .state
        .records
        .put_tenant_approval(
            &"files".into(),
            &consent_broker::store::records::TenantApproval {
                tenant_id: crate::common::sim::FABRIKAM_TID.into(),
                scopes: vec!["Files.Read.All".into()],
                approved_at_ms: consent_broker::clock::now_millis(),
            },
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let m = scrape(&w).await;
        if pending(&m) == 0.0 {
            assert!(!m.contains(&labels), "the settled series is gone: {m}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still pending: {m}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
