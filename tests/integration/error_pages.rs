//! Error pages people can act on: browsers get HTML where programs get JSON, every page has a way
//! on and a support reference, German pages are German throughout, the admin-consent start
//! without its parameters and a reloaded thank-you page speak plainly.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::approval::approval_page;
use crate::common::broker::KEY_A;
use crate::common::flows::{World, param};

const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

async fn get(w: &World, path: &str, accept: Option<&str>) -> (StatusCode, String, String) {
    let mut r = w.http.get(format!("{}{path}", w.broker.url));
    if let Some(a) = accept {
        r = r.header("accept", a);
    }
    let r = r.send().await.unwrap();
    let kind = r
        .headers()
        .get("content-type")
        .map_or("", |v| v.to_str().unwrap())
        .to_string();
    (r.status(), kind, r.text().await.unwrap())
}

#[tokio::test]
async fn browsers_get_pages_where_programs_get_json() {
    let w = World::new().await;
    // An unknown path: a page for a browser, the API's JSON for anyone else.
    let (status, kind, html) = get(&w, "/no/such/page", Some(BROWSER_ACCEPT)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(
        html.contains("<h1>Page not found</h1>") && html.contains("id=\"go-back\""),
        "{html}"
    );
    assert!(html.contains("<dt>Request ID</dt>"), "a support reference: {html}");
    for accept in [None, Some("application/json"), Some("*/*")] {
        let (status, kind, body) = get(&w, "/no/such/page", accept).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(kind.starts_with("application/json"), "{accept:?}: {kind}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v, json!({"error": "not_found", "message": "no such resource"}));
    }
    // An API error hit from a browser (no API key): a page, with the same status.
    let (status, kind, html) = get(&w, "/v1/connections", Some(BROWSER_ACCEPT)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        kind.starts_with("text/html") && html.contains("This address is for apps"),
        "{html}"
    );
    let (status, _, body) = get(&w, "/v1/connections", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "unauthorized");
    // A POST-only address opened in a browser: the router's bare 405 becomes a page too.
    let (status, kind, html) = get(&w, "/v1/connect-sessions", Some(BROWSER_ACCEPT)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        kind.starts_with("text/html") && html.contains("This address is for apps"),
        "{html}"
    );
    let (status, kind, _) = get(&w, "/v1/connect-sessions", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(!kind.starts_with("text/html"), "{kind}");
    // German readers get it in German.
    let r = w
        .http
        .get(format!("{}/nowhere", w.broker.url))
        .header("accept", BROWSER_ACCEPT)
        .header("accept-language", "de-DE,de;q=0.9")
        .send()
        .await
        .unwrap();
    let html = r.text().await.unwrap();
    assert!(
        html.contains("<h1>Seite nicht gefunden</h1>") && html.contains("<dt>Anfrage-ID</dt>"),
        "{html}"
    );
    // A program whose HTTP library sends a browser-like Accept still gets JSON: it sends its key.
    let r = w
        .http
        .get(format!("{}/v1/connections/cn_nope", w.broker.url))
        .header("accept", "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2")
        .bearer_auth("wrong-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthorized");
    let r = w
        .http
        .post(format!("{}/v1/handoff/redeem", w.broker.url))
        .header("accept", BROWSER_ACCEPT)
        .json(&json!({"code": "nope"}))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    // The API with a key is unchanged, and so is the approval page's poll (it asks for JSON).
    let (status, body) = w.api(Method::GET, "/v1/connections/cn_nope", Some(KEY_A), None).await;
    assert_eq!((status, &body["error"]), (StatusCode::NOT_FOUND, &json!("not_found")));
    let (page, _) = approval_page(&w, "frank").await;
    let r = w
        .http
        .get(format!("{page}/status"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "pending");
}

#[tokio::test]
async fn a_hostile_accept_header_changes_nothing_but_the_format() {
    let w = World::new().await;
    for accept in [
        "text/html;q=0, application/json",
        &"text/html,".repeat(500),
        "\u{7f}garbage;;;q=",
    ] {
        let r = w
            .http
            .get(format!("{}/nowhere", w.broker.url))
            .header("accept", accept)
            .send()
            .await;
        let Ok(r) = r else { continue };
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{accept:.40}");
        let headers = r.headers().clone();
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
    }
}

#[tokio::test]
async fn admin_consent_start_without_its_parameters_is_a_page_for_people() {
    let w = World::new().await;
    for q in ["", "?connector=files", "?tenant=fabrikam.onmicrosoft.com"] {
        let (status, kind, html) = get(&w, &format!("/v1/admin-consent/start{q}"), Some(BROWSER_ACCEPT)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert!(kind.starts_with("text/html"));
        assert!(html.contains("This approval link is incomplete"), "{q}: {html}");
        assert!(!html.contains("is required") && !html.contains("connector:"), "{html}");
    }
}

#[tokio::test]
async fn reloading_the_admins_thank_you_page_does_not_say_it_failed() {
    let w = World::new().await;
    let (page, html) = approval_page(&w, "frank").await;
    let link = {
        let at = html.find("id=\"admin-link\"").unwrap();
        let tag = &html[html[..at].rfind('<').unwrap()..];
        let v = tag.find("href=\"").unwrap() + 6;
        tag[v..v + tag[v..].find('"').unwrap()]
            .replace("&#38;", "&")
            .replace("&amp;", "&")
    };
    let to_entra = w.redirect_of(&link).await;
    let back = w.redirect_of(to_entra.as_str()).await;
    let first = w.http.get(back.clone()).send().await.unwrap().text().await.unwrap();
    assert!(first.contains("Files Connector is approved"), "{first}");
    assert!(
        first.contains(&format!("href=\"{page}\">Back to the approval page</a>")),
        "{first}"
    );
    // The admin reloads: the state is spent, the approval stands.
    let r = w.http.get(back.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let again = r.text().await.unwrap();
    assert!(again.contains("This approval is already recorded"), "{again}");
    assert!(
        !again.contains("did not go through") && !again.contains("failed"),
        "{again}"
    );
    // A spent state for a tenant that approved nothing is still not "failed", and records nothing.
    let forged = crate::common::flows::with_param(&back, "tenant", crate::common::sim::CONTOSO_TID);
    let r = w.http.get(forged).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = r.text().await.unwrap();
    assert!(body.contains("This approval link was already used"), "{body}");
    assert!(
        w.broker
            .state
            .records
            .tenant_approval(&"files".into(), &crate::common::sim::CONTOSO_TID.into())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_declined_sign_in_offers_to_try_again_and_the_retry_starts_a_new_sign_in() {
    let w = World::new().await;
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("bob")}))
        .await;
    let landing = w.follow(s["connect_url"].as_str().unwrap()).await;
    let html = landing.body;
    assert!(html.contains("AADSTS65004"), "{html}");
    let at = html.find("id=\"primary-action\"").expect("a way on");
    let tag = &html[at..at + html[at..].find('>').unwrap()];
    let href = &tag[tag.find("href=\"").unwrap() + 6..tag.len() - 1];
    assert!(html[at..].starts_with(&format!(
        "id=\"primary-action\" class=\"button\" href=\"{href}\">Try again</a>"
    )));
    assert!(href.contains("/v1/connect/") && !s["connect_url"].as_str().unwrap().ends_with(href));
    // Following it starts a new sign-in of the same session, for the same user.
    let authorize = w.redirect_of(href).await;
    assert_eq!(param(&authorize, "login_hint").as_deref(), Some(w.upn("bob").as_str()));
    assert_eq!(param(&authorize, "prompt").as_deref(), Some("select_account"));
}

#[tokio::test]
async fn german_error_pages_are_german_throughout() {
    let w = World::new().await;
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("bob")}))
        .await;
    let german = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(10))
        .cookie_store(true)
        .build()
        .unwrap();
    let html = german
        .get(s["connect_url"].as_str().unwrap())
        .header("accept-language", "de-DE,de;q=0.9")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for text in [
        "<dt>Kategorie</dt><dd><code>Bei der Anmeldung abgelehnt (user_declined)</code></dd>",
        "<dt>Fehlercode</dt><dd><code>AADSTS65004</code></dd>",
        "<dt>Anfrage-ID</dt>",
        "<dt>Zeit (UTC)</dt>",
        ">Erneut versuchen</a>",
        "Details kopieren",
    ] {
        assert!(html.contains(text), "{text}: {html}");
    }
    for english in [
        "Category",
        "Error code",
        "Request ID",
        "Try again",
        "Details for support",
    ] {
        assert!(!html.contains(english), "{english} on a German page: {html}");
    }
    // A link missing a parameter: the sentence is German, the developers' detail is in the reference.
    let r = german
        .get(format!("{}/v1/authorize?return_url=https://x.example/", w.broker.url))
        .header("accept-language", "de-DE,de;q=0.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Sein Teil \u{201e}connector\u{201c} fehlt oder ist falsch"),
        "{html}"
    );
    assert!(
        html.contains("<dt>Detail</dt><dd><code>connector: is required</code></dd>"),
        "{html}"
    );
    assert!(
        html.contains("<dt>Kategorie</dt><dd><code>Ungültige Anfrage (invalid_request)</code></dd>"),
        "{html}"
    );
    let lead = &html[html.find("<p class=\"lead\">").unwrap()..];
    assert!(!lead[..lead.find("</p>").unwrap()].contains("is required"), "{html}");
}
