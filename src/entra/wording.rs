//! Entra's wording without a code: the texts of its sign-in pages (English and the German
//! variants it shows) and of MSAL/ADAL exceptions, mapped to the code they stand for or straight
//! to a category.
//!
//! Phrases are matched case-insensitively, with any run of white space for a space and either
//! apostrophe. A *strong* phrase is Entra's own wording and is evidence of Entra by itself; a
//! *weak* one ("your password has expired") is worded the same by other providers, so it only
//! counts when the text carries other evidence of Entra. When several phrases match, the one
//! listed first wins: the list goes from the most specific to the most general.

use std::sync::LazyLock;

use regex::{Regex, RegexSet};

use super::errors::Category::{self, *};

/// What a phrase stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The AADSTS code whose page or description says this.
    Code(u32),
    /// A category (and reason) without a code: MSAL/ADAL exceptions, generic pages.
    Category(Category, &'static str),
}

/// One phrase.
#[derive(Debug, Clone, Copy)]
pub struct Phrase {
    /// The words, lower case.
    pub text: &'static str,
    /// What they stand for.
    pub target: Target,
    /// Entra's own wording: evidence of Entra by itself.
    pub strong: bool,
}

const fn s(text: &'static str, code: u32) -> Phrase {
    Phrase {
        text,
        target: Target::Code(code),
        strong: true,
    }
}

const fn w(text: &'static str, code: u32) -> Phrase {
    Phrase {
        text,
        target: Target::Code(code),
        strong: false,
    }
}

const fn sc(text: &'static str, category: Category, reason: &'static str) -> Phrase {
    Phrase {
        text,
        target: Target::Category(category, reason),
        strong: true,
    }
}

const fn wc(text: &'static str, category: Category, reason: &'static str) -> Phrase {
    Phrase {
        text,
        target: Target::Category(category, reason),
        strong: false,
    }
}

