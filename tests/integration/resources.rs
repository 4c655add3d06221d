//! Scopes of other resources than Microsoft Graph: the simulator issues a token per resource and
//! refuses a token request spanning several (AADSTS700022), the broker consents to every resource
//! and asks for tokens of the first through a full sign-in and refresh, `check-config` warns of a
//! mixed connector, and the approval page describes a mixed connector's permissions (known Graph,
//! Azure Storage, an unknown custom API) with advice that follows their flags, in both languages.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::broker::BrokerOptions;
use crate::common::flows::World;
use crate::common::sim::{ALICE, APP_A_CLIENT_ID, APP_A_SECRET, CONTOSO_TID, Sim, standard_config};

const REDIRECT: &str = "http://127.0.0.1:4000/v1/callback";
const STORAGE: &str = "https://storage.azure.com/user_impersonation";
const CUSTOM: &str = "api://11111111-2222-3333-4444-555555555555/access_as_user";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Alice signs in at Contoso (user consent allowed) asking for `scope`; returns the code.
async fn code_for(sim: &Sim, scope: &str) -> String {
    let url = format!("{}/{CONTOSO_TID}/oauth2/v2.0/authorize", sim.base_url());
    let resp = http()
        .get(&url)
        .query(&[
            ("client_id", APP_A_CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", scope),
            ("state", "st"),
            ("nonce", "n"),
            ("login_hint", ALICE),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap_or_else(|| panic!("no code: {location}"))
        .1
        .into_owned()
}

async fn token(sim: &Sim, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut all = vec![("client_id", APP_A_CLIENT_ID), ("client_secret", APP_A_SECRET)];
    all.extend_from_slice(form);
    let resp = http()
        .post(format!("{}/{CONTOSO_TID}/oauth2/v2.0/token", sim.base_url()))
        .form(&all)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

#[tokio::test]
async fn the_simulator_issues_a_token_per_resource_and_refuses_mixed_requests() {
    let sim = Sim::start(standard_config(&[REDIRECT])).await;
    let all = format!("openid profile offline_access Files.Read.All {STORAGE} {CUSTOM}");
    let code = code_for(&sim, &all).await;
    let redeem = |scope: String| {
        let code = code.clone();
        let sim = &sim;
        async move {
            let form = [
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
                ("scope", scope.as_str()),
            ];
            token(sim, &form).await
        }
    };

    let (status, body) = redeem(all.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_scope");
    assert_eq!(body["error_codes"], json!([700022]));
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("contains more than one resource"),
        "{body}"
    );

    // The refused request used nothing up: the same code gets a token for one resource.
    let (status, body) = redeem(format!("openid offline_access {STORAGE}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], format!("{STORAGE} openid profile offline_access"));
    let refresh_token = body["refresh_token"].as_str().unwrap().to_string();

    // The refresh token serves every consented resource, one per request.
    for (scope, answered) in [
        (
            "Files.Read.All",
            "Files.Read.All openid profile offline_access".to_string(),
        ),
        (CUSTOM, format!("{CUSTOM} openid profile offline_access")),
    ] {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
            ("scope", scope),
        ];
        let (status, body) = token(&sim, &form).await;
        assert_eq!(status, StatusCode::OK, "{scope}: {body}");
        assert_eq!(body["scope"], answered.as_str());
    }
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.as_str()),
        ("scope", "Files.Read.All https://storage.azure.com/user_impersonation"),
    ];
    let (status, body) = token(&sim, &form).await;
    assert_eq!(
        (status, &body["error_codes"]),
        (StatusCode::BAD_REQUEST, &json!([700022])),
        "{body}"
    );
    // Without a scope, the token is for the grant's first resource.
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.as_str()),
    ];
    let (status, body) = token(&sim, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "Files.Read.All openid profile offline_access");
}

#[tokio::test]
async fn a_connector_of_azure_storage_signs_in_and_refreshes_with_its_resource() {
    let opts = BrokerOptions {
        scopes_a: Some(format!(r#"scopes = ["{STORAGE}", "Files.Read.All", "{CUSTOM}"]"#)),
        ..BrokerOptions::default()
    };
    let w = World::with(|_| {}, opts).await;

    // /authorize asks for consent to every resource.
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("alice")}))
        .await;
    let authorize = w.redirect_of(s["connect_url"].as_str().unwrap()).await;
    let asked = crate::common::flows::param(&authorize, "scope").unwrap();
    for scope in [STORAGE, "Files.Read.All", CUSTOM, "openid", "offline_access"] {
        assert!(asked.split(' ').any(|s| s == scope), "{scope} in {asked}");
    }

    // The code redemption and the refresh name Azure Storage only (the simulator refuses a
    // request spanning resources), and the token served is Azure Storage's.
    let id = w.connect(&w.upn("alice")).await;
    let (status, first) = w.token(&id, None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["scope"], format!("{STORAGE} openid profile offline_access"));
    let (status, refreshed) = w.token(&id, Some(7_200)).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert_ne!(refreshed["access_token"], first["access_token"], "refreshed");
    assert_eq!(refreshed["scope"], format!("{STORAGE} openid profile offline_access"));
    assert_eq!(w.sim.token_grants("refresh_token").await, 1);
    assert_eq!(w.sim.token_grants("authorization_code").await, 1);

    // The token identity matches the connector's scopes: no refresh for the next call.
    let (status, again) = w.token(&id, None).await;
    assert_eq!(
        (status, &again["access_token"]),
        (StatusCode::OK, &refreshed["access_token"])
    );
    assert_eq!(w.sim.token_grants("refresh_token").await, 1);
}

