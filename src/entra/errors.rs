//! Entra's error shapes and their classification into the contract's categories.
//!
//! Classification reads the AADSTS code first (most specific of a chain), then `suberror`, then
//! the OAuth `error`, then the HTTP status — the order the contract prescribes, and the fallback
//! Microsoft recommends because AADSTS numbers and texts may change. It never panics.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;

/// The contract's error categories: "who can fix this, and how".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
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

    /// Who can fix it, in the contract's vocabulary.
    pub fn who_fixes(self) -> &'static str {
        match self {
            Self::AdminApprovalRequired | Self::NotAssigned | Self::ConditionalAccess | Self::TenantMisconfigured => {
                "tenant_admin"
            }
            Self::ConsentRequired | Self::UserDeclined | Self::InteractionRequired | Self::ReauthRequired => "user",
            Self::AppMisconfigured | Self::InvalidRequest => "connector_developer",
            Self::ClientCredentialInvalid => "operator",
            Self::Transient => "retry",
            Self::Unknown => "unknown",
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
    /// The most specific AADSTS code.
    pub fn primary_code(&self) -> Option<u32> {
        self.aadsts.first().copied()
    }
}

use Category::*;

/// Known AADSTS codes: (code, category, reason). Sources: ../shared/reference/entra.md §5, §6, §9.
const CODES: &[(u32, Category, Option<&str>)] = &[
    (65001, ConsentRequired, Some("consent_missing")),
    (65004, UserDeclined, Some("consent_declined")),
    (90094, AdminApprovalRequired, Some("admin_consent_workflow_off")),
    (90095, AdminApprovalRequired, Some("approval_requested")),
    (90093, AdminApprovalRequired, Some("user_consent_blocked")),
    (900941, AdminApprovalRequired, Some("risky_app")),
    (900981, AdminApprovalRequired, Some("risky_app")),
    (90008, AppMisconfigured, Some("missing_sign_in_permission")),
    (65005, AppMisconfigured, Some("required_resource_access")),
    (650052, TenantMisconfigured, Some("service_not_subscribed")),
    (650054, AppMisconfigured, Some("resource_unavailable")),
    (650056, AppMisconfigured, Some("permissions_not_listed")),
    (650057, AppMisconfigured, Some("resource_not_requested")),
    (500011, TenantMisconfigured, Some("resource_principal_missing")),
    (90099, TenantMisconfigured, Some("partner_not_authorized")),
    (50105, NotAssigned, Some("user_not_assigned")),
    (50020, NotAssigned, Some("wrong_account")),
    (50034, NotAssigned, Some("wrong_account")),
    (51004, NotAssigned, Some("wrong_account")),
    (16000, NotAssigned, Some("wrong_account")),
    (500208, NotAssigned, Some("wrong_account")),
    (50057, NotAssigned, Some("account_disabled")),
    (50053, InteractionRequired, Some("account_locked")),
    (500021, ConditionalAccess, Some("tenant_restrictions")),
    (500022, ConditionalAccess, Some("tenant_restrictions")),
    (500212, ConditionalAccess, Some("cross_tenant_access")),
    (500213, ConditionalAccess, Some("cross_tenant_access")),
    (70001, TenantMisconfigured, Some("app_disabled")),
    (7000112, TenantMisconfigured, Some("app_disabled")),
    (1000031, TenantMisconfigured, Some("app_disabled")),
    (50076, InteractionRequired, Some("mfa_required")),
    (50079, InteractionRequired, Some("mfa_registration_required")),
    (50072, InteractionRequired, Some("mfa_registration_required")),
    (50074, InteractionRequired, Some("mfa_required")),
    (50078, InteractionRequired, Some("mfa_expired")),
    (50158, InteractionRequired, Some("external_challenge")),
    (53004, InteractionRequired, Some("mfa_registration_required")),
    (50055, InteractionRequired, Some("password_expired")),
    (50125, InteractionRequired, Some("password_reset")),
    (50058, InteractionRequired, Some("login_required")),
    (50199, InteractionRequired, Some("user_confirmation")),
    (50126, ReauthRequired, Some("invalid_credentials")),
    (50132, ReauthRequired, Some("session_invalid")),
    (50133, ReauthRequired, Some("session_invalid")),
    (50089, ReauthRequired, Some("flow_expired")),
    (53000, ConditionalAccess, Some("device_not_compliant")),
    (53001, ConditionalAccess, Some("device_not_joined")),
    (53002, ConditionalAccess, Some("unapproved_client_app")),
    (53003, ConditionalAccess, Some("blocked_by_policy")),
    (53005, ConditionalAccess, Some("app_protection_required")),
    (530032, ConditionalAccess, Some("security_policy")),
    (530035, ConditionalAccess, Some("security_defaults")),
    (50131, ConditionalAccess, Some("blocked_by_policy")),
    (50097, ConditionalAccess, Some("device_auth_required")),
    (70043, ReauthRequired, Some("sign_in_frequency")),
    (700082, ReauthRequired, Some("refresh_token_inactive")),
    (70008, ReauthRequired, Some("grant_expired")),
    (50173, ReauthRequired, Some("grant_revoked")),
    (700084, ReauthRequired, Some("refresh_token_expired")),
    (70000, ReauthRequired, Some("grant_invalid")),
    (54005, InvalidRequest, Some("code_already_redeemed")),
    (700005, InvalidRequest, Some("code_wrong_tenant")),
    (50148, InvalidRequest, Some("pkce_mismatch")),
    (501481, InvalidRequest, Some("pkce_mismatch")),
    (50147, AppMisconfigured, Some("pkce_challenge_invalid")),
    (501491, AppMisconfigured, Some("pkce_challenge_invalid")),
    (50149, AppMisconfigured, Some("pkce_challenge_invalid")),
    (50013, ReauthRequired, Some("assertion_invalid")),
    (500133, ReauthRequired, Some("assertion_expired")),
    (7000215, ClientCredentialInvalid, Some("secret_invalid")),
    (7000222, ClientCredentialInvalid, Some("secret_expired")),
    (7000218, ClientCredentialInvalid, Some("credential_missing")),
    (700024, ClientCredentialInvalid, Some("assertion_time_invalid")),
    (700027, ClientCredentialInvalid, Some("assertion_signature_invalid")),
    (700030, ClientCredentialInvalid, Some("certificate_subject_invalid")),
    (50012, ClientCredentialInvalid, Some("authentication_failed")),
    (700025, AppMisconfigured, Some("public_client_secret")),
    (50011, AppMisconfigured, Some("redirect_uri_mismatch")),
    (500113, AppMisconfigured, Some("no_reply_address")),
    (900971, AppMisconfigured, Some("no_reply_address")),
    (700016, AppMisconfigured, Some("app_not_found")),
    (700011, AppMisconfigured, Some("app_not_found")),
    (50194, AppMisconfigured, Some("single_tenant_app")),
    (9002332, AppMisconfigured, Some("wrong_audience")),
    (90124, AppMisconfigured, Some("unsupported_on_common")),
    (90130, AppMisconfigured, Some("unsupported_on_common")),
    (9001023, AppMisconfigured, Some("unsupported_on_common")),
    (70005, AppMisconfigured, Some("response_type_not_enabled")),
    (700054, AppMisconfigured, Some("response_type_not_enabled")),
    (70007, AppMisconfigured, Some("response_mode_unsupported")),
    (70011, AppMisconfigured, Some("invalid_scope")),
    (28002, AppMisconfigured, Some("invalid_scope")),
    (28003, AppMisconfigured, Some("invalid_scope")),
    (700022, AppMisconfigured, Some("invalid_scope")),
    (900144, AppMisconfigured, Some("missing_parameter")),
    (9002313, AppMisconfigured, Some("malformed_request")),
    (90014, AppMisconfigured, Some("malformed_request")),
    (90023, AppMisconfigured, Some("malformed_request")),
    (90009, AppMisconfigured, Some("malformed_request")),
    (90027, AppMisconfigured, Some("malformed_request")),
    (90002, TenantMisconfigured, Some("tenant_not_found")),
    (900023, TenantMisconfigured, Some("tenant_not_found")),
    (50059, TenantMisconfigured, Some("tenant_not_found")),
    (90019, TenantMisconfigured, Some("tenant_not_found")),
    (50128, TenantMisconfigured, Some("tenant_not_found")),
    (90038, TenantMisconfigured, Some("wrong_cloud")),
    (90051, TenantMisconfigured, Some("wrong_cloud")),
    (900432, TenantMisconfigured, Some("wrong_cloud")),
    (50196, Transient, Some("throttled")),
    (90055, Transient, Some("throttled")),
    (90033, Transient, Some("service_unavailable")),
    (90041, Transient, Some("server_error")),
    (50033, Transient, Some("retryable")),
    (90024, Transient, Some("retryable")),
    (90006, Transient, Some("retryable")),
    (90090, Transient, Some("retryable")),
    (50087, Transient, Some("retryable")),
    (50000, Transient, Some("server_error")),
    (70012, Transient, Some("server_error")),
];

