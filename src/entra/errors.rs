//! Entra's error shapes and their classification into the contract's categories.
//!
//! Classification reads the AADSTS code first (most specific of a chain), then `suberror`, then
//! the OAuth `error`, then the HTTP status — the order the contract prescribes, and the fallback
//! Microsoft recommends because AADSTS numbers and texts may change. It never panics.

use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;

use super::aadsts::{self, WhoFixes};
use crate::http::i18n::Lang;

/// The contract's error categories: "who can fix this, and how".
// Records (sessions, connections, approvals) store them under the names the API answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// A tenant admin must approve the app.
    AdminApprovalRequired,
    /// Consent is missing.
    ConsentRequired,
    /// The user cancelled or declined.
    UserDeclined,
    /// The account may not use this app.
    NotAssigned,
    /// A tenant policy blocks it.
    ConditionalAccess,
    /// The user must complete an interactive step.
    InteractionRequired,
    /// The grant is gone; sign in again.
    ReauthRequired,
    /// The connector's app registration or request is wrong.
    AppMisconfigured,
    /// The tenant lacks something.
    TenantMisconfigured,
    /// The broker's client credential is wrong or expired.
    ClientCredentialInvalid,
    /// Entra is unavailable or throttling.
    Transient,
    /// The request to the broker was malformed.
    InvalidRequest,
    /// Nothing could be determined.
    // A name this build does not know (a newer broker's, or one since renamed) reads as this
    // rather than making the whole record unreadable: a connection must keep working whatever
    // its last failure was called.
    #[serde(other)]
    Unknown,
}

impl Category {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AdminApprovalRequired => "admin_approval_required",
            Self::ConsentRequired => "consent_required",
            Self::UserDeclined => "user_declined",
            Self::NotAssigned => "not_assigned",
            Self::ConditionalAccess => "conditional_access",
            Self::InteractionRequired => "interaction_required",
            Self::ReauthRequired => "reauth_required",
            Self::AppMisconfigured => "app_misconfigured",
            Self::TenantMisconfigured => "tenant_misconfigured",
            Self::ClientCredentialInvalid => "client_credential_invalid",
            Self::Transient => "transient",
            Self::InvalidRequest => "invalid_request",
            Self::Unknown => "unknown",
        }
    }

    /// Who usually fixes errors of this category.
    pub fn who_fixes(self) -> WhoFixes {
        match self {
            Self::AdminApprovalRequired | Self::NotAssigned | Self::ConditionalAccess | Self::TenantMisconfigured => {
                WhoFixes::TenantAdmin
            }
            Self::ConsentRequired | Self::UserDeclined | Self::InteractionRequired | Self::ReauthRequired => {
                WhoFixes::User
            }
            Self::AppMisconfigured | Self::InvalidRequest => WhoFixes::ConnectorDeveloper,
            Self::ClientCredentialInvalid => WhoFixes::Operator,
            Self::Transient => WhoFixes::Retry,
            Self::Unknown => WhoFixes::Unknown,
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An Entra error as received, from a redirect or a token-endpoint body.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EntraError {
    /// OAuth `error`.
    #[serde(default)]
    pub error: Option<String>,
    /// `error_description` (developer text; may carry AADSTS codes and ids).
    #[serde(default)]
    pub error_description: Option<String>,
    /// `error_codes` (token endpoint).
    #[serde(default)]
    pub error_codes: Vec<u32>,
    /// `suberror`.
    #[serde(default)]
    pub suberror: Option<String>,
    /// `error_subcode` (redirects; `cancel`).
    #[serde(default)]
    pub error_subcode: Option<String>,
    /// `trace_id`.
    #[serde(default)]
    pub trace_id: Option<String>,
    /// `correlation_id`.
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// HTTP status of the response, when it came from an endpoint.
    #[serde(skip)]
    pub http_status: Option<u16>,
}

/// The result of classifying an error.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Classification {
    /// Top-level category.
    pub category: Category,
    /// Finer reason, e.g. `mfa_required`.
    pub reason: Option<&'static str>,
    /// AADSTS codes, most specific first.
    pub aadsts: Vec<u32>,
    /// OAuth `error`.
    pub oauth_error: Option<String>,
    /// `suberror`.
    pub suberror: Option<String>,
    /// Entra trace id.
    pub trace_id: Option<String>,
    /// Entra correlation id.
    pub correlation_id: Option<String>,
}

impl Classification {
    /// The broker could not build its own client credential (the client assertion could not be
    /// signed): nothing reached Entra, and only the operator can fix it.
    pub fn local_credential_failure() -> Self {
        Self {
            category: Category::ClientCredentialInvalid,
            reason: Some("credential_unusable"),
            aadsts: Vec::new(),
            oauth_error: None,
            suberror: None,
            trace_id: None,
            correlation_id: None,
        }
    }

    /// The most specific AADSTS code.
    pub fn primary_code(&self) -> Option<u32> {
        self.aadsts.first().copied()
    }

    /// The table entry (or family entry) of the most specific known code.
    fn info(&self) -> Option<&'static aadsts::Entry> {
        self.aadsts.iter().find_map(|c| aadsts::resolve(*c))
    }

    /// Who can fix it: the code's entry, else the category's default.
    pub fn who_fixes(&self) -> WhoFixes {
        match self.info() {
            Some(i) if i.category == self.category => i.who,
            _ => self.category.who_fixes(),
        }
    }

    /// What happened, in plain words for the user (English).
    pub fn user_message(&self) -> &'static str {
        self.user_message_in(Lang::En)
    }

    /// The fix, in plain words for the admin, developer or operator (English).
    pub fn admin_message(&self) -> &'static str {
        self.admin_message_in(Lang::En)
    }

    /// What happened, in plain words for the user, in `lang`.
    pub fn user_message_in(&self, lang: Lang) -> &'static str {
        match self.info() {
            Some(i) if i.category == self.category => i.words(lang).meaning.as_str(),
            _ => messages_in(self.category, lang).0,
        }
    }

    /// The fix, in plain words for the admin, developer or operator, in `lang`.
    pub fn admin_message_in(&self, lang: Lang) -> &'static str {
        match self.info() {
            Some(i) if i.category == self.category => i.words(lang).fix.as_str(),
            _ => messages_in(self.category, lang).1,
        }
    }
}

