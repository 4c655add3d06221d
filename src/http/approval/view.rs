//! What the approval page shows in each of its states, built from the approval, the connector and
//! where the wait stands. One state at a time: pending, request sent, approved, expired, or
//! approved-but-still-failing; the pending page also carries the approved and expired views,
//! hidden, for its script to flip to without a reload.

use askama::Template;

use super::super::i18n::{Lang, Texts, fill};
use crate::approval::{Diagnosis, Status, permissions};
use crate::config::ConnectorConfig;
use crate::entra::{Category, aadsts};
use crate::store::records::Approval;

/// One permission row.
pub(super) struct PermissionView {
    name: String,
    description: String,
    /// Needs an administrator's approval in every organization.
    admin_only: bool,
    /// Known not to need an administrator's approval.
    user_consentable: bool,
    /// Shown with the "may be classified low impact" badge: only where classifying can work.
    low_impact: bool,
}

/// Every scope a sign-in asks for, described in `lang`: the connector's, then the OIDC ones.
pub(super) fn permission_views(connector: &ConnectorConfig, lang: Lang) -> Vec<PermissionView> {
    let t = lang.texts();
    let mut scopes: Vec<&str> = connector.scopes.iter().map(String::as_str).collect();
    for oidc in crate::scope::SIGN_IN_OIDC {
        if !scopes.iter().any(|s| s.eq_ignore_ascii_case(oidc)) {
            scopes.push(oidc);
        }
    }
    let mut views: Vec<PermissionView> = scopes
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
                low_impact: false,
            }
        })
        .collect();
    // Users may consent under a low-impact classification only to apps of verified publishers, and
    // only when every permission asked for is classified, which admin-only ones never can be.
    let classifiable = connector.publisher_verified && !views.iter().any(|v| v.admin_only);
    for v in &mut views {
        v.low_impact = classifiable && v.user_consentable;
    }
    views
}

/// What the flags mean for the connector as a whole: which permissions always need an
/// administrator, which need none, which we cannot tell, and whether classifying the ones that
/// need none as low impact would let users approve the connector themselves.
pub(super) struct Advice<'a> {
    admin_only: Vec<&'a str>,
    user_consentable: Vec<&'a str>,
    unknown: Vec<&'a str>,
    /// Verified publisher and nothing admin-only: the low-impact route works.
    classify_works: bool,
}

impl<'a> Advice<'a> {
    pub(super) fn of(views: &'a [PermissionView], publisher_verified: bool) -> Self {
        let names = |keep: fn(&PermissionView) -> bool| -> Vec<&'a str> {
            views.iter().filter(|v| keep(v)).map(|v| v.name.as_str()).collect()
        };
        let admin_only = names(|v| v.admin_only);
        Self {
            classify_works: publisher_verified && admin_only.is_empty(),
            admin_only,
            user_consentable: names(|v| v.user_consentable),
            unknown: names(|v| !v.admin_only && !v.user_consentable),
        }
    }

    /// The low-impact fix, only where it can work.
    fn classify_text(&self, t: &Texts) -> Option<String> {
        (self.classify_works && !self.user_consentable.is_empty())
            .then(|| fill(t.fix_classify, &[("permissions", &self.user_consentable.join(", "))]))
    }

    /// The groups, one line each, for the admin part and the message for IT.
    fn lines(&self, t: &Texts) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.admin_only.is_empty() {
            lines.push(fill(t.group_admin, &[("permissions", &self.admin_only.join(", "))]));
        }
        if !self.user_consentable.is_empty() {
            let group = if self.classify_works {
                t.group_low
            } else {
                t.group_low_unverified
            };
            lines.push(fill(group, &[("permissions", &self.user_consentable.join(", "))]));
        }
        if !self.unknown.is_empty() {
            lines.push(fill(t.group_unknown, &[("permissions", &self.unknown.join(", "))]));
        }
        lines
    }
}

