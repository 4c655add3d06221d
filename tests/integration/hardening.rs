//! What an attacker or a failing network can do to the server itself: flood sign-in starts,
//! hold connections open, read metrics, keep a deleted connection alive in memory, or make a
//! polling backend fill the store.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::broker::{BrokerOptions, KEY_A, KEY_B, RETURN_A};
use crate::common::cid;
use crate::common::flows::World;
use crate::common::redis::RedisServer;
use crate::common::scrape::sample;
use crate::common::sim::CONTOSO_TID;
use crate::happy::urlencode;

fn addr(w: &World) -> String {
    w.broker.url.trim_start_matches("http://").to_string()
}

#[tokio::test]
async fn one_ip_flooding_authorize_leaves_connect_link_sign_ins_of_that_tenant_unaffected() {
    let w = World::with(
        |_| {},
        BrokerOptions {
            limits: "ip_per_minute = 10000\nip_burst = 10000\ntenant_flow_starts_per_minute = 1\ntenant_flow_starts_burst = 3"
                .into(),
            ..Default::default()
        },
    )
    .await;
    let flood = format!(
        "{}/v1/authorize?connector=files&tenant={CONTOSO_TID}&return_url={}",
        w.broker.url,
        urlencode(RETURN_A)
    );
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(w.http.get(&flood).send().await.unwrap().status());
    }
    assert_eq!(statuses[..3], [StatusCode::FOUND; 3], "{statuses:?}");
    assert!(
        statuses[3..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );

    // The same tenant's users, through their connector's links, are not held back by it.
    for who in ["alice", "carol", "alice"] {
        let s = w
            .session(json!({"connector": "files", "end_user": who, "tenant": CONTOSO_TID, "login_hint": w.upn(who)}))
            .await;
        let to_entra = w.redirect_of(s["connect_url"].as_str().unwrap()).await;
        assert!(to_entra.path().starts_with(&format!("/{CONTOSO_TID}/")), "{to_entra}");
    }
    // Hint-less connect links do not share one `organizations` budget either.
    for _ in 0..5 {
        let s = w.session(json!({"connector": "files", "end_user": "u"})).await;
        let r = w.http.get(s["connect_url"].as_str().unwrap()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
    }
}

#[tokio::test]
async fn a_client_sending_headers_byte_by_byte_is_dropped_within_the_header_timeout() {
    let w = World::with(
        |_| {},
        BrokerOptions {
            server: "header_read_timeout_secs = 1".into(),
            ..Default::default()
        },
    )
    .await;
    let mut slow = TcpStream::connect(addr(&w)).await.unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut dropped = false;
    // One byte every 100 ms would take 13 s to finish the request.
    for byte in request.iter() {
        if slow.write_all(&[*byte]).await.is_err() {
            dropped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut buf = [0u8; 256];
        if let Ok(read) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await {
            // Closed (0), or an error answer and then closed: either way, not served.
            assert!(
                !String::from_utf8_lossy(&buf[..read.unwrap_or(0)]).contains("200 OK"),
                "a request that never finished was answered"
            );
            dropped = true;
            break;
        }
    }
    assert!(dropped, "the slow client was never dropped");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "dropped long before the request could finish ({:?})",
        started.elapsed()
    );
    // A normal client is still served.
    let r = w.http.get(format!("{}/healthz", w.broker.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_silent_connection_is_closed_within_the_header_timeout() {
    let w = World::with(
        |_| {},
        BrokerOptions {
            server: "header_read_timeout_secs = 1".into(),
            ..Default::default()
        },
    )
    .await;
    let mut silent = TcpStream::connect(addr(&w)).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(8), silent.read(&mut buf))
        .await
        .expect("the broker closes a connection that never sends a request");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn a_stalled_body_fails_within_the_body_timeout() {
    let w = World::with(
        |_| {},
        BrokerOptions {
            server: "body_timeout_secs = 1".into(),
            ..Default::default()
        },
    )
    .await;
    let mut stalled = TcpStream::connect(addr(&w)).await.unwrap();
    let head = format!(
        "POST /v1/explain HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY_A}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"text\": \"AADS"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(8), stalled.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the stalled body is given up on");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("invalid_body"), "a JSON error: {answer}");
}

#[tokio::test]
async fn a_request_past_the_request_timeout_gets_503_and_its_refresh_still_lands() {
    let w = World::with(
        |_| {},
        BrokerOptions {
            server: "request_timeout_secs = 1".into(),
            ..Default::default()
        },
    )
    .await;
    let conn = w.connect(&w.upn("alice")).await;
    let before = w.broker.state.records.connection(&cid(&conn)).await.unwrap().unwrap().1;
    w.sim
        .fault(json!({"endpoint": "token", "grant_type": "refresh_token", "kind": "latency", "latency_ms": 2_500, "count": 1}))
        .await;
    let r = w
        .http
        .get(format!("{}/v1/connections/{conn}/token?min_ttl=7200", w.broker.url))
        .bearer_auth(KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "timeout", "{body}");
    // The refresh was not cut short with the request: its result is written and served.
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.broker.state.records.connection(&cid(&conn)).await.unwrap().unwrap().1 == before {
        assert!(Instant::now() < deadline, "the refresh never landed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = w.token(&conn, Some(3_000)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        w.sim.token_grants("refresh_token").await,
        1,
        "served from the landed refresh"
    );
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_and_counted() {
    let w = World::with(
        |_| {},
        BrokerOptions {
            server: "max_connections = 2\nheader_read_timeout_secs = 30".into(),
            ..Default::default()
        },
    )
    .await;
    let held = [
        TcpStream::connect(addr(&w)).await.unwrap(),
        TcpStream::connect(addr(&w)).await.unwrap(),
    ];
    // Give the server a moment to accept both.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(addr(&w)).await.unwrap();
    let _ = third.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("the connection over the cap is closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "served past the cap: {read:?}");

    // Their slots come back when they close.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        match w.http.get(format!("{}/metrics", w.broker.url)).send().await {
            Ok(r) if r.status() == StatusCode::OK => break r.text().await.unwrap(),
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("no slot came back: {other:?}"),
        }
    };
    assert!(
        sample(&metrics, "consent_broker_http_connections_refused_total", "") >= 1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn metrics_require_the_token_when_one_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics-token");
    let token = "m3trics-t0ken-for-the-scraper";
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let w = World::with(
        |_| {},
        BrokerOptions {
            server: format!("metrics_token_file = {:?}", token_file.display().to_string()),
            ..Default::default()
        },
    )
    .await;
    let url = format!("{}/metrics", w.broker.url);
    for presented in [None, Some("wrong-token-of-some-length"), Some(""), Some(&token[..10])] {
        let mut req = w.http.get(&url);
        if let Some(p) = presented {
            req = req.bearer_auth(p);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{presented:?}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized");
        assert!(!body.to_string().contains(token));
    }
    let r = w.http.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("consent_broker_build_info"));
}

#[tokio::test]
async fn a_reauth_required_connection_hands_out_one_reconnect_link_while_it_is_pending() {
    let w = World::new().await;
    let alice = w.upn("alice");
    let conn = w.connect(&alice).await;
    w.sim.revoke_user(&alice).await;
    let mut links = Vec::new();
    for _ in 0..5 {
        let (status, body) = w.token(&conn, Some(7_200)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        links.push(body["reconnect_url"].as_str().unwrap().to_string());
    }
    assert!(links.iter().all(|l| *l == links[0]), "{links:?}");
    // Memory store: one page, in key order; the sign-in's own session is the other one.
    let (keys, _) = w.broker.state.records.store().scan(None, 10_000).await.unwrap();
    let sessions: Vec<&String> = keys.iter().filter(|k| k.starts_with("session:")).collect();
    assert_eq!(
        sessions.len(),
        2,
        "one reconnect session, not one per call: {sessions:?}"
    );

    // Another connector cannot see it, and a completed reconnect makes the next one fresh.
    let (status, _) = w
        .api(Method::GET, &format!("/v1/connections/{conn}/token"), Some(KEY_B), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let landing = w.follow(&links[0]).await;
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    w.sim.revoke_user(&alice).await;
    let (_, body) = w.token(&conn, Some(7_200)).await;
    assert_ne!(body["reconnect_url"].as_str().unwrap(), links[0], "{body}");
}

#[tokio::test]
async fn a_deleted_connections_reconnect_link_starts_nothing() {
    let w = World::new().await;
    let alice = w.upn("alice");
    let conn = w.connect(&alice).await;
    w.sim.revoke_user(&alice).await;
    let (_, body) = w.token(&conn, Some(7_200)).await;
    let link = body["reconnect_url"].as_str().unwrap().to_string();
    let (status, _) = w
        .api(Method::DELETE, &format!("/v1/connections/{conn}"), Some(KEY_A), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let r = w.http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "the link died with its connection");
    assert!(r.headers().get("location").is_none());
}

#[tokio::test]
async fn approval_continues_from_authorize_starts_count_against_the_client_not_the_tenant() {
    let w = World::with(
        |_| {},
        BrokerOptions {
            limits: "ip_per_minute = 10000\nip_burst = 10000\ntenant_flow_starts_per_minute = 1\ntenant_flow_starts_burst = 3".into(),
            ..Default::default()
        },
    )
    .await;
    // Anyone can end their own /v1/authorize sign-in on an approval page of a tenant...
    let start = format!(
        "{}/v1/authorize?connector=files&login_hint={}&return_url={}",
        w.broker.url,
        urlencode(&w.upn("frank")),
        urlencode(RETURN_A)
    );
    let authorize = w.redirect_of(&start).await;
    let callback = w.redirect_of(authorize.as_str()).await;
    let page = w.redirect_of(callback.as_str()).await;
    assert!(page.path().starts_with("/v1/approval/"), "{page}");
    // ...and press "continue" again and again: only their own budget runs out.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(w.http.get(format!("{page}/continue")).send().await.unwrap().status());
    }
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let s = w
        .session(json!({"connector": "files", "end_user": "f", "tenant": crate::common::sim::FABRIKAM_TID, "login_hint": w.upn("frank")}))
        .await;
    let r = w.http.get(s["connect_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND, "the tenant's connect links still start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_during_a_store_outage_serves_nothing_from_memory() {
    let mut server = RedisServer::start_persistent();
    let w = World::with(
        |_| {},
        BrokerOptions {
            store: server.store_section(),
            ..Default::default()
        },
    )
    .await;
    let conn = w.connect(&w.upn("alice")).await;
    let (status, _) = w.token(&conn, None).await;
    assert_eq!(status, StatusCode::OK, "served once, so remembered in memory");
    server.stop();
    let (status, _) = w.token(&conn, None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the outage copy answers while the store is down"
    );

    let (status, body) = w
        .api(Method::DELETE, &format!("/v1/connections/{conn}"), Some(KEY_A), None)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, body) = w.token(&conn, None).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "nothing served after DELETE: {body}"
    );
    assert!(body.get("access_token").is_none());

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    while w
        .http
        .get(format!("{}/readyz", w.broker.url))
        .send()
        .await
        .unwrap()
        .status()
        != StatusCode::OK
    {
        assert!(Instant::now() < deadline, "the store did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = w
        .api(Method::DELETE, &format!("/v1/connections/{conn}"), Some(KEY_A), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "the retried DELETE goes through");
    let (status, _) = w.token(&conn, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
