//! The approval page follows its state (pending, request sent, approved, expired), keeps its
//! address across a retry, names the organization by domain, shows who publishes the connector,
//! and offers the low-impact route only where it can work.

use std::time::Duration;

use reqwest::StatusCode;

use crate::approval::{approval_page, approve_via_admin_link};
use crate::common::broker::BrokerOptions;
use crate::common::flows::World;
use crate::common::sim::FABRIKAM_TID;

fn flow_id(page: &str) -> String {
    page.rsplit('/').next().unwrap().to_string()
}

/// The inner text of the element with id `id` (its first text, up to the next tag).
fn text_at<'a>(html: &'a str, id: &str) -> Option<&'a str> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let start = at + html[at..].find('>')? + 1;
    Some(&html[start..start + html[start..].find('<')?])
}

#[tokio::test]
async fn a_waiting_page_offers_the_user_part_first_and_tells_no_lies_without_javascript() {
    let w = World::new().await;
    let (page, html) = approval_page(&w, "frank").await;
    let user_part = html.find("id=\"user-part\"").expect("user part");
    let admin_part = html.find("id=\"admin\"").expect("admin part");
    assert!(user_part < admin_part, "the user's actions come first");
    assert!(
        html[admin_part..].starts_with("id=\"admin\" class=\"admin\">\n<summary>I&#39;m an administrator</summary>")
            || html[admin_part..].starts_with("id=\"admin\" class=\"admin\">\n<summary>I'm an administrator</summary>"),
        "the admin part is behind \"I'm an administrator\": {}",
        &html[admin_part..admin_part + 120]
    );
    assert!(html.find("id=\"admin-link\"").unwrap() > admin_part);
    assert_eq!(
        text_at(&html, "organization"),
        Some("Organization: fabrikam.onmicrosoft.com")
    );
    // What the page says without a script is true without a script.
    assert!(
        html.contains("<p id=\"live-note\" class=\"hint\" data-live=\"This page updates by itself once it is approved.\">Reload this page to check whether it has been approved.</p>"),
        "'updates by itself' is said only by the script that does it: {html}"
    );
    assert!(!html.contains("continues by itself"));
    // No retry offered while it cannot succeed (90094 waits for an administrator).
    assert!(!html.contains("id=\"try-again\""), "{html}");
    // The page's address, to share.
    assert!(html.contains(&format!(
        "id=\"page-link\" class=\"link\" type=\"text\" readonly value=\"{page}\""
    )));
    // The support reference, with readable labels.
    assert!(
        html.contains(
            "<dt>Category</dt><dd><code>Administrator approval required (admin_approval_required)</code></dd>"
        )
    );
    assert!(html.contains(&format!("<dt>Reference</dt><dd><code>{}</code></dd>", flow_id(&page))));
    // No sentence twice. The message for IT is left out: it repeats the page by design, being
    // the text that is sent on.
    let body = &html[html.find("<body>").unwrap()..];
    let (before, rest) = body.split_at(body.find("<textarea id=\"it-message\"").unwrap());
    let mut body = format!("{before}{}", &rest[rest.find("</textarea>").unwrap()..]);
    // And the views the script may flip to, hidden until then.
    for view in ["<section id=\"approved-view\"", "<section id=\"expired-view\""] {
        let at = body.find(view).unwrap();
        let tag_end = at + body[at..].find('>').unwrap();
        assert!(body[at..tag_end].ends_with(" hidden"), "{}", &body[at..tag_end]);
        let end = at + body[at..].find("</section>").unwrap();
        body.replace_range(at..end, "");
    }
    let text: String = body
        .split('<')
        .map(|p| p.split_once('>').map_or(p, |(_, t)| t))
        .collect();
    let sentences: Vec<&str> = text
        .split(['.', '\n'])
        .map(str::trim)
        .filter(|s| s.len() > 30)
        .collect();
    assert!(sentences.len() > 10, "{sentences:?}");
    for (i, s) in sentences.iter().enumerate() {
        assert!(!sentences[i + 1..].contains(s), "said twice: {s}");
    }
}

