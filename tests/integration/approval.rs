//! The approval experience, driven by the simulator's tenant policies: 90094 (workflow off),
//! 90095 (workflow on), 65001, the error-page branches, admin consent and its verification with
//! Entra (a forged callback records nothing), and "approved but still failing" diagnosis.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::broker::{BrokerOptions, KEY_A};
use crate::common::flows::{World, handoff_code_in, param, with_param};
use crate::common::scrape::{sample, scrape};
use crate::common::sim::{CONTOSO_TID, FABRIKAM_TID, NORTHWIND_TID};

/// Starts a flow for `who` and follows it to the approval page; returns (page URL, HTML).
pub(crate) async fn approval_page(w: &World, who: &str) -> (String, String) {
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
pub(crate) async fn approve_via_admin_link(
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
    assert!(
        !html.contains("badge-low") && !html.contains("low impact"),
        "an unverified publisher's permissions are not offered for low-impact classification"
    );
    assert!(
        html.contains("lets only administrators approve"),
        "90094 branch: send it to your admin"
    );
    assert!(html.contains("publisher is not verified"));
    assert!(
        html.contains(crate::common::sim::APP_A_CLIENT_ID),
        "names the client id for the admin"
    );
    assert!(html.contains("Grant tenant-wide admin consent") && html.contains("admin consent workflow"));
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
        html.contains("id=\"approved-view\" aria-labelledby=\"approved-heading\">")
            && html.contains(">Approved — continue</a>"),
        "Continue is offered without JavaScript too: {html}"
    );
    for gone in [
        "id=\"admin-link\"",
        "id=\"it-message\"",
        "id=\"try-again\"",
        "needs your organization",
        "Waiting for",
    ] {
        assert!(
            !html.contains(gone),
            "an approved page offers no approval ({gone}): {html}"
        );
    }

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
    assert!(html.contains("Your request is with your administrators"));
    assert!(
        html.contains("Admin consent requests") && !html.contains("Enable the admin consent workflow"),
        "the workflow is on: the admin reviews the request"
    );
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
    assert_eq!(
        button_href(&cancelled).as_deref(),
        Some(page.as_str()),
        "the way on is back to the approval page"
    );
    let frank = w.upn("frank");
    let (_, not_admin) = approve_via_admin_link(&w, &html, |u| with_param(&u, "login_hint", &frank)).await;
    assert!(not_admin.contains("This account cannot approve apps"), "{not_admin}");
    assert_eq!(button_href(&not_admin).as_deref(), Some(page.as_str()));
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
            .tenant_approval(&"files".into(), &CONTOSO_TID.into())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        w.broker
            .state
            .records
            .tenant_approval(&"files".into(), &FABRIKAM_TID.into())
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

/// What an attacker holds after following an approval page's admin link without going on to
/// Entra: a valid admin-consent `state` for that connector and tenant.
async fn admin_consent_state(w: &World, html: &str) -> String {
    let link = html_attr(html, "admin-link", "href").expect("admin link");
    let to_entra = w.redirect_of(&link).await;
    param(&to_entra, "state").expect("state on the admin-consent URL")
}

/// The (unescaped) target of a message page's button.
fn button_href(html: &str) -> Option<String> {
    let at = html.find("class=\"button\" href=\"")? + "class=\"button\" href=\"".len();
    let end = html[at..].find('"')?;
    Some(html[at..at + end].replace("&#38;", "&").replace("&amp;", "&"))
}

/// `GET /v1/admin-consent/callback` with Entra's success shape, typed by hand.
async fn forged_callback(w: &World, state: &str, lang: Option<&str>) -> (StatusCode, Option<String>, String) {
    let mut request = w
        .http
        .get(format!("{}/v1/admin-consent/callback", w.broker.url))
        .query(&[
            ("admin_consent", "True"),
            ("tenant", FABRIKAM_TID),
            (
                "scope",
                "https://graph.microsoft.com/Files.Read.All https://graph.microsoft.com/Sites.Read.All",
            ),
            ("state", state),
        ]);
    if let Some(lang) = lang {
        request = request.header("accept-language", lang);
    }
    let r = request.send().await.unwrap();
    let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    (r.status(), retry_after, r.text().await.unwrap())
}

/// `consent_broker_admin_consent_verifications_total{connector="files",outcome=...}`.
async fn verifications(w: &World, outcome: &str) -> f64 {
    sample(
        &scrape(&w.http, &w.broker.url).await,
        "consent_broker_admin_consent_verifications_total",
        &format!("connector=\"files\",outcome=\"{outcome}\""),
    )
}

/// Nothing is recorded for Fabrikam: no tenant approval, nothing in the approved-tenant index.
async fn assert_nothing_recorded(w: &World) {
    let records = &w.broker.state.records;
    assert!(
        records
            .tenant_approval(&"files".into(), &FABRIKAM_TID.into())
            .await
            .unwrap()
            .is_none()
    );
    assert!(records.approved_tenants(&"files".into()).await.unwrap().is_empty());
}

#[tokio::test]
async fn forged_admin_consent_is_not_recorded() {
    let w = World::new().await;
    let (page, html) = approval_page(&w, "frank").await;
    // The attacker starts a round trip and answers it themselves: success shape, a valid state,
    // the very tenant that was asked for; nobody consented at Entra.
    let state = admin_consent_state(&w, &html).await;
    let (status_code, _, body) = forged_callback(&w, &state, None).await;
    assert_eq!(status_code, StatusCode::OK);
    assert!(body.contains("We could not confirm the approval yet"), "{body}");
    assert!(body.contains("nothing was recorded"), "{body}");
    assert!(!body.contains("is approved"), "{body}");
    let retry = button_href(&body).expect("a try-again button");
    assert!(
        retry.ends_with(&format!(
            "/v1/admin-consent/start?connector=files&tenant={FABRIKAM_TID}&flow={}",
            page.rsplit('/').next().unwrap()
        )),
        "offers to try again through a real admin consent: {retry}"
    );
    assert_eq!(status(&w, &page).await["status"], "pending");
    assert_nothing_recorded(&w).await;
    assert_eq!(
        w.sim.token_grants("client_credentials").await,
        1,
        "the broker asked Entra once"
    );
    assert_eq!(verifications(&w, "not_confirmed").await, 1.0);
    assert_eq!(verifications(&w, "verified").await, 0.0);
    let page_html = w.http.get(&page).send().await.unwrap().text().await.unwrap();
    assert!(
        !page_html.contains("Approved, but still not working?"),
        "no diagnosis from a forged approval"
    );

    // The state was spent: replaying it is a bad request, and still records nothing.
    let (replayed, _, _) = forged_callback(&w, &state, None).await;
    assert_eq!(replayed, StatusCode::BAD_REQUEST);

    // A German reader is told the same in German.
    let state = admin_consent_state(&w, &html).await;
    let (_, _, body) = forged_callback(&w, &state, Some("de-DE,de;q=0.9")).await;
    assert!(
        body.contains("lang=\"de\"") && body.contains("Wir konnten die Freigabe noch nicht bestätigen"),
        "{body}"
    );
    assert!(body.contains("Erneut versuchen"), "{body}");
    assert_eq!(status(&w, &page).await["status"], "pending");
    assert_nothing_recorded(&w).await;
    assert_eq!(verifications(&w, "not_confirmed").await, 2.0);
}

#[tokio::test]
async fn real_admin_consent_is_verified_and_recorded() {
    let w = World::new().await;
    let (page, html) = approval_page(&w, "frank").await;
    let (code, thanks) = approve_via_admin_link(&w, &html, |u| u).await;
    assert_eq!(code, StatusCode::OK);
    assert!(thanks.contains("Files Connector is approved"), "{thanks}");
    assert_eq!(status(&w, &page).await["status"], "approved");
    assert_eq!(w.sim.token_grants("client_credentials").await, 1);
    assert_eq!(verifications(&w, "verified").await, 1.0);
    let records = &w.broker.state.records;
    assert!(
        records
            .tenant_approval(&"files".into(), &FABRIKAM_TID.into())
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(records.approved_tenants(&"files".into()).await.unwrap(), [FABRIKAM_TID]);
    let logs = w.broker.logs();
    assert!(!logs.contains(crate::common::sim::APP_A_SECRET));
}

#[tokio::test]
async fn admin_consent_verification_during_an_entra_outage_records_nothing() {
    let w = World::with(
        |_| {},
        BrokerOptions {
            entra: "jwks_min_refetch_interval_secs = 300\nmax_retries = 1\nretry_base_delay_ms = 10\nrequest_timeout_secs = 1"
                .into(),
            ..Default::default()
        },
    )
    .await;
    let (page, html) = approval_page(&w, "frank").await;

    // Entra answers the verification with 503s: the admin really consented, but it cannot be
    // confirmed now.
    w.sim
        .fault(json!({"endpoint": "token", "grant_type": "client_credentials", "kind": "unavailable"}))
        .await;
    let (code, body) = approve_via_admin_link(&w, &html, |u| u).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("We could not confirm the approval yet"), "{body}");
    assert!(body.contains("not answering right now"), "{body}");
    assert_eq!(status(&w, &page).await["status"], "pending");
    assert_nothing_recorded(&w).await;
    assert_eq!(
        w.sim.token_grants("client_credentials").await,
        2,
        "the call and its retry"
    );
    assert_eq!(verifications(&w, "unavailable").await, 1.0);
    w.sim.clear_faults().await;

    // Entra hangs past the request timeout: the same, with a Retry-After for the page.
    w.sim
        .fault(json!({"endpoint": "token", "grant_type": "client_credentials", "kind": "latency", "latency_ms": 2500, "count": 2}))
        .await;
    let state = admin_consent_state(&w, &html).await;
    let (code, retry_after, body) = forged_callback(&w, &state, None).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(retry_after.is_some_and(|r| r.parse::<u64>().is_ok_and(|s| s >= 1)));
    assert!(body.contains("not answering right now"), "{body}");
    assert_nothing_recorded(&w).await;
    assert_eq!(verifications(&w, "unavailable").await, 2.0);

    // Once Entra answers again, "try again" goes through admin consent and is confirmed.
    let retry = button_href(&body).unwrap_or_else(|| panic!("a try-again link: {body}"));
    let to_entra = w.redirect_of(&retry).await;
    assert!(to_entra.path().ends_with("/v2.0/adminconsent"), "{to_entra}");
    let back = w.redirect_of(to_entra.as_str()).await;
    let r = w.http.get(back).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("Files Connector is approved"));
    assert_eq!(status(&w, &page).await["status"], "approved");
}

