//! The case tables of `explain`'s tests: realistic pasted texts with the answer each must give.
//!
//! `REALISTIC` is written by hand, one text per line of the table. `generated` puts each of the
//! `SAMPLES` codes into every shape Entra and its tools print errors in; the expected category is
//! the code's entry in the table, so those cases test that the code is found (and wins over the
//! OAuth `error` next to it) whatever the shape. `NOT_ENTRA` must answer `unknown`.

use super::*;

/// One case: the shape's name, the text, the category and the primary code it must give.
pub struct Case {
    pub shape: &'static str,
    pub text: String,
    pub category: Category,
    pub code: Option<u32>,
    /// A trace id the answer must carry.
    pub trace_id: Option<&'static str>,
}

pub const TRACE: &str = "7c839d05-4806-48f2-ba40-bf4128382500";
pub const CORRELATION: &str = "b94f5bce-b15e-48c6-a713-fc07c5c41a77";

/// Hand-written texts: (shape, text, category, primary code).
#[rustfmt::skip]
pub const REALISTIC: &[(&str, &str, Category, Option<u32>)] = &[
    // Redirect queries.
    ("redirect", "https://broker.example.com/v1/callback?error=access_denied&error_description=AADSTS53003%3a+Access+has+been+blocked+by+Conditional+Access+policies.&state=s1", ConditionalAccess, Some(53003)),
    ("redirect", "https://broker.example.com/v1/callback?error=consent_required&error_description=AADSTS65004%3a+User+declined+to+consent+to+access+the+app.&error_subcode=cancel&state=s", UserDeclined, Some(65004)),
    ("redirect", "https://broker.example.com/v1/callback?error=access_denied&error_subcode=cancel&state=s&admin_consent=True&error_uri=https%3a%2f%2flogin.microsoftonline.com%2ferror", UserDeclined, None),
    ("redirect", "/v1/callback?error=invalid_request&error_description=AADSTS90014%3A%20The%20required%20field%20%27code%27%20is%20missing", AppMisconfigured, Some(90014)),
    ("redirect", "https://app/cb#error=interaction_required&error_description=AADSTS50079%3a+Due+to+a+configuration+change+made+by+your+administrator&state=x", InteractionRequired, Some(50079)),
    ("redirect", "https://app/cb?error=access_denied&error_uri=https%3a%2f%2flogin.microsoftonline.com%2ferror%3fcode%3d90094&state=abc", AdminApprovalRequired, Some(90094)),
    ("redirect", "https://app/cb?error=server_error&error_description=AADSTS90033%3a+A+Microsoft+Online+Services+directory+is+unavailable.", Transient, Some(90033)),
    ("redirect", "https://app/cb?error=access_denied&error_description=AADSTS530099%3a+Some+new+device+rule.&state=1", ConditionalAccess, Some(530099)),
    ("redirect", "https://app/cb?error=unauthorized_client&error_description=AADSTS700016%3a+Application+with+identifier+%27a1b2%27+was+not+found+in+the+directory+%27Contoso%27.", AppMisconfigured, Some(700016)),
    // Token-endpoint bodies.
    ("token_json", r#"{"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due to inactivity.","error_codes":[700082],"timestamp":"2025-01-01 00:00:00Z","trace_id":"7c839d05-4806-48f2-ba40-bf4128382500","correlation_id":"b94f5bce-b15e-48c6-a713-fc07c5c41a77","error_uri":"https://login.microsoftonline.com/error?code=700082"}"#, ReauthRequired, Some(700082)),
    ("token_json", r#"{"error":"invalid_grant","error_description":"AADSTS50076: Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '00000003-0000-0000-c000-000000000000'.","error_codes":[50076],"suberror":"basic_action","claims":"{\"access_token\":{\"capolids\":{\"essential\":true,\"values\":[\"abc\"]}}}"}"#, InteractionRequired, Some(50076)),
    ("token_json", r#"{"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys for app 'a1b2' are expired.","error_codes":[7000222]}"#, ClientCredentialInvalid, Some(7000222)),
    ("token_json", r#"{"error":"invalid_grant","error_codes":[50173]}"#, ReauthRequired, Some(50173)),
    ("token_json", r#"{"error":"invalid_grant","error_description":"AADSTS9999999: A brand new reason.","error_codes":[9999999],"suberror":"bad_token"}"#, ReauthRequired, Some(9999999)),
    ("token_json", r#"{"error":"temporarily_unavailable","error_description":"AADSTS50196: The server terminated an operation because it encountered a client request loop.","error_codes":[50196]}"#, Transient, Some(50196)),
    // Sign-in pages, with a code.
    ("signin_page", "Sign in\nSorry, but we're having trouble signing you in.\nAADSTS50011: The redirect URI 'https://broker.example.com/v1/callback' specified in the request does not match the redirect URIs configured for the application 'a1b2'.", AppMisconfigured, Some(50011)),
    ("signin_page", "You don't have access to this\nYour sign-in was successful but does not meet the criteria to access this resource.\nTroubleshooting details\nError Code: 53003\nRequest Id: 7c839d05-4806-48f2-ba40-bf4128382500\nCorrelation Id: b94f5bce-b15e-48c6-a713-fc07c5c41a77\nTimestamp: 2025-01-01T00:00:00.000Z\nApp name: Files Connector", ConditionalAccess, Some(53003)),
    ("signin_page", "You can't get there from here\nThis application contains sensitive information and can only be accessed from devices or client applications that meet your organization's management policy.\nError Code: 53000", ConditionalAccess, Some(53000)),
    ("signin_page", "Help us keep your device secure\nYour sign-in was successful but your admin requires your device to be managed.\nError Code: 530003", ConditionalAccess, Some(530003)),
    ("signin_page", "Approval required\nFiles Connector\nThis app requires your admin's approval to:\nRead all files that you have access to\nEnter justification for requesting this app\nRequest approval\nAADSTS90095", AdminApprovalRequired, Some(90095)),
    ("signin_page", "Sorry, but we're having trouble signing you in.\nTroubleshooting details\nCode: 50105\nCorrelation Id: b94f5bce-b15e-48c6-a713-fc07c5c41a77", NotAssigned, Some(50105)),
    ("signin_page", "Selected user account does not exist in tenant 'Contoso' and cannot access the application 'a1b2' in that tenant. Error Code: 50020", NotAssigned, Some(50020)),
    // Sign-in pages, without a code.
    ("signin_wording", "Need admin approval\nFiles Connector needs permission to access resources in your organization that only an admin can grant. Please ask an admin to grant permission to this app before you can use it.", AdminApprovalRequired, Some(90094)),
    ("signin_wording", "Approval required. This app requires your admin's approval to: Read all files. Enter justification for requesting this app. Request approval", AdminApprovalRequired, Some(90095)),
    ("signin_wording", "This app might be risky\nIf you trust this app, ask your admin to grant you access.", AdminApprovalRequired, Some(900941)),
    ("signin_wording", "You don't have access to this\nYour sign-in was successful but does not meet the criteria to access this resource.", ConditionalAccess, Some(53003)),
    ("signin_wording", "Your sign-in was blocked\nWe've detected something unusual about this sign-in.", ConditionalAccess, Some(53011)),
    ("signin_wording", "More information required\nYour organization needs more information to keep your account secure", InteractionRequired, Some(50079)),
    ("signin_wording", "You can't get there from here", ConditionalAccess, Some(53000)),
    ("signin_wording", "Selected user account does not exist in tenant 'Fabrikam' and cannot access the application", NotAssigned, Some(50020)),
    ("signin_wording", "The application is disabled. Contact your administrator.", TenantMisconfigured, Some(7000112)),
    ("signin_wording", "Your account or password is incorrect. If you don't remember your password, reset it now.", ReauthRequired, Some(50126)),
    ("signin_wording", "Your account is locked. Contact your support person to unlock it, then try again.", InteractionRequired, Some(50053)),
    ("signin_wording", "Sorry, but we're having trouble signing you in.\nYour password has expired.", InteractionRequired, Some(50055)),
    ("signin_wording", "Sorry, but we're having trouble signing you in.\nUser account is disabled. The account has been disabled by an administrator.", NotAssigned, Some(50057)),
    ("signin_wording", "Access has been blocked by security defaults.", ConditionalAccess, Some(530035)),
    // German pages.
    ("german_page", "Administratorgenehmigung erforderlich\nFiles Connector benötigt die Berechtigung für den Zugriff auf Ressourcen in Ihrer Organisation, die nur ein Administrator erteilen kann.", AdminApprovalRequired, Some(90094)),
    ("german_page", "Genehmigung erforderlich\nDiese App erfordert die Genehmigung Ihres Administrators für Folgendes:\nGenehmigung anfordern", AdminApprovalRequired, Some(90095)),
    ("german_page", "Sie haben keinen Zugriff darauf\nIhre Anmeldung war erfolgreich, erfüllt aber nicht die Kriterien für den Zugriff auf diese Ressource.\nFehlercode: 53003\nAnforderungs-ID: 7c839d05-4806-48f2-ba40-bf4128382500", ConditionalAccess, Some(53003)),
    ("german_page", "Von hier aus ist kein Zugriff möglich", ConditionalAccess, Some(53000)),
    ("german_page", "Weitere Informationen erforderlich\nIhre Organisation benötigt weitere Informationen, um Ihr Konto zu schützen.", InteractionRequired, Some(50079)),
    ("german_page", "Ihre Anmeldung wurde blockiert", ConditionalAccess, Some(53011)),
    ("german_page", "Das ausgewählte Benutzerkonto ist im Mandanten „Contoso“ nicht vorhanden und kann nicht auf die Anwendung zugreifen.", NotAssigned, Some(50020)),
    ("german_page", "Ihr Konto wurde gesperrt. Wenden Sie sich an Ihren Support.", InteractionRequired, Some(50053)),
    ("german_page", "Leider können wir Sie nicht anmelden.\nIhr Kennwort ist abgelaufen.", InteractionRequired, Some(50055)),
    ("german_page", "Diese App ist möglicherweise riskant", AdminApprovalRequired, Some(900941)),
    ("german_page", "Leider können wir Sie nicht anmelden.\nAADSTS50105: Der angemeldete Benutzer ist keiner Rolle für die Anwendung zugewiesen.", NotAssigned, Some(50105)),
    // Wrapped exceptions (MSAL, ADAL, SDKs, CLIs).
    ("exception", "Microsoft.Identity.Client.MsalUiRequiredException: AADSTS50076: Due to a configuration change made by your administrator, you must use multi-factor authentication. Trace ID: 11111111-2222-3333-4444-555555555555", InteractionRequired, Some(50076)),
    ("exception", "InteractionRequiredAuthError: interaction_required: AADSTS53003: Access has been blocked by Conditional Access policies.", ConditionalAccess, Some(53003)),
    ("exception", "ERROR 2024-01-01 sync failed: invalid_grant: aadsts700082: The refresh token has expired due to inactivity.", ReauthRequired, Some(700082)),
    ("exception", "Azure.Identity.AuthenticationFailedException: ClientSecretCredential authentication failed: AADSTS7000215: Invalid client secret provided.", ClientCredentialInvalid, Some(7000215)),
    ("exception", "Microsoft.Identity.Client.MsalUiRequiredException: No account or login hint was passed to the AcquireTokenSilent call.", InteractionRequired, None),
    ("exception", "MSAL.NET: Microsoft.Identity.Client.MsalClientException: authentication_canceled: User canceled authentication.", UserDeclined, None),
    ("exception", "BrowserAuthError: user_cancelled: User cancelled the flow.", UserDeclined, None),
    ("exception", "Microsoft.IdentityModel.Clients.ActiveDirectory.AdalSilentTokenAcquisitionException: Failed to acquire token silently as no token was found in the cache.", InteractionRequired, None),
    ("exception", "Microsoft.Identity.Client.MsalThrottledServiceException: the request was throttled", Transient, None),
    ("exception", "MsalServiceException: ErrorCode: invalid_client Message: A configuration issue is preventing authentication - check the error message from the server for details.", ClientCredentialInvalid, None),
    ("exception", "AADSTS50020: User account 'bob@fabrikam.com' from identity provider 'live.com' does not exist in tenant 'Contoso'.", NotAssigned, Some(50020)),
    ("exception", "Get-MgUser: ErrorCode: 50105 The signed in user is not assigned to a role for the application.", NotAssigned, Some(50105)),
    ("exception", "AADSTS: error code 90002 - Tenant 'x' not found", TenantMisconfigured, Some(90002)),
    // URL-encoded and JSON-escaped text.
    ("url_encoded", "error_description=AADSTS50105%3A%20Your%20administrator%20has%20configured%20the%20application", NotAssigned, Some(50105)),
    ("url_encoded", "Message=%7B%22error%22%3A%22invalid_grant%22%2C%22error_codes%22%3A%5B70043%5D%7D", ReauthRequired, Some(70043)),
    ("url_encoded", "https%3A%2F%2Fapp%2Fcb%3Ferror%3Daccess_denied%26error_description%3DAADSTS500212%253a%2BOutbound%2Bpolicy", ConditionalAccess, Some(500212)),
    ("json_escaped", r#"level=error msg="token refresh failed" body="{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000222: The provided client secret keys for app 'x' are expired.\",\"error_codes\":[7000222]}""#, ClientCredentialInvalid, Some(7000222)),
    ("json_escaped", r#"{"message":"{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS50173: The provided grant has expired due to it being revoked.\\r\\nTrace ID: 7c839d05-4806-48f2-ba40-bf4128382500\"}"}"#, ReauthRequired, Some(50173)),
    ("json_escaped", r#"log: "Need admin approval\nFiles needs permission to access resources in your organization that only an admin can grant.""#, AdminApprovalRequired, Some(90094)),
    ("json_escaped", r#""error_description": "AADSTS65001: The user or administrator has not consented to use the application with ID \u0027a1b2\u0027.""#, ConsentRequired, Some(65001)),
    ("html_escaped", "&lt;div&gt;AADSTS50105: Your administrator has configured the application Files (&#39;a1b2&#39;) to block users&lt;/div&gt;", NotAssigned, Some(50105)),
    // Chained codes: the most specific decides.
    ("chained", r#"{"error":"invalid_grant","error_description":"AADSTS70002: Error validating credentials. AADSTS54005: OAuth2 Authorization code was already redeemed","error_codes":[70002,54005]}"#, InvalidRequest, Some(54005)),
    ("chained", "AADSTS50012: Authentication failed. AADSTS700027: Client assertion failed signature validation.", ClientCredentialInvalid, Some(700027)),
    ("chained", "AADSTS9999998: Something new. AADSTS53003: Access has been blocked by Conditional Access policies.", ConditionalAccess, Some(53003)),
    ("chained", "AADSTS9999998: Something new. AADSTS530098: A new device rule.", ConditionalAccess, Some(530098)),
    ("chained", "AADSTS530098: A new device rule. AADSTS50076: you must use multi-factor authentication.", InteractionRequired, Some(50076)),
    ("chained", "AADSTS70000: The request was denied. AADSTS50173: The provided grant has expired.", ReauthRequired, Some(50173)),
    ("chained", "AADSTS90023: Invalid request. AADSTS90014: The required field 'scope' is missing.", AppMisconfigured, Some(90014)),
    // The AADSTS code wins over the OAuth error.
    ("code_over_error", "error=access_denied&error_description=AADSTS53003: Access has been blocked by Conditional Access policies.", ConditionalAccess, Some(53003)),
    ("code_over_error", r#"{"error":"invalid_client","error_description":"AADSTS700082: The refresh token has expired due to inactivity.","error_codes":[700082]}"#, ReauthRequired, Some(700082)),
    ("code_over_error", r#"{"error":"interaction_required","error_description":"AADSTS90094: Admin consent is required.","error_codes":[90094]}"#, AdminApprovalRequired, Some(90094)),
    ("code_over_error", "error=consent_required&error_description=AADSTS50105: The signed in user is not assigned to a role for the application.", NotAssigned, Some(50105)),
    ("code_over_error", "error=temporarily_unavailable error_description=AADSTS7000215: Invalid client secret provided.", ClientCredentialInvalid, Some(7000215)),
    // Family fallbacks inside real shapes.
    ("family", "Error Code: 530099\nRequest Id: 7c839d05-4806-48f2-ba40-bf4128382500", ConditionalAccess, Some(530099)),
    ("family", r#"{"error":"invalid_grant","error_codes":[700089]}"#, ReauthRequired, Some(700089)),
    ("family", "AADSTS7000299: The client credential was refused.", ClientCredentialInvalid, Some(7000299)),
    ("family", "AADSTS120099: The password change failed.", InteractionRequired, Some(120099)),
];

/// Codes put into every shape: (code, the OAuth error Entra sends with it, its description).
#[rustfmt::skip]
pub const SAMPLES: &[(u32, &str, &str)] = &[
    (65001, "invalid_grant", "The user or administrator has not consented to use the application with ID 'a1b2' named 'Files'."),
    (65004, "access_denied", "User declined to consent to access the app."),
    (90094, "access_denied", "Admin consent is required for the permissions requested by this application."),
    (90095, "access_denied", "Admin consent is required for the permissions requested; an approval request can be sent."),
    (900941, "access_denied", "Admin consent is required. App is considered risky."),
    (50105, "access_denied", "Your administrator has configured the application Files ('a1b2') to block users unless they are specifically granted ('assigned') access to the application."),
    (50020, "invalid_request", "User account 'bob@fabrikam.com' from identity provider 'live.com' does not exist in tenant 'Contoso' and cannot access the application."),
    (50034, "invalid_grant", "The user account does not exist in the contoso.com directory."),
    (50057, "invalid_grant", "The user account is disabled."),
    (53000, "interaction_required", "Device is not in required device state: compliant."),
    (53003, "access_denied", "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance."),
    (530032, "access_denied", "Blocked by a security policy of the tenant."),
    (530035, "invalid_grant", "Access has been blocked by security defaults."),
    (500212, "access_denied", "The user's administrator has set an outbound access policy that does not allow access to the resource tenant."),
    (50076, "interaction_required", "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access 'x'."),
    (50079, "interaction_required", "Due to a configuration change made by your administrator, you must enroll in multi-factor authentication."),
    (50058, "login_required", "A silent sign-in request was sent but no user is signed in."),
    (50055, "invalid_grant", "The password is expired."),
    (50053, "invalid_grant", "You've tried to sign in too many times with an incorrect user ID or password."),
    (700082, "invalid_grant", "The refresh token has expired due to inactivity."),
    (50173, "invalid_grant", "The provided grant has expired due to it being revoked, a fresh auth token is needed."),
    (70043, "invalid_grant", "The refresh token has expired or is invalid due to sign-in frequency checks by conditional access."),
    (700084, "invalid_grant", "The refresh token was issued to a single page app (SPA) and has expired."),
    (50126, "invalid_grant", "Error validating credentials due to invalid username or password."),
    (50011, "invalid_request", "The redirect URI 'https://broker.example.com/v1/callback' specified in the request does not match the redirect URIs configured for the application 'a1b2'."),
    (700016, "unauthorized_client", "Application with identifier 'a1b2' was not found in the directory 'Contoso'."),
    (70011, "invalid_scope", "The provided value for the input parameter 'scope' is not valid."),
    (650057, "invalid_client", "Invalid resource. The client has requested access to a resource which is not listed in the requested permissions."),
    (50194, "invalid_request", "Application 'a1b2'(Files) is not configured as a multi-tenant application."),
    (90002, "invalid_request", "Tenant 'contoso.example' not found. Check to make sure you have the correct tenant ID."),
    (90038, "invalid_request", "Tenant 'x' belongs to the National Cloud 'USGov'."),
    (650052, "invalid_client", "The app needs access to a service that your organization has not subscribed to or enabled."),
    (70001, "unauthorized_client", "The application 'Files' is disabled."),
    (7000215, "invalid_client", "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID."),
    (7000222, "invalid_client", "The provided client secret keys for app 'a1b2' are expired."),
    (700027, "invalid_client", "Client assertion failed signature validation."),
    (50196, "temporarily_unavailable", "The server terminated an operation because it encountered a client request loop."),
    (90033, "temporarily_unavailable", "A Microsoft Online Services directory is unavailable."),
    (54005, "invalid_grant", "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token."),
    (50148, "invalid_grant", "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE."),
    (80001, "server_error", "The authentication agent is unable to connect to Active Directory."),
    (81010, "interaction_required", "Seamless SSO failed because the user's Kerberos ticket has expired or is invalid."),
    (75005, "invalid_request", "The request is not a valid SAML2 protocol message."),
];

fn form(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn json_escape(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Every sample code in every shape.
pub fn generated() -> Vec<Case> {
    let mut out = Vec::new();
    for (code, error, desc) in SAMPLES {
        let category = aadsts::lookup(*code).map_or(Unknown, |i| i.entry.category);
        let described = format!(
            "AADSTS{code}: {desc}\r\nTrace ID: {TRACE}\r\nCorrelation ID: {CORRELATION}\r\nTimestamp: 2025-01-01 00:00:00Z"
        );
        let body = format!(
            r#"{{"error":"{error}","error_description":{},"error_codes":[{code}],"timestamp":"2025-01-01 00:00:00Z","trace_id":"{TRACE}","correlation_id":"{CORRELATION}","error_uri":"https://login.microsoftonline.com/error?code={code}"}}"#,
            json_escape(&described)
        );
        let shapes: Vec<(&'static str, String, bool)> = vec![
            (
                "redirect",
                format!(
                    "https://broker.example.com/v1/callback?error={error}&error_description={}&state=abc#",
                    form(&described)
                ),
                true,
            ),
            ("token_json", body.clone(), true),
            (
                "signin_page_aadsts",
                format!(
                    "Sign in\nSorry, but we're having trouble signing you in.\n\nAADSTS{code}: {desc}\n\nTroubleshooting details\nRequest Id: {TRACE}\nCorrelation Id: {CORRELATION}\nTimestamp: 2025-01-01T00:00:00.000Z"
                ),
                true,
            ),
            (
                "signin_page_error_code",
                format!(
                    "Troubleshooting details\nIf you contact your administrator, send this info to them.\nError Code: {code}\nRequest Id: {TRACE}\nCorrelation Id: {CORRELATION}\nTimestamp: 2025-01-01T00:00:00.000Z\nApp name: Files Connector"
                ),
                true,
            ),
            (
                "msal_net",
                format!(
                    "Microsoft.Identity.Client.MsalServiceException: {}\n   at Microsoft.Identity.Client.Internal.Requests.RequestBase.HandleTokenRefreshErrorAsync()\nErrorCode: {error}\nStatusCode: 400",
                    described.replace("\r\n", " ")
                ),
                true,
            ),
            (
                "msal_python",
                format!(
                    "{{'error': '{error}', 'error_description': \"{}\", 'error_codes': [{code}], 'trace_id': '{TRACE}', 'correlation_id': '{CORRELATION}'}}",
                    described.replace("\r\n", " ").replace('"', "'")
                ),
                true,
            ),
            (
                "json_escaped_log",
                format!(
                    "time=2025-01-01 level=error msg=\"refresh failed\" body={}",
                    json_escape(&body)
                ),
                true,
            ),
            ("url_encoded_body", format!("response body: {}", percent(&body)), true),
            (
                "german_page",
                format!(
                    "Leider können wir Sie nicht anmelden.\nProblembehandlungsdetails\nFehlercode: {code}\nAnforderungs-ID: {TRACE}\nKorrelations-ID: {CORRELATION}"
                ),
                false,
            ),
            (
                "lowercase_log",
                format!("WARN connector sync: {error}: aadsts{code}: {}", desc.to_lowercase()),
                false,
            ),
        ];
        for (shape, text, has_trace) in shapes {
            out.push(Case {
                shape,
                text,
                category,
                code: Some(*code),
                trace_id: has_trace.then_some(TRACE),
            });
        }
    }
    out
}

/// Texts without an Entra error, or from other providers: `unknown`, no codes.
#[rustfmt::skip]
pub const NOT_ENTRA: &[&str] = &[
    "",
    "hello world",
    "AADSTS",
    "AADSTS12",
    r#"{"error":"invalid_grant","error_description":"Bad Request"}"#,
    "https://oauth2.googleapis.com/token returned error=invalid_grant",
    r#"{"error": "invalid_grant", "error_description": "Token has been expired or revoked."}"#,
    "https://app.example.com/cb?error=access_denied&state=xyz",
    "java.lang.NullPointerException at com.example.Foo",
    "Okta: User is not assigned to the client application.",
    r#"{"errorCode":"E0000011","errorSummary":"Invalid token provided"}"#,
    "Keycloak: Account is disabled, contact your administrator.",
    "Invalid user credentials",
    "Your password has expired.",
    "The redirect_uri MUST match the registered callback URL for this application.",
    "GitHub: error=redirect_uri_mismatch&error_description=The+redirect_uri+MUST+match",
    "error code 404: page not found",
    "Error Code: 10054 connection reset by peer",
    "Error Code: 12345",
    "ErrorCode: 99999 something failed",
    "code: 53003 is the zip code of the office",
    "Auth0: access_denied: User did not authorize the request",
    "AWS Cognito: NotAuthorizedException: Incorrect username or password.",
    "Salesforce: {\"error\":\"invalid_client_id\",\"error_description\":\"client identifier invalid\"}",
    "HTTP/1.1 503 Service Unavailable",
    "The service is temporarily unavailable.",
    "interaction_required",
    "approval required for merge request !42",
    "Request approval from your manager in the HR portal.",
    "ORA-12154: TNS:could not resolve the connect identifier specified",
    "error=invalid_request&error_description=Missing+code_verifier (auth.example.org)",
    "%%%%\\\\\\u12",
];
