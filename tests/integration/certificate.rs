//! Certificate credentials end to end: the broker signs client assertions that the real simulator
//! checks, a wrong or expired certificate is reported as the operator's credential problem, and
//! start-up warns about credentials close to their expiry.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::broker::{Broker, BrokerOptions, RETURN_A, Reserved};
use crate::common::certs::TestCert;
use crate::common::cid;
use crate::common::flows::World;
use crate::common::sim::APP_A_SECRET;

/// The value of the sample `name{labels}` in the broker's metrics, or `None` when absent.
fn metric(broker: &Broker, name: &str, labels: &str) -> Option<f64> {
    let key = format!("{name}{{{labels}}}");
    broker.state.metrics.render().lines().find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == key).then(|| v.parse().expect("numeric sample"))
    })
}

const CREDENTIAL_ERRORS: &str = "consent_broker_credential_errors_total";
const CREDENTIAL_EXPIRY: &str = "consent_broker_credential_expiry_timestamp_seconds";

/// A world whose simulator registers `registered` on connector A's app (and no secret, so nothing
/// but a certificate can authenticate), and whose broker signs with `used`.
async fn world(registered: &TestCert, used: &TestCert, dir: &std::path::Path) -> World {
    let registration = registered.registration();
    World::with(
        |config: &mut Value| {
            config["apps"][0]["certificates"] = json!([registration]);
            config["apps"][0]["secrets"] = json!([]);
        },
        BrokerOptions {
            credential_a: Some(used.connector_lines(dir)),
            ..Default::default()
        },
    )
    .await
}

