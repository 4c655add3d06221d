//! The catalog: one constructor per condition the simulator reports, each with its `error`
//! value, AADSTS code(s), status and text. Texts quoted in entra.md are reproduced; others are
//! written in Entra's style and the comment says so. How a value is rendered is the parent's.

use axum::http::StatusCode;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{AadError, Surface, format_iso, format_key_date};

impl AadError {
    /// AADSTS90002: unknown tenant segment.
    pub fn tenant_not_found(tenant: &str) -> Self {
        Self::bad_request(
            "invalid_tenant",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are \
signing into the correct cloud. Check with your subscription administrator, this may happen if there \
are no active subscriptions for the tenant."
            ),
        )
    }

    /// AADSTS700016: unknown client id.
    pub fn app_not_found(client_id: &str, directory: &str) -> Self {
        Self::bad_request(
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{directory}'. \
This can happen if the application has not been installed by the administrator of the tenant or \
consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        )
    }

    /// AADSTS50011 at `/authorize`: redirect URI not registered.
    pub fn redirect_uri_mismatch(redirect_uri: &str, client_id: &str) -> Self {
        Self::bad_request(
            "invalid_request",
            50011,
            format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect \
URIs configured for the application '{client_id}'. Make sure the redirect URI sent in the request matches \
one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to \
learn more about how to fix this."
            ),
        )
    }

    /// AADSTS500113: the app has no redirect URI at all.
    pub fn no_reply_address() -> Self {
        Self::bad_request(
            "invalid_request",
            500113,
            "No reply address is registered for the application.",
        )
    }

    /// AADSTS900144: a required parameter is missing.
    pub fn missing_parameter(name: &str) -> Self {
        Self::bad_request(
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    }

    /// AADSTS9002313: the request could not be parsed.
    pub fn malformed_request() -> Self {
        Self::bad_request(
            "invalid_request",
            9002313,
            "Invalid request. Request is malformed or invalid.",
        )
    }

    /// AADSTS70005: `response_type` lacks `code`.
    pub fn response_type_not_code(response_type: &str) -> Self {
        Self::bad_request(
            "unsupported_response_type",
            70005,
            format!("response_type '{response_type}' is not enabled for the application."),
        )
    }

    /// AADSTS700054: hybrid/implicit response types (no app in the simulator enables ID tokens from
    /// `/authorize`).
    pub fn implicit_not_enabled(response_type: &str) -> Self {
        Self::bad_request(
            "unsupported_response_type",
            700054,
            format!("response_type '{response_type}' is not enabled for the application."),
        )
    }

    /// AADSTS70007: unknown `response_mode`.
    pub fn unsupported_response_mode(mode: &str) -> Self {
        Self::bad_request(
            "invalid_request",
            70007,
            format!("The application returned an unsupported value of 'response_mode': '{mode}'."),
        )
    }

    /// AADSTS501491: `code_challenge` is not 43–128 characters of the PKCE alphabet.
    pub fn invalid_code_challenge() -> Self {
        Self::bad_request("invalid_request", 501491, "Invalid size of Code_Challenge parameter.")
    }

    /// AADSTS50147: `code_challenge_method` without a `code_challenge` (Entra's name: MissingCodeChallenge).
    pub fn missing_code_challenge() -> Self {
        Self::bad_request(
            "invalid_request",
            50147,
            "The code_challenge parameter is missing from the request.",
        )
    }

    /// AADSTS50149: unsupported `code_challenge_method` (code per entra-docs PR 1538; text is ours).
    pub fn invalid_code_challenge_method(method: &str) -> Self {
        Self::bad_request(
            "invalid_request",
            50149,
            format!("The code_challenge_method '{method}' is not supported. Supported values are 'S256' and 'plain'."),
        )
    }

    /// AADSTS50058: `prompt=none` and nobody can be signed in silently.
    pub fn login_required() -> Self {
        Self::bad_request(
            "login_required",
            50058,
            "A silent sign-in request was sent but no user is signed in.",
        )
    }

    /// AADSTS50058 on the page: no `login_hint` and the tenant has no `default_user` to sign in.
    pub fn nobody_to_sign_in() -> Self {
        Self::bad_request(
            "login_required",
            50058,
            "No user is signed in: the request has no login_hint and the tenant has no default user.",
        )
    }

    /// AADSTS50059: `common`/`organizations` with nothing that identifies a tenant.
    pub fn no_tenant_information() -> Self {
        Self::bad_request(
            "invalid_request",
            50059,
            "No tenant-identifying information found in either the request or implied by any provided credentials.",
        )
    }

    /// AADSTS50034: the account does not exist anywhere.
    pub fn user_not_found(upn: &str, directory: &str) -> Self {
        Self::bad_request(
            "invalid_grant",
            50034,
            format!(
                "The user account {upn} does not exist in the {directory} directory. To sign into this \
application, the account must be added to the directory."
            ),
        )
    }

    /// AADSTS50020: the account lives in another tenant (guests are not modelled).
    pub fn user_from_other_tenant(upn: &str, directory: &str, app: &str, client_id: &str) -> Self {
        Self::bad_request(
            "access_denied",
            50020,
            format!(
                "User account '{upn}' from identity provider 'live.com' does not exist in tenant \
'{directory}' and cannot access the application '{client_id}'({app}) in that tenant. The account needs \
to be added as an external user in the tenant first."
            ),
        )
    }

    /// AADSTS50057: disabled account. `access_denied` on redirects, `invalid_grant` at the token endpoint.
    pub fn user_disabled(surface: Surface) -> Self {
        Self::bad_request(
            surface_error(surface, "access_denied"),
            50057,
            "The user account is disabled. The user object in Active Directory backing this account has \
been disabled. An admin can re-enable this account through PowerShell",
        )
    }

    /// AADSTS50105: user not assigned to an app that requires assignment.
    pub fn not_assigned(surface: Surface, upn: &str, app: &str, client_id: &str) -> Self {
        Self::bad_request(
            surface_error(surface, "access_denied"),
            50105,
            format!(
                "Your administrator has configured the application {app} ('{client_id}') to block users \
unless they are specifically granted ('assigned') access to the application. The signed in user '{upn}' \
is blocked because they are not a direct member of a group with access, nor had access directly assigned \
by an administrator. Please contact your administrator to assign access to this application."
            ),
        )
    }

    /// AADSTS53003: blocked by Conditional Access (`suberror: message_only` at the token endpoint).
    pub fn conditional_access_blocked(surface: Surface) -> Self {
        let error = Self::bad_request(
            surface_error(surface, "access_denied"),
            53003,
            "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
        );
        match surface {
            Surface::Authorize => error,
            Surface::Token => error.suberror("message_only"),
        }
    }

    /// AADSTS50076: MFA required. At `/authorize` (only reachable with `prompt=none`) it is
    /// `interaction_required`; at the token endpoint `invalid_grant` + `basic_action` + a claims challenge.
    pub fn mfa_required(surface: Surface, policy_id: Uuid) -> Self {
        let text = format!(
            "Due to a configuration change made by your administrator, or because you moved to a new \
location, you must use multi-factor authentication to access '{}'.",
            crate::scopes::GRAPH_APP_ID
        );
        match surface {
            Surface::Authorize => Self::bad_request("interaction_required", 50076, text),
            Surface::Token => {
                let mut error = Self::bad_request("invalid_grant", 50076, text).suberror("basic_action");
                error.claims = Some(
                    format!(
                        "{{\"access_token\":{{\"capolids\":{{\"essential\":true,\"values\":[\"{policy_id}\"]}}}}}}"
                    )
                    .into_boxed_str(),
                );
                error
            }
        }
    }

    /// AADSTS65001: consent missing (`consent_required`; at the token endpoint `invalid_grant` +
    /// `suberror: consent_required`).
    pub fn consent_missing(surface: Surface, app: &str, client_id: &str) -> Self {
        let text = format!(
            "The user or administrator has not consented to use the application with ID '{client_id}' \
named '{app}'. Send an interactive authorization request for this user and resource."
        );
        match surface {
            Surface::Authorize => Self::bad_request("consent_required", 65001, text),
            Surface::Token => Self::bad_request("invalid_grant", 65001, text).suberror("consent_required"),
        }
    }

    /// AADSTS65004: the user pressed Cancel on the consent prompt (observed as `consent_required`).
    pub fn consent_declined() -> Self {
        Self::bad_request("consent_required", 65004, "User declined to consent to access the app.").subcode_cancel()
    }

    /// AADSTS90094 / AADSTS90095: the user hit "Need admin approval" / "Approval required" and went back
    /// to the app without consent.
    ///
    /// entra.md §4.1 and §12: the redirect the app gets here is unconfirmed. Chosen shape: `access_denied`
    /// carrying 90094 (workflow off, with `error_subcode=cancel` because the user picked "Return to the
    /// application without granting consent") or 90095 (workflow on: a request was sent to the admin, so
    /// it is not a cancel).
    pub fn admin_approval_required(app: &str, workflow_enabled: bool) -> Self {
        if workflow_enabled {
            Self::bad_request(
                "access_denied",
                90095,
                format!(
                    "Approval required. {app} needs permission to access resources in your organization \
that only an admin can grant. A request for approval has been sent to your admin."
                ),
            )
        } else {
            Self::bad_request(
                "access_denied",
                90094,
                format!(
                    "{app} needs permission to access resources in your organization that only an admin \
can grant. Please ask an admin to grant permission to this app before you can use it."
                ),
            )
            .subcode_cancel()
        }
    }

    /// AADSTS7000218: neither `client_secret` nor `client_assertion` sent (status unconfirmed; 401).
    pub fn missing_client_credential() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
    }

    /// Both `client_secret` and `client_assertion` were sent. Entra's answer is not recorded in
    /// entra.md; a malformed-request 400 is the simulator's choice.
    pub fn client_secret_and_assertion() -> Self {
        Self::bad_request(
            "invalid_request",
            9002313,
            "Invalid request. Request is malformed or invalid. Send either 'client_secret' or 'client_assertion', not both.",
        )
    }

    /// AADSTS90011: `client_assertion_type` is not the JWT bearer type (observed as
    /// `invalid_request`: https://github.com/AzureAD/azure-activedirectory-library-for-ruby/pull/53).
    pub fn unexpected_assertion_type() -> Self {
        Self::bad_request("invalid_request", 90011, "Unexpected client assertion type.")
    }

    /// AADSTS50027: the client assertion is not a usable JWT (wording observed,
    /// https://github.com/panva/openid-client/issues/348; status assumed like other assertion errors).
    pub fn assertion_malformed() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            50027,
            "JWT token is invalid or malformed.",
        )
    }

    /// AADSTS50027: neither `x5t#S256` nor `x5t` in the assertion's header (wording observed,
    /// https://github.com/AzureAD/microsoft-authentication-library-for-dotnet/issues/124).
    pub fn assertion_without_thumbprint() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            50027,
            "Invalid JWT token. No certificate thumbprint specified in token header.",
        )
    }

    /// AADSTS700027: no certificate with the assertion's thumbprint is registered on the app
    /// (wording observed in 2026, e.g. https://github.com/AzureAD/microsoft-authentication-library-for-js/issues/8339).
    pub fn assertion_key_not_found(thumbprint: &str, client_id: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700027,
            format!(
                "The certificate with identifier used to sign the client assertion is not registered on \
application. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}', Please \
visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id \
'{client_id}'. Review the documentation at https://docs.microsoft.com/en-us/graph/deployments to determine \
the corresponding service endpoint and \
https://docs.microsoft.com/en-us/graph/api/application-get?view=graph-rest-1.0&tabs=http to build a query \
request URL, such as 'https://graph.microsoft.com/beta/applications/{client_id}']"
            ),
        )
    }

    /// AADSTS700027: the registered certificate's key does not verify the signature (reason text
    /// observed with AADSTS50013, https://github.com/Azure/azure-sdk-for-java/issues/25109).
    pub fn assertion_bad_signature(thumbprint: &str, start: OffsetDateTime, end: OffsetDateTime) -> Self {
        Self::assertion_signature(
            "The provided signature value did not match the expected signature value.",
            thumbprint,
            start,
            end,
        )
    }

    /// AADSTS700027: the matching certificate is outside its validity (on the simulator clock).
    pub fn assertion_key_expired(thumbprint: &str, start: OffsetDateTime, end: OffsetDateTime) -> Self {
        Self::assertion_signature("The key used is expired.", thumbprint, start, end)
    }

    fn assertion_signature(reason: &str, thumbprint: &str, start: OffsetDateTime, end: OffsetDateTime) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700027,
            format!(
                "Client assertion contains an invalid signature. [Reason - {reason}, Thumbprint of key used by \
client: '{thumbprint}', Found key 'Start={}, End={}']",
                format_key_date(start),
                format_key_date(end)
            ),
        )
    }

    /// AADSTS700024: the assertion is outside its `nbf`..`exp` window (entra.md §2.2; wording
    /// observed, https://github.com/AzureAD/microsoft-authentication-library-for-dotnet/issues/4951).
    pub fn assertion_time_range(now: OffsetDateTime, valid_from: OffsetDateTime, expires: OffsetDateTime) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {}, assertion valid from \
{}, expiry time of assertion {}. Review the documentation at \
https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
                format_iso(now),
                format_iso(valid_from),
                format_iso(expires)
            ),
        )
    }

    /// AADSTS700023: `aud` is not the token endpoint called (wording observed,
    /// https://github.com/AzureAD/microsoft-authentication-library-for-dotnet/issues/2746).
    pub fn assertion_audience_mismatch() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700023,
            "Client assertion audience claim does not match Realm issuer. Review the documentation at \
https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials .",
        )
    }

    /// AADSTS50012: `iss` or `sub` is not the client id (entra.md §2.2's generic assertion failure;
    /// the text is written in the style of Entra's older 50012 messages).
    pub fn assertion_issuer_mismatch() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            50012,
            "Client assertion issuer and subject must be the client id of the application presenting it.",
        )
    }

    /// AADSTS7000215: wrong client secret.
    pub fn bad_client_secret(client_id: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client \
secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        )
    }

    /// AADSTS7000222: the matching client secret has expired.
    pub fn expired_client_secret(client_id: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000222,
            format!(
                "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal \
to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate \
credentials for added security: https://aka.ms/certCreds."
            ),
        )
    }

    /// AADSTS1002012: a client-credentials `scope` that is not one resource's `/.default` (the
    /// code is Entra's; the text is written in its style).
    pub fn client_credentials_scope_invalid(scope: &str) -> Self {
        Self::bad_request(
            "invalid_scope",
            1002012,
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a \
scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        )
    }

    /// AADSTS700022: a token request whose `scope` names permissions of more than one resource
    /// (a v2 token is for one resource; the text is written in Entra's style).
    pub fn scope_spans_resources(scope: &str) -> Self {
        Self::bad_request(
            "invalid_scope",
            700022,
            format!(
                "The provided value for the input parameter scope is not valid because it contains more than one \
resource. Scope {scope} is not valid."
            ),
        )
    }

    /// AADSTS70003: grant type not supported.
    pub fn unsupported_grant_type(grant_type: &str) -> Self {
        Self::bad_request(
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant_type}'."),
        )
    }

    /// AADSTS70000: unknown or tampered authorization code.
    pub fn code_invalid() -> Self {
        Self::bad_request(
            "invalid_grant",
            70000,
            "The provided value for the 'code' parameter is not valid.",
        )
    }

    /// AADSTS70000: the code was issued to another client.
    pub fn code_for_other_client() -> Self {
        Self::bad_request(
            "invalid_grant",
            70000,
            "The provided value for the 'code' parameter is not valid. The code was issued to a different client.",
        )
    }

    /// AADSTS700005: the code was issued in another tenant than the one in the token URL.
    pub fn code_for_other_tenant() -> Self {
        Self::bad_request(
            "invalid_grant",
            700005,
            "Provided Authorization Code is intended to use against other tenant, thus rejected.",
        )
    }

    /// AADSTS54005: code already redeemed.
    pub fn code_redeemed() -> Self {
        Self::bad_request(
            "invalid_grant",
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an \
existing refresh token.",
        )
    }

    /// AADSTS70008: code expired.
    pub fn code_expired() -> Self {
        Self::bad_request(
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new \
interactive authorization request for this user and resource.",
        )
    }

    /// AADSTS70002 wrapping AADSTS50011: `redirect_uri` differs from the one used for the code.
    pub fn code_redirect_mismatch(redirect_uri: &str) -> Self {
        Self::bad_request("invalid_grant", 70002, "Error validating credentials.").chain(
            50011,
            format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URI \
used to obtain the authorization code."
            ),
        )
    }

    /// AADSTS50148: PKCE `code_verifier` missing or not matching.
    pub fn pkce_mismatch() -> Self {
        Self::bad_request(
            "invalid_grant",
            50148,
            "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.",
        )
    }

    /// AADSTS9002313: the refresh token is not even shaped like one.
    pub fn refresh_token_malformed() -> Self {
        Self::bad_request(
            "invalid_grant",
            9002313,
            "Invalid request. Request is malformed or invalid.",
        )
    }

    /// AADSTS70000: unknown refresh token, or one issued to another client.
    pub fn refresh_token_invalid() -> Self {
        Self::bad_request(
            "invalid_grant",
            70000,
            "The provided value for the input parameter 'refresh_token' or 'assertion' is not valid.",
        )
    }

    /// AADSTS70000: a rotated refresh token used after the grace period (sim model of Entra keeping
    /// old RTs valid for a while).
    pub fn refresh_token_rotated_out(rotated_at: OffsetDateTime) -> Self {
        Self::bad_request(
            "invalid_grant",
            70000,
            format!(
                "The provided value for the input parameter 'refresh_token' or 'assertion' is not valid. \
The refresh token was replaced on {} and can no longer be used.",
                format_iso(rotated_at)
            ),
        )
        .suberror("bad_token")
    }

    /// AADSTS700082: refresh token idle past the inactivity window.
    pub fn refresh_token_inactive(issued_at: OffsetDateTime, max_inactive_secs: u64) -> Self {
        let days = max_inactive_secs / 86_400;
        let rest = max_inactive_secs % 86_400;
        Self::bad_request(
            "invalid_grant",
            700082,
            format!(
                "The refresh token has expired due to inactivity. The token was issued on {} and was \
inactive for {days}.{:02}:{:02}:{:02}.",
                format_iso(issued_at),
                rest / 3600,
                rest % 3600 / 60,
                rest % 60
            ),
        )
        .suberror("bad_token")
    }

    /// AADSTS50173: refresh token issued before the user's sessions were revoked.
    pub fn refresh_token_revoked(issued_at: OffsetDateTime, valid_from: OffsetDateTime) -> Self {
        Self::bad_request(
            "invalid_grant",
            50173,
            format!(
                "The provided grant has expired due to it being revoked, a fresh auth token is needed. The \
user might have changed or reset their password. The grant was issued on '{}' and the TokensValidFrom \
date (before which tokens are not valid) for this user is '{}'.",
                format_iso(issued_at),
                format_iso(valid_from)
            ),
        )
        .suberror("bad_token")
    }

    /// AADSTS90033: transient outage (HTTP 503).
    pub fn temporarily_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
        )
    }

    /// AADSTS50196: the client repeated the same request too often (HTTP 400 `invalid_grant`, the
    /// throttle signal for user flows).
    pub fn request_loop() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            50196,
            "The server terminated an operation because it encountered a loop while processing a request.",
        )
    }

    /// AADSTS90041: unexpected server error (HTTP 500; text is ours).
    pub fn server_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            90041,
            "An unexpected error occurred while processing the request. Please try again.",
        )
    }
}

/// Redirect-delivered access failures use `access_denied` (or the given value); token-endpoint ones are
/// `invalid_grant`.
fn surface_error(surface: Surface, authorize_error: &'static str) -> &'static str {
    match surface {
        Surface::Authorize => authorize_error,
        Surface::Token => "invalid_grant",
    }
}
