//! No caller can make the broker hammer Entra: a refresh floor per connection and a refresh
//! budget per connector.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::broker::{BrokerOptions, KEY_A, KEY_B};
use crate::common::flows::{World, handoff_code_in};
use crate::common::scrape::{sample, scrape};

/// Entra-sim's access tokens live 3599 s: an hour is more than any of them has.
const UNSATISFIABLE: u64 = 3_600;

async fn token_call(w: &World, key: &str, conn: &str, min_ttl: u64) -> (StatusCode, Option<String>, Value) {
    let r = w
        .http
        .get(format!(
            "{}/v1/connections/{conn}/token?min_ttl={min_ttl}",
            w.broker.url
        ))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let warning = r.headers().get("warning").map(|v| v.to_str().unwrap().to_string());
    (r.status(), warning, r.json().await.unwrap_or_default())
}

async fn unmet(w: &World, connector: &str) -> f64 {
    let m = scrape(&w.http, &w.broker.url).await;
    sample(
        &m,
        "consent_broker_token_min_ttl_unmet_total",
        &format!("connector=\"{connector}\""),
    )
}

/// 40 sequential then 40 concurrent calls; every one must get a valid token.
async fn eighty_calls(w: &World, conn: &str) {
    let check = |(status, warning, body): (StatusCode, Option<String>, Value)| {
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));
        let expires = time::OffsetDateTime::parse(
            body["expires_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert!(expires > time::OffsetDateTime::now_utc(), "a valid token: {body}");
        assert_eq!(body["min_ttl_unmet"], true, "{body}");
        assert!(warning.is_some_and(|w| w.starts_with("199 ")), "a Warning header");
    };
    for _ in 0..40 {
        check(token_call(w, KEY_A, conn, UNSATISFIABLE).await);
    }
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (http, url) = (
                w.http.clone(),
                format!("{}/v1/connections/{conn}/token?min_ttl={UNSATISFIABLE}", w.broker.url),
            );
            tokio::spawn(async move {
                let r = http.get(url).bearer_auth(KEY_A).send().await.unwrap();
                let warning = r.headers().get("warning").map(|v| v.to_str().unwrap().to_string());
                (r.status(), warning, r.json::<Value>().await.unwrap_or_default())
            })
        })
        .collect();
    for task in tasks {
        check(task.await.unwrap());
    }
}

#[tokio::test]
async fn an_unsatisfiable_min_ttl_causes_at_most_one_refresh_per_floor() {
    let w = World::with(
        |_| {},
        BrokerOptions {
            tokens: "min_refresh_interval_secs = 3".into(),
            ..Default::default()
        },
    )
    .await;
    let conn = w.connect(&w.upn("alice")).await;

    // Just signed in: inside the floor, nothing goes to Entra.
    eighty_calls(&w, &conn).await;
    assert_eq!(w.sim.token_grants("refresh_token").await, 0);
    assert_eq!(unmet(&w, "files").await, 80.0);

    // Past the floor: one refresh, then the floor again.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let started = Instant::now();
    eighty_calls(&w, &conn).await;
    let refreshes = w.sim.token_grants("refresh_token").await;
    let floors = 1 + started.elapsed().as_secs() / 3;
    assert!(
        (1..=floors).contains(&refreshes),
        "{refreshes} refreshes in {:?}",
        started.elapsed()
    );
    assert_eq!(unmet(&w, "files").await, 160.0);

    // A wish that can be met is met, without a warning.
    let (status, warning, body) = token_call(&w, KEY_A, &conn, 300).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["min_ttl_unmet"], false);
    assert!(warning.is_none());
}

#[tokio::test]
async fn an_expired_token_is_refreshed_inside_the_floor() {
    let w = World::with(
        |c| c["access_token_lifetime_secs"] = json!(1),
        BrokerOptions {
            tokens: "min_refresh_interval_secs = 600".into(),
            ..Default::default()
        },
    )
    .await;
    let conn = w.connect(&w.upn("alice")).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, _, body) = token_call(&w, KEY_A, &conn, 0).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(w.sim.token_grants("refresh_token").await, 1, "never an expired token");
}

/// Signs alice in through connector B ("crm") and returns the connection id.
async fn connect_b(w: &World) -> String {
    w.sim
        .put_grant(
            crate::common::sim::CONTOSO_TID,
            crate::common::sim::APP_B_CLIENT_ID,
            &["User.Read"],
        )
        .await;
    let (_, s) = w
        .api(
            Method::POST,
            "/v1/connect-sessions",
            Some(KEY_B),
            Some(json!({"connector": "crm", "end_user": "b", "login_hint": w.upn("alice")})),
        )
        .await;
    let landing = w.follow(s["connect_url"].as_str().unwrap()).await;
    let code = handoff_code_in(&landing.body).unwrap_or_else(|| panic!("{}", landing.body));
    let (_, body) = w
        .api(
            Method::POST,
            "/v1/handoff/redeem",
            Some(KEY_B),
            Some(json!({"code": code})),
        )
        .await;
    body["connection_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_connector_over_its_refresh_budget_does_not_reach_entra_and_others_are_unaffected() {
    let w = World::with(
        |c| c["access_token_lifetime_secs"] = json!(4),
        BrokerOptions {
            tokens: "min_refresh_interval_secs = 0\nmax_refreshes_per_minute = 2".into(),
            ..Default::default()
        },
    )
    .await;
    let conn = w.connect(&w.upn("alice")).await;
    for _ in 0..6 {
        let (status, _, body) = token_call(&w, KEY_A, &conn, 60).await;
        assert_eq!(status, StatusCode::OK, "the stored token while it is valid: {body}");
    }
    assert_eq!(
        w.sim.token_grants("refresh_token").await,
        2,
        "Entra saw only the budget"
    );
    let m = scrape(&w.http, &w.broker.url).await;
    assert_eq!(
        sample(
            &m,
            "consent_broker_refresh_budget_exhausted_total",
            "connector=\"files\""
        ),
        4.0
    );
    assert_eq!(
        sample(&m, "consent_broker_rate_limited_total", "scope=\"refresh\""),
        4.0
    );

    // Another connector has its own budget.
    let other = connect_b(&w).await;
    let (status, _, body) = token_call(&w, KEY_B, &other, 60).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(w.sim.token_grants("refresh_token").await, 3);

    // Once the stored token has expired, connector A's callers get 503 with Retry-After.
    tokio::time::sleep(Duration::from_millis(4_100)).await;
    let r = w
        .http
        .get(format!("{}/v1/connections/{conn}/token", w.broker.url))
        .bearer_auth(KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(
        w.sim.token_grants("refresh_token").await,
        3,
        "still nothing more at Entra"
    );
}
