//! `GET /metrics`: scripted flows against the simulator, then exact counter values by label.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::flows::World;

/// The value of the sample `name{labels}` (labels exactly as rendered, e.g.
/// `connector="files",category="user_declined"`; empty for none), or 0 when absent.
fn sample(text: &str, name: &str, labels: &str) -> f64 {
    let key = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == key).then(|| v.parse::<f64>().expect("numeric sample"))
        })
        .unwrap_or(0.0)
}

async fn scrape(w: &World) -> String {
    let r = w.http.get(format!("{}/metrics", w.broker.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"),
        "Prometheus text format"
    );
    r.text().await.unwrap()
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
    assert!(before.contains("# TYPE consent_broker_rate_limited_total counter"));
    assert_eq!(sample(&before, "consent_broker_rate_limited_total", ""), 0.0);
    assert_eq!(sample(&before, "consent_broker_pending_approvals", ""), 0.0);

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
    assert_eq!(sample(&m, "consent_broker_pending_approvals", ""), 1.0, "{m}");
    assert_eq!(sample(&m, "consent_broker_rate_limited_total", ""), 0.0);
    for secret in ["access_token", "refresh_token", "client_secret", "Bearer"] {
        assert!(!m.contains(secret), "no secrets in /metrics: {secret}");
    }
}
