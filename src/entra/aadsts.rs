//! The AADSTS code table: for each known code, its category, a finer reason, who can fix it,
//! what it means in plain words and how to fix it. Source: Microsoft's AADSTS error code reference
//! and the OAuth error answers of its v2.0 endpoints. Microsoft may change codes and texts at any
//! time, so the classifier also falls back on `error`/`suberror` and on wording (see `errors.rs`).

use super::errors::Category::{self, *};

/// Who can fix an error (the contract's `who_fixes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WhoFixes {
    /// The signed-in user.
    User,
    /// An administrator of the user's tenant.
    TenantAdmin,
    /// The developer of the connector (its app registration or request).
    ConnectorDeveloper,
    /// The broker's operator (credentials, configuration).
    Operator,
    /// Nobody: retry later.
    Retry,
    /// Not known.
    Unknown,
}

impl WhoFixes {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::TenantAdmin => "tenant_admin",
            Self::ConnectorDeveloper => "connector_developer",
            Self::Operator => "operator",
            Self::Retry => "retry",
            Self::Unknown => "unknown",
        }
    }
}

use WhoFixes::{ConnectorDeveloper as Dev, Operator as Op, Retry, TenantAdmin as Admin, User};

/// One known AADSTS code.
#[derive(Debug, Clone, Copy)]
pub struct CodeInfo {
    /// The number after `AADSTS`.
    pub code: u32,
    /// Contract category.
    pub category: Category,
    /// Finer reason.
    pub reason: &'static str,
    /// Who can fix it.
    pub who: WhoFixes,
    /// What happened, in plain words for the user.
    pub meaning: &'static str,
    /// The fix, for the admin, developer or operator.
    pub fix: &'static str,
}

const fn c(
    code: u32,
    category: Category,
    reason: &'static str,
    who: WhoFixes,
    meaning: &'static str,
    fix: &'static str,
) -> CodeInfo {
    CodeInfo {
        code,
        category,
        reason,
        who,
        meaning,
        fix,
    }
}