/// The page's state, as `data-view` and as the template branches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum View {
    /// Waiting, nobody asked inside the sign-in (workflow off) or consent missing.
    Pending,
    /// Waiting, the user sent a request from the sign-in (90095).
    Requested,
    /// The tenant approved after the page opened.
    Approved,
    /// Waited too long.
    Expired,
    /// The tenant approved before, and it fails anyway.
    StillFailing,
}

impl View {
    fn as_str(self) -> &'static str {
        match self {
            View::Pending => "pending",
            View::Requested => "requested",
            View::Approved => "approved",
            View::Expired => "expired",
            View::StillFailing => "still-failing",
        }
    }
}

/// A link the page shows: (label, URL).
pub(super) type Link = (String, String);

#[derive(Template)]
#[template(path = "approval.html", config = "src/http/askama.toml")]
pub(super) struct ApprovalPage {
    lang: &'static str,
    t: &'static Texts,
    view: &'static str,
    /// `pending`, `approved` or `expired`: what the script polls from.
    status: &'static str,
    title: String,
    approved_title: String,
    expired_title: String,
    organization: String,
    status_text: String,
    approved_text: String,
    expired_text: String,
    status_url: String,
    continue_url: String,
    page_url: String,
    publisher: Option<String>,
    publisher_verified: bool,
    publisher_links: Vec<Link>,
    logo_url: Option<String>,
    branch_text: String,
    publisher_note: Option<String>,
    /// "Try again" (consent missing) or "sign in with another account" (other tenant): only where
    /// a new sign-in can succeed now.
    retry: Option<String>,
    permissions_heading: String,
    approved_list: String,
    delegated_note: String,
    permissions: Vec<PermissionView>,
    admin_app: String,
    /// The one-click consent button, unless consent is not what is missing.
    admin_link: Option<String>,
    admin_button: String,
    admin_goes_to: String,
    fixes: Vec<String>,
    advice: Vec<String>,
    it_message: String,
    diagnosis: Option<String>,
    expired_body: String,
    back_url: Option<String>,
    details: Vec<(&'static str, String)>,
    /// The details as "label: value" lines, for the copy button.
    details_text: String,
    can_continue: bool,
}

impl ApprovalPage {
    /// The rendered page.
    pub(super) fn html(&self) -> askama::Result<String> {
        self.render()
    }
}

/// Everything the page is built from.
pub(super) struct Inputs<'a> {
    pub lang: Lang,
    pub approval: &'a Approval,
    pub connector: &'a ConnectorConfig,
    pub status: Status,
    pub diagnosis: Option<Diagnosis>,
    /// The browser that started the sign-in: only it can continue.
    pub can_continue: bool,
    /// `{public_url}/v1/approval/{flow_id}`.
    pub page_url: String,
    /// The one-click admin-consent link (`/v1/admin-consent/start?...`).
    pub admin_link: String,
    /// Entra's host, where that link leads.
    pub entra_host: String,
}

fn date(unix: i64) -> String {
    crate::clock::rfc3339(unix).chars().take(10).collect()
}

/// `2026-12-01 17:40 UTC`.
fn when(unix_ms: i64) -> String {
    let t = crate::clock::rfc3339(unix_ms / 1000);
    format!("{} {} UTC", &t[..10], &t[11..16])
}

/// The organization as the page names it: a domain, never a GUID when a domain is known.
fn organization(approval: &Approval, t: &Texts) -> String {
    crate::approval::organization_label(approval.tenant_label.as_deref(), approval.login_hint.as_deref())
        .unwrap_or_else(|| t.your_organization.to_string())
}