/// Every phrase, most specific first.
#[rustfmt::skip]
pub const PHRASES: &[Phrase] = &[
    // Risky app and admin approval (consent pages).
    s("this app might be risky", 900941),
    s("diese app ist möglicherweise riskant", 900941),
    s("need admin approval", 90094),
    s("needs permission to access resources in your organization that only an admin can grant", 90094),
    s("only an admin can grant", 90094),
    s("administratorgenehmigung erforderlich", 90094),
    s("genehmigung des administrators erforderlich", 90094),
    s("administratorzustimmung erforderlich", 90094),
    s("die nur ein administrator erteilen kann", 90094),
    s("administrator consent is required", 90094),
    s("this app requires your admin's approval", 90095),
    s("diese app erfordert die genehmigung ihres administrators", 90095),
    w("approval required", 90095),
    w("request approval", 90095),
    w("genehmigung erforderlich", 90095),
    w("genehmigung anfordern", 90095),
    w("admin approval", 90094),
    // Consent.
    s("has not consented to use the application", 65001),
    s("hasn't consented to use the application", 65001),
    s("hat der verwendung der anwendung nicht zugestimmt", 65001),
    s("declined to consent", 65004),
    s("hat die zustimmung verweigert", 65004),
    s("the user is required to permit single sign-on", 9002341),
    // Assignment, accounts, tenants.
    s("is not assigned to a role for the application", 50105),
    s("specifically granted ('assigned') access", 50105),
    s("not been granted access to this application", 50105),
    s("keiner rolle für die anwendung zugewiesen", 50105),
    s("selected user account does not exist in tenant", 50020),
    s("does not exist in tenant", 50020),
    s("doesn't exist in tenant", 50020),
    s("the account doesn't exist in the tenant", 50020),
    s("das ausgewählte benutzerkonto ist im mandanten", 50020),
    s("ist im mandanten nicht vorhanden", 50020),
    s("existiert nicht im mandanten", 50020),
    s("we couldn't find an account with that username", 50034),
    s("this username may be incorrect", 50034),
    s("wir konnten kein konto mit diesem benutzernamen finden", 50034),
    s("dieser benutzername ist möglicherweise falsch", 50034),
    s("user account is disabled", 50057),
    s("your account has been disabled", 50057),
    s("ihr konto wurde deaktiviert", 50057),
    s("the application is disabled", 7000112),
    s("the app has been disabled", 70001),
    s("die anwendung ist deaktiviert", 70001),
    s("die app wurde deaktiviert", 70001),
    s("is not configured as a multi-tenant application", 50194),
    s("isn't configured as a multitenant application", 50194),
    s("was not found in the directory", 700016),
    s("wurde im verzeichnis nicht gefunden", 700016),
    s("no active subscriptions for the tenant", 90002),
    s("check to make sure you have the correct tenant id", 90002),
    s("hasn't subscribed to or enabled", 650052),
    s("has not subscribed to or enabled", 650052),
    s("belongs to the national cloud", 90038),
    // Conditional Access and sign-in blocks.
    s("access has been blocked by conditional access", 53003),
    s("blocked by conditional access", 53003),
    s("does not allow token issuance", 53003),
    s("does not meet the criteria to access this resource", 53003),
    s("you cannot access this right now", 53003),
    s("you can't access this right now", 53003),
    s("you don't have access to this", 53003),
    s("durch richtlinien für bedingten zugriff blockiert", 53003),
    s("sie können derzeit nicht darauf zugreifen", 53003),
    s("sie können momentan nicht darauf zugreifen", 53003),
    s("sie haben keinen zugriff darauf", 53003),
    s("sie haben keinen zugriff auf diese ressource", 53003),
    s("access has been blocked by security defaults", 530035),
    s("requires a compliant device", 53000),
    s("device is not compliant", 53000),
    s("you can't get there from here", 53000),
    s("you cannot get there from here", 53000),
    s("von hier aus ist kein zugriff möglich", 53000),
    s("sie können von hier aus nicht darauf zugreifen", 53000),
    s("requires a domain joined device", 53001),
    s("isn't an approved app for conditional access", 53002),
    s("is not an approved app for conditional access", 53002),
    s("your sign-in was blocked", 53011),
    s("ihre anmeldung wurde blockiert", 53011),
    s("tenant restrictions", 500021),
    // Interactive steps.
    s("more information required", 50079),
    s("your organization needs more information to keep your account secure", 50079),
    s("weitere informationen erforderlich", 50079),
    s("ihre organisation benötigt weitere informationen", 50079),
    s("you must use multi-factor authentication", 50076),
    s("you must use multifactor authentication", 50076),
    s("müssen sie die mehrstufige authentifizierung verwenden", 50076),
    s("your account is locked", 50053),
    s("your account has been locked", 50053),
    s("ihr konto wurde gesperrt", 50053),
    s("ihr konto ist gesperrt", 50053),
    w("your password has expired", 50055),
    w("your password is expired", 50055),
    w("ihr kennwort ist abgelaufen", 50055),
    s("your account or password is incorrect", 50126),
    s("ihr konto oder kennwort ist falsch", 50126),
    w("invalid username or password", 50126),
    // Expired and revoked grants.
    s("refresh token has expired due to inactivity", 700082),
    s("grant has expired due to it being revoked", 50173),
    s("provided grant has expired", 50173),
    s("was issued to a single page app", 700084),
    s("authorization code or refresh token has expired", 70008),
    s("authorization code was already redeemed", 54005),
    s("code_verifier does not match the code_challenge", 50148),
    // The connector's registration and credential.
    s("does not match the redirect uris configured", 50011),
    s("reply url specified in the request does not match", 50011),
    s("redirect uri specified in the request does not match", 50011),
    s("antwort-url in der anforderung stimmt nicht", 50011),
    s("invalid client secret is provided", 7000215),
    s("invalid client secret provided", 7000215),
    s("client secret keys for app", 7000222),
    s("client secret keys are expired", 7000222),
    s("must contain the following parameter: 'client_assertion' or 'client_secret'", 7000218),
    s("client assertion failed signature validation", 700027),
    s("a client loop has been detected", 50196),
    // MSAL and ADAL exceptions without a code.
    sc("msaluirequiredexception", InteractionRequired, "interaction_required"),
    sc("msalthrottleduirequiredexception", InteractionRequired, "interaction_required"),
    sc("no account or login hint was passed to the acquiretokensilent", InteractionRequired, "login_required"),
    sc("failed to acquire token silently", InteractionRequired, "login_required"),
    sc("failed_to_acquire_token_silently", InteractionRequired, "login_required"),
    sc("adalsilenttokenacquisitionexception", InteractionRequired, "login_required"),
    sc("user_interaction_required", InteractionRequired, "interaction_required"),
    sc("msalthrottledserviceexception", Transient, "throttled"),
    sc("authentication_canceled", UserDeclined, "cancelled"),
    sc("authentication_cancelled", UserDeclined, "cancelled"),
    sc("user canceled authentication", UserDeclined, "cancelled"),
    sc("user cancelled the flow", UserDeclined, "cancelled"),
    sc("user_cancelled", UserDeclined, "cancelled"),
    sc("user_canceled", UserDeclined, "cancelled"),
    sc("a configuration issue is preventing authentication", ClientCredentialInvalid, "credential_invalid"),
    wc("service_not_available", Transient, "service_unavailable"),
    wc("the service is temporarily unavailable", Transient, "service_unavailable"),
    wc("der dienst ist vorübergehend nicht verfügbar", Transient, "service_unavailable"),
    wc("interaction_required", InteractionRequired, "interaction_required"),
];

