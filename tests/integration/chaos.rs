//! Faults in the middle of things: Entra answering garbage, a caller hanging up mid-refresh, one
//! user's errors. Each ends with every connection made before the fault intact and serving.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::broker::{BrokerOptions, KEY_A};
use crate::common::cid;
use crate::common::flows::{World, handoff_code_in};
use crate::common::sim::{APP_A_CLIENT_ID, NORTHWIND_TID};

/// The stored connection: active, with a refresh token; returns the refresh token's value.
async fn intact(w: &World, conn: &str) -> String {
    let (stored, _) = w
        .broker
        .state
        .records
        .connection(&cid(conn))
        .await
        .unwrap()
        .expect("the connection is kept");
    assert_eq!(stored.status, consent_broker::store::records::ConnectionStatus::Active);
    stored
        .refresh_token
        .expect("its refresh token is kept")
        .expose()
        .to_string()
}

#[tokio::test]
async fn entra_answering_garbage_on_refresh_keeps_every_connection() {
    let w = World::with(
        |_| {},
        BrokerOptions {
            entra: "jwks_min_refetch_interval_secs = 300\nmax_retries = 0\nrequest_timeout_secs = 1\ncircuit_failure_threshold = 0".into(),
            ..Default::default()
        },
    )
    .await;
    let conn = w.connect(&w.upn("alice")).await;
    let (_, first) = w.token(&conn, None).await;
    let refresh_token = intact(&w, &conn).await;
    for fault in [
        json!({"kind": "html"}),
        json!({"kind": "truncated_json"}),
        json!({"kind": "wrong_token_type"}),
        json!({"kind": "server_error"}),
        json!({"kind": "drop"}),
        json!({"kind": "latency", "latency_ms": 2_000}),
    ] {
        let mut fault = fault;
        fault["endpoint"] = "token".into();
        fault["grant_type"] = "refresh_token".into();
        fault["count"] = 1.into();
        w.sim.fault(fault.clone()).await;
        let (status, body) = w.token(&conn, Some(7_200)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{fault}: the stored token is still valid: {body}"
        );
        assert_eq!(
            body["access_token"], first["access_token"],
            "{fault}: nothing new was taken"
        );
        assert_eq!(
            intact(&w, &conn).await,
            refresh_token,
            "{fault}: the refresh token is untouched"
        );
    }
    // Entra answers properly again: the same connection refreshes.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (status, body) = w.token(&conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(body["access_token"], first["access_token"]);
}

#[tokio::test]
async fn a_token_answer_without_a_refresh_token_keeps_the_old_one() {
    let w = World::new().await;
    let conn = w.connect(&w.upn("alice")).await;
    let before = intact(&w, &conn).await;
    w.sim
        .fault(json!({"endpoint": "token", "grant_type": "refresh_token", "kind": "no_refresh_token", "count": 1}))
        .await;
    let (status, body) = w.token(&conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        intact(&w, &conn).await,
        before,
        "no new refresh token: the old one stays"
    );
    let (status, body) = w.token(&conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK, "the kept refresh token still works: {body}");
    assert_ne!(intact(&w, &conn).await, before, "and rotates as usual");
}

