//! Sign-ins bound to the browser that started them: a callback or an approval "continue" in any
//! other browser starts and stores nothing, while the right browser still completes.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::broker::{KEY_A, RETURN_A, client};
use crate::common::flows::{World, handoff_code_in, param};
use crate::common::sim::{CONTOSO_TID, FABRIKAM_TID};
use crate::happy::urlencode;

/// Starts an out-of-band connect-link sign-in for `who` in `w.http` and signs in at the
/// simulator; returns the broker callback URL Entra redirected to (not yet visited).
async fn captured_callback(w: &World, who: &str) -> url::Url {
    let s = w
        .session(json!({"connector": "files", "end_user": "victim", "login_hint": w.upn(who)}))
        .await;
    let authorize = w.redirect_of(s["connect_url"].as_str().unwrap()).await;
    w.redirect_of(authorize.as_str()).await
}

async fn get(http: &reqwest::Client, url: &str) -> (StatusCode, Option<String>, String) {
    let r = http.get(url).send().await.unwrap();
    let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_string());
    (r.status(), location, r.text().await.unwrap())
}

#[tokio::test]
async fn a_callback_replayed_in_another_browser_fails_and_stores_nothing() {
    let w = World::new().await;
    let callback = captured_callback(&w, "alice").await;

    for other in [client(), reqwest::Client::new()] {
        let (status, location, body) = get(&other, callback.as_str()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(location.is_none(), "no redirect, no handoff");
        assert!(body.contains("Started in another browser"), "a readable page: {body}");
        assert!(handoff_code_in(&body).is_none());
    }
    assert!(!w.has_connection(CONTOSO_TID, "alice").await, "nothing stored");
    assert_eq!(
        w.sim.token_grants("authorization_code").await,
        0,
        "the code was not redeemed"
    );

    // The browser that started the sign-in still completes it: the state was not used up.
    let (status, _, body) = get(&w.http, callback.as_str()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(handoff_code_in(&body).is_some(), "{body}");
    assert!(w.has_connection(CONTOSO_TID, "alice").await);
}

#[tokio::test]
async fn a_forged_cookie_does_not_pass_for_the_browser() {
    let w = World::new().await;
    let callback = captured_callback(&w, "alice").await;
    let forged = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for cookie in [
        format!("cb_browser={}", "A".repeat(43)),
        "cb_browser=".to_string(),
        format!("cb_browser={}", "x".repeat(5_000)),
        "cb_browser=%00%0d%0a; cb_browser=\"\"".to_string(),
    ] {
        let r = forged
            .get(callback.as_str())
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "cookie {cookie:.40}");
    }
    assert!(!w.has_connection(CONTOSO_TID, "alice").await);
}

#[tokio::test]
async fn every_start_sets_the_binding_cookie_and_connect_links_show_the_account() {
    let w = World::new().await;
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("alice")}))
        .await;
    let r = w.http.get(s["connect_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for part in ["cb_browser=", "HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=600"] {
        assert!(set.contains(part), "{set} lacks {part}");
    }
    assert!(!set.contains("Secure"), "plain http on loopback");
    let authorize = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(
        param(&authorize, "prompt").as_deref(),
        Some("select_account"),
        "a connect link never signs the person in silently"
    );

    // /v1/authorize: the browser's own start, same cookie (one per browser), no prompt.
    let url = format!(
        "{}/v1/authorize?connector=files&return_url={}",
        w.broker.url,
        urlencode(RETURN_A)
    );
    let r = w.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let again = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert_eq!(
        again.split(';').next(),
        set.split(';').next(),
        "the browser keeps its one cookie, so sign-ins in two tabs both complete"
    );
    let authorize = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(param(&authorize, "prompt"), None);
}

#[tokio::test]
async fn two_sign_ins_in_one_browser_both_complete() {
    let w = World::new().await;
    let first = captured_callback(&w, "alice").await;
    let second = captured_callback(&w, "carol").await;
    for cb in [second, first] {
        let (status, _, body) = get(&w.http, cb.as_str()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert!(w.has_connection(CONTOSO_TID, "alice").await && w.has_connection(CONTOSO_TID, "carol").await);
}

#[tokio::test]
async fn a_completed_or_expired_connect_link_starts_nothing() {
    let w = World::new().await;
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("alice")}))
        .await;
    let link = s["connect_url"].as_str().unwrap();
    let landing = w.follow(link).await;
    assert_eq!(landing.status, StatusCode::OK);
    let (status, location, body) = get(&w.http, link).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(location.is_none() && body.contains("already used"), "{body}");
    let (status, location, _) = get(&w.http, &format!("{}/v1/connect/{}", w.broker.url, "A".repeat(43))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(location.is_none());
}

