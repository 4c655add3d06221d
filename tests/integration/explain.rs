//! `POST /v1/explain` and `consent-broker explain`.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::broker::KEY_A;
use crate::common::flows::World;

const PASTED: &str = "Sorry, but we're having trouble signing you in.\nAADSTS50105: Your administrator has configured the application Files Connector ('a1b2') to block users unless they are specifically granted ('assigned') access to the application.\nTrace ID: 7c839d05-4806-48f2-ba40-bf4128382500\nCorrelation ID: b94f5bce-b15e-48c6-a713-fc07c5c41a77\nTimestamp: 2025-01-01 00:00:00Z";

#[tokio::test]
async fn explain_api_answers_the_contract_shape() {
    let w = World::new().await;
    let (status, e) = w
        .api(Method::POST, "/v1/explain", Some(KEY_A), Some(json!({"text": PASTED})))
        .await;
    assert_eq!(status, StatusCode::OK, "{e}");
    assert_eq!(e["category"], "not_assigned");
    assert_eq!(e["reason"], "user_not_assigned");
    assert_eq!(e["aadsts"], json!([50105]));
    assert_eq!(e["oauth_error"], json!(null));
    assert_eq!(e["suberror"], json!(null));
    assert_eq!(e["trace_id"], "7c839d05-4806-48f2-ba40-bf4128382500");
    assert_eq!(e["correlation_id"], "b94f5bce-b15e-48c6-a713-fc07c5c41a77");
    assert_eq!(e["who_fixes"], "tenant_admin");
    assert!(e["user_message"].as_str().unwrap().len() > 10);
    assert!(e["admin_message"].as_str().unwrap().contains("Assign"));

    let (status, e) = w
        .api(
            Method::POST,
            "/v1/explain",
            Some(KEY_A),
            Some(json!({"text": "nothing to see"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (e["category"].as_str(), e["aadsts"].clone()),
        (Some("unknown"), json!([]))
    );
    assert_eq!(e["who_fixes"], "unknown");
}

#[tokio::test]
async fn explain_api_refuses_bad_input() {
    let w = World::new().await;
    let (status, _) = w
        .api(Method::POST, "/v1/explain", None, Some(json!({"text": PASTED})))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, e) = w
        .api(
            Method::POST,
            "/v1/explain",
            Some(KEY_A),
            Some(json!({"text": "a".repeat(65 * 1024)})),
        )
        .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("text_too_large"))
    );
    let (status, e) = w
        .api(Method::POST, "/v1/explain", Some(KEY_A), Some(json!({"txt": "x"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    let (status, _) = w
        .api(Method::POST, "/v1/explain", Some(KEY_A), Some(json!({"text": 5})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn explains_errors_the_simulator_really_sends() {
    // Whatever the broker's callback received for a tenant needing approval explains the same way.
    let w = World::new().await;
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("frank"), "tenant": crate::common::sim::FABRIKAM_TID}))
        .await;
    let authorize = w.redirect_of(s["connect_url"].as_str().unwrap()).await;
    let callback = w.redirect_of(authorize.as_str()).await;
    let (status, e) = w
        .api(
            Method::POST,
            "/v1/explain",
            Some(KEY_A),
            Some(json!({"text": callback.as_str()})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(e["category"], "admin_approval_required");
    assert_eq!(e["aadsts"], json!([90094]));
    assert_eq!(e["oauth_error"], "access_denied");
    assert!(e["trace_id"].is_string() && e["correlation_id"].is_string());
}

const BIN: &str = env!("CARGO_BIN_EXE_consent-broker");

#[test]
fn explain_cli_reads_an_argument_or_stdin() {
    let out = std::process::Command::new(BIN)
        .args(["explain", "--json", PASTED])
        .output()
        .unwrap();
    assert!(out.status.success());
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["category"], "not_assigned");
    assert_eq!(e["aadsts"], json!([50105]));

    let mut child = std::process::Command::new(BIN)
        .arg("explain")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        b"AADSTS7000222: The provided client secret keys are expired",
    )
    .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("client_credential_invalid") && text.contains("AADSTS7000222") && text.contains("operator"),
        "{text}"
    );
}

#[test]
fn explain_cli_reads_a_file_and_answers_in_german() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pasted.txt");
    std::fs::write(
        &path,
        "You don't have access to this\nTroubleshooting details\nError Code: 53003\nRequest Id: 7c839d05-4806-48f2-ba40-bf4128382500\nCorrelation Id: b94f5bce-b15e-48c6-a713-fc07c5c41a77\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["explain", "--lang", "de", "--file"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for part in [
        "Anmeldefehler von Microsoft Entra",
        "Kategorie:",
        "conditional_access (blocked_by_policy)",
        "AADSTS53003",
        "Sicherheitsrichtlinie",
        "(tenant_admin)",
        "Trace-ID:",
        "7c839d05-4806-48f2-ba40-bf4128382500",
        "Korrelations-ID:",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }

    let out = std::process::Command::new(BIN)
        .args(["explain", "--json", "--lang", "de", "--file"])
        .arg(&path)
        .output()
        .unwrap();
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["category"], "conditional_access");
    assert_eq!(e["aadsts"], json!([53003]));
    assert_eq!(e["trace_id"], "7c839d05-4806-48f2-ba40-bf4128382500");
    assert!(e["admin_message"].as_str().unwrap().contains("Richtlinie"), "{e}");

    let missing = std::process::Command::new(BIN)
        .args(["explain", "--file"])
        .arg(dir.path().join("nope.txt"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.txt"));
    let both = std::process::Command::new(BIN)
        .args(["explain", "text", "--file"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!both.status.success(), "a text and a file at once is refused");
}

#[tokio::test]
async fn explain_api_classifies_pages_without_a_code_and_keeps_other_providers_unknown() {
    let w = World::new().await;
    for (text, category) in [
        (
            "Need admin approval\nFiles needs permission to access resources in your organization that only an admin can grant.",
            "admin_approval_required",
        ),
        ("Administratorgenehmigung erforderlich", "admin_approval_required"),
        ("You can't get there from here", "conditional_access"),
        ("Error Code: 530099", "conditional_access"),
        (
            "error=access_denied&error_description=AADSTS53003",
            "conditional_access",
        ),
        (
            r#"{"error": "invalid_grant", "error_description": "Token has been expired or revoked."}"#,
            "unknown",
        ),
        ("Okta: User is not assigned to the client application.", "unknown"),
    ] {
        let (status, e) = w
            .api(Method::POST, "/v1/explain", Some(KEY_A), Some(json!({ "text": text })))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(e["category"], category, "{text}: {e}");
    }
}
