//! The approval experience, driven by the simulator's tenant policies: 90094 (workflow off),
//! 90095 (workflow on), 65001, the error-page branches, admin consent, and "approved but still
//! failing" diagnosis.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::broker::{BrokerOptions, KEY_A};
use crate::common::flows::{World, handoff_code_in, param, with_param};
use crate::common::sim::{CONTOSO_TID, FABRIKAM_TID, NORTHWIND_TID};

/// Starts a flow for `who` and follows it to the approval page; returns (page URL, HTML).
async fn approval_page(w: &World, who: &str) -> (String, String) {
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn(who)}))
        .await;
    let authorize = w.redirect_of(s["connect_url"].as_str().unwrap()).await;
    let callback = w.redirect_of(authorize.as_str()).await;
    let page = w.redirect_of(callback.as_str()).await;
    assert!(
        page.path().starts_with("/v1/approval/"),
        "callback sends the user to the approval page: {page}"
    );
    let html = w.http.get(page.clone()).send().await.unwrap().text().await.unwrap();
    (page.to_string(), html)
}

async fn status(w: &World, page: &str) -> Value {
    w.http
        .get(format!("{page}/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Follows the page's one-click admin link through the simulator's admin consent; returns the final page.
async fn approve_via_admin_link(
    w: &World,
    html: &str,
    tweak: impl FnOnce(url::Url) -> url::Url,
) -> (StatusCode, String) {
    let link = html_attr(html, "admin-link", "href").expect("admin link");
    let to_entra = w.redirect_of(&link).await;
    assert!(to_entra.path().ends_with("/v2.0/adminconsent"), "{to_entra}");
    assert!(param(&to_entra, "state").unwrap().len() >= 32);
    let back = w.redirect_of(tweak(to_entra).as_str()).await;
    let r = w.http.get(back).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// The (unescaped) value of attribute `attr` of the element with id `id`.
fn html_attr(html: &str, id: &str, attr: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>')?];
    let v = tag.find(&format!("{attr}=\""))? + attr.len() + 2;
    Some(
        tag[v..v + tag[v..].find('"')?]
            .replace("&#38;", "&")
            .replace("&amp;", "&"),
    )
}

#[tokio::test]
async fn admin_approval_page_then_one_click_consent_then_continue() {
    let w = World::new().await;
    let (page, html) = approval_page(&w, "frank").await;
    assert!(
        html.contains("Files Connector needs your organization&#39;s approval")
            || html.contains("Files Connector needs your organization's approval"),
        "{html}"
    );
    assert!(html.contains("fabrikam.onmicrosoft.com"), "names the organization");
    assert!(html.contains("Files.Read.All") && html.contains("Sites.Read.All") && html.contains("offline_access"));
    assert!(
        html.contains("Read all files you can access"),
        "permissions in plain words"
    );
    assert!(html.contains("badge-low"), "marks what can be classified low impact");
    assert!(
        html.contains("lets only administrators approve"),
        "90094 branch: send it to your admin"
    );
    assert!(html.contains("publisher is not verified"));
    assert!(
        html.contains(crate::common::sim::APP_A_CLIENT_ID),
        "names the client id for the admin"
    );
    assert!(
        html.contains("Grant tenant-wide admin consent")
            && html.contains("admin consent workflow")
            && html.contains("low impact")
    );
    assert!(html.contains("id=\"it-message\"") && html.contains("/v1/admin-consent/start?connector=files"));
    assert!(html.contains("AADSTS90094"));
    let s = status(&w, &page).await;
    assert_eq!(s["status"], "pending");
    assert_eq!(
        s["tenant_id"], FABRIKAM_TID,
        "the domain was resolved to the tenant GUID"
    );
    assert!(s["retry_url"].as_str().unwrap().ends_with("/continue"));

    let (code, thanks) = approve_via_admin_link(&w, &html, |u| u).await;
    assert_eq!(code, StatusCode::OK);
    assert!(thanks.contains("Files Connector is approved"), "{thanks}");
    assert_eq!(status(&w, &page).await["status"], "approved");
    let html = w.http.get(&page).send().await.unwrap().text().await.unwrap();
    assert!(
        html.contains("status-approved") && html.contains("Approved. You can continue now."),
        "{html}"
    );
    assert!(
        !html.contains(" hidden>Continue<"),
        "Continue is offered without JavaScript too"
    );

    // "Continue" starts a new sign-in that now succeeds.
    let landing = w.follow(s["retry_url"].as_str().unwrap()).await;
    assert_eq!(landing.status, StatusCode::OK);
    assert!(handoff_code_in(&landing.body).is_some(), "{}", landing.body);
    assert!(w.has_connection(FABRIKAM_TID, "frank").await);
}

#[tokio::test]
async fn approval_workflow_on_says_the_request_was_sent() {
    let w = World::new().await;
    let (page, html) = approval_page(&w, "nina").await;
    assert!(
        html.contains("You asked your administrators for approval"),
        "90095 branch"
    );
    assert!(html.contains("continues by itself when it is approved"));
    assert!(html.contains("AADSTS90095"));
    assert_eq!(status(&w, &page).await["tenant_id"], NORTHWIND_TID);
}

#[tokio::test]
async fn consent_required_asks_the_user_to_accept() {
    let w = World::new().await;
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("alice")}))
        .await;
    let authorize = w.redirect_of(s["connect_url"].as_str().unwrap()).await;
    // Consent given at sign-in covers less than the broker then redeems for: Entra answers 65001.
    let narrowed = with_param(&authorize, "scope", "openid profile offline_access User.Read");
    let callback = w.redirect_of(narrowed.as_str()).await;
    let page = w.redirect_of(callback.as_str()).await;
    let html = w.http.get(page).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("needs your permission to access your data"), "{html}");
    assert!(html.contains("AADSTS65001"));
    let (_, poll) = w.poll_session(&s).await;
    assert_eq!(poll["status"], "approval_required");
    assert_eq!(poll["category"], "consent_required");
    assert!(poll["approval_url"].as_str().unwrap().contains("/v1/approval/"));
}

