//! `explain`'s tests: the shapes Entra errors arrive in, table-driven over realistic texts
//! (redirect queries, token bodies, sign-in pages with and without a code, wrapped exceptions,
//! URL-encoded and JSON-escaped text, chained codes, German pages, MSAL/ADAL texts) and the
//! non-Entra texts that must stay `unknown`; see explain_cases.rs for the tables.

use super::*;
use crate::entra::{aadsts, errors};
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
    for info in aadsts::all() {
        let entry = &info.entry;
        for (text, lang) in [
            (format!("AADSTS{}: something happened", info.code), Lang::En),
            (format!("Error Code: {}", info.code), Lang::De),
            (format!(r#"{{"error_codes":[{}]}}"#, info.code), Lang::En),
        ] {
            let e = explain_in(&text, lang);
            assert_eq!(e.classification.category, entry.category, "{text}");
            assert_eq!(e.classification.reason, Some(entry.reason.as_str()), "{text}");
            assert_eq!(e.classification.aadsts, vec![info.code], "{text}");
            assert_eq!(e.who_fixes, entry.who, "{text}");
            assert_eq!(e.user_message, entry.words(lang).meaning, "{text}");
            assert_eq!(e.admin_message, entry.words(lang).fix, "{text}");
        }
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

#[path = "explain_cases.rs"]
mod cases;

use cases::{Case, NOT_ENTRA, REALISTIC};

fn realistic() -> Vec<Case> {
    REALISTIC
        .iter()
        .map(|(shape, text, category, code)| Case {
            shape,
            text: text.to_string(),
            category: *category,
            code: *code,
            trace_id: None,
        })
        .collect()
}

fn check(case: &Case) -> Result<(), String> {
    let e = explain(&case.text);
    let c = &e.classification;
    let mut wrong = Vec::new();
    if c.category != case.category {
        wrong.push(format!("category {} (want {})", c.category, case.category));
    }
    if c.primary_code() != case.code {
        wrong.push(format!("code {:?} (want {:?})", c.primary_code(), case.code));
    }
    if let Some(t) = case.trace_id
        && c.trace_id.as_deref() != Some(t)
    {
        wrong.push(format!("trace id {:?}", c.trace_id));
    }
    // The German answer classifies the same and only changes the words.
    let de = explain_in(&case.text, Lang::De);
    if de.classification != e.classification || de.who_fixes != e.who_fixes {
        wrong.push("German answer classifies differently".into());
    }
    if case.category != Unknown && (de.user_message == e.user_message || de.admin_message == e.admin_message) {
        wrong.push("German words are the English ones".into());
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("[{}] {}: {}", case.shape, wrong.join(", "), case.text))
    }
}

fn check_all(cases: &[Case]) {
    let failures: Vec<String> = cases.iter().filter_map(|c| check(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn realistic_texts_in_every_shape() {
    check_all(&realistic());
}

#[test]
fn every_sample_code_in_every_shape() {
    let cases = cases::generated();
    check_all(&cases);
    // Each code's shapes name it, whatever OAuth error came with it (the code wins).
    for (code, error, _) in cases::SAMPLES {
        let by_error = errors::classify(&EntraError {
            error: Some(error.to_string()),
            ..Default::default()
        });
        let by_code = aadsts::lookup(*code).unwrap().entry.category;
        if by_error.category != by_code {
            let text = format!("error={error}&error_description=AADSTS{code}");
            assert_eq!(explain(&text).classification.category, by_code, "{text}");
        }
    }
}

#[test]
fn texts_without_an_entra_error_stay_unknown() {
    for text in NOT_ENTRA {
        let e = explain(text);
        assert_eq!(e.classification.category, Unknown, "{text}");
        assert!(e.classification.aadsts.is_empty(), "{text}");
        assert_eq!(e.who_fixes, WhoFixes::Unknown, "{text}");
    }
}

#[test]
fn there_are_at_least_300_table_driven_cases() {
    let total = REALISTIC.len() + cases::generated().len() + NOT_ENTRA.len();
    assert!(total >= 300, "{total} cases");
    let shapes: std::collections::HashSet<&str> = realistic()
        .iter()
        .chain(cases::generated().iter())
        .map(|c| c.shape)
        .collect();
    for shape in [
        "redirect",
        "token_json",
        "signin_page",
        "signin_wording",
        "exception",
        "url_encoded",
        "json_escaped",
        "chained",
        "german_page",
        "signin_page_error_code",
    ] {
        assert!(shapes.contains(shape), "no {shape} case");
    }
}

/// One text per category, in English and German where Entra shows German, with no code in it.
#[rustfmt::skip]
const WORDING_PER_CATEGORY: &[(Category, &str, Option<&str>)] = &[
    (AdminApprovalRequired, "Need admin approval", Some("Administratorgenehmigung erforderlich")),
    (ConsentRequired, "The user or administrator has not consented to use the application with ID 'a1b2'.", Some("Der Benutzer oder Administrator hat der Verwendung der Anwendung nicht zugestimmt.")),
    (UserDeclined, "Microsoft.Identity.Client.MsalClientException: User canceled authentication.", Some("Der Benutzer hat die Zustimmung verweigert.")),
    (NotAssigned, "The signed in user is not assigned to a role for the application 'a1b2'.", Some("Das ausgewählte Benutzerkonto ist im Mandanten „Contoso“ nicht vorhanden.")),
    (ConditionalAccess, "You can't get there from here", Some("Ihre Anmeldung wurde blockiert")),
    (InteractionRequired, "More information required", Some("Weitere Informationen erforderlich")),
    (ReauthRequired, "The refresh token has expired due to inactivity.", None),
    (AppMisconfigured, "The reply URL specified in the request does not match the reply URLs configured for the application.", None),
    (TenantMisconfigured, "This may happen if there are no active subscriptions for the tenant.", Some("Die Anwendung ist deaktiviert.")),
    (ClientCredentialInvalid, "Invalid client secret provided. Ensure the secret being sent is the value.", None),
    (Transient, "Microsoft.Identity.Client.MsalThrottledServiceException: slow down", None),
    (InvalidRequest, "The authorization code was already redeemed, please retry with a new valid code.", None),
];

#[test]
fn a_wording_fallback_for_every_category() {
    let mut covered = std::collections::HashSet::new();
    for (category, en, de) in WORDING_PER_CATEGORY {
        for text in std::iter::once(en).chain(de.iter()) {
            assert!(!aadsts_in(text), "{text} has a code");
            assert_eq!(explain(text).classification.category, *category, "{text}");
        }
        covered.insert(*category);
    }
    for c in all_categories() {
        assert!(covered.contains(&c), "no wording case for {c}");
    }
}

/// Whether `text` holds something that reads as a code (four digits or more in a row).
fn aadsts_in(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_digit()).any(|run| run.len() >= 4)
}

fn all_categories() -> Vec<Category> {
    vec![
        AdminApprovalRequired,
        ConsentRequired,
        UserDeclined,
        NotAssigned,
        ConditionalAccess,
        InteractionRequired,
        ReauthRequired,
        AppMisconfigured,
        TenantMisconfigured,
        ClientCredentialInvalid,
        Transient,
        InvalidRequest,
    ]
}

#[test]
fn a_family_fallback_for_every_category_that_has_a_family() {
    let mut with_family = std::collections::HashSet::new();
    for f in aadsts::families() {
        // The family's last member is seldom listed; find one that is not.
        let unlisted = (0..10u32)
            .map(|i| {
                let tail = f.digits - f.prefix.len();
                let prefix: u32 = f.prefix.parse().unwrap();
                prefix * 10u32.pow(tail as u32) + 10u32.pow(tail as u32) - 1 - i
            })
            .find(|c| aadsts::lookup(*c).is_none() && aadsts::family(*c).map(|g| &g.prefix) == Some(&f.prefix))
            .unwrap_or_else(|| panic!("family {} has no unlisted member", f.pattern()));
        for text in [
            format!("AADSTS{unlisted}: a code Microsoft added later"),
            format!("Troubleshooting details\nError Code: {unlisted}"),
        ] {
            let e = explain(&text);
            assert_eq!(e.classification.category, f.entry.category, "{text}");
            assert_eq!(e.classification.reason, Some(f.entry.reason.as_str()), "{text}");
            assert_eq!(e.who_fixes, f.entry.who, "{text}");
            assert_eq!(e.admin_message, f.entry.words(Lang::En).fix, "{text}");
            assert_eq!(explain_in(&text, Lang::De).admin_message, f.entry.words(Lang::De).fix);
        }
        with_family.insert(f.entry.category);
    }
    // Categories whose codes share no prefix with a common meaning have no family; they fall back
    // on wording and the OAuth error instead.
    let without: Vec<Category> = all_categories()
        .into_iter()
        .filter(|c| !with_family.contains(c))
        .collect();
    assert_eq!(without, vec![AdminApprovalRequired, UserDeclined, InvalidRequest]);
}

#[test]
fn codes_count_in_every_form() {
    let trace = cases::TRACE;
    let forms = [
        "AADSTS53003".to_string(),
        "Error Code: 53003".to_string(),
        "error_codes: [53003]".to_string(),
        r#""error_codes":[53003]"#.to_string(),
        "ErrorCode: 53003".to_string(),
        format!("Code: 53003\nCorrelation Id: {trace}"),
        "Code: 53003 — Sorry, but we're having trouble signing you in.".to_string(),
        "https://login.microsoftonline.com/error?code=53003".to_string(),
        "AADSTS53003%3a+Access+blocked".to_string(),
        r#"\"error_description\":\"AADSTS53003: blocked\""#.to_string(),
        "Fehlercode: 53003".to_string(),
    ];
    for text in forms {
        let c = explain(&text).classification;
        assert_eq!(
            (c.category, c.aadsts.clone()),
            (ConditionalAccess, vec![53003]),
            "{text}"
        );
    }
    // A bare "Code:" without Entra's wording is anybody's code.
    assert_eq!(explain("Code: 53003").classification.category, Unknown);
}

#[test]
fn the_cli_language_changes_only_the_words() {
    let text = "AADSTS50105: not assigned";
    let (en, de) = (explain_in(text, Lang::En), explain_in(text, Lang::De));
    assert_eq!(en.classification, de.classification);
    assert_eq!(de.lang, Lang::De);
    assert!(de.user_message.contains("Konto"), "{}", de.user_message);
    assert!(de.admin_message.contains("zuweisen"), "{}", de.admin_message);
    // Unknown: the category's German words.
    let unknown = explain_in("nothing", Lang::De);
    assert_eq!(unknown.user_message, crate::http::i18n::category_messages_de(Unknown).0);
}

#[test]
fn sixty_four_kib_of_noise_with_one_code() {
    let mut text = "x= %7B \\\" {".repeat(64 * 1024 / 11 + 1);
    text.push_str(" AADSTS50076: you must use multi-factor authentication");
    // Cut to the limit: the code at the end is beyond it and must not be found.
    assert!(text.len() > MAX_TEXT);
    assert!(explain(&text).classification.aadsts.is_empty());
    let mut short = "lorem ipsum ".repeat(5000);
    short.push_str("AADSTS50076");
    assert_eq!(explain(&short).classification.aadsts, vec![50076]);
}

proptest::proptest! {
    #[test]
    fn any_listed_code_in_any_wrapping_is_found(
        index in 0usize..400,
        prefix in "[ -~]{0,60}",
        suffix in "[ -~]{0,60}",
        shape in 0usize..4,
    ) {
        let codes = aadsts::all();
        let info = &codes[index % codes.len()];
        let code = info.code;
        let text = match shape {
            0 => format!("{prefix} AADSTS{code}: {suffix}"),
            1 => format!("{prefix}\nError Code: {code}\n{suffix}"),
            2 => format!("{prefix} {{\"error_codes\":[{code}]}} {suffix}"),
            _ => format!("{prefix}?error=x&error_description=AADSTS{code}%3a+{suffix}"),
        };
        let c = explain(&text).classification;
        proptest::prop_assert!(c.aadsts.contains(&code), "{text}: {:?}", c.aadsts);
        proptest::prop_assert_ne!(c.category, Unknown);
    }

    #[test]
    fn german_and_english_agree_and_never_panic(text in "\\PC{0,300}") {
        let (en, de) = (explain_in(&text, Lang::En), explain_in(&text, Lang::De));
        let _ = render_text(&de);
        proptest::prop_assert_eq!(en.classification, de.classification);
    }
}