#[tokio::test]
async fn a_retry_that_needs_approval_again_keeps_the_address_and_names_the_organization_by_domain() {
    let w = World::new().await;
    let (page, _) = approval_page(&w, "frank").await;
    // "Continue" from the page signs in again (naming the tenant by GUID); Fabrikam still needs
    // an administrator, so it ends on an approval page: the same one, the address sent to IT.
    let authorize = w.redirect_of(&format!("{page}/continue")).await;
    assert!(authorize.as_str().contains(FABRIKAM_TID), "{authorize}");
    let callback = w.redirect_of(authorize.as_str()).await;
    let again = w.redirect_of(callback.as_str()).await;
    assert_eq!(again.as_str(), page, "the retry ends on the page already shared");
    let html = w.http.get(&page).send().await.unwrap().text().await.unwrap();
    assert_eq!(
        text_at(&html, "organization"),
        Some("Organization: fabrikam.onmicrosoft.com")
    );
    assert!(!html.contains(&format!("Organization: {FABRIKAM_TID}")));

    // Approved from the shared address: that page turns approved and offers only "continue".
    let (code, _) = approve_via_admin_link(&w, &html, |u| u).await;
    assert_eq!(code, StatusCode::OK);
    let html = w.http.get(&page).send().await.unwrap().text().await.unwrap();
    assert!(
        html.contains("<h1 id=\"title\">Files Connector is approved</h1>"),
        "{html}"
    );
    assert!(html.contains("What your organization approved for Files Connector"));
    assert!(!html.contains("id=\"admin-link\"") && !html.contains("id=\"waiting-view\""));
}

#[tokio::test]
async fn consent_missing_offers_try_again_first() {
    let w = World::new().await;
    let s = w
        .session(serde_json::json!({"connector": "files", "end_user": "u", "login_hint": w.upn("alice")}))
        .await;
    let authorize = w.redirect_of(s["connect_url"].as_str().unwrap()).await;
    let narrowed = crate::common::flows::with_param(&authorize, "scope", "openid profile offline_access User.Read");
    let callback = w.redirect_of(narrowed.as_str()).await;
    let page = w.redirect_of(callback.as_str()).await;
    let html = w.http.get(page.clone()).send().await.unwrap().text().await.unwrap();
    let try_again = html.find("id=\"try-again\"").expect("try again, the user can consent");
    assert!(try_again < html.find("id=\"it-message\"").unwrap());
    // Another browser (no cookie) cannot continue: no button.
    let other = crate::common::broker::client();
    let html = other.get(page).send().await.unwrap().text().await.unwrap();
    assert!(!html.contains("id=\"try-again\""));
}

#[tokio::test]
async fn an_expired_page_says_so_and_offers_to_start_again() {
    let w = World::new().await;
    let (page, _) = approval_page(&w, "frank").await;
    let records = &w.broker.state.records;
    let mut approval = records
        .approval(&flow_id(&page).as_str().into())
        .await
        .unwrap()
        .unwrap();
    approval.expires_at = consent_broker::clock::now_unix() - 1;
    records.put_approval(&approval, Duration::from_secs(600)).await.unwrap();
    let html = w.http.get(&page).send().await.unwrap().text().await.unwrap();
    assert!(
        html.contains("<h1 id=\"title\">This approval page has expired</h1>"),
        "{html}"
    );
    assert!(html.contains("id=\"expired-view\" aria-labelledby=\"expired-heading\">"));
    for gone in [
        "id=\"admin-link\"",
        "id=\"it-message\"",
        "id=\"continue\"",
        "Waiting for",
    ] {
        assert!(!html.contains(gone), "{gone}");
    }
    // A connect session has no return URL here (out-of-band): the page says where to start.
    assert!(html.contains("Start again from Files Connector"), "{html}");
    assert_eq!(
        w.http
            .get(format!("{page}/status"))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()["status"],
        "expired"
    );
}