/// Every known code.
#[rustfmt::skip]
pub const CODES: &[CodeInfo] = &[
    c(65001, ConsentRequired, "consent_missing", User, "Nobody has given this app permission yet to access your data.", "Sign in again and accept the permissions; if users may not consent in this tenant, an admin must grant tenant-wide consent."),
    c(65004, UserDeclined, "consent_declined", User, "The permission request was declined or the sign-in was cancelled.", "Nothing is broken: start the sign-in again and accept the permissions. If the user cannot accept them, grant admin consent."),
    c(90094, AdminApprovalRequired, "admin_consent_workflow_off", Admin, "This app needs permissions that only an administrator of your organization can grant.", "Grant tenant-wide admin consent to the app, enable the admin consent workflow so users can request it, or classify the requested permissions as low impact."),
    c(90095, AdminApprovalRequired, "approval_requested", Admin, "Your organization requires an administrator to approve this app; an approval request can be sent.", "Review the pending request under Enterprise applications > Admin consent requests and approve it (this grants tenant-wide consent)."),
    c(90093, AdminApprovalRequired, "user_consent_blocked", Admin, "Your organization does not let users grant this app the permissions it asks for.", "Grant admin consent to the app, or change the user consent settings to allow these permissions."),
    c(900941, AdminApprovalRequired, "risky_app", Admin, "Microsoft flagged this app as potentially risky, so only an administrator can approve it.", "If you trust the app, grant admin consent; the publisher can avoid this by completing publisher verification."),
    c(900981, AdminApprovalRequired, "risky_app", Admin, "Microsoft flagged this app as potentially risky; an administrator must review the request.", "If you trust the app, approve the admin consent request; ask the publisher to complete publisher verification."),
    c(90008, AppMisconfigured, "missing_sign_in_permission", Dev, "The app is set up incorrectly.", "The app registration must request at least the sign-in and read profile permission (User.Read or openid)."),
    c(65005, AppMisconfigured, "required_resource_access", Dev, "The app asks for access it is not set up for, or the service it needs is missing in your organization.", "Add the requested permissions to the app registration's API permissions, or make sure the resource exists in the tenant."),
    c(650052, TenantMisconfigured, "service_not_subscribed", Admin, "Your organization has not subscribed to a service this app needs.", "Subscribe to or enable the service the app uses (for example SharePoint Online) in the tenant."),
    c(650054, AppMisconfigured, "resource_unavailable", Dev, "The app asks for access to a service that is no longer available.", "Remove the unavailable resource from the app registration's API permissions."),
    c(650056, AppMisconfigured, "permissions_not_listed", Dev, "The app is not set up for the permissions it asks for, or an admin has not approved them.", "List the requested permissions in the app registration, then grant admin consent if they need it."),
    c(650057, AppMisconfigured, "resource_not_requested", Dev, "The app asks for access to a service it is not registered for.", "Add the resource to the app registration's API permissions."),
    c(500011, TenantMisconfigured, "resource_principal_missing", Admin, "A service this app needs does not exist in your organization.", "Make sure the resource application (service principal) exists in the tenant, e.g. by consenting to it."),
    c(90099, TenantMisconfigured, "partner_not_authorized", Admin, "Your partner administrator access does not cover this app.", "Have a tenant administrator (not a delegated partner admin) consent, or extend the partner relationship."),
    c(50105, NotAssigned, "user_not_assigned", Admin, "Your account has not been given access to this app.", "Assign the user, or a group they belong to, to the app's enterprise application (Enterprise applications > the app > Users and groups)."),
    c(50020, NotAssigned, "wrong_account", User, "The account you used does not belong to this organization.", "Sign in with an account of the organization, or invite the user as a guest."),
    c(50034, NotAssigned, "wrong_account", User, "This account does not exist in the organization's directory.", "Check the account name, or sign in with another account."),
    c(51004, NotAssigned, "wrong_account", User, "This account is not in the organization's directory.", "Sign in with an account of the organization."),
    c(16000, NotAssigned, "wrong_account", User, "The account is not part of the organization the app signs into.", "Sign in with an account of that organization, or as a guest invited to it."),
    c(500208, NotAssigned, "wrong_account", User, "This kind of account cannot be used here (for example a personal account).", "Sign in with a work or school account."),
    c(50057, NotAssigned, "account_disabled", Admin, "Your account is disabled.", "Re-enable the user account in the tenant if access should be allowed."),
    c(50053, InteractionRequired, "account_locked", User, "Your account is temporarily locked after too many sign-in attempts.", "Wait and try again, or have an admin unlock the account."),
    c(500021, ConditionalAccess, "tenant_restrictions", Admin, "Your network does not allow sign-ins to this organization.", "The network's tenant restrictions block this tenant; the network administrator must allow it."),
    c(500022, ConditionalAccess, "tenant_restrictions", Admin, "Your network does not allow sign-ins to this organization.", "The network's tenant restrictions block this tenant; the network administrator must allow it."),
    c(500212, ConditionalAccess, "cross_tenant_access", Admin, "Your organization's cross-tenant access policy blocks this sign-in.", "Allow the other tenant in the outbound cross-tenant access settings."),
    c(500213, ConditionalAccess, "cross_tenant_access", Admin, "The resource organization's cross-tenant access policy blocks this sign-in.", "Allow the user's tenant in the resource tenant's inbound cross-tenant access settings."),
    c(70001, TenantMisconfigured, "app_disabled", Admin, "This app is disabled in your organization.", "Enable the enterprise application (Properties > Enabled for users to sign in)."),
    c(7000112, TenantMisconfigured, "app_disabled", Admin, "This app is disabled.", "Enable the application or its service principal in the tenant."),
    c(1000031, TenantMisconfigured, "app_disabled", Admin, "This app cannot be used at the moment.", "Check the enterprise application is enabled and not blocked in the tenant."),
    c(50076, InteractionRequired, "mfa_required", User, "Your organization requires multi-factor authentication for this.", "Sign in again and complete multi-factor authentication."),
    c(50079, InteractionRequired, "mfa_registration_required", User, "You need to set up multi-factor authentication first.", "Sign in again and register a multi-factor method when asked."),
    c(50072, InteractionRequired, "mfa_registration_required", User, "You need to set up multi-factor authentication first.", "Sign in again and register a multi-factor method when asked."),
    c(50074, InteractionRequired, "mfa_required", User, "A strong authentication step was not completed.", "Sign in again and complete the multi-factor prompt."),
    c(50078, InteractionRequired, "mfa_expired", User, "Your multi-factor authentication has expired.", "Sign in again and complete multi-factor authentication."),
    c(50158, InteractionRequired, "external_challenge", User, "An extra security check was not completed.", "Sign in again and complete the security check."),
    c(53004, InteractionRequired, "mfa_registration_required", User, "You must complete multi-factor registration before continuing.", "Sign in again and complete the registration, or wait if registration is blocked for risk."),
    c(50055, InteractionRequired, "password_expired", User, "Your password has expired.", "Change the password, then sign in again."),
    c(50125, InteractionRequired, "password_reset", User, "Sign-in was interrupted by a password reset or registration step.", "Complete the step, then sign in again."),
    c(50058, InteractionRequired, "login_required", User, "You are not signed in.", "Sign in interactively."),
    c(50199, InteractionRequired, "user_confirmation", User, "Microsoft needs you to confirm before continuing.", "Sign in again and confirm."),
    c(50126, ReauthRequired, "invalid_credentials", User, "The user name or password is wrong.", "Sign in again with the correct credentials."),
    c(50132, ReauthRequired, "session_invalid", User, "Your session is no longer valid (for example after a password change).", "Sign in again."),
    c(50133, ReauthRequired, "session_invalid", User, "Your session is no longer valid (for example after a password change).", "Sign in again."),
    c(50089, ReauthRequired, "flow_expired", User, "The sign-in took too long and expired.", "Start the sign-in again."),
    c(53000, ConditionalAccess, "device_not_compliant", Admin, "Your organization only allows this from a managed, compliant device.", "Enroll or fix the device's compliance, or adjust the Conditional Access policy for this app."),
    c(53001, ConditionalAccess, "device_not_joined", Admin, "Your organization only allows this from a domain-joined device.", "Use a joined device, or adjust the Conditional Access policy for this app."),
    c(53002, ConditionalAccess, "unapproved_client_app", Admin, "Your organization only allows approved apps for this.", "Adjust the Conditional Access policy (approved client app requirement) for this app."),
    c(53003, ConditionalAccess, "blocked_by_policy", Admin, "A security policy of your organization blocks this sign-in.", "Find the Conditional Access policy in the sign-in log entry (trace ID) and exclude or allow this app, user or location."),
    c(53005, ConditionalAccess, "app_protection_required", Admin, "Your organization requires an app protection policy for this.", "Configure an Intune app protection policy, or adjust the Conditional Access policy."),
    c(530032, ConditionalAccess, "security_policy", Admin, "A security policy of your organization blocks this sign-in.", "Review the tenant's security policies for this user and app."),
    c(530035, ConditionalAccess, "security_defaults", Admin, "Your organization's security defaults block this sign-in.", "Review security defaults, or replace them with Conditional Access policies that allow this app."),
    c(50131, ConditionalAccess, "blocked_by_policy", Admin, "A security policy blocks this sign-in.", "Check the sign-in log entry for the policy that applied."),
    c(50097, ConditionalAccess, "device_auth_required", Admin, "This sign-in requires device authentication.", "Register the device, or adjust the Conditional Access policy."),
    c(70043, ReauthRequired, "sign_in_frequency", User, "Your organization requires you to sign in again regularly.", "Sign in again; the tenant's sign-in frequency policy ended the session."),
    c(700082, ReauthRequired, "refresh_token_inactive", User, "The connection was unused for too long and expired.", "Reconnect: sign in again."),
    c(70008, ReauthRequired, "grant_expired", User, "The sign-in or connection has expired.", "Reconnect: sign in again."),
    c(50173, ReauthRequired, "grant_revoked", User, "Access was revoked (for example after a password reset or a sign-out everywhere).", "Reconnect: sign in again."),
    c(700084, ReauthRequired, "refresh_token_expired", User, "The connection reached its maximum lifetime.", "Reconnect: sign in again."),
    c(70000, ReauthRequired, "grant_invalid", User, "The sign-in data is no longer valid.", "Start the sign-in or reconnect again."),
    c(54005, InvalidRequest, "code_already_redeemed", Dev, "This sign-in was already completed.", "The authorization code was redeemed twice; make sure the callback is processed once."),
    c(700005, InvalidRequest, "code_wrong_tenant", Dev, "The sign-in was completed against a different organization.", "Redeem the code at the same tenant's token endpoint it was issued for."),
    c(50148, InvalidRequest, "pkce_mismatch", Dev, "The sign-in could not be verified.", "The PKCE code_verifier does not match the code_challenge; the request may have been tampered with."),
    c(501481, InvalidRequest, "pkce_mismatch", Dev, "The sign-in could not be verified.", "The PKCE code_verifier does not match the code_challenge."),
    c(50147, AppMisconfigured, "pkce_challenge_invalid", Dev, "The app's sign-in request is malformed.", "Send a code_challenge of 43 to 128 base64url characters."),
    c(501491, AppMisconfigured, "pkce_challenge_invalid", Dev, "The app's sign-in request is malformed.", "Send a valid code_challenge and code_challenge_method."),
    c(50149, AppMisconfigured, "pkce_challenge_invalid", Dev, "The app's sign-in request is malformed.", "Use code_challenge_method S256 (or plain) with a valid challenge."),
    c(50013, ReauthRequired, "assertion_invalid", User, "The sign-in data is no longer valid.", "Sign in again."),
    c(500133, ReauthRequired, "assertion_expired", User, "The sign-in data has expired.", "Sign in again."),
    c(7000215, ClientCredentialInvalid, "secret_invalid", Op, "The service could not authenticate itself to Microsoft.", "The connector's client secret is wrong (often the secret ID was used instead of its value); update it in the broker's configuration."),
    c(7000222, ClientCredentialInvalid, "secret_expired", Op, "The service could not authenticate itself to Microsoft.", "The connector's client secret has expired; create a new one in the app registration and update the broker."),
    c(7000218, ClientCredentialInvalid, "credential_missing", Op, "The service could not authenticate itself to Microsoft.", "No client secret or certificate was sent; configure the connector's credential."),
    c(700024, ClientCredentialInvalid, "assertion_time_invalid", Op, "The service could not authenticate itself to Microsoft.", "The client assertion is outside its validity window; check the server clock."),
    c(700023, ClientCredentialInvalid, "assertion_audience_invalid", Op, "The service could not authenticate itself to Microsoft.", "The client assertion's audience is not this tenant's token endpoint; sign it for the endpoint the broker calls."),
    c(50027, ClientCredentialInvalid, "assertion_malformed", Op, "The service could not authenticate itself to Microsoft.", "The client assertion is not a valid signed JWT (or lacks its certificate thumbprint); check the certificate credential."),
    c(700027, ClientCredentialInvalid, "assertion_signature_invalid", Op, "The service could not authenticate itself to Microsoft.", "The certificate used to sign the client assertion is not registered on the app; upload it or fix the thumbprint."),
    c(700030, ClientCredentialInvalid, "certificate_subject_invalid", Op, "The service could not authenticate itself to Microsoft.", "The certificate's subject is not authorized for this app."),
    c(50012, ClientCredentialInvalid, "authentication_failed", Op, "The service could not authenticate itself to Microsoft.", "The client credential (secret or certificate) was rejected; check it."),
    c(700025, AppMisconfigured, "public_client_secret", Dev, "The app is set up incorrectly.", "A public client must not send a secret; register the app as a web (confidential) app."),
    c(50011, AppMisconfigured, "redirect_uri_mismatch", Dev, "The app's sign-in address is not registered.", "Add the broker's redirect URI ({public_url}/v1/callback) to the app registration's Web redirect URIs exactly."),
    c(500113, AppMisconfigured, "no_reply_address", Dev, "The app has no sign-in address registered.", "Register the broker's redirect URI on the app registration."),
    c(900971, AppMisconfigured, "no_reply_address", Dev, "The app's sign-in request has no return address.", "Send redirect_uri on the request."),
    c(700016, AppMisconfigured, "app_not_found", Dev, "This app is not known to your organization's directory.", "Check the application (client) id; a single-tenant app cannot be used from other tenants (make it multi-tenant)."),
    c(7000229, AdminApprovalRequired, "no_service_principal", Admin, "This app has not been added to your organization yet.", "An administrator approves the app for the organization (admin consent creates its enterprise application), or creates its service principal; then try again."),
    c(700011, AppMisconfigured, "app_not_found", Dev, "This app is not known to your organization.", "Check the application id and that the app is multi-tenant."),
    c(50194, AppMisconfigured, "single_tenant_app", Dev, "This app can only be used in its own organization.", "Make the app registration multi-tenant, or sign in through the app's home tenant."),
    c(9002332, AppMisconfigured, "wrong_audience", Dev, "This app does not accept this kind of account.", "Change the app's supported account types, or use the matching tenant endpoint."),
    c(90124, AppMisconfigured, "unsupported_on_common", Dev, "This request cannot be made without naming the organization.", "Use a tenant-specific endpoint instead of /common or /consumers."),
    c(90130, AppMisconfigured, "unsupported_on_common", Dev, "This request cannot be made without naming the organization.", "Use a tenant-specific endpoint."),
    c(9001023, AppMisconfigured, "unsupported_on_common", Dev, "This request cannot be made without naming the organization.", "Use a tenant-specific endpoint for this grant type."),
    c(70005, AppMisconfigured, "response_type_not_enabled", Dev, "The app's sign-in request is not allowed by its registration.", "Enable the requested response type in the app registration, or request response_type=code."),
    c(700054, AppMisconfigured, "response_type_not_enabled", Dev, "The app's sign-in request is not allowed by its registration.", "Enable ID tokens in the app registration, or stop requesting response_type=id_token."),
    c(70007, AppMisconfigured, "response_mode_unsupported", Dev, "The app's sign-in request is malformed.", "Use a supported response_mode (query or form_post)."),
    c(70011, AppMisconfigured, "invalid_scope", Dev, "The app asks for a permission that does not exist.", "Fix the connector's scopes (spelling, resource prefix)."),
    c(28002, AppMisconfigured, "invalid_scope", Dev, "The app asks for a permission that is not valid.", "Fix the connector's scopes."),
    c(28003, AppMisconfigured, "invalid_scope", Dev, "The app asks for no permission.", "Configure at least one scope for the connector."),
    c(700022, AppMisconfigured, "invalid_scope", Dev, "The app asks for permissions of several services at once.", "Request scopes of one resource per token request."),
    c(900144, AppMisconfigured, "missing_parameter", Dev, "The app's request is incomplete.", "A required parameter is missing from the request."),
    c(9002313, AppMisconfigured, "malformed_request", Dev, "The app's request is malformed.", "Fix the request's parameters."),
    c(90014, AppMisconfigured, "malformed_request", Dev, "The app's request is incomplete.", "A required field is missing from the request."),
    c(90023, AppMisconfigured, "malformed_request", Dev, "The app's request is not valid.", "Fix the request."),
    c(90009, AppMisconfigured, "malformed_request", Dev, "The app's request is not valid.", "Use the GUID application id as the resource when requesting a token for the app itself."),
    c(90027, AppMisconfigured, "malformed_request", Dev, "The app's request is not valid for this account type.", "Use the v2.0 endpoint for personal accounts."),
    c(90002, TenantMisconfigured, "tenant_not_found", Admin, "Your organization could not be found.", "Check the tenant name or id, that the tenant has an active subscription, and that it is in the same cloud as the broker's authority."),
    c(900023, TenantMisconfigured, "tenant_not_found", Dev, "The organization name in the request is not valid.", "Use a tenant GUID or a verified domain."),
    c(50059, TenantMisconfigured, "tenant_not_found", User, "Your organization could not be identified.", "Sign in with a work account, or pass the tenant."),
    c(90019, TenantMisconfigured, "tenant_not_found", User, "Your organization could not be identified from the account.", "Sign in with an account of a verified domain."),
    c(50128, TenantMisconfigured, "tenant_not_found", User, "The domain of your account is not valid.", "Check the account name."),
    c(90038, TenantMisconfigured, "wrong_cloud", Op, "Your organization is in a different Microsoft cloud.", "Use a broker configured with that cloud's authority (e.g. login.microsoftonline.us)."),
    c(90051, TenantMisconfigured, "wrong_cloud", Op, "Your organization is in a different Microsoft cloud.", "Use the authority of the tenant's national cloud."),
    c(900432, TenantMisconfigured, "wrong_cloud", Op, "Your organization is in a different Microsoft cloud.", "Register the app in the tenant's cloud and point the broker at that authority."),
    c(50196, Transient, "throttled", Retry, "Too many sign-in requests were made in a short time.", "Wait and retry; the client is repeating the same request too often."),
    c(90055, Transient, "throttled", Retry, "Microsoft is limiting requests from your organization right now.", "Wait and retry with backoff."),
    c(90033, Transient, "service_unavailable", Retry, "Microsoft's sign-in service is temporarily unavailable.", "Retry in a few minutes."),
    c(90041, Transient, "server_error", Retry, "Microsoft's sign-in service had a temporary problem.", "Retry in a few minutes."),
    c(50033, Transient, "retryable", Retry, "Microsoft's sign-in service had a temporary problem.", "Retry."),
    c(90024, Transient, "retryable", Retry, "Microsoft's sign-in service is busy.", "Retry in a few minutes."),
    c(90006, Transient, "retryable", Retry, "A service Microsoft depends on had a temporary problem.", "Retry."),
    c(90090, Transient, "retryable", Retry, "Microsoft could not record the consent this time.", "Try the consent again."),
    c(50087, Transient, "retryable", Retry, "Microsoft's multi-factor service had a temporary problem.", "Retry."),
    c(50000, Transient, "server_error", Retry, "Microsoft's sign-in service had a problem issuing a token.", "Retry; if it persists, open a Microsoft support ticket with the trace ID."),
    c(70012, Transient, "server_error", Retry, "Microsoft's account service had a temporary problem.", "Retry."),
];