#[tokio::test]
async fn sign_ins_refused_with_a_request_loop_leave_other_sign_ins_working() {
    let w = World::with(
        |_| {},
        BrokerOptions {
            entra: "jwks_min_refetch_interval_secs = 300\nmax_retries = 0\ncircuit_failure_threshold = 5".into(),
            ..Default::default()
        },
    )
    .await;
    w.sim
        .fault(json!({"endpoint": "token", "grant_type": "authorization_code", "kind": "loop_detected", "count": 8}))
        .await;
    for _ in 0..8 {
        let s = w
            .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("alice")}))
            .await;
        let landing = w.follow(s["connect_url"].as_str().unwrap()).await;
        // 50196 is transient: the user is told to try again shortly.
        assert_eq!(landing.status, StatusCode::SERVICE_UNAVAILABLE, "{}", landing.body);
    }
    assert_eq!(
        w.sim.token_grants("authorization_code").await,
        8,
        "every one reached Entra"
    );
    // Another tenant's user signs in (its admin approved the connector): the breaker measured
    // Entra, not one user's errors.
    w.sim
        .put_grant(NORTHWIND_TID, APP_A_CLIENT_ID, &["Files.Read.All", "Sites.Read.All"])
        .await;
    let s = w
        .session(json!({"connector": "files", "end_user": "n", "login_hint": w.upn("nina")}))
        .await;
    let landing = w.follow(s["connect_url"].as_str().unwrap()).await;
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    let code = handoff_code_in(&landing.body).unwrap_or_else(|| panic!("connected: {}", landing.body));
    let (status, body) = w.redeem(&code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tenant_id"], NORTHWIND_TID);
}