#[tokio::test]
async fn publisher_links_verified_status_and_who_asked_are_shown() {
    let w = World::with(
        |_| {},
        BrokerOptions {
            scopes_a: Some(
                r#"scopes = ["Files.Read.All", "Sites.Read.All"]
publisher_verified = true
publisher_name = "Files & Co"
publisher_url = "https://files.example/"
privacy_url = "https://files.example/privacy"
terms_url = "https://files.example/terms"
logo_url = "https://cdn.files.example/logo.png""#
                    .into(),
            ),
            ..Default::default()
        },
    )
    .await;
    let (page, html) = approval_page(&w, "frank").await;
    assert!(html.contains("<img class=\"logo\" src=\"https://cdn.files.example/logo.png\""));
    // The logo's origin, and only it, is added to the page's image sources.
    let r = w.http.get(&page).send().await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("img-src 'self' https://cdn.files.example;") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(
        html.contains("<span id=\"publisher-name\">Published by Files &#38; Co</span>")
            || html.contains("<span id=\"publisher-name\">Published by Files &amp; Co</span>"),
        "{html}"
    );
    assert!(html.contains("✓ Publisher verified by Microsoft"));
    assert!(html.contains("href=\"https://files.example/privacy\" rel=\"noopener noreferrer\">Privacy statement</a>"));
    assert!(
        html.contains(">Terms of use</a>") && html.contains(">Publisher&#39;s website</a>")
            || html.contains(">Publisher's website</a>")
    );
    assert!(html.contains("These are delegated permissions: Files Connector acts for each signed-in user and can only reach what that user can reach."));
    let sim_host = url::Url::parse(w.sim.base_url()).unwrap();
    let host = format!("{}:{}", sim_host.host_str().unwrap(), sim_host.port().unwrap());
    assert!(
        html.contains(&format!("Opens Microsoft&#39;s admin-consent page at {host}"))
            || html.contains(&format!("Opens Microsoft's admin-consent page at {host}")),
        "the button says where it leads: {html}"
    );
    let message = &html[html.find("id=\"it-message\"").unwrap()..html.find("</textarea>").unwrap()];
    assert!(
        message.contains(&format!(
            "I ({}) tried to sign in to Files Connector on ",
            w.upn("frank")
        )),
        "{message}"
    );
    assert!(
        message.contains(" UTC, and our organization (fabrikam.onmicrosoft.com)"),
        "{message}"
    );
    assert!(message.contains("(it can only reach what each signed-in user can reach)"));
    // Verified and nothing admin-only: the low-impact route can work, so it is offered.
    assert!(
        html.contains("badge-low") && html.contains("Permission classifications"),
        "{html}"
    );
    assert!(message.contains("Permission classifications"));
    // The one place the old portal path could lead nowhere: it is not given before first consent.
    assert!(
        !html.contains("Enterprise applications &gt; Files Connector &gt; Permissions")
            && !html.contains("Enterprise applications > Files Connector > Permissions")
    );
}

#[tokio::test]
async fn no_low_impact_advice_for_admin_only_permissions_even_when_verified() {
    let w = World::with(
        |_| {},
        BrokerOptions {
            scopes_a: Some("scopes = [\"Files.Read.All\", \"Directory.Read.All\"]\npublisher_verified = true".into()),
            ..Default::default()
        },
    )
    .await;
    let (_, html) = approval_page(&w, "frank").await;
    assert!(
        html.contains("Directory.Read.All") && html.contains("badge-admin"),
        "{html}"
    );
    assert!(!html.contains("badge-low") && !html.contains("low impact"), "{html}");
}

#[tokio::test]
async fn an_expired_page_with_a_return_url_starts_again_at_the_connector() {
    let w = World::new().await;
    let s = w
        .session(serde_json::json!({
            "connector": "files", "end_user": "u", "login_hint": w.upn("frank"),
            "return_url": crate::common::broker::RETURN_A, "state": "st-1",
        }))
        .await;
    let authorize = w.redirect_of(s["connect_url"].as_str().unwrap()).await;
    let callback = w.redirect_of(authorize.as_str()).await;
    let page = w.redirect_of(callback.as_str()).await.to_string();
    let records = &w.broker.state.records;
    let mut approval = records
        .approval(&flow_id(&page).as_str().into())
        .await
        .unwrap()
        .unwrap();
    approval.expires_at = consent_broker::clock::now_unix() - 1;
    records.put_approval(&approval, Duration::from_secs(600)).await.unwrap();
    let html = w.http.get(&page).send().await.unwrap().text().await.unwrap();
    let at = html.find("id=\"start-again\"").expect("start again");
    let tag = &html[at..at + html[at..].find('>').unwrap()];
    let href = tag[tag.find("href=\"").unwrap() + 6..tag.len() - 1]
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    let back = url::Url::parse(&href).unwrap();
    assert!(href.starts_with(crate::common::broker::RETURN_A), "{href}");
    assert_eq!(
        crate::common::flows::param(&back, "error").as_deref(),
        Some("admin_approval_required")
    );
    assert_eq!(crate::common::flows::param(&back, "state").as_deref(), Some("st-1"));
    // "Continue" on an expired page starts nothing and leads back to the page.
    let r = w.http.get(format!("{page}/continue")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("Back to the approval page"));
}
