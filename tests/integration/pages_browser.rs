//! Every state of the approval page in a real headless Chromium, in English and German, at desktop
//! (1280 px) and phone (390 px) width: what is shown and what is not, the flip to "approved"
//! without a reload, and no sideways scrolling on a phone. Screenshots go to target/screenshots/.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::json;

use crate::approval::approve_via_admin_link;
use crate::common::browser::Browser;
use crate::common::flows::{World, with_param};

/// The words each state is recognised by, per language.
struct Words {
    tag: &'static str,
    lang: &'static str,
    pending_title: &'static str,
    approved_title: &'static str,
    expired_title: &'static str,
    requested_status: &'static str,
    diagnosis: &'static str,
    admin_toggle: &'static str,
}

const EN: Words = Words {
    tag: "en",
    lang: "en-US",
    pending_title: "Files Connector needs your organization's approval",
    approved_title: "Files Connector is approved",
    expired_title: "This approval page has expired",
    requested_status: "Your request is with your administrators.",
    diagnosis: "Approved, but still not working?",
    admin_toggle: "I'm an administrator",
};

const DE: Words = Words {
    tag: "de",
    lang: "de-DE",
    pending_title: "Files Connector braucht die Freigabe Ihrer Organisation",
    approved_title: "Files Connector ist freigegeben",
    expired_title: "Diese Freigabeseite ist abgelaufen",
    requested_status: "Ihre Anfrage liegt bei Ihren Administratoren.",
    diagnosis: "Freigegeben, aber es funktioniert trotzdem nicht?",
    admin_toggle: "Ich bin Administrator/in",
};

async fn text(b: &Browser, css: &str) -> String {
    b.client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn shown(b: &Browser, css: &str) -> bool {
    match b.client.find(Locator::Css(css)).await {
        Ok(e) => e.is_displayed().await.unwrap(),
        Err(_) => false,
    }
}

async fn js(b: &Browser, script: &str) -> serde_json::Value {
    b.client.execute(script, vec![]).await.unwrap()
}

/// No serious or critical accessibility violation on the current page (axe-core).
async fn accessible(b: &Browser, name: &str) {
    let violations = b.accessibility_violations().await;
    assert!(violations.is_empty(), "{name}: {violations:#?}");
}

/// Screenshots at both widths, checking that the phone width never scrolls sideways, and the
/// page's accessibility.
async fn shoot(b: &Browser, name: &str) {
    accessible(b, name).await;
    for (width, height) in [(1280, 1000), (390, 844)] {
        b.client.set_window_size(width, height).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let overflow = js(
            b,
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        )
        .await;
        assert!(
            overflow.as_i64().unwrap() <= 0,
            "{name} at {width} px scrolls sideways by {overflow} px"
        );
        b.screenshot(&format!("{name}-{width}")).await;
    }
    b.client.set_window_size(1280, 1000).await.unwrap();
}

async fn wait_for_title(b: &Browser, title: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = text(b, "#title").await;
        if now == title {
            return;
        }
        assert!(Instant::now() < deadline, "the page did not turn to {title:?}: {now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Signs `who` in through the browser to their approval page; returns its URL.
async fn open_page(w: &World, b: &Browser, who: &str) -> String {
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn(who)}))
        .await;
    b.client.goto(s["connect_url"].as_str().unwrap()).await.unwrap();
    let url = b.client.current_url().await.unwrap();
    assert!(url.path().starts_with("/v1/approval/"), "{url}");
    url.to_string()
}