/// Forces a refresh that Entra answers slowly and hangs up before it answers.
async fn hang_up_mid_refresh(w: &World, conn: &str) {
    w.sim
        .fault(json!({"endpoint": "token", "grant_type": "refresh_token", "kind": "latency", "latency_ms": 1_500, "count": 1}))
        .await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let gone = impatient
        .get(format!("{}/v1/connections/{conn}/token?min_ttl=7200", w.broker.url))
        .bearer_auth(KEY_A)
        .send()
        .await;
    assert!(gone.is_err(), "the caller left before Entra answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_hanging_up_mid_refresh_loses_nothing() {
    // No grace for rotated refresh tokens: only the newest one works, as with strict rotation.
    let w = World::with(
        |c| c["refresh_token_rotation_grace_secs"] = 0.into(),
        BrokerOptions::default(),
    )
    .await;
    let conn = w.connect(&w.upn("alice")).await;
    let before = intact(&w, &conn).await;
    hang_up_mid_refresh(&w, &conn).await;

    // The refresh went on without it and stored the rotated refresh token.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while intact(&w, &conn).await == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the refresh was dropped with its caller"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(w.sim.token_grants("refresh_token").await, 1);
    assert!(w.broker.state.tokens.no_refresh_in_flight(), "no lock left behind");
    // The next forced refresh uses the rotated token (the old one no longer works at Entra).
    let (status, body) = w.token(&conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(w.sim.token_grants("refresh_token").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_refresh_whose_caller_left() {
    let w = World::new().await;
    let conn = w.connect(&w.upn("alice")).await;
    let before = intact(&w, &conn).await;
    hang_up_mid_refresh(&w, &conn).await;

    // SIGTERM-like stop with no request in flight: it still waits for the orphaned refresh.
    let World { broker, sim, .. } = w;
    let records = broker.state.clone();
    broker.stop().await;
    let (stored, _) = records.records.connection(&cid(&conn)).await.unwrap().expect("kept");
    assert_ne!(
        stored.refresh_token.expect("a refresh token").expose(),
        before,
        "the rotated refresh token was written before the broker stopped"
    );
    assert_eq!(sim.token_grants("refresh_token").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_refresh_and_restarted_loses_nothing() {
    let mut server = crate::common::redis::RedisServer::start_persistent();
    // Strict rotation: only the newest refresh token works, so losing it would kill the connection.
    let w = World::with(
        |c| c["refresh_token_rotation_grace_secs"] = 0.into(),
        BrokerOptions {
            store: server.store_section(),
            ..Default::default()
        },
    )
    .await;
    let conn = w.connect(&w.upn("alice")).await;
    let before = intact(&w, &conn).await;
    w.sim
        .fault(json!({"endpoint": "token", "grant_type": "refresh_token", "kind": "latency", "latency_ms": 800, "count": 1}))
        .await;
    let call = {
        let (http, url) = (
            w.http.clone(),
            format!("{}/v1/connections/{conn}/token?min_ttl=7200", w.broker.url),
        );
        tokio::spawn(async move { http.get(url).bearer_auth(KEY_A).send().await.map(|r| r.status()) })
    };
    // Redis dies while Entra is answering, and comes back from its append-only file after the
    // rotated refresh token was issued.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    server.restart();
    let status = call.await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK, "the refresh waited for the store and answered");
    let after = intact(&w, &conn).await;
    assert_ne!(
        after, before,
        "the rotated refresh token was written once Redis was back"
    );
    let (status, body) = w.token(&conn, Some(7_200)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the stored refresh token is the one Entra honours: {body}"
    );
}

/// entra-sim, a browser, and the real broker binary on the embedded store in a temporary
/// directory (restarted on the same file and URL).
struct ProcessWorld {
    sim: crate::common::sim::Sim,
    url: String,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl ProcessWorld {
    async fn new(sim_config: impl FnOnce(&mut serde_json::Value)) -> Self {
        let reserved = crate::common::broker::Reserved::new();
        let url = reserved.url.clone();
        let admin_callback = format!("{url}/v1/admin-consent/callback");
        let mut config = crate::common::sim::standard_config(&[&reserved.callback(), &admin_callback]);
        sim_config(&mut config);
        let sim = crate::common::sim::Sim::start(config).await;
        drop(reserved);
        Self {
            sim,
            url,
            dir: tempfile::tempdir().unwrap(),
            http: crate::common::broker::client(),
        }
    }

    async fn start(&self, env: &[(&str, &str)]) -> crate::common::broker::BrokerProcess {
        let opts = BrokerOptions {
            store: format!(
                "backend = \"embedded\"\npath = \"{}\"",
                self.dir.path().join("store.redb").display()
            ),
            ..Default::default()
        };
        crate::common::broker::BrokerProcess::start_with_env(&self.url, self.sim.base_url(), opts, self.dir.path(), env)
            .await
    }

    /// A sign-in through the running process, followed like a browser; the connection's id.
    async fn sign_in(&self) -> String {
        let (status, s) = self
            .api(
                Method::POST,
                "/v1/connect-sessions",
                Some(json!({"connector": "files", "end_user": "u", "login_hint": crate::common::sim::ALICE})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{s}");
        let mut next = url::Url::parse(s["connect_url"].as_str().unwrap()).unwrap();
        let page = loop {
            let r = self.http.get(next.clone()).send().await.unwrap();
            match r.headers().get("location") {
                Some(l) => next = next.join(l.to_str().unwrap()).unwrap(),
                None => break r.text().await.unwrap(),
            }
        };
        let code = handoff_code_in(&page).unwrap_or_else(|| panic!("{page}"));
        let (_, redeemed) = self
            .api(Method::POST, "/v1/handoff/redeem", Some(json!({"code": code})))
            .await;
        redeemed["connection_id"].as_str().unwrap().to_string()
    }

    /// A token call that makes the broker refresh (the simulator's tokens live an hour).
    fn forced_refresh(&self, conn: &str) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
        let (http, url) = (
            self.http.clone(),
            format!("{}/v1/connections/{conn}/token?min_ttl=7200", self.url),
        );
        tokio::spawn(async move { http.get(url).bearer_auth(KEY_A).send().await })
    }

    async fn token(&self, conn: &str, min_ttl: u64) -> (StatusCode, serde_json::Value) {
        self.api(
            Method::GET,
            &format!("/v1/connections/{conn}/token?min_ttl={min_ttl}"),
            None,
        )
        .await
    }

    async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        api(&self.http, &self.url, method, path, body).await
    }

    /// Waits until entra-sim has answered `n` refresh grants.
    async fn refresh_grants_reach(&self, n: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.sim.token_grants("refresh_token").await < n {
            assert!(
                std::time::Instant::now() < deadline,
                "the broker never asked Entra to refresh"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_while_entra_answers_a_refresh_refreshes_after_restart() {
    let w = ProcessWorld::new(|_| {}).await;
    let mut broker = w.start(&[]).await;
    let conn = w.sign_in().await;

    // Killed while Entra is still answering its refresh: nothing was written.
    w.sim
        .fault(
            json!({"endpoint": "token", "grant_type": "refresh_token", "kind": "latency", "latency_ms": 1_500, "count": 1}),
        )
        .await;
    let pending = w.forced_refresh(&conn);
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker.kill();
    assert!(pending.await.unwrap().is_err(), "the caller got no answer");
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // After a restart on the same file the connection is there and refreshes with the refresh
    // token it still holds (Entra keeps it usable after the rotation nobody saw).
    let _broker = w.start(&[]).await;
    let (status, body) = w.token(&conn, 7200).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(w.sim.token_grants("refresh_token").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "stops the broker at a fail point: run with --features failpoints (scripts/test does)"
)]
async fn a_broker_killed_after_writing_a_rotated_token_before_answering_refreshes_after_restart() {
    // Strict rotation: once Entra answered, only the new refresh token works.
    let w = ProcessWorld::new(|c| c["refresh_token_rotation_grace_secs"] = 0.into()).await;
    // The broker stops right after the compare-and-swap write, before any caller is answered.
    let mut broker = w.start(&[("FAILPOINTS", "tokens::rotated_written=sleep(60000)")]).await;
    let conn = w.sign_in().await;
    let pending = w.forced_refresh(&conn);
    w.refresh_grants_reach(1).await;
    // The write is one local fsync; the fail point then holds the answer back for a minute.
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker.kill();
    assert!(pending.await.unwrap().is_err(), "the caller got no answer");

    // The rotated refresh token was on disk: after a restart the next refresh uses it.
    let _broker = w.start(&[]).await;
    let (status, body) = w.token(&conn, 7200).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(w.sim.token_grants("refresh_token").await, 2);
}

/// Caps (or lifts) the soft file-size limit of a running process: past it, writes fail with
/// EFBIG, as they fail with ENOSPC on a full disk.
fn cap_file_size(pid: u32, soft: &str) {
    let out = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--fsize={soft}:"))
        .output()
        .expect("prlimit (util-linux) runs");
    assert!(
        out.status.success(),
        "prlimit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_on_a_full_disk_answers_503_and_recovers_when_space_returns() {
    let w = ProcessWorld::new(|_| {}).await;
    let mut broker = w.start(&[]).await;
    let before = w.sign_in().await;
    assert_eq!(w.token(&before, 0).await.0, StatusCode::OK);

    // The disk fills: no page past the file's first 4 KiB can be written.
    cap_file_size(broker.pid(), "4096");
    let (status, body) = w
        .api(
            Method::POST,
            "/v1/connect-sessions",
            Some(json!({"connector": "files", "end_user": "u"})),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "store_unavailable", "{body}");
    let (status, body) = w.token(&before, 0).await;
    assert!(
        status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
        "while the disk is full a token call is served or told to retry: {status} {body}"
    );

    // Space returns: the store opens its file again by itself and every call works.
    cap_file_size(broker.pid(), "unlimited");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = w
            .api(
                Method::POST,
                "/v1/connect-sessions",
                Some(json!({"connector": "files", "end_user": "u"})),
            )
            .await;
        if status == StatusCode::CREATED {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the store did not recover: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = w.sign_in().await;
    for conn in [&before, &after] {
        let (status, body) = w.token(conn, 7200).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    // Nothing on disk was corrupted: a new process reads both connections.
    broker.kill();
    let _broker = w.start(&[]).await;
    for conn in [&before, &after] {
        let (status, body) = w.token(conn, 0).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

async fn api(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let mut req = http.request(method, format!("{base}{path}")).bearer_auth(KEY_A);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.json().await.unwrap_or_default())
}
