//! The approval page, its status, "continue", and the admin-consent round trip.

use askama::Template;
use axum::Json;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::api_types::{ApprovalStatusBody, ErrorBody, RetryableErrorBody};
use super::binding::BrowserCookie;
use super::error::{ApiError, PageError};
use super::found;
use super::i18n::{Lang, Texts, fill};
use super::pages::{self, PageContent};
use crate::app::AppState;
use crate::approval::{self, ConsentOutcome, Diagnosis, Status, Unconfirmed, permissions};
use crate::entra::{Category, aadsts};
use crate::flow::{self, FlowError};
use crate::ids::{ConnectorId, FlowId};
use crate::store::records::Approval;

/// One permission row.
struct PermissionView {
    name: String,
    description: String,
    /// Needs an administrator's approval in every organization.
    admin_only: bool,
    /// Known not to need an administrator's approval.
    user_consentable: bool,
    /// An administrator may classify it as low impact (user-consentable, verified publisher).
    low_impact: bool,
}

/// Every scope a sign-in asks for, described in `lang`: the connector's, then the OIDC ones.
fn permission_views(connector: &crate::config::ConnectorConfig, lang: Lang) -> Vec<PermissionView> {
    let t = lang.texts();
    let mut scopes: Vec<&str> = connector.scopes.iter().map(String::as_str).collect();
    for oidc in crate::scope::SIGN_IN_OIDC {
        if !scopes.iter().any(|s| s.eq_ignore_ascii_case(oidc)) {
            scopes.push(oidc);
        }
    }
    scopes
        .into_iter()
        .map(|scope| {
            let d = permissions::describe(scope);
            let api_name = d
                .api
                .map(|a| if lang == Lang::De { a.de.as_str() } else { a.en.as_str() });
            // Spelled as the API publishes it when known, else as the connector's config does.
            let bare = d.permission.map_or(d.name, |p| p.name.as_str());
            let name = match (api_name, d.api.map(|a| a.id.as_str()), d.host) {
                // Microsoft Graph of the global cloud, or an OIDC scope: the bare name, as Entra shows it.
                (Some(_), Some("graph"), None) => bare.to_string(),
                (Some(api), _, Some(host)) => format!("{bare} ({api}, {host})"),
                (Some(api), _, None) => format!("{bare} ({api})"),
                (None, _, _) => fill(
                    t.on_resource,
                    &[("scope", d.name), ("resource", d.resource.unwrap_or(scope))],
                ),
            };
            let description = match (d.permission, d.api) {
                (Some(p), _) => (if lang == Lang::De { &p.de } else { &p.en }).clone(),
                (None, Some(_)) => t.unknown_permission.to_string(),
                (None, None) => t.unknown_resource.to_string(),
            };
            PermissionView {
                name,
                description,
                admin_only: d.admin_only(),
                user_consentable: d.user_consentable(),
                low_impact: d.user_consentable() && connector.publisher_verified,
            }
        })
        .collect()
}

/// What the flags mean for the connector as a whole: which permissions always need an
/// administrator, which an administrator may classify as low impact, which we cannot tell.
struct Advice<'a> {
    admin_only: Vec<&'a str>,
    classifiable: Vec<&'a str>,
    unknown: Vec<&'a str>,
    publisher_verified: bool,
}

impl<'a> Advice<'a> {
    fn of(views: &'a [PermissionView], publisher_verified: bool) -> Self {
        let names = |keep: fn(&PermissionView) -> bool| -> Vec<&'a str> {
            views.iter().filter(|v| keep(v)).map(|v| v.name.as_str()).collect()
        };
        Self {
            admin_only: names(|v| v.admin_only),
            classifiable: names(|v| v.user_consentable),
            unknown: names(|v| !v.admin_only && !v.user_consentable),
            publisher_verified,
        }
    }

    /// The third fix: classify as low impact, or why that would not help. Users may consent under
    /// that setting only to apps of verified publishers, and only when every permission asked for
    /// is classified, which permissions needing admin consent never can be.
    fn classify_text(&self, t: &Texts, connector: &str) -> String {
        if !self.publisher_verified {
            fill(t.classify_unverified, &[("connector", connector)])
        } else if !self.admin_only.is_empty() {
            fill(
                t.classify_not_enough,
                &[("connector", connector), ("permissions", &self.admin_only.join(", "))],
            )
        } else {
            fill(t.fix_classify, &[("permissions", &self.classifiable.join(", "))])
        }
    }

    /// The groups, one line each, for the message for IT.
    fn lines(&self, t: &Texts) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.admin_only.is_empty() {
            lines.push(fill(t.group_admin, &[("permissions", &self.admin_only.join(", "))]));
        }
        if !self.classifiable.is_empty() {
            let group = if self.publisher_verified {
                t.group_low
            } else {
                t.group_low_unverified
            };
            lines.push(fill(group, &[("permissions", &self.classifiable.join(", "))]));
        }
        if !self.unknown.is_empty() {
            lines.push(fill(t.group_unknown, &[("permissions", &self.unknown.join(", "))]));
        }
        lines
    }
}