/// Words that mark a text as coming from Entra's sign-in pages (without saying what went wrong).
const PAGE_MARKERS: &[&str] = &[
    "sorry, but we're having trouble signing you in",
    "we're having trouble signing you in",
    "troubleshooting details",
    "leider können wir sie nicht anmelden",
    "problembehandlungsdetails",
    "microsoft entra",
    "azure active directory",
    "sign in to your account",
];

/// The phrase's text as a pattern: any white space for a space, either apostrophe.
fn pattern(phrase: &str) -> String {
    let mut out = String::from("(?i)");
    for (i, word) in phrase.split(' ').enumerate() {
        if i > 0 {
            out.push_str(r"\s+");
        }
        for (j, part) in regex::escape(word).split('\'').enumerate() {
            if j > 0 {
                out.push_str("['’]");
            }
            out.push_str(part);
        }
    }
    out
}

static SET: LazyLock<RegexSet> =
    LazyLock::new(|| RegexSet::new(PHRASES.iter().map(|p| pattern(p.text))).unwrap_or_else(|e| unreachable!("{e}")));
static MARKERS: LazyLock<Regex> = LazyLock::new(|| {
    let alternatives: Vec<String> = PAGE_MARKERS.iter().map(|m| pattern(m)[4..].to_string()).collect();
    Regex::new(&format!("(?i){}", alternatives.join("|"))).unwrap_or_else(|e| unreachable!("{e}"))
});

/// The phrases found in one text, from one scan of it (the scan is most of `explain`'s time on
/// a large paste, and both questions below are asked of the same text).
#[derive(Debug, Clone, Copy, Default)]
pub struct Found {
    first: Option<&'static Phrase>,
    first_strong: Option<&'static Phrase>,
}

impl Found {
    /// Scans `text` once for every phrase.
    pub fn in_text(text: &str) -> Self {
        let mut found = Self::default();
        for p in SET.matches(text).into_iter().map(|i| &PHRASES[i]) {
            found.first.get_or_insert(p);
            if p.strong {
                found.first_strong = Some(p);
                break;
            }
        }
        found
    }

    /// The first listed phrase; weak phrases only when `entra_context` says the text is Entra's.
    pub fn phrase(&self, entra_context: bool) -> Option<&'static Phrase> {
        if entra_context { self.first } else { self.first_strong }
    }

    /// Whether a strong phrase (Entra's own wording by itself) was found.
    pub fn has_strong(&self) -> bool {
        self.first_strong.is_some()
    }
}

/// The first listed phrase in `text`; weak phrases only when `entra_context` says the text is
/// Entra's.
pub fn find(text: &str, entra_context: bool) -> Option<&'static Phrase> {
    Found::in_text(text).phrase(entra_context)
}

/// Whether `text` shows an Entra sign-in page's markers.
pub fn has_page_marker(text: &str) -> bool {
    MARKERS.is_match(text)
}

/// Whether `text` carries Entra's own wording (a strong phrase or a sign-in page marker).
pub fn is_entra_wording(text: &str) -> bool {
    has_page_marker(text) || Found::in_text(text).has_strong()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phrase_matches_itself_loosely_and_is_reachable() {
        for (i, p) in PHRASES.iter().enumerate() {
            assert_eq!(p.text, p.text.to_lowercase(), "{}", p.text);
            let shouted = p.text.to_uppercase().replace(' ', "  \n ").replace('\'', "’");
            let found = find(&shouted, true).unwrap_or_else(|| panic!("{} does not match", p.text));
            // An earlier phrase may be contained in this one; then it must mean the same.
            let first = PHRASES.iter().position(|q| q.text == found.text).unwrap_or(usize::MAX);
            assert!(first <= i, "{}", p.text);
            assert_eq!(found.target, p.target, "{} is shadowed by {}", p.text, found.text);
        }
    }

    #[test]
    fn codes_named_by_phrases_are_in_the_table() {
        for p in PHRASES {
            if let Target::Code(code) = p.target {
                assert!(crate::entra::aadsts::lookup(code).is_some(), "{}: {code}", p.text);
            }
        }
    }

    #[test]
    fn weak_phrases_need_context() {
        assert!(find("Your password has expired.", false).is_none());
        assert_eq!(
            find("Your password has expired.", true).map(|p| p.target),
            Some(Target::Code(50055))
        );
        assert!(is_entra_wording("Sorry, but we’re having trouble signing you in."));
        assert!(!is_entra_wording("Your password has expired."));
    }
}
