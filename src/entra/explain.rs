//! `explain`: classify whatever a user or support engineer pasted — sign-in page text, a log line,
//! an MSAL/SDK exception message, a token-endpoint body, a redirect URL — into the contract's answer.
//!
//! The text is looked at in several forms (as given, URL-decoded, JSON-unescaped) and every Entra
//! field found is merged. Only text that carries evidence of Entra (an AADSTS code, Entra's
//! `error_codes`/trace ids, or Entra's own wording) gets a category; a plain OAuth error from
//! another provider answers `unknown`.

use std::sync::LazyLock;

use regex::Regex;

use super::aadsts::WhoFixes;
use super::errors::{Category, Classification, EntraError, classify, codes_in};

/// Longest text accepted (the contract's limit).
pub const MAX_TEXT: usize = 64 * 1024;

/// What `POST /v1/explain` and `consent-broker explain` answer: the classification, plus who fixes
/// it and the plain-words messages. Its JSON form is `http::api_types::ExplainResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// Category, reason, codes, OAuth error, suberror, trace and correlation ids.
    pub classification: Classification,
    /// Who can fix it.
    pub who_fixes: WhoFixes,
    /// Plain words for the user.
    pub user_message: &'static str,
    /// Plain words for the admin, with the fix.
    pub admin_message: &'static str,
}

impl From<Classification> for Explanation {
    fn from(c: Classification) -> Self {
        Self {
            who_fixes: c.who_fixes(),
            user_message: c.user_message(),
            admin_message: c.admin_message(),
            classification: c,
        }
    }
}

/// The explanation as text for people (`consent-broker explain` without `--json`).
pub fn render_text(explained: &Explanation) -> String {
    let e = &explained.classification;
    let mut out = String::new();
    let mut line = |k: &str, v: &str| out.push_str(&format!("{k:<15}{v}\n"));
    match e.reason {
        Some(r) => line("Category:", &format!("{} ({r})", e.category)),
        None => line("Category:", e.category.as_str()),
    }
    if !e.aadsts.is_empty() {
        let codes: Vec<String> = e.aadsts.iter().map(|c| format!("AADSTS{c}")).collect();
        line("Codes:", &codes.join(", "));
    }
    for (k, v) in [
        ("OAuth error:", &e.oauth_error),
        ("Suberror:", &e.suberror),
        ("Trace ID:", &e.trace_id),
        ("Correlation ID:", &e.correlation_id),
    ] {
        if let Some(v) = v {
            line(k, v);
        }
    }
    line("Who fixes it:", explained.who_fixes.as_str());
    line("For the user:", explained.user_message);
    line("For the admin:", explained.admin_message);
    out
}

static ERROR_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(?:^|[^a-z_])error["']?\s*[:=]\s*["']?([a-z][a-z_]{2,40})"#).unwrap_or_else(|_| unreachable!())
});
static SUBERROR_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(?:suberror|sub_error|error_subcode|classification)["']?\s*[:=]\s*["']?([a-z][a-z_]{2,40})"#)
        .unwrap_or_else(|_| unreachable!())
});
static ERROR_CODES_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)error_?codes["']?\s*[:=]\s*\[([\d,\s]{1,200})\]"#).unwrap_or_else(|_| unreachable!())
});
static ENTRA_HOST_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)login\.(?:microsoftonline\.(?:com|us|de)|microsoft\.com|windows\.net|partner\.microsoftonline\.cn|chinacloudapi\.cn)|\bmsal|\bazure ad\b|\bentra\b")
        .unwrap_or_else(|_| unreachable!())
});