/// Follows a Fabrikam user's connect-link sign-in in `w.http` to the approval page; returns its URL.
async fn approval_page(w: &World) -> String {
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("frank")}))
        .await;
    let authorize = w.redirect_of(s["connect_url"].as_str().unwrap()).await;
    let callback = w.redirect_of(authorize.as_str()).await;
    let page = w.redirect_of(callback.as_str()).await;
    assert!(page.path().starts_with("/v1/approval/"), "{page}");
    page.to_string()
}

#[tokio::test]
async fn approval_continue_from_another_browser_starts_nothing() {
    let w = World::new().await;
    let page = approval_page(&w).await;
    w.sim
        .put_grant(
            FABRIKAM_TID,
            crate::common::sim::APP_A_CLIENT_ID,
            &["Files.Read.All", "Sites.Read.All"],
        )
        .await;

    // IT (or anyone holding the page's link) sees the page but no way to continue the user's session.
    let it = client();
    let (status, _, html) = get(&it, &page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"continue-elsewhere\""), "{html}");
    assert!(!html.contains("id=\"continue\"") && !html.contains("id=\"try-again\""));
    let (status, location, body) = get(&it, &format!("{page}/continue")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(location.is_none(), "no flow was started");
    assert!(body.contains("Started in another browser"), "{body}");
    assert!(
        body.contains(&format!(
            "id=\"primary-action\" class=\"button\" href=\"{page}\">Back to the approval page</a>"
        )),
        "{body}"
    );

    // The user's own browser continues.
    let (_, _, html) = get(&w.http, &page).await;
    assert!(html.contains("id=\"continue\""), "{html}");
    let (status, location, _) = get(&w.http, &format!("{page}/continue")).await;
    assert_eq!(status, StatusCode::FOUND);
    let authorize = url::Url::parse(&location.unwrap()).unwrap();
    assert_eq!(
        param(&authorize, "login_hint").as_deref(),
        Some(w.upn("frank").as_str())
    );
}

#[tokio::test]
async fn approval_continue_after_the_page_or_its_session_expired_starts_nothing() {
    let w = World::new().await;
    let page = approval_page(&w).await;
    let id = page.rsplit('/').next().unwrap().to_string();
    let records = &w.broker.state.records;
    let mut approval = records.approval(&id.as_str().into()).await.unwrap().expect("stored");

    // The connect session behind it ended: completed elsewhere.
    let session_id = approval.session_id.clone().expect("a connect-link flow");
    let mut session = records.session(&"files".into(), &session_id).await.unwrap().unwrap();
    session.status = consent_broker::store::records::SessionStatus::Completed;
    records
        .save_session(&session, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let (status, location, _) = get(&w.http, &format!("{page}/continue")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(location.is_none());

    // The page itself expired.
    approval.expires_at = consent_broker::clock::now_unix() - 1;
    records
        .put_approval(&approval, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let (status, location, body) = get(&w.http, &format!("{page}/continue")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(location.is_none());
}

#[tokio::test]
async fn return_urls_carrying_the_brokers_parameters_are_refused() {
    let w = World::new().await;
    for planted in [
        format!("{RETURN_A}?handoff=planted"),
        format!("{RETURN_A}?state=planted"),
        format!("{RETURN_A}?x=1&Error=x"),
        format!("{RETURN_A}?aadsts=1"),
    ] {
        let (status, body) = w
            .api(
                reqwest::Method::POST,
                "/v1/connect-sessions",
                Some(KEY_A),
                Some(json!({"connector": "files", "end_user": "u", "return_url": planted})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{planted}: {body}");
        assert_eq!(body["error"], "invalid_parameter", "{body}");
        let url = format!(
            "{}/v1/authorize?connector=files&return_url={}",
            w.broker.url,
            urlencode(&planted)
        );
        let (status, location, _) = get(&w.http, &url).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{planted}");
        assert!(location.is_none());
    }
    // Other query parameters are still the connector's to use.
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "return_url": format!("{RETURN_A}?tab=2"), "state": "mine", "login_hint": w.upn("alice")}))
        .await;
    let landing = w.follow(s["connect_url"].as_str().unwrap()).await;
    let back = landing.location.expect("back to the connector");
    let pairs: Vec<(String, String)> = back.query_pairs().map(|(k, v)| (k.into(), v.into())).collect();
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["tab", "handoff", "state"], "{back}");
    assert_eq!(param(&back, "state").as_deref(), Some("mine"));
}
