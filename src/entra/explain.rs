//! `explain`: classify whatever a user or support engineer pasted — sign-in page text, a log line,
//! an MSAL/SDK exception message, a token-endpoint body, a redirect URL — into the contract's answer.
//!
//! The text is looked at in several forms (as given, URL-decoded, JSON- and HTML-unescaped, and
//! those decoded once more) and every Entra field found is merged. Codes count in every form Entra
//! and its tools print them (`AADSTS53003`, `Error Code: 53003`, `error_codes: [53003]`,
//! `ErrorCode: 53003`, and `Code: 53003` near Entra's wording); without a code, Entra's wording
//! (src/entra/wording.rs) says what it is. Only text that carries evidence of Entra gets a
//! category; a plain OAuth error from another provider answers `unknown`.

use std::sync::LazyLock;

use regex::Regex;

use super::aadsts::{self, WhoFixes};
use super::errors::{Category, Classification, EntraError, classify, codes_in};
use super::extract;
use super::wording::{self, Target};
use crate::http::i18n::Lang;

pub use super::render::render_text;

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
    /// The language of the messages.
    pub lang: Lang,
}

impl Explanation {
    /// The explanation of `c` with messages in `lang`.
    pub fn in_lang(c: Classification, lang: Lang) -> Self {
        Self {
            who_fixes: c.who_fixes(),
            user_message: c.user_message_in(lang),
            admin_message: c.admin_message_in(lang),
            classification: c,
            lang,
        }
    }
}

impl From<Classification> for Explanation {
    fn from(c: Classification) -> Self {
        Self::in_lang(c, Lang::En)
    }
}

static ENTRA_HOST_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)login\.(?:microsoftonline\.(?:com|us|de)|microsoft\.com|windows\.net|partner\.microsoftonline\.cn|chinacloudapi\.cn)|\bmsal|\badal|\baadsts|\bazure ad\b|\bentra\b|microsoft\.identity")
        .unwrap_or_else(|e| unreachable!("{e}"))
});
static IDS_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)(?:trace|correlation)[ _-]?id").unwrap_or_else(|e| unreachable!("{e}")));

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
    add_codes(&mut into.error_codes, from.error_codes);
}

fn add_codes(into: &mut Vec<u32>, codes: impl IntoIterator<Item = u32>) {
    for c in codes {
        if !into.contains(&c) {
            into.push(c);
        }
    }
}

/// Explains free text, in English. Never panics; text longer than [`MAX_TEXT`] is cut at a char
/// boundary.
pub fn explain(text: &str) -> Explanation {
    explain_in(text, Lang::En)
}

/// Explains free text with the messages in `lang`.
pub fn explain_in(text: &str, lang: Lang) -> Explanation {
    Explanation::in_lang(classify_text(text), lang)
}

/// The classification of free text (what [`explain`] answers, before the messages).
pub fn classify_text(text: &str) -> Classification {
    let mut cut = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let text = &text[..cut];
    let mut found = EntraError::default();
    let mut haystack = String::new();
    for form in extract::forms(text) {
        if let Some(e) = extract::embedded_json(&form) {
            merge(&mut found, e);
        }
        if let Some(e) = extract::query_error(&form) {
            merge(&mut found, e);
        }
        merge(
            &mut found,
            EntraError {
                error: extract::oauth_error(&form),
                suberror: extract::suberror(&form),
                error_codes: extract::error_codes_list(&form),
                ..Default::default()
            },
        );
        haystack.push_str(&form);
        haystack.push('\n');
    }

    // Codes anywhere in the text (wrapped exceptions, lower case, trailing text) count too; bare
    // numbers only when labelled as an error code and known, or near other evidence of Entra.
    add_codes(&mut found.error_codes, codes_in(&haystack));
    // Entra's own words are evidence by themselves; Entra's fields and the names of its ids only
    // make bare numbers and generic phrases count.
    // The phrases are looked for once, and only if needed.
    let phrases = std::cell::OnceCell::new();
    let phrases_in = || *phrases.get_or_init(|| wording::Found::in_text(&haystack));
    let entra_words =
        ENTRA_HOST_RE.is_match(&haystack) || wording::has_page_marker(&haystack) || phrases_in().has_strong();
    let entra_context = entra_words || !found.error_codes.is_empty() || IDS_RE.is_match(&haystack);
    let plausible = |c: &u32| (entra_context && *c >= 10_000) || aadsts::resolve(*c).is_some();
    add_codes(
        &mut found.error_codes,
        extract::labelled_codes(&haystack).into_iter().filter(plausible),
    );
    if entra_context {
        add_codes(
            &mut found.error_codes,
            extract::loose_codes(&haystack).into_iter().filter(|c| *c >= 10_000),
        );
    }

    // Without a code, Entra's wording says what it is.
    let phrase = if found.error_codes.is_empty() {
        phrases_in().phrase(entra_context)
    } else {
        None
    };
    let mut by_category = None;
    match phrase.map(|p| p.target) {
        Some(Target::Code(code)) => found.error_codes.push(code),
        Some(Target::Category(category, reason)) => by_category = Some((category, reason)),
        None => {}
    }
    let description = found.error_description.take().unwrap_or_default();
    found.error_description = Some(format!("{description}\n{haystack}"));
    // `error_subcode=cancel` is Entra's redirect field, not a suberror.
    if found.suberror.as_deref() == Some("cancel") {
        found.error_subcode = found.suberror.take();
    }
    if found.trace_id.is_none() && entra_context {
        found.trace_id = extract::request_id(&haystack);
    }

    let mut classification = classify(&found);
    // A phrase naming a category stands where no code or suberror decided (it is more specific
    // than the OAuth `error`, which MSAL prints next to it).
    if let Some((category, reason)) = by_category
        && (found.suberror.is_none() || classification.category == Category::Unknown)
    {
        classification.category = category;
        classification.reason = Some(reason);
    }
    let entra_evidence = !classification.aadsts.is_empty()
        || classification.trace_id.is_some()
        || classification.correlation_id.is_some()
        || entra_words
        || phrase.is_some();
    if entra_evidence {
        classification
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
    }
}

#[cfg(test)]
#[path = "explain_tests.rs"]
mod tests;