use Category::*;

static AADSTS_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)AADSTS(\d{4,8})").unwrap_or_else(|_| unreachable!()));
static TRACE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)trace[ _-]?id["']?\s*[:=]?\s*["']?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"#,
    )
    .unwrap_or_else(|_| unreachable!())
});
static CORRELATION_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)correlation[ _-]?id["']?\s*[:=]?\s*["']?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"#,
    )
    .unwrap_or_else(|_| unreachable!())
});

/// Looks up one AADSTS code, by its table entry or else its family: (category, reason).
pub fn lookup(code: u32) -> Option<(Category, Option<&'static str>)> {
    aadsts::resolve(code).map(|i| (i.category, Some(i.reason.as_str())))
}

/// All AADSTS codes in `text`, in order, without duplicates.
pub fn codes_in(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for cap in AADSTS_RE.captures_iter(text) {
        if let Some(code) = cap.get(1).and_then(|m| m.as_str().parse::<u32>().ok())
            && !out.contains(&code)
        {
            out.push(code);
        }
    }
    out
}

/// Orders codes most specific first: wrappers last, listed codes before codes known only by their
/// family, those before unknown ones, otherwise as given (the sort is stable).
pub fn most_specific_first(mut codes: Vec<u32>) -> Vec<u32> {
    let rank = |c: u32| match (aadsts::lookup(c).is_some(), aadsts::family(c).is_some()) {
        (true, _) => 0,
        (false, true) => 1,
        (false, false) => 2,
    };
    codes.sort_by_key(|c| (aadsts::is_wrapper(*c), rank(*c)));
    codes
}

fn by_suberror(suberror: &str) -> Option<(Category, Option<&'static str>)> {
    Some(match suberror {
        "consent_required" => (ConsentRequired, Some("consent_missing")),
        "basic_action" => (InteractionRequired, Some("mfa_required")),
        "user_password_expired" => (InteractionRequired, Some("password_expired")),
        "additional_action" => (ConditionalAccess, Some("additional_action")),
        "message_only" => (ConditionalAccess, Some("blocked_by_policy")),
        "bad_token" | "token_expired" => (ReauthRequired, Some("grant_invalid")),
        "protection_policy_required" => (ConditionalAccess, Some("app_protection_required")),
        _ => return None,
    })
}