#[derive(Template)]
#[template(path = "approval.html", config = "src/http/askama.toml")]
struct ApprovalPage<'a> {
    lang: &'static str,
    t: &'static Texts,
    title: String,
    organization: String,
    status: &'static str,
    status_text: String,
    approved_text: String,
    expired_text: String,
    status_url: String,
    retry_url: String,
    branch_text: String,
    publisher_note: Option<String>,
    permissions_heading: String,
    permissions: Vec<PermissionView>,
    admin_app: String,
    admin_link: String,
    admin_button: String,
    fixes: Vec<String>,
    advice: Vec<String>,
    it_message: String,
    diagnosis: Option<String>,
    details: Vec<(&'a str, String)>,
    can_continue: bool,
}

fn date(unix: i64) -> String {
    crate::clock::rfc3339(unix).chars().take(10).collect()
}

async fn load(state: &AppState, flow_id: &str) -> Result<Option<Approval>, crate::store::StoreError> {
    if flow_id.is_empty() || flow_id.len() > 64 {
        return Ok(None);
    }
    state.approval.approval(&FlowId::new(flow_id)).await
}

fn not_found(lang: Lang) -> PageError {
    let t = lang.texts();
    PageError {
        status: StatusCode::NOT_FOUND,
        content: PageContent {
            lang,
            ..PageContent::message(t.approval_not_found, t.approval_not_found)
        },
        retry_after: None,
    }
}