#[tokio::test]
async fn error_branches_say_who_fixes_what() {
    let w = World::new().await;
    let end = |who: &'static str, connector: &'static str, key: &'static str| {
        let w = &w;
        async move {
            let (_, s) = w
                .api(
                    Method::POST,
                    "/v1/connect-sessions",
                    Some(key),
                    Some(json!({"connector": connector, "end_user": "u", "login_hint": w.upn(who)})),
                )
                .await;
            w.follow(s["connect_url"].as_str().unwrap()).await.body
        }
    };
    let declined = end("bob", "files", KEY_A).await;
    assert!(
        declined.contains("AADSTS65004") && declined.contains("declined"),
        "{declined}"
    );

    let not_assigned = end("erin", "crm", crate::common::broker::KEY_B).await;
    assert!(not_assigned.contains("AADSTS50105"), "{not_assigned}");
    assert!(
        not_assigned.contains("assign you to the enterprise application") && not_assigned.contains("CRM Connector")
    );

    w.sim
        .patch_tenant(CONTOSO_TID, json!({"conditional_access_block": true}))
        .await;
    let blocked = end("alice", "files", KEY_A).await;
    assert!(
        blocked.contains("AADSTS53003") && blocked.contains("conditional_access"),
        "{blocked}"
    );
    w.sim
        .patch_tenant(
            CONTOSO_TID,
            json!({"conditional_access_block": false, "mfa_required": true}),
        )
        .await;

    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("alice")}))
        .await;
    let authorize = w.redirect_of(s["connect_url"].as_str().unwrap()).await;
    let silent = with_param(&authorize, "prompt", "none");
    let landing = w.follow(silent.as_str()).await;
    assert!(
        landing.body.contains("AADSTS50076") && landing.body.contains("multi-factor"),
        "{}",
        landing.body
    );
}

#[tokio::test]
async fn approved_but_still_failing_explains_the_difference() {
    let w = World::new().await;
    let (_, html) = approval_page(&w, "frank").await;
    // The admin approves only part of what the connector asks for.
    let (code, _) = approve_via_admin_link(&w, &html, |u| {
        with_param(&u, "scope", "https://graph.microsoft.com/Files.Read.All")
    })
    .await;
    assert_eq!(code, StatusCode::OK);
    let (_, html) = approval_page(&w, "frank").await;
    assert!(html.contains("Approved, but still not working?"), "{html}");
    assert!(html.contains("now also asks for: Sites.Read.All"), "{html}");

    // A tenant that was not the approved one is told so.
    let (_, html) = approval_page(&w, "nina").await;
    assert!(html.contains("was approved for another organization"), "{html}");
}