#[tokio::test]
async fn admin_consent_verification_with_a_bad_client_secret_shows_the_credential_error() {
    let secrets = tempfile::tempdir().unwrap();
    let wrong = secrets.path().join("wrong-secret");
    std::fs::write(&wrong, "Wr0ng~not-the-secret-value_0000000000000").unwrap();
    let w = World::with(
        |_| {},
        BrokerOptions {
            credential_a: Some(format!("client_secret_file = \"{}\"", wrong.display())),
            ..Default::default()
        },
    )
    .await;
    // Frank's sign-in stops at /authorize (90094), before any use of the secret.
    let (page, html) = approval_page(&w, "frank").await;
    let (code, body) = approve_via_admin_link(&w, &html, |u| u).await;
    assert_eq!(code, StatusCode::OK);
    assert!(body.contains("The approval did not go through"), "{body}");
    assert!(body.contains("AADSTS7000215"), "{body}");
    assert!(body.contains("client secret is wrong"), "{body}");
    assert_eq!(status(&w, &page).await["status"], "pending");
    assert_nothing_recorded(&w).await;
    assert_eq!(verifications(&w, "failed").await, 1.0);
    let credential_errors = sample(
        &scrape(&w.http, &w.broker.url).await,
        "consent_broker_credential_errors_total",
        "connector=\"files\",code=\"7000215\"",
    );
    assert_eq!(credential_errors, 1.0);
}