async fn every_state(words: &Words) {
    let b = Browser::start_in(words.lang).await;
    let tag = words.tag;
    // Worlds of their own: an approval in one tenant shows on the other tenants' pages ("approved
    // for another organization").
    let w = World::new().await;
    // Pending (90094, Fabrikam's workflow is off), then approved in another window: the page
    // flips by itself, announces it and moves focus to "continue".
    let frank = open_page(&w, &b, "frank").await;
    assert_eq!(text(&b, "#title").await, words.pending_title);
    assert!(text(&b, "#organization").await.ends_with("fabrikam.onmicrosoft.com"));
    assert_eq!(text(&b, "#admin > summary").await, words.admin_toggle);
    assert!(!shown(&b, "#continue").await && !shown(&b, "#try-again").await);
    shoot(&b, &format!("approval-pending-{tag}")).await;
    b.client
        .find(Locator::Css("#admin > summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let admin_link = b
        .client
        .find(Locator::Id("admin-link"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    shoot(&b, &format!("approval-pending-admin-{tag}")).await;
    let user_window = b.client.window().await.unwrap();
    let admin_window = b.client.new_window(true).await.unwrap();
    b.client.switch_to_window(admin_window.handle).await.unwrap();
    b.client.goto(&admin_link).await.unwrap();
    b.client.close_window().await.unwrap();
    b.client.switch_to_window(user_window).await.unwrap();
    wait_for_title(&b, words.approved_title).await;
    assert_eq!(
        b.client.current_url().await.unwrap().as_str(),
        frank,
        "no reload, same address"
    );
    assert!(shown(&b, "#approved-view").await && shown(&b, "#continue").await);
    assert!(!shown(&b, "#waiting-view").await && !shown(&b, "#admin").await);
    assert_eq!(
        js(&b, "return document.activeElement && document.activeElement.id;").await,
        json!("continue")
    );
    let region = b.client.find(Locator::Id("approval-status")).await.unwrap();
    assert_eq!(region.attr("role").await.unwrap().as_deref(), Some("status"));
    shoot(&b, &format!("approval-approved-{tag}")).await;

    // After a reload it is the same page: approved, nothing else.
    b.client.refresh().await.unwrap();
    assert_eq!(text(&b, "#title").await, words.approved_title);
    assert!(shown(&b, "#continue").await && !shown(&b, "#it-message").await && !shown(&b, "#admin-link").await);
    shoot(&b, &format!("approval-approved-reloaded-{tag}")).await;

    let w = World::new().await;

    // Request sent (90095, Northwind's workflow is on).
    let nina_first = open_page(&w, &b, "nina").await;
    assert_eq!(text(&b, "#title").await, words.pending_title);
    assert_eq!(text(&b, "#approval-status").await, words.requested_status);
    assert!(
        shown(&b, "#copy-message").await && shown(&b, "#copy-link").await,
        "the script ran"
    );
    let live = b.client.find(Locator::Id("live-note")).await.unwrap();
    assert_eq!(
        live.text().await.unwrap(),
        live.attr("data-live").await.unwrap().unwrap(),
        "with the script, the page says it follows by itself"
    );
    assert!(!shown(&b, "#admin-link").await, "the admin part is closed for the user");
    assert!(!shown(&b, "#try-again").await && !shown(&b, "#approved-view").await);
    shoot(&b, &format!("approval-requested-{tag}")).await;

    // Approved but still failing: Northwind approves only one of the two permissions, and nina's
    // next sign-in fails again on a new page (her first one turned approved).
    let html = b.client.source().await.unwrap();
    let (code, _) = approve_via_admin_link(&w, &html, |u| {
        with_param(&u, "scope", "https://graph.microsoft.com/Files.Read.All")
    })
    .await;
    assert_eq!(code, reqwest::StatusCode::OK);
    let nina_second = open_page(&w, &b, "nina").await;
    assert_ne!(nina_second, nina_first);
    assert_eq!(text(&b, "#diagnosis-heading").await, words.diagnosis);
    assert!(text(&b, "#diagnosis").await.contains("Sites.Read.All"));
    b.client
        .find(Locator::Css("#admin > summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(shown(&b, "#admin-link").await, "re-approval is the admin's fix");
    shoot(&b, &format!("approval-still-failing-{tag}")).await;

    // Expired: the same page past its time.
    let records = &w.broker.state.records;
    let id = nina_second.rsplit('/').next().unwrap();
    let mut approval = records.approval(&id.into()).await.unwrap().unwrap();
    approval.expires_at = consent_broker::clock::now_unix() - 1;
    records.put_approval(&approval, Duration::from_secs(600)).await.unwrap();
    b.client.refresh().await.unwrap();
    assert_eq!(text(&b, "#title").await, words.expired_title);
    assert!(shown(&b, "#expired-view").await);
    assert!(!shown(&b, "#it-message").await && !shown(&b, "#admin").await && !shown(&b, "#continue").await);
    shoot(&b, &format!("approval-expired-{tag}")).await;

    b.close().await;
}

#[tokio::test]
async fn every_approval_page_state_in_english() {
    every_state(&EN).await;
}

#[tokio::test]
async fn every_approval_page_state_in_german() {
    every_state(&DE).await;
}

/// One code of each category that ends on an error page (the two approval categories end on the
/// approval page instead).
const CATEGORY_CODES: &[(&str, u32)] = &[
    ("user_declined", 65004),
    ("not_assigned", 50105),
    ("conditional_access", 53003),
    ("interaction_required", 50076),
    ("reauth_required", 50013),
    ("app_misconfigured", 50011),
    ("tenant_misconfigured", 90002),
    ("client_credential_invalid", 7000215),
    ("transient", 90033),
    ("invalid_request", 500141),
    ("unknown", 99999991),
];

/// Starts a sign-in outside the browser, hands its binding cookie to the browser, and sends the
/// browser to the callback with Entra's error for `code`: the page a user sees after that error.
async fn error_page_in(w: &World, b: &Browser, code: u32) {
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("alice")}))
        .await;
    let r = crate::common::broker::client()
        .get(s["connect_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let (name, value) = cookie.split(';').next().unwrap().split_once('=').unwrap();
    let authorize = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let state = crate::common::flows::param(&authorize, "state").unwrap();
    b.client.goto(&format!("{}/healthz", w.broker.url)).await.unwrap();
    // Set by script: WebDriver's add-cookie refuses an IP address as the cookie's domain.
    b.client
        .execute(
            "document.cookie = arguments[0] + '=' + arguments[1] + '; path=/';",
            vec![json!(name), json!(value)],
        )
        .await
        .unwrap();
    let mut callback = url::Url::parse(&format!("{}/v1/callback", w.broker.url)).unwrap();
    callback
        .query_pairs_mut()
        .append_pair("state", &state)
        // An unknown code comes with an OAuth error nobody knows either.
        .append_pair(
            "error",
            if code == 99999991 {
                "unheard_of"
            } else {
                "access_denied"
            },
        )
        .append_pair("error_description", &format!("AADSTS{code}: the sign-in failed."))
        .append_pair("trace_id", "0b9d1e2f-1111-4222-8333-444455556666")
        .append_pair("correlation_id", "7c8d9e0f-aaaa-4bbb-8ccc-ddddeeeeffff");
    b.client.goto(callback.as_str()).await.unwrap();
}

/// No sentence of the page's visible text appears twice.
async fn no_sentence_twice(b: &Browser, name: &str) {
    let text = text(b, "main").await;
    let sentences: Vec<&str> = text
        .split(['.', '\n'])
        .map(str::trim)
        .filter(|s| s.len() > 25)
        .collect();
    for (i, s) in sentences.iter().enumerate() {
        assert!(!sentences[i + 1..].contains(s), "{name}: said twice: {s}");
    }
}

#[tokio::test]
async fn every_error_category_has_a_way_on_and_a_support_reference() {
    let w = World::new().await;
    for (lang, words) in [
        ("en-US", ("Trace ID", "Copy details")),
        ("de-DE", ("Trace-ID", "Details kopieren")),
    ] {
        let b = Browser::start_in(lang).await;
        for (category, code) in CATEGORY_CODES {
            error_page_in(&w, &b, *code).await;
            let name = format!("error-{category}-{}", &lang[..2]);
            let way_on = shown(&b, "#primary-action").await || shown(&b, "#go-back").await;
            assert!(way_on, "{name}: no way on");
            assert!(shown(&b, "#copy-details").await, "{name}");
            assert_eq!(text(&b, "#copy-details").await, words.1);
            // The reference holds what support asks for, in the page's language.
            let details = b
                .client
                .find(Locator::Id("copy-details"))
                .await
                .unwrap()
                .attr("data-text")
                .await
                .unwrap()
                .unwrap();
            assert!(details.contains(&format!("AADSTS{code}")), "{name}: {details}");
            assert!(
                details.contains(&format!("{}: 0b9d1e2f-1111-4222-8333-444455556666", words.0)),
                "{details}"
            );
            assert!(details.contains(&format!("({category})")), "{details}");
            no_sentence_twice(&b, &name).await;
            accessible(&b, &name).await;
            if lang == "en-US" || *category == "user_declined" {
                shoot(&b, &name).await;
            }
        }
        b.close().await;
    }
}

#[tokio::test]
async fn the_code_page_copies_the_whole_code_and_reads_at_phone_width() {
    let w = World::new().await;
    let b = Browser::start().await;
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("alice")}))
        .await;
    b.client.goto(s["connect_url"].as_str().unwrap()).await.unwrap();
    let code_el = b.client.find(Locator::Id("handoff-code")).await.unwrap();
    let code = code_el.attr("data-code").await.unwrap().unwrap();
    assert!(code.len() >= 32, "{code}");
    assert!(text(&b, "#connected-account").await.contains(&w.upn("alice")));
    assert!(shown(&b, "#close-window").await);
    assert!(
        text(&b, "#code-expiry").await.starts_with("The code expires in "),
        "the countdown runs"
    );
    // At 320 px the whole code is on screen (wrapped in groups) and selecting it gives the code
    // exactly, without the spaces between the groups.
    b.client.set_window_size(320, 700).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let fits = js(
        &b,
        "var c = document.getElementById('handoff-code'); var r = c.getBoundingClientRect(); \
         return r.left >= 0 && r.right <= document.documentElement.clientWidth && c.scrollWidth <= c.clientWidth;",
    )
    .await;
    assert_eq!(fits, json!(true), "the code fits at 320 px");
    let overflow = js(
        &b,
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
    )
    .await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "the page scrolls sideways at 320 px by {overflow}"
    );
    let selected = js(
        &b,
        "var s = window.getSelection(); s.selectAllChildren(document.getElementById('handoff-code')); return s.toString();",
    )
    .await;
    assert_eq!(selected, json!(code), "a selection copies the code exactly");
    accessible(&b, "code-page-320").await;
    b.screenshot("code-page-320").await;
    b.client.set_window_size(1280, 900).await.unwrap();
    // The copy button copies the same code, and says so.
    let button = b.client.find(Locator::Id("copy-code")).await.unwrap();
    assert_eq!(button.attr("data-text").await.unwrap().as_deref(), Some(code.as_str()));
    button.click().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while text(&b, "#code-done").await != "Code copied." {
        assert!(Instant::now() < deadline, "no confirmation after copying");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.screenshot("code-page-copied").await;
    // And it is the code that redeems.
    let (status, body) = w.redeem(&code).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    b.close().await;
}

#[tokio::test]
async fn the_accessibility_check_finds_what_it_should() {
    // A page with two known failures: an image without alternative text, and no language.
    let b = Browser::start().await;
    b.client
        .goto("data:text/html,<!doctype html><html><head><title>t</title></head><body><main><img src='x.png'><button></button></main></body></html>")
        .await
        .unwrap();
    let violations = b.accessibility_violations().await;
    for rule in ["image-alt", "button-name", "html-has-lang"] {
        assert!(
            violations.iter().any(|v| v.starts_with(&format!("{rule} ("))),
            "{rule}: {violations:#?}"
        );
    }
    b.close().await;
}

#[tokio::test]
async fn in_dark_mode_the_pages_keep_their_contrast() {
    let w = World::new().await;
    let b = Browser::start_dark().await;
    open_page(&w, &b, "frank").await;
    assert_eq!(
        js(&b, "return window.matchMedia('(prefers-color-scheme: dark)').matches;").await,
        json!(true),
        "the browser asks for the dark scheme"
    );
    b.client
        .find(Locator::Css("#admin > summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    shoot(&b, "approval-pending-dark").await;
    error_page_in(&w, &b, 50105).await;
    shoot(&b, "error-not_assigned-dark").await;
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("alice")}))
        .await;
    b.client.goto(s["connect_url"].as_str().unwrap()).await.unwrap();
    assert!(shown(&b, "#copy-code").await);
    shoot(&b, "code-page-dark").await;
    b.close().await;
}