fn by_oauth_error(error: &str) -> Option<(Category, Option<&'static str>)> {
    Some(match error {
        "invalid_client" => (ClientCredentialInvalid, None),
        "unauthorized_client"
        | "invalid_scope"
        | "unsupported_response_type"
        | "unsupported_grant_type"
        | "invalid_resource" => (AppMisconfigured, None),
        "invalid_request" => (AppMisconfigured, Some("malformed_request")),
        "invalid_grant" => (ReauthRequired, None),
        "interaction_required" => (InteractionRequired, None),
        "login_required" => (InteractionRequired, Some("login_required")),
        "consent_required" => (ConsentRequired, None),
        "access_denied" => (UserDeclined, None),
        "temporarily_unavailable" | "server_error" => (Transient, None),
        "invalid_tenant" => (TenantMisconfigured, Some("tenant_not_found")),
        _ => return None,
    })
}

fn by_status(status: u16) -> Option<(Category, Option<&'static str>)> {
    match status {
        429 => Some((Transient, Some("throttled"))),
        500..=599 => Some((Transient, Some("server_error"))),
        401 => Some((ClientCredentialInvalid, None)),
        _ => None,
    }
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_ref().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// Classifies an Entra error.
pub fn classify(err: &EntraError) -> Classification {
    let description = err.error_description.as_deref().unwrap_or("");
    let mut codes: Vec<u32> = err.error_codes.clone();
    for c in codes_in(description) {
        if !codes.contains(&c) {
            codes.push(c);
        }
    }
    let codes = most_specific_first(codes);
    let oauth_error = non_empty(&err.error).map(|e| e.to_ascii_lowercase());
    let suberror = non_empty(&err.suberror).map(|e| e.to_ascii_lowercase());

    let (mut category, mut reason) = codes
        .iter()
        .find_map(|c| lookup(*c))
        .or_else(|| suberror.as_deref().and_then(by_suberror))
        .or_else(|| oauth_error.as_deref().and_then(by_oauth_error))
        .or_else(|| err.http_status.and_then(by_status))
        .unwrap_or((Unknown, None));
    if category == UserDeclined && err.error_subcode.as_deref() == Some("cancel") && reason.is_none() {
        reason = Some("cancelled");
    }
    if category == Unknown && codes.is_empty() && oauth_error.is_none() {
        (category, reason) = (Unknown, None);
    }
    let capture = |re: &Regex| {
        re.captures(description)
            .and_then(|c| c.get(1))
            .map(|m| m.as_str().to_string())
    };
    Classification {
        category,
        reason,
        aadsts: codes,
        oauth_error,
        suberror,
        trace_id: non_empty(&err.trace_id).or_else(|| capture(&TRACE_RE)),
        correlation_id: non_empty(&err.correlation_id).or_else(|| capture(&CORRELATION_RE)),
    }
}

/// Plain-words messages for a category in `lang`: (for the user, for the admin or developer).
pub fn messages_in(category: Category, lang: Lang) -> (&'static str, &'static str) {
    match lang {
        Lang::En => messages(category),
        Lang::De => crate::http::i18n::category_messages_de(category),
    }
}

/// Plain-words messages for a category: (for the user, for the admin or developer).
pub fn messages(category: Category) -> (&'static str, &'static str) {
    match category {
        AdminApprovalRequired => (
            "Your organization needs to approve this app before you can use it.",
            "A tenant administrator must grant admin consent to the connector's app for the listed permissions.",
        ),
        ConsentRequired => (
            "This app needs your permission to access your data. Sign in again and accept the permissions, or ask your administrator.",
            "Consent for the connector's permissions is missing; the user can consent if your tenant allows it, otherwise grant admin consent.",
        ),
        UserDeclined => (
            "The sign-in was cancelled or the permissions were declined. You can try again.",
            "The user declined consent; nothing needs fixing unless they could not consent.",
        ),
        NotAssigned => (
            "Your account is not allowed to use this app. Check you used the right account, or ask your administrator for access.",
            "Assign the user (or a group) to the enterprise application, or check the account is enabled and belongs to this tenant.",
        ),
        ConditionalAccess => (
            "A policy in your organization blocked this sign-in (device, location or app rules).",
            "A Conditional Access or tenant policy blocks this app; review the sign-in log entry for the policy that applied.",
        ),
        InteractionRequired => (
            "You need to complete an extra sign-in step (such as multi-factor authentication). Sign in again.",
            "The user must complete an interactive step (MFA, password change); no tenant change is needed.",
        ),
        ReauthRequired => (
            "Your sign-in has expired or was revoked. Please sign in again.",
            "The refresh grant expired or was revoked; the user must reconnect.",
        ),
        AppMisconfigured => (
            "The app's sign-in is set up incorrectly. Contact the app's support.",
            "The connector's app registration or request is wrong (redirect URI, scopes or application id).",
        ),
        TenantMisconfigured => (
            "Your organization's directory is missing something this app needs. Contact your administrator.",
            "The tenant was not found, lacks a subscription or service, or belongs to another cloud.",
        ),
        ClientCredentialInvalid => (
            "The service is having trouble signing in. Please try again later.",
            "The broker's client secret or certificate for this connector is invalid or expired; the operator must rotate it.",
        ),
        Transient => (
            "Microsoft's sign-in service is busy or unavailable. Please try again in a few minutes.",
            "Entra reported a transient error or throttling; retry later.",
        ),
        InvalidRequest => (
            "This sign-in link is invalid or was already used. Start again from the app.",
            "The request to the broker was malformed, replayed or tampered with.",
        ),
        Unknown => (
            "Something went wrong during sign-in. Please try again, or contact the app's support.",
            "The error could not be classified; look up the trace and correlation ids in the Entra sign-in logs.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_err(json: &str, status: u16) -> EntraError {
        let mut e: EntraError = serde_json::from_str(json).unwrap();
        e.http_status = Some(status);
        e
    }

    #[test]
    fn consent_missing_from_token_body() {
        let c = classify(&token_err(
            r#"{"error":"invalid_grant","error_description":"AADSTS65001: The user or administrator has not consented to use the application.\r\nTrace ID: 7c839d05-4806-48f2-ba40-bf4128382500\r\nCorrelation ID: b94f5bce-b15e-48c6-a713-fc07c5c41a77\r\nTimestamp: 2023-08-28 11:25:19Z","error_codes":[65001],"suberror":"consent_required","trace_id":"7c839d05-4806-48f2-ba40-bf4128382500","correlation_id":"b94f5bce-b15e-48c6-a713-fc07c5c41a77"}"#,
            400,
        ));
        assert_eq!(c.category, ConsentRequired);
        assert_eq!(c.aadsts, vec![65001]);
        assert_eq!(c.trace_id.as_deref(), Some("7c839d05-4806-48f2-ba40-bf4128382500"));
    }

    #[test]
    fn chained_codes_pick_the_specific_one() {
        let c = classify(&token_err(
            r#"{"error":"invalid_grant","error_description":"AADSTS70002: Error validating credentials. AADSTS54005: OAuth2 Authorization code was already redeemed","error_codes":[70002,54005]}"#,
            400,
        ));
        assert_eq!(c.aadsts, vec![54005, 70002]);
        assert_eq!(c.category, InvalidRequest);
    }

    #[test]
    fn fallbacks_in_order() {
        let c = classify(&token_err(
            r#"{"error":"invalid_grant","error_codes":[99999999],"suberror":"bad_token"}"#,
            400,
        ));
        assert_eq!(c.category, ReauthRequired);
        let c = classify(&token_err(r#"{"error":"invalid_client"}"#, 401));
        assert_eq!(c.category, ClientCredentialInvalid);
        let c = classify(&EntraError {
            http_status: Some(429),
            ..Default::default()
        });
        assert_eq!((c.category, c.reason), (Transient, Some("throttled")));
        let c = classify(&EntraError::default());
        assert_eq!(c.category, Unknown);
    }

    #[test]
    fn ids_from_description_with_space_separators() {
        let e = EntraError {
            error: Some("access_denied".into()),
            error_description: Some("AADSTS53003: Access has been blocked by Conditional Access policies. Trace ID: 11111111-2222-3333-4444-555555555555 Correlation ID: 66666666-7777-8888-9999-000000000000 Timestamp: 2025-01-01 00:00:00Z".into()),
            ..Default::default()
        };
        let c = classify(&e);
        assert_eq!(c.category, ConditionalAccess);
        assert_eq!(
            c.correlation_id.as_deref(),
            Some("66666666-7777-8888-9999-000000000000")
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(error in ".*", desc in ".*", sub in ".*", codes in proptest::collection::vec(proptest::num::u32::ANY, 0..4), status in proptest::option::of(0u16..1000)) {
            let e = EntraError { error: Some(error), error_description: Some(desc), suberror: Some(sub), error_codes: codes, http_status: status, ..Default::default() };
            let _ = classify(&e);
        }
    }
}