/// Codes that only wrap a more specific one (`AADSTS70002: Error validating credentials. AADSTS54005: ...`).
const WRAPPERS: &[u32] = &[70002];

static TABLE: LazyLock<HashMap<u32, (Category, Option<&'static str>)>> =
    LazyLock::new(|| CODES.iter().map(|&(c, cat, r)| (c, (cat, r))).collect());

static AADSTS_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)AADSTS(\d{4,8})").unwrap_or_else(|_| unreachable!()));
static TRACE_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)trace[ _]?id[:=\s]+([0-9a-f-]{36})").unwrap_or_else(|_| unreachable!()));
static CORRELATION_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)correlation[ _]?id[:=\s]+([0-9a-f-]{36})").unwrap_or_else(|_| unreachable!()));

/// Looks up one AADSTS code.
pub fn lookup(code: u32) -> Option<(Category, Option<&'static str>)> {
    TABLE.get(&code).copied()
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

/// Orders codes most specific first: wrappers last, known before unknown, otherwise as given.
fn most_specific_first(mut codes: Vec<u32>) -> Vec<u32> {
    codes.sort_by_key(|c| (WRAPPERS.contains(c), lookup(*c).is_none()));
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

    #[test]
    fn table_has_no_duplicates() {
        let mut seen = std::collections::HashSet::new();
        for (code, _, _) in CODES {
            assert!(seen.insert(code), "duplicate {code}");
        }
        assert!(CODES.len() >= 60);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(error in ".*", desc in ".*", sub in ".*", codes in proptest::collection::vec(proptest::num::u32::ANY, 0..4), status in proptest::option::of(0u16..1000)) {
            let e = EntraError { error: Some(error), error_description: Some(desc), suberror: Some(sub), error_codes: codes, http_status: status, ..Default::default() };
            let _ = classify(&e);
        }
    }
}