const MIXED: &str = r#"scopes = ["Files.Read.All", "User.Read.All", "https://storage.azure.com/user_impersonation", "api://11111111-2222-3333-4444-555555555555/access_as_user"]
publisher_verified = true"#;

/// Frank (Fabrikam: users may not consent) signs in through the mixed connector and lands on the
/// approval page; returns its HTML in the language `accept_language` asks for.
async fn mixed_approval_page(w: &World, accept_language: &str) -> String {
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("frank")}))
        .await;
    let authorize = w.redirect_of(s["connect_url"].as_str().unwrap()).await;
    let callback = w.redirect_of(authorize.as_str()).await;
    let page = w.redirect_of(callback.as_str()).await;
    assert!(page.path().starts_with("/v1/approval/"), "{page}");
    let resp = w
        .http
        .get(page)
        .header("accept-language", accept_language)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.text().await.unwrap().replace("&#39;", "'").replace("&gt;", ">")
}

/// The text of the element with id `id` (up to its closing tag).
fn element<'a>(html: &'a str, id: &str, close: &str) -> &'a str {
    let start = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id}"));
    let end = html[start..].find(close).map_or(html.len(), |e| start + e);
    &html[start..end]
}

#[tokio::test]
async fn the_approval_page_describes_a_mixed_connector_and_advises_by_the_flags() {
    let opts = BrokerOptions {
        scopes_a: Some(MIXED.into()),
        ..BrokerOptions::default()
    };
    let w = World::with(|_| {}, opts).await;

    let html = mixed_approval_page(&w, "en").await;
    let list = element(&html, "permissions", "</ul>");
    let row = |label: &str| -> &str {
        let at = list
            .find(&format!("<strong>{label}</strong>"))
            .unwrap_or_else(|| panic!("{label}: {list}"));
        let end = list[at..].find("</li>").map_or(list.len(), |e| at + e);
        &list[at..end]
    };
    let files = row("Files.Read.All");
    assert!(
        files.contains("Read all files you can access") && !files.contains("badge-low"),
        "{files}"
    );
    assert!(!files.contains("badge-admin"), "{files}");
    let all_users = row("User.Read.All");
    assert!(
        all_users.contains("badge-admin") && !all_users.contains("badge-low"),
        "{all_users}"
    );
    let storage = row("user_impersonation (Azure Storage)");
    assert!(
        storage.contains("Use Azure Storage as you") && !storage.contains("badge-low"),
        "{storage}"
    );
    let custom = row("access_as_user on api://11111111-2222-3333-4444-555555555555");
    assert!(custom.contains("ask the app's publisher what it allows"), "{custom}");
    assert!(
        !custom.contains("badge"),
        "no flags for what nobody here knows: {custom}"
    );
    // User.Read.All always needs an administrator: classifying the rest as low impact would not let
    // users approve the connector, so no permission is flagged for it.
    assert!(!list.contains("badge-low"), "{list}");

    let advice = element(&html, "advice", "</ul>");
    assert!(
        advice.contains("Always need an administrator's approval: User.Read.All."),
        "{advice}"
    );
    assert!(
        advice.contains("Need no administrator in organizations that let users approve any app: Files.Read.All, user_impersonation (Azure Storage), openid, profile, offline_access."),
        "{advice}"
    );
    assert!(
        advice
            .contains("Not described here (check them in the Microsoft Entra admin center): access_as_user on api://"),
        "{advice}"
    );
    let fixes = element(&html, "fixes", "</ol>");
    assert!(!fixes.contains("low impact"), "{fixes}");
    let message = element(&html, "it-message", "</textarea>");
    for line in [
        "- user_impersonation (Azure Storage): Use Azure Storage as you",
        "Always need an administrator's approval: User.Read.All.",
        "let users approve any app: Files.Read.All, user_impersonation (Azure Storage)",
        "Not described here",
    ] {
        assert!(message.contains(line), "{line}: {message}");
    }

    let html = mixed_approval_page(&w, "de-DE,de;q=0.9").await;
    let list = element(&html, "permissions", "</ul>");
    for text in [
        "Alle Dateien lesen, auf die Sie zugreifen können",
        "<strong>user_impersonation (Azure Storage)</strong>: Azure Storage in Ihrem Namen nutzen",
        "<strong>access_as_user für api://11111111-2222-3333-4444-555555555555</strong>",
        "fragen Sie den Herausgeber der App, was sie erlaubt",
    ] {
        assert!(list.contains(text), "{text}: {list}");
    }
    let message = element(&html, "it-message", "</textarea>");
    assert!(
        message.contains("Brauchen immer die Freigabe einer Administratorin oder eines Administrators: User.Read.All."),
        "{message}"
    );
    assert!(!message.contains("geringes Risiko"), "{message}");
}