/// The "your organization needs to approve <connector>" page a sign-in that needs the tenant's
/// approval ends on (HTML, English or German from `Accept-Language`).
#[utoipa::path(
    get,
    path = "/v1/approval/{flow_id}",
    tag = "approval",
    params(("flow_id" = String, Path, description = "The failed sign-in's flow, from the callback's redirect or the session's `approval_url`.")),
    responses(
        (status = 200, description = "The approval page: the connector, the tenant, each permission in plain words, what the user can do now, the admin's one-click link and the three ways to fix it for everyone. With JavaScript it polls `/v1/approval/{flow_id}/status`.", content_type = "text/html"),
        (status = 404, description = "No such approval page (unknown or expired flow).", content_type = "text/html"),
        (status = 429, description = "Over the per-address limit of browser pages.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "The store does not answer.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn page(
    State(state): State<AppState>,
    Path(flow_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let lang = Lang::from_headers(&headers);
    let t = lang.texts();
    let approval = load(&state, &flow_id)
        .await
        .map_err(FlowError::from)?
        .ok_or_else(|| not_found(lang))?;
    let connector = state.connector(&approval.connector).ok_or_else(|| not_found(lang))?;
    let name = connector.display_name.as_str();
    let status = state.approval.status(&approval).await.map_err(FlowError::from)?;
    let cookie = BrowserCookie::read(&headers, state.secure_cookies());
    let own = cookie
        .as_ref()
        .filter(|c| flow::binding::same_browser(Some(&c.binding()), &approval.browser));
    let tenant = approval
        .tenant_label
        .clone()
        .unwrap_or_else(|| t.your_organization.to_string());

    let permissions = permission_views(connector, lang);
    let advice = Advice::of(&permissions, connector.publisher_verified);
    let permission_lines: Vec<String> = permissions
        .iter()
        .map(|p| format!("- {}: {}", p.name, p.description))
        .collect();
    let classify_text = advice.classify_text(t, name);
    let advice_lines = advice.lines(t);

    let requested = approval.aadsts == Some(aadsts::APPROVAL_REQUESTED);
    let branch_text = if approval.category == Category::ConsentRequired {
        fill(t.branch_consent, &[("connector", name)])
    } else if requested {
        t.branch_requested.to_string()
    } else {
        t.branch_admin_only.to_string()
    };
    let status_text = match status {
        Status::Approved => t.status_approved.to_string(),
        Status::Expired => fill(t.status_expired, &[("connector", name)]),
        Status::Pending if requested => t.status_requested.to_string(),
        Status::Pending => fill(t.status_pending, &[("connector", name)]),
    };
    let admin_link = state.approval.admin_link(&approval);
    let reference = match approval.aadsts {
        Some(code) => format!("AADSTS{code}, {}", approval.flow_id),
        None => approval.flow_id.to_string(),
    };
    let diagnosis = state
        .approval
        .diagnose(&approval)
        .await
        .map_err(FlowError::from)?
        .map(|d| match d {
            Diagnosis::NewScopes { approved_at, missing } => fill(
                t.diag_new_scopes,
                &[
                    ("connector", name),
                    ("date", &date(approved_at)),
                    ("permissions", &missing.join(", ")),
                ],
            ),
            Diagnosis::AssignmentLikely { approved_at } => {
                fill(t.diag_assignment, &[("connector", name), ("date", &date(approved_at))])
            }
            Diagnosis::OtherTenant => fill(t.diag_other_tenant, &[("connector", name), ("tenant", &tenant)]),
        });
    let mut details = vec![("Category", approval.category.to_string())];
    if let Some(code) = approval.aadsts {
        details.push(("Error code", format!("AADSTS{code}")));
    }
    if let Some(tid) = &approval.tenant_id {
        details.push(("Tenant ID", tid.to_string()));
    }
    details.push(("Reference", approval.flow_id.to_string()));

    let page = ApprovalPage {
        lang: lang.code(),
        t,
        title: fill(t.approval_title, &[("connector", name)]),
        organization: fill(t.organization, &[("tenant", &tenant)]),
        status: status.as_str(),
        status_text,
        approved_text: t.status_approved.to_string(),
        expired_text: fill(t.status_expired, &[("connector", name)]),
        status_url: format!("{}/status", approval::page_path(&approval.flow_id)),
        retry_url: format!("{}/continue", approval::page_path(&approval.flow_id)),
        branch_text,
        publisher_note: (!connector.publisher_verified).then(|| fill(t.unverified_publisher, &[("connector", name)])),
        permissions_heading: fill(t.permissions_heading, &[("connector", name)]),
        admin_app: fill(t.admin_app, &[("connector", name), ("client_id", &connector.client_id)]),
        admin_button: fill(t.admin_button, &[("connector", name)]),
        fixes: vec![
            fill(t.fix_grant, &[("connector", name)]),
            t.fix_workflow.to_string(),
            classify_text.clone(),
        ],
        advice: advice_lines.clone(),
        it_message: fill(
            t.it_message,
            &[
                ("connector", name),
                ("client_id", &connector.client_id),
                ("tenant", &tenant),
                ("permission_lines", &permission_lines.join("\n")),
                ("advice_lines", &advice_lines.join("\n")),
                ("classify_advice", &classify_text),
                ("admin_link", &admin_link),
                ("reference", &reference),
            ],
        ),
        admin_link,
        permissions,
        diagnosis,
        details,
        can_continue: own.is_some(),
    };
    match page.render() {
        Ok(html) => {
            let mut response = (StatusCode::OK, Html(html)).into_response();
            // Coming back to the page keeps the user able to continue for as long as it waits.
            let left = approval.expires_at - crate::clock::now_unix();
            if let Some(cookie) = own
                && left > 0
            {
                cookie.set(&mut response, std::time::Duration::from_secs(left as u64));
            }
            Ok(response)
        }
        Err(e) => {
            tracing::error!(error = %e, "approval template failed");
            Ok((StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response())
        }
    }
}

/// Whether the tenant has approved since the page opened: what the open approval page polls.
/// Needs no API key (the flow id is the page's own secret) and is not rate-limited per address.
#[utoipa::path(
    get,
    path = "/v1/approval/{flow_id}/status",
    tag = "approval",
    params(("flow_id" = String, Path, description = "The approval page's flow.")),
    responses(
        (status = 200, description = "Where the wait stands.", body = ApprovalStatusBody),
        (status = 404, description = "`not_found`: no such approval page.", body = ErrorBody),
        (status = 503, description = "`store_unavailable`.", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn status(
    State(state): State<AppState>,
    Path(flow_id): Path<String>,
) -> Result<Json<ApprovalStatusBody>, ApiError> {
    let approval = load(&state, &flow_id).await?.ok_or(ApiError::NotFound)?;
    let status = state.approval.status(&approval).await?;
    Ok(Json(ApprovalStatusBody {
        status: status.into(),
        retry_url: state.public(&format!("{}/continue", approval::page_path(&approval.flow_id))),
        tenant_id: approval.tenant_id,
    }))
}

/// "Continue" / "try again" on an approval page: a new sign-in with the same connector, user hint
/// and return URL, in the browser that started the first one.
#[utoipa::path(
    get,
    path = "/v1/approval/{flow_id}/continue",
    tag = "approval",
    params(("flow_id" = String, Path, description = "The approval page's flow.")),
    responses(
        (status = 302, description = "To Entra's authorize endpoint, as `GET /v1/connect/{token}` does; renews the browser-binding cookie.",
            headers(("Location" = String, description = "Entra's authorize URL."),
                    ("Set-Cookie" = String, description = "The browser-binding cookie (`cb_browser`, `__Host-cb_browser` on https)."))),
        (status = 400, description = "A readable page: this browser did not start the sign-in, or a parameter is invalid.", content_type = "text/html"),
        (status = 404, description = "No such approval page.", content_type = "text/html"),
        (status = 429, description = "Too many sign-ins started, or over the per-address limit.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "The store does not answer.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn continue_flow(
    State(state): State<AppState>,
    Path(flow_id): Path<String>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let lang = Lang::from_headers(&headers);
    let approval = load(&state, &flow_id)
        .await
        .map_err(FlowError::from)?
        .ok_or_else(|| not_found(lang))?;
    let cookie = BrowserCookie::read(&headers, state.secure_cookies());
    let client = state.limits.client_ip(&headers, peer.map(|p| p.0.0));
    let url = state
        .flow
        .start_for_approval(&approval, cookie.as_ref().map(BrowserCookie::binding).as_ref(), client)
        .await
        .map_err(|e| PageError::from_flow(e, lang))?;
    let cookie = cookie.ok_or(FlowError::OtherBrowser)?;
    let mut response = found(url.as_str());
    // Long enough for the new sign-in, and for coming back to this page if it fails again.
    let left = std::time::Duration::from_secs((approval.expires_at - crate::clock::now_unix()).max(0) as u64);
    cookie.set(&mut response, left.max(state.config.flow.state_ttl));
    Ok(response)
}

/// Query of `GET /v1/admin-consent/start`; the required two are `Option`s so that a missing one is
/// a readable page.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// The connector to approve.
    #[param(required = true)]
    connector: Option<String>,
    /// The tenant (GUID or domain) whose administrator approves.
    #[param(required = true)]
    tenant: Option<String>,
    /// The approval page to return to afterwards.
    flow: Option<String>,
}

/// The admin's one-click link: starts Entra's admin consent for the connector in a tenant.
#[utoipa::path(
    get,
    path = "/v1/admin-consent/start",
    tag = "approval",
    params(StartQuery),
    responses(
        (status = 302, description = "To `https://{authority}/{tenant}/v2.0/adminconsent` with the connector's `client_id`, its scopes, `redirect_uri={public_url}/v1/admin-consent/callback` and a fresh single-use `state`.",
            headers(("Location" = String, description = "Entra's admin consent URL."))),
        (status = 400, description = "A readable page: unknown connector or a missing or invalid parameter.", content_type = "text/html"),
        (status = 429, description = "Over the per-address limit.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "The store does not answer.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn admin_consent_start(
    State(state): State<AppState>,
    Query(q): Query<StartQuery>,
) -> Result<Response, PageError> {
    let connector = q.connector.as_deref().ok_or(FlowError::InvalidParameter {
        field: "connector",
        message: "is required",
    })?;
    let tenant = q.tenant.as_deref().ok_or(FlowError::InvalidParameter {
        field: "tenant",
        message: "is required",
    })?;
    let url = state
        .approval
        .admin_consent_start(connector, tenant, q.flow.as_deref())
        .await?;
    Ok(found(url.as_str()))
}

/// Entra's redirect target after admin consent: checks the approval with Entra, records it and
/// turns every waiting approval page of that tenant and connector to "approved".
#[utoipa::path(
    get,
    path = "/v1/admin-consent/callback",
    tag = "approval",
    params(
        ("admin_consent" = Option<String>, Query, description = "`True` when the admin approved."),
        ("tenant" = Option<String>, Query, description = "The tenant GUID that approved."),
        ("scope" = Option<String>, Query, description = "The granted scopes."),
        ("state" = Option<String>, Query, description = "The single-use state of `/v1/admin-consent/start`."),
        ("error" = Option<String>, Query, description = "Entra's error, when the admin cancelled or could not approve."),
        ("error_description" = Option<String>, Query, description = "Entra's error text (with the AADSTS code)."),
    ),
    responses(
        (status = 200, description = "A page: thanks (approval checked with Entra and recorded), cancelled, not an administrator, what went wrong and who fixes it, or \"we could not confirm the approval yet\" with \"try again\".", content_type = "text/html"),
        (status = 400, description = "A page: unknown, reused or expired `state`, or a tenant other than the one asked for; nothing recorded.", content_type = "text/html"),
        (status = 429, description = "Over the per-address limit.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "A page: Entra is unavailable or throttling, so the approval could not be checked and nothing was recorded; or the store does not answer.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn admin_consent_callback(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let lang = Lang::from_headers(&headers);
    let t = lang.texts();
    let outcome = match state
        .approval
        .admin_consent_callback(raw.as_deref().unwrap_or(""))
        .await
    {
        Err(FlowError::InvalidState) => {
            return Err(PageError {
                status: StatusCode::BAD_REQUEST,
                content: PageContent {
                    lang,
                    ..PageContent::message(t.consent_failed_title, t.consent_state_invalid)
                },
                retry_after: None,
            });
        }
        other => other?,
    };
    let name = |id: &ConnectorId| {
        state
            .connector(id)
            .map_or_else(|| id.to_string(), |c| c.display_name.clone())
    };
    let mut retry = None;
    let (status, mut content) = match outcome {
        ConsentOutcome::Approved {
            connector,
            tenant_id,
            flow_id,
        } => {
            let n = name(&connector);
            let mut page = PageContent::message(
                &fill(t.thanks_title, &[("connector", &n)]),
                fill(t.thanks_body, &[("connector", &n), ("tenant", tenant_id.as_str())]),
            );
            if let Some(f) = flow_id {
                page.action = Some((t.continue_label.to_string(), state.public(&approval::page_path(&f))));
            }
            (StatusCode::OK, page)
        }
        ConsentOutcome::Cancelled { .. } => (
            StatusCode::OK,
            PageContent::message(t.consent_cancelled_title, t.consent_cancelled_body),
        ),
        ConsentOutcome::NotAdmin { connector } => (
            StatusCode::OK,
            PageContent::message(
                t.consent_not_admin_title,
                fill(t.consent_not_admin_body, &[("connector", &name(&connector))]),
            ),
        ),
        ConsentOutcome::WrongTenant => (
            StatusCode::BAD_REQUEST,
            PageContent::message(t.consent_failed_title, t.consent_wrong_tenant),
        ),
        ConsentOutcome::Unconfirmed {
            connector,
            tenant_id,
            flow_id,
            reason,
        } => {
            let n = name(&connector);
            let values = [("connector", n.as_str()), ("tenant", tenant_id.as_str())];
            let (status, body) = match reason {
                Unconfirmed::NoServicePrincipal => (StatusCode::OK, t.consent_unconfirmed_body),
                Unconfirmed::EntraUnavailable { retry_after } => {
                    retry = Some(retry_after);
                    (StatusCode::SERVICE_UNAVAILABLE, t.consent_unavailable_body)
                }
            };
            let mut page = PageContent::message(t.consent_unconfirmed_title, fill(body, &values));
            page.action = Some((
                t.try_again.to_string(),
                state
                    .approval
                    .start_link(&connector, tenant_id.as_str(), flow_id.as_ref()),
            ));
            page.details.push(("Tenant ID".into(), tenant_id.to_string()));
            (status, page)
        }
        ConsentOutcome::Failed { classification, .. } => {
            let mut page = PageContent::message(t.consent_failed_title, classification.user_message_in(lang));
            page.paragraphs.push(classification.admin_message_in(lang).to_string());
            if let Some(code) = classification.primary_code() {
                page.details.push(("Error code".into(), format!("AADSTS{code}")));
            }
            (StatusCode::OK, page)
        }
    };
    content.lang = lang;
    let mut response = pages::render(status, &content);
    if let Some(r) = retry
        && let Ok(v) = HeaderValue::from_str(&r.as_secs().max(1).to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Ok(response)
}
