//! In a real headless Chromium: a user who needs admin approval sees the approval page; the admin
//! approves through the one-click link; the user's page turns "approved" without a reload.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::json;

use crate::common::browser::Browser;
use crate::common::flows::World;

async fn text_of(b: &Browser, css: &str) -> String {
    b.client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn approval_page_updates_itself_after_admin_consent() {
    let w = World::new().await;
    let browser = Browser::start().await;
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("frank")}))
        .await;

    browser.client.goto(s["connect_url"].as_str().unwrap()).await.unwrap();
    let url = browser.client.current_url().await.unwrap();
    assert!(
        url.path().starts_with("/v1/approval/"),
        "the browser ends on the approval page: {url}"
    );
    assert!(text_of(&browser, "h1").await.contains("Files Connector"));
    let permissions = text_of(&browser, "#permissions").await;
    assert!(
        permissions.contains("Files.Read.All") && permissions.contains("Sites.Read.All"),
        "{permissions}"
    );
    assert!(text_of(&browser, "#approval-status").await.contains("Waiting"));
    assert!(
        !browser
            .client
            .find(Locator::Id("continue"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap()
    );
    assert!(
        browser
            .client
            .find(Locator::Id("copy-message"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap(),
        "script ran"
    );
    browser.screenshot("approval-pending").await;

    // The admin opens the one-click link in another window and approves in the simulator.
    let admin_link = browser
        .client
        .find(Locator::Id("admin-link"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let user_window = browser.client.window().await.unwrap();
    let admin_window = browser.client.new_window(true).await.unwrap();
    browser.client.switch_to_window(admin_window.handle).await.unwrap();
    browser.client.goto(&admin_link).await.unwrap();
    assert!(text_of(&browser, "h1").await.contains("is approved"));
    browser.screenshot("admin-consent-thanks").await;

    // Back on the user's page: no reload, it notices by itself.
    browser.client.switch_to_window(user_window).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = text_of(&browser, "#approval-status").await;
        if status.contains("Approved") {
            break;
        }
        assert!(Instant::now() < deadline, "the page did not turn approved: {status}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        browser
            .client
            .find(Locator::Id("continue"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap()
    );
    browser.screenshot("approval-approved").await;

    // Continue signs the user in.
    browser
        .client
        .find(Locator::Id("continue"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(text_of(&browser, "h1").await.contains("connected"));
    browser.screenshot("connected").await;
    browser.close().await;
}