#[tokio::test]
async fn sign_in_and_refresh_with_a_certificate() {
    let cert = TestCert::valid();
    let dir = tempfile::tempdir().unwrap();
    let w = world(&cert, &cert, dir.path()).await;

    let conn = w.connect(&w.upn("alice")).await;
    let (status, first) = w.token(&conn, None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    // Entra's access tokens live about an hour: asking for two hours forces a refresh.
    let (status, second) = w.token(&conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(first["access_token"], second["access_token"]);
    assert_eq!(w.sim.token_grants("authorization_code").await, 1);
    assert_eq!(w.sim.token_grants("refresh_token").await, 1);

    // A retried refresh (the first attempt hit a 503) signs a new assertion: a jti is used once.
    w.sim
        .fault(json!({"endpoint": "token", "grant_type": "refresh_token", "kind": "unavailable", "count": 1}))
        .await;
    let (status, third) = w.token(&conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK, "{third}");
    assert_eq!(
        w.sim.token_grants("refresh_token").await,
        3,
        "the failed attempt and its retry"
    );
    let jtis = w.sim.assertion_jtis().await;
    assert_eq!(jtis.len(), 4, "one assertion per token request: {jtis:?}");
    let distinct: std::collections::HashSet<&String> = jtis.iter().collect();
    assert_eq!(distinct.len(), jtis.len(), "no jti sent twice: {jtis:?}");
    assert_eq!(
        metric(&w.broker, CREDENTIAL_ERRORS, "connector=\"files\",code=\"700027\""),
        None
    );
}

#[tokio::test]
async fn a_certificate_entra_does_not_know_fails_as_a_credential_error() {
    let registered = TestCert::valid();
    let other = TestCert::valid();
    let dir = tempfile::tempdir().unwrap();
    let w = world(&registered, &other, dir.path()).await;

    let s = w
        .session(json!({"connector": "files", "end_user": "u", "return_url": RETURN_A, "login_hint": w.upn("alice")}))
        .await;
    let landing = w.follow(s["connect_url"].as_str().unwrap()).await;
    // The user cannot fix this: the page says so and offers the way back with the category.
    let back = format!("{RETURN_A}?error=client_credential_invalid&#38;aadsts=700027");
    assert!(landing.body.contains(&back), "{}", landing.body);
    assert!(landing.body.contains("AADSTS700027"));
    let (_, poll) = w.poll_session(&s).await;
    assert_eq!(poll["category"], "client_credential_invalid", "{poll}");
    assert_eq!(poll["aadsts"], 700027, "{poll}");
    assert_eq!(
        metric(&w.broker, CREDENTIAL_ERRORS, "connector=\"files\",code=\"700027\""),
        Some(1.0)
    );
    assert!(!w.has_connection(crate::common::sim::CONTOSO_TID, "alice").await);
}

#[tokio::test]
async fn an_expired_certificate_stops_refreshes_without_flipping_the_connection() {
    let cert = TestCert::valid();
    let dir = tempfile::tempdir().unwrap();
    let w = world(&cert, &cert, dir.path()).await;
    let conn = w.connect(&w.upn("alice")).await;

    // Past the certificate's end on Entra's clock; Entra checks the client before the grant.
    w.sim.advance_clock(400 * 86_400).await;
    let (status, body) = w.token(&conn, Some(7_200)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["category"], "client_credential_invalid");
    assert_eq!(body["aadsts"], 700027);
    // The user can do nothing about it: the connection stays active for when the operator fixes it.
    let (stored, _) = w.broker.state.records.connection(&cid(&conn)).await.unwrap().unwrap();
    assert!(stored.reauth.is_none(), "{:?}", stored.reauth);
    assert_eq!(
        metric(&w.broker, CREDENTIAL_ERRORS, "connector=\"files\",code=\"700027\""),
        Some(1.0)
    );
}

/// The line of `logs` that mentions `needle` (panics with the logs when there is none).
fn log_line(logs: &str, needle: &str) -> String {
    logs.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no log line mentions {needle}:\n{logs}"))
        .to_string()
}

#[tokio::test]
async fn start_up_warns_about_credentials_close_to_expiry() {
    let soon = TestCert::rsa(-1, 10);
    let expired = TestCert::rsa(-30, -1);
    let fine = TestCert::rsa(-1, 60);
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, APP_A_SECRET).unwrap();
    let secret_expires_at = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::days(5);
    let secret_expiry = secret_expires_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();

    let lines = |cert: &TestCert, name: &str| {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        cert.connector_lines(&sub)
    };
    let mut logs = Vec::new();
    for (credential, kind, expires_at) in [
        (lines(&soon, "soon"), "certificate", soon.not_after),
        (lines(&expired, "expired"), "certificate", expired.not_after),
        (lines(&fine, "fine"), "certificate", fine.not_after),
        (
            format!(
                "client_secret_file = \"{}\"\nclient_secret_expires_at = \"{secret_expiry}\"",
                secret_file.display()
            ),
            "secret",
            secret_expires_at.unix_timestamp(),
        ),
    ] {
        let broker = Broker::start(
            Reserved::new(),
            "http://127.0.0.1:9",
            BrokerOptions {
                credential_a: Some(credential),
                ..Default::default()
            },
        )
        .await;
        // Every known expiry is exported, whether or not it is close; unknown ones are not.
        let exported = metric(
            &broker,
            CREDENTIAL_EXPIRY,
            &format!("connector=\"files\",kind=\"{kind}\""),
        );
        assert_eq!(exported, Some(expires_at as f64));
        assert_eq!(
            metric(&broker, CREDENTIAL_EXPIRY, "connector=\"crm\",kind=\"secret\""),
            None
        );
        logs.push(broker.logs());
        broker.stop().await;
    }
    let [soon_logs, expired_logs, fine_logs, secret_logs] = &logs[..] else {
        unreachable!("four brokers")
    };

    let line = log_line(soon_logs, &soon.thumbprint());
    assert!(
        line.contains("WARN")
            && line.contains("client certificate expires soon")
            && line.contains("connector=\"files\"")
            && line.contains("days_left=9"),
        "{line}"
    );
    let line = log_line(expired_logs, &expired.thumbprint());
    assert!(
        line.contains("ERROR") && line.contains("client certificate has expired"),
        "{line}"
    );
    assert!(
        fine_logs.contains("store values are encrypted at rest") && !fine_logs.contains(&fine.thumbprint()),
        "no warning 60 days ahead"
    );
    let line = log_line(secret_logs, &secret_expiry);
    assert!(
        line.contains("WARN") && line.contains("client secret expires soon") && line.contains("days_left=4"),
        "{line}"
    );

    // Neither the secret nor any part of a private key is ever logged.
    let logs = logs.concat();
    assert!(!logs.contains(APP_A_SECRET));
    for cert in [&soon, &expired, &fine] {
        let body: String = cert.key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
        for chunk in body.as_bytes().chunks(16) {
            assert!(
                !logs.contains(std::str::from_utf8(chunk).unwrap()),
                "key material logged"
            );
        }
    }
}