/// Entra's sign-in pages often show text without a code; these phrases identify the code.
const WORDING: &[(&str, u32)] = &[
    ("only an admin can grant", 90094),
    ("need admin approval", 90094),
    ("needs permission to access resources in your organization", 90094),
    ("admin approval", 90094),
    ("approval required", 90095),
    ("request approval", 90095),
    ("this app might be risky", 900941),
    ("has not consented to use the application", 65001),
    ("declined to consent", 65004),
    ("is not assigned to a role for the application", 50105),
    ("specifically granted ('assigned') access", 50105),
    ("not been granted access to this application", 50105),
    ("blocked by conditional access", 53003),
    ("does not allow token issuance", 53003),
    ("you must use multi-factor authentication", 50076),
    ("refresh token has expired due to inactivity", 700082),
    ("grant has expired due to it being revoked", 50173),
    ("invalid client secret provided", 7000215),
    ("client secret keys for app", 7000222),
    ("does not match the redirect uris configured", 50011),
    ("reply url specified in the request does not match", 50011),
    ("was not found in the directory", 700016),
    ("authorization code was already redeemed", 54005),
    ("user account is disabled", 50057),
    ("your account is locked", 50053),
    ("your password is expired", 50055),
];

/// Forms of the text worth scanning: as given, URL-decoded, JSON-unescaped.
fn variants(text: &str) -> Vec<String> {
    let mut out = vec![text.to_string()];
    if text.contains('%') || text.contains('+') {
        let decoded: String = url::form_urlencoded::parse(text.replace('&', "%26").as_bytes())
            .map(|(k, v)| {
                if v.is_empty() {
                    k.into_owned()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect::<Vec<_>>()
            .join("&");
        if decoded != text {
            out.push(decoded);
        }
    }
    if text.contains("\\r\\n") || text.contains("\\\"") || text.contains("\\u") || text.contains("\\/") {
        let unescaped =
            serde_json::from_str::<String>(&format!("\"{}\"", text.replace('"', "\\\"").replace("\\\\\"", "\\\"")))
                .unwrap_or_else(|_| text.replace("\\r\\n", "\n").replace("\\\"", "\"").replace("\\/", "/"));
        if unescaped != text {
            out.push(unescaped);
        }
    }
    out
}

/// A JSON object embedded anywhere in the text (a log line around a token-endpoint body).
fn embedded_json(text: &str) -> Option<EntraError> {
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    if end <= start {
        return None;
    }
    serde_json::from_str::<EntraError>(&text[start..=end]).ok()
}

/// Query parameters of a redirect URL or a bare query string in the text.
fn query_error(text: &str) -> Option<EntraError> {
    let at = text.find("error=")?;
    let begin = text[..at].rfind(['?', '#', ' ', '\n', '"', '\'']).map_or(0, |i| i + 1);
    let end = text[at..]
        .find([' ', '\n', '"', '\'', '<', '>'])
        .map_or(text.len(), |i| at + i);
    let mut e = EntraError::default();
    for (k, v) in url::form_urlencoded::parse(text[begin..end].trim_start_matches(['?', '#']).as_bytes()) {
        let slot = match k.as_ref() {
            "error" => &mut e.error,
            "error_description" => &mut e.error_description,
            "error_subcode" => &mut e.error_subcode,
            "suberror" => &mut e.suberror,
            "trace_id" => &mut e.trace_id,
            "correlation_id" => &mut e.correlation_id,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(v.into_owned());
        }
    }
    e.error.is_some().then_some(e)
}

fn capture(re: &Regex, text: &str) -> Option<String> {
    re.captures(text).and_then(|c| c.get(1)).map(|m| m.as_str().to_string())
}

/// Merges `from` into `into`, keeping what `into` already has.
fn merge(into: &mut EntraError, from: EntraError) {
    for (slot, value) in [
        (&mut into.error, from.error),
        (&mut into.error_description, from.error_description),
        (&mut into.suberror, from.suberror),
        (&mut into.error_subcode, from.error_subcode),
        (&mut into.trace_id, from.trace_id),
        (&mut into.correlation_id, from.correlation_id),
    ] {
        if slot.is_none() {
            *slot = value;
        }
    }
    for c in from.error_codes {
        if !into.error_codes.contains(&c) {
            into.error_codes.push(c);
        }
    }
}

/// Explains free text. Never panics; text longer than [`MAX_TEXT`] is cut at a char boundary.
pub fn explain(text: &str) -> Explanation {
    let mut cut = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let text = &text[..cut];
    let mut found = EntraError::default();
    let mut haystack = String::new();
    for v in variants(text) {
        if let Some(e) = embedded_json(&v) {
            merge(&mut found, e);
        }
        if let Some(e) = query_error(&v) {
            merge(&mut found, e);
        }
        let codes: Vec<u32> = capture(&ERROR_CODES_RE, &v)
            .map(|list| list.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_default();
        merge(
            &mut found,
            EntraError {
                error: capture(&ERROR_RE, &v).map(|e| e.to_ascii_lowercase()),
                suberror: capture(&SUBERROR_RE, &v).map(|e| e.to_ascii_lowercase()),
                error_codes: codes,
                ..Default::default()
            },
        );
        haystack.push_str(&v);
        haystack.push('\n');
    }
    // Codes anywhere in the text (wrapped exceptions, lower case, trailing text) count too.
    let mut in_text = codes_in(&haystack);
    let lower = haystack.to_lowercase();
    if in_text.is_empty()
        && found.error_codes.is_empty()
        && let Some((_, code)) = WORDING.iter().find(|(phrase, _)| lower.contains(phrase))
    {
        in_text.push(*code);
    }
    for c in in_text {
        if !found.error_codes.contains(&c) {
            found.error_codes.push(c);
        }
    }
    let description = found.error_description.take().unwrap_or_default();
    found.error_description = Some(format!("{description}\n{haystack}"));
    // `error_subcode=cancel` is Entra's redirect field, not a suberror.
    if found.suberror.as_deref() == Some("cancel") {
        found.error_subcode = found.suberror.take();
    }

    let classification = classify(&found);
    let entra_evidence = !classification.aadsts.is_empty()
        || classification.trace_id.is_some()
        || classification.correlation_id.is_some()
        || ENTRA_HOST_RE.is_match(&haystack);
    if entra_evidence {
        classification.into()
    } else {
        Classification {
            category: Category::Unknown,
            reason: None,
            aadsts: Vec::new(),
            oauth_error: classification.oauth_error,
            suberror: classification.suberror,
            trace_id: None,
            correlation_id: None,
        }
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Category::*;

    fn cat(text: &str) -> (Category, Vec<u32>) {
        let e = explain(text);
        (e.classification.category, e.classification.aadsts)
    }

    #[test]
    fn shapes_of_entra_errors() {
        let cases: &[(&str, Category, Option<u32>)] = &[
            // token-endpoint JSON
            (
                r#"{"error":"invalid_grant","error_description":"AADSTS65001: The user or administrator has not consented to use the application with ID 'x'.\r\nTrace ID: 7c839d05-4806-48f2-ba40-bf4128382500\r\nCorrelation ID: b94f5bce-b15e-48c6-a713-fc07c5c41a77\r\nTimestamp: 2023-08-28 11:25:19Z","error_codes":[65001],"suberror":"consent_required"}"#,
                ConsentRequired,
                Some(65001),
            ),
            // redirect URL, lower-case escapes
            (
                "https://app.example.com/cb?error=access_denied&error_description=AADSTS65004%3a+User+declined+to+consent+to+access+the+app.%0d%0aTrace+ID%3a+7c839d05-4806-48f2-ba40-bf4128382500&error_uri=https%3a%2f%2flogin.microsoftonline.com%2ferror%3fcode%3d65004&state=abc#",
                UserDeclined,
                Some(65004),
            ),
            // sign-in page text with a code
            (
                "Need admin approval\nContoso Connector needs permission to access resources in your organization that only an admin can grant. AADSTS90094",
                AdminApprovalRequired,
                Some(90094),
            ),
            // sign-in page text without a code
            (
                "Need admin approval\nContoso Connector needs permission to access resources in your organization that only an admin can grant. Please ask an admin to grant permission to this app before you can use it.",
                AdminApprovalRequired,
                Some(90094),
            ),
            (
                "Approval required. This app requires your admin's approval to: Read all files. Enter justification for requesting this app. Request approval",
                AdminApprovalRequired,
                Some(90095),
            ),
            // wrapped exception messages
            (
                "Microsoft.Identity.Client.MsalUiRequiredException: AADSTS50076: Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access 'xyz'. Trace ID: 11111111-2222-3333-4444-555555555555",
                InteractionRequired,
                Some(50076),
            ),
            (
                "ERROR 2024-01-01 sync failed: invalid_grant: aadsts700082: The refresh token has expired due to inactivity.",
                ReauthRequired,
                Some(700082),
            ),
            (
                "InteractionRequiredAuthError: interaction_required: AADSTS53003: Access has been blocked by Conditional Access policies.",
                ConditionalAccess,
                Some(53003),
            ),
            // URL-encoded fragment of a log
            (
                "error_description=AADSTS50105%3A%20Your%20administrator%20has%20configured%20the%20application",
                NotAssigned,
                Some(50105),
            ),
            // JSON-escaped inside a log line
            (
                r#"level=error msg="token refresh failed" body="{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000222: The provided client secret keys for app 'x' are expired.\",\"error_codes\":[7000222]}""#,
                ClientCredentialInvalid,
                Some(7000222),
            ),
            // chained codes
            (
                r#"{"error":"invalid_grant","error_description":"AADSTS70002: Error validating credentials. AADSTS54005: OAuth2 Authorization code was already redeemed","error_codes":[70002,54005]}"#,
                InvalidRequest,
                Some(54005),
            ),
            // unknown code, Entra evidence, suberror fallback
            (
                r#"{"error":"invalid_grant","error_description":"AADSTS9999999: something new","suberror":"bad_token"}"#,
                ReauthRequired,
                Some(9999999),
            ),
            // throttling
            (
                "AADSTS50196: The server terminated an operation because it encountered a loop",
                Transient,
                Some(50196),
            ),
        ];
        for (text, category, code) in cases {
            let (c, codes) = cat(text);
            assert_eq!(c, *category, "{text}");
            assert_eq!(codes.first().copied(), *code, "{text}");
        }
    }

    #[test]
    fn ids_and_fields_are_extracted() {
        let e = explain(
            "https://x/cb?error=consent_required&error_description=AADSTS65004%3a+User+declined.%0d%0aTrace+ID%3a+7c839d05-4806-48f2-ba40-bf4128382500%0d%0aCorrelation+ID%3a+b94f5bce-b15e-48c6-a713-fc07c5c41a77&error_subcode=cancel",
        );
        assert_eq!(e.classification.oauth_error.as_deref(), Some("consent_required"));
        assert_eq!(
            e.classification.trace_id.as_deref(),
            Some("7c839d05-4806-48f2-ba40-bf4128382500")
        );
        assert_eq!(
            e.classification.correlation_id.as_deref(),
            Some("b94f5bce-b15e-48c6-a713-fc07c5c41a77")
        );
        assert_eq!(e.who_fixes, WhoFixes::User);
        assert!(!e.user_message.is_empty() && !e.admin_message.is_empty());
    }

    #[test]
    fn non_entra_text_is_unknown() {
        for text in [
            "",
            "hello world",
            r#"{"error":"invalid_grant","error_description":"Bad Request"}"#,
            "https://oauth2.googleapis.com/token returned error=invalid_grant",
            "java.lang.NullPointerException at com.example.Foo",
            "AADSTS",
        ] {
            let e = explain(text);
            assert_eq!(e.classification.category, Unknown, "{text}");
            assert!(e.classification.aadsts.is_empty(), "{text}");
        }
        assert_eq!(
            explain(r#"{"error":"invalid_grant"}"#)
                .classification
                .oauth_error
                .as_deref(),
            Some("invalid_grant")
        );
    }

    #[test]
    fn every_table_code_round_trips_through_text() {
        for info in crate::entra::aadsts::CODES {
            let e = explain(&format!("AADSTS{}: something happened", info.code));
            assert_eq!(e.classification.category, info.category, "{}", info.code);
            assert_eq!(e.classification.aadsts, vec![info.code]);
            assert_eq!(e.who_fixes, info.who, "{}", info.code);
            assert_eq!(e.user_message, info.meaning);
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,400}") {
            let _ = explain(&text);
        }

        #[test]
        fn never_panics_on_entra_like_noise(prefix in "[a-z%{}\\[\\]\"=:&?#\\\\ ]{0,40}", code in 0u32..99_999_999, suffix in "[a-z%{}\\[\\]\"=:&?#\\\\ ]{0,40}") {
            let _ = explain(&format!("{prefix}error=x&error_description=AADSTS{code}{suffix}"));
        }
    }
}