#[tokio::test]
async fn an_unverified_publisher_gets_no_low_impact_advice() {
    let opts = BrokerOptions {
        scopes_a: Some(r#"scopes = ["Files.Read.All", "https://storage.azure.com/user_impersonation"]"#.into()),
        ..BrokerOptions::default()
    };
    let w = World::with(|_| {}, opts).await;
    let html = mixed_approval_page(&w, "en").await;
    assert!(!element(&html, "permissions", "</ul>").contains("badge-low"));
    assert!(!html.contains("low impact"), "{html}");
    assert!(
        element(&html, "advice", "</ul>").contains("Need no administrator in organizations that let users approve any app: Files.Read.All, user_impersonation (Azure Storage)"),
        "{html}"
    );
}

#[test]
fn check_config_warns_of_a_connector_mixing_resources() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1"
plain_http = true
[store]
backend = "memory"
[[connectors]]
id = "qlik"
display_name = "Qlik"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret_env = "CB_MIXED_SECRET"
scopes = ["https://contoso.crm.dynamics.com/user_impersonation", "{STORAGE}"]
return_urls = ["https://app.example.com/cb"]
"#
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_consent-broker"))
        .arg("check-config")
        .arg(&file)
        .env("CB_MIXED_SECRET", "s3cret")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a warning, not an error: {stderr}");
    assert!(
        stderr.contains("warning: connector qlik: its scopes name 2 resources (https://contoso.crm.dynamics.com, https://storage.azure.com)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("tokens are for https://contoso.crm.dynamics.com only"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"));
}

/// The same page in a real headless Chromium: what a person reads in the list and the advice.
#[tokio::test]
async fn in_chromium_the_mixed_connectors_page_reads_as_described() {
    use fantoccini::Locator;
    let opts = BrokerOptions {
        scopes_a: Some(MIXED.into()),
        ..BrokerOptions::default()
    };
    let w = World::with(|_| {}, opts).await;
    let browser = crate::common::browser::Browser::start().await;
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("frank")}))
        .await;
    browser.client.goto(s["connect_url"].as_str().unwrap()).await.unwrap();
    let text = |css: &'static str| {
        let client = browser.client.clone();
        async move { client.find(Locator::Css(css)).await.unwrap().text().await.unwrap() }
    };
    let permissions = text("#permissions").await;
    for line in [
        "Files.Read.All: Read all files you can access",
        "user_impersonation (Azure Storage): Use Azure Storage as you",
        "access_as_user on api://11111111-2222-3333-4444-555555555555: A permission of an API this page does not know",
    ] {
        assert!(permissions.contains(line), "{line}: {permissions}");
    }
    // The advice is the administrator's: behind "I'm an administrator".
    assert_eq!(text("#advice").await, "", "closed for the user");
    browser
        .client
        .find(Locator::Css("#admin > summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let advice = text("#advice").await;
    assert!(
        advice.contains("Always need an administrator's approval: User.Read.All."),
        "{advice}"
    );
    assert!(advice.contains("Not described here"), "{advice}");
    browser.screenshot("approval-mixed-connector").await;
    browser.close().await;
}