#[tokio::test]
async fn admin_consent_errors_have_their_own_pages() {
    let w = World::with(
        |c| {
            for t in c["tenants"].as_array_mut().unwrap() {
                for u in t["users"].as_array_mut().unwrap() {
                    if u["upn"].as_str().unwrap().starts_with("fiona@") {
                        u["declines_consent"] = json!(true);
                    }
                }
            }
        },
        BrokerOptions::default(),
    )
    .await;
    let (page, html) = approval_page(&w, "frank").await;
    let (_, cancelled) = approve_via_admin_link(&w, &html, |u| u).await;
    assert!(cancelled.contains("Approval cancelled"), "{cancelled}");
    let frank = w.upn("frank");
    let (_, not_admin) = approve_via_admin_link(&w, &html, |u| with_param(&u, "login_hint", &frank)).await;
    assert!(not_admin.contains("This account cannot approve apps"), "{not_admin}");
    assert_eq!(status(&w, &page).await["status"], "pending", "nothing was recorded");
    // Unknown state.
    let r = w
        .http
        .get(format!(
            "{}/v1/admin-consent/callback?admin_consent=True&tenant={FABRIKAM_TID}&state=nope",
            w.broker.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_callback_for_another_tenant_than_asked_is_refused() {
    let w = World::new().await;
    let (page, html) = approval_page(&w, "frank").await;
    let link = html_attr(&html, "admin-link", "href").unwrap();
    let to_entra = w.redirect_of(&link).await;
    let back = w.redirect_of(to_entra.as_str()).await;
    assert_eq!(param(&back, "tenant").as_deref(), Some(FABRIKAM_TID));
    // Entra's `tenant` is not authenticated: a tampered one must not record an approval.
    let spoofed = with_param(&back, "tenant", CONTOSO_TID);
    let r = w.http.get(spoofed.as_str()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("different organization"));
    assert!(
        w.broker
            .state
            .records
            .tenant_approval("files", CONTOSO_TID)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        w.broker
            .state
            .records
            .tenant_approval("files", FABRIKAM_TID)
            .await
            .unwrap()
            .is_none()
    );
    // The state was spent by that attempt: the genuine answer cannot be replayed after it either.
    let r = w.http.get(back.as_str()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(status(&w, &page).await["status"], "pending");
}

#[tokio::test]
async fn bad_approval_and_admin_consent_requests() {
    let w = World::new().await;
    let b = &w.broker.url;
    let r = w
        .http
        .get(format!("{b}/v1/approval/fl_unknown/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "not_found");
    for url in [
        format!("{b}/v1/approval/fl_unknown"),
        format!("{b}/v1/approval/fl_unknown/continue"),
        format!("{b}/v1/approval/{}", "x".repeat(500)),
    ] {
        let r = w.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{url:.80}");
        assert!(r.text().await.unwrap().contains("<h1>"));
    }
    for q in [
        "",
        "connector=files",
        "connector=nope&tenant=x.com",
        "connector=files&tenant=common",
        "connector=files&tenant=a%2Fb",
        "connector=files&tenant=x.com&flow=%3Cscript%3E",
    ] {
        let r = w
            .http
            .get(format!("{b}/v1/admin-consent/start?{q}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{q}");
    }
    for q in ["", "state=x", "admin_consent=True&tenant=not-a-guid&state=x&state=y"] {
        let r = w
            .http
            .get(format!("{b}/v1/admin-consent/callback?{q}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{q}");
    }
}

#[tokio::test]
async fn approval_page_speaks_german_and_carries_security_headers() {
    let w = World::new().await;
    let (page, _) = approval_page(&w, "frank").await;
    let r = w
        .http
        .get(&page)
        .header("accept-language", "de-DE,de;q=0.9,en;q=0.5")
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    assert!(
        html.contains("lang=\"de\"") && html.contains("braucht die Freigabe Ihrer Organisation"),
        "{html}"
    );
    assert!(html.contains("Alle Dateien lesen"));
    let r = w
        .http
        .get(&page)
        .header("accept-language", "fr-FR")
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("lang=\"en\""));
}

#[tokio::test]
async fn sign_in_result_pages_speak_german() {
    let w = World::new().await;
    let german = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .default_headers(
            std::iter::once((reqwest::header::ACCEPT_LANGUAGE, "de-DE,de;q=0.9".parse().unwrap())).collect(),
        )
        .build()
        .unwrap();
    let follow = |url: String| {
        let german = german.clone();
        async move {
            let mut next = url;
            loop {
                let r = german.get(&next).send().await.unwrap();
                match r.headers().get("location") {
                    Some(l) => next = l.to_str().unwrap().to_string(),
                    None => return (r.status(), r.text().await.unwrap()),
                }
            }
        }
    };
    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("alice")}))
        .await;
    let (_, html) = follow(s["connect_url"].as_str().unwrap().to_string()).await;
    assert!(
        html.contains("lang=\"de\"") && html.contains("Sie sind verbunden") && html.contains("Ihr Code"),
        "{html}"
    );

    let s = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("bob")}))
        .await;
    let (_, html) = follow(s["connect_url"].as_str().unwrap().to_string()).await;
    assert!(
        html.contains("Wir konnten Ihr Konto nicht verbinden") && html.contains("AADSTS65004"),
        "{html}"
    );

    let (status, html) = follow(format!("{}/v1/callback?state=unknown&code=x", w.broker.url)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("Anmeldung abgelaufen"), "{html}");
}