/// The approval page for `i`.
pub(super) fn build(i: Inputs<'_>) -> ApprovalPage {
    let (lang, approval, connector) = (i.lang, i.approval, i.connector);
    let t = lang.texts();
    let name = connector.display_name.as_str();
    let tenant = organization(approval, t);
    let requested = approval.aadsts == Some(aadsts::APPROVAL_REQUESTED);
    let consent = approval.category == Category::ConsentRequired;
    let view = match i.status {
        Status::Approved => View::Approved,
        Status::Expired => View::Expired,
        Status::Pending if i.diagnosis.is_some() => View::StillFailing,
        Status::Pending if requested => View::Requested,
        Status::Pending => View::Pending,
    };

    let permissions = permission_views(connector, lang);
    let advice = Advice::of(&permissions, connector.publisher_verified);
    let advice_lines = advice.lines(t);
    // Consent is what is missing unless the tenant approved everything already (then it is
    // likely the user's assignment, which no consent button fixes).
    let consent_helps = !matches!(i.diagnosis, Some(Diagnosis::AssignmentLikely { .. }));
    let mut fixes = Vec::new();
    if consent_helps {
        fixes.push(fill(t.fix_grant, &[("connector", name)]));
        if requested {
            fixes.push(t.fix_review.to_string());
        } else {
            fixes.push(t.fix_workflow.to_string());
        }
        fixes.extend(advice.classify_text(t));
    }

    let diagnosis = i.diagnosis.as_ref().map(|d| match d {
        Diagnosis::NewScopes { approved_at, missing } => fill(
            t.diag_new_scopes,
            &[
                ("connector", name),
                ("date", &date(*approved_at)),
                ("permissions", &missing.join(", ")),
            ],
        ),
        Diagnosis::AssignmentLikely { approved_at } => {
            fill(t.diag_assignment, &[("connector", name), ("date", &date(*approved_at))])
        }
        Diagnosis::OtherTenant => fill(t.diag_other_tenant, &[("connector", name), ("tenant", &tenant)]),
    });
    let continue_url = format!("{}/continue", crate::approval::page_path(&approval.flow_id));
    let retry = match (&i.diagnosis, consent) {
        _ if !i.can_continue => None,
        (Some(Diagnosis::OtherTenant), _) => Some(t.try_other_account.to_string()),
        (_, true) => Some(t.try_again.to_string()),
        _ => None,
    };
    let branch_text = if consent {
        fill(t.branch_consent, &[("connector", name)])
    } else if requested {
        t.branch_requested.to_string()
    } else {
        t.branch_admin_only.to_string()
    };
    let status_text = match view {
        View::Approved => t.status_approved.to_string(),
        View::Expired => t.status_expired.to_string(),
        View::Requested => t.status_requested.to_string(),
        View::Pending | View::StillFailing => fill(t.status_pending, &[("connector", name)]),
    };

    let reference = match approval.aadsts {
        Some(code) => format!("AADSTS{code}, {}", approval.flow_id),
        None => approval.flow_id.to_string(),
    };
    let publisher = &connector.publisher;
    let entra_host = i.entra_host.as_str();
    let intro_values = [
        ("user", approval.login_hint.as_deref().unwrap_or("")),
        ("connector", name),
        ("when", &when(approval.created_at_ms)),
        ("tenant", &tenant),
    ];
    let intro = match approval.login_hint {
        Some(_) => fill(t.it_intro_named, &intro_values),
        None => fill(t.it_intro_anonymous, &intro_values),
    };
    let verified = if connector.publisher_verified {
        t.verified_yes
    } else {
        t.verified_no
    };
    // "Publisher: Contoso Ltd. Publisher verified by Microsoft." (or just the second sentence).
    let publisher_line = match &publisher.name {
        Some(p) => format!("{}. {verified}.", fill(t.it_publisher, &[("publisher", p)])),
        None => format!("{verified}."),
    };
    let permission_lines: Vec<String> = permissions
        .iter()
        .map(|p| format!("- {}: {}", p.name, p.description))
        .collect();
    let other_ways: Vec<String> = fixes.iter().skip(1).map(|f| format!("- {f}")).collect();
    let it_message = fill(
        t.it_message,
        &[
            ("intro", &intro),
            ("connector", name),
            ("client_id", &connector.client_id),
            ("publisher_line", &publisher_line),
            ("permission_lines", &permission_lines.join("\n")),
            ("advice_lines", &advice_lines.join("\n")),
            ("admin_link", &i.admin_link),
            ("entra_host", entra_host),
            ("other_ways", &format!("{}\n{}", t.it_other_ways, other_ways.join("\n"))),
            ("page_url", &i.page_url),
            ("reference", &reference),
        ],
    );

    let mut publisher_links = Vec::new();
    for (label, url) in [
        (t.publisher_site, &publisher.url),
        (t.privacy_link, &publisher.privacy_url),
        (t.terms_link, &publisher.terms_url),
    ] {
        if let Some(u) = url {
            publisher_links.push((label.to_string(), u.to_string()));
        }
    }
    // Back to the connector, as the error pages do, so it can start a new sign-in.
    let back_url = approval
        .return_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| {
            let code = approval.aadsts.map(|n| n.to_string()).unwrap_or_default();
            let mut params = vec![("error", approval.category.as_str()), ("aadsts", code.as_str())];
            if let Some(s) = &approval.connector_state {
                params.push(("state", s));
            }
            crate::flow::return_url::with_params(&u, &params).to_string()
        });

    let mut details = vec![(t.label_category, category_name(approval.category, lang))];
    if let Some(code) = approval.aadsts {
        details.push((t.label_error_code, format!("AADSTS{code}")));
    }
    if let Some(tid) = &approval.tenant_id {
        details.push((t.label_tenant_id, tid.to_string()));
    }
    details.push((t.label_reference, approval.flow_id.to_string()));
    details.push((t.label_time, when(approval.created_at_ms)));
    if let Some(id) = super::super::observe::current_request_id() {
        details.push((t.label_request_id, id));
    }

    let details_text = details
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("\n");
    ApprovalPage {
        details_text,
        lang: lang.code(),
        t,
        view: view.as_str(),
        status: i.status.as_str(),
        title: match view {
            View::Approved => fill(t.approved_title, &[("connector", name)]),
            View::Expired => t.expired_title.to_string(),
            _ => fill(t.approval_title, &[("connector", name)]),
        },
        approved_title: fill(t.approved_title, &[("connector", name)]),
        expired_title: t.expired_title.to_string(),
        organization: fill(t.organization, &[("tenant", &tenant)]),
        status_text,
        approved_text: t.status_approved.to_string(),
        expired_text: t.status_expired.to_string(),
        status_url: format!("{}/status", crate::approval::page_path(&approval.flow_id)),
        continue_url,
        page_url: i.page_url,
        publisher: publisher
            .name
            .as_ref()
            .map(|p| fill(t.published_by, &[("publisher", p)])),
        publisher_verified: connector.publisher_verified,
        publisher_links,
        logo_url: publisher.logo_url.as_ref().map(ToString::to_string),
        branch_text,
        publisher_note: (!connector.publisher_verified).then(|| fill(t.unverified_publisher, &[("connector", name)])),
        retry,
        permissions_heading: fill(t.permissions_heading, &[("connector", name)]),
        approved_list: fill(t.approved_list, &[("connector", name)]),
        delegated_note: fill(t.delegated_note, &[("connector", name)]),
        admin_app: fill(t.admin_app, &[("connector", name), ("client_id", &connector.client_id)]),
        admin_link: consent_helps.then_some(i.admin_link),
        admin_button: fill(t.admin_button, &[("connector", name)]),
        admin_goes_to: fill(t.admin_goes_to, &[("host", entra_host)]),
        fixes,
        advice: advice_lines,
        it_message,
        diagnosis,
        expired_body: fill(t.expired_body, &[("connector", name)]),
        back_url,
        details,
        can_continue: i.can_continue,
        permissions,
    }
}

/// A category as people read it, in `lang`, followed by the API's name for it (what support
/// tools such as `consent-broker explain` and the connector's logs use).
pub fn category_name(category: Category, lang: Lang) -> String {
    format!("{} ({})", (lang.texts().category_name)(category), category.as_str())
}