/// Codes that only wrap a more specific one (`AADSTS70002: Error validating credentials. AADSTS54005: ...`).
pub const WRAPPERS: &[u32] = &[70002];

/// AADSTS90095: the tenant's admin consent workflow is on and the user already asked for approval
/// while signing in, so the approval page says "your request was sent" instead of "ask IT".
pub const APPROVAL_REQUESTED: u32 = 90095;

/// AADSTS65004: consent was declined or the prompt cancelled; on the admin-consent callback it
/// means the admin cancelled, which is not a failure.
pub const CONSENT_DECLINED: u32 = 65004;

/// Codes with which an admin-consent callback says the signed-in account cannot approve for the
/// organization, so the page asks for an administrator instead of reporting an error: 90093 (this
/// account may not grant these permissions), 50020 (an account of another organization) and
/// 500201 (treated the same since the approval experience's first version; not in [`CODES`]).
pub const NOT_AN_APPROVER: [u32; 3] = [90093, 50020, 500201];

/// The entry for `code`.
pub fn lookup(code: u32) -> Option<&'static CodeInfo> {
    CODES.iter().find(|c| c.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_large_unique_and_complete() {
        let mut seen = std::collections::HashSet::new();
        for info in CODES {
            assert!(seen.insert(info.code), "duplicate {}", info.code);
            assert!(
                !info.meaning.is_empty() && !info.fix.is_empty() && !info.reason.is_empty(),
                "{}",
                info.code
            );
            assert_ne!(info.category, Category::Unknown);
        }
        assert!(CODES.len() >= 60, "{} codes", CODES.len());
    }
}
