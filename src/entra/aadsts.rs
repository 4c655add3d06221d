//! The AADSTS code table: for each known code, its category, a finer reason, who can fix it,
//! and what it means and how to fix it, in English and German. The data is `aadsts.toml` (its
//! header names the source: Microsoft's published AADSTS reference), compiled in and parsed once.
//! Codes missing from the table fall back on their family (a prefix and a number of digits, such
//! as 530xxx for Conditional Access), and Microsoft may change codes at any time, so the
//! classifier also falls back on `error`/`suberror` and on wording (see `errors.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use serde::Deserialize;

use super::errors::Category;
use crate::http::i18n::Lang;

/// Who can fix an error (the contract's `who_fixes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, Deserialize, utoipa::ToSchema)]
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

/// Plain words in one language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Words {
    /// What happened, for the user.
    pub meaning: String,
    /// The fix, for the admin, developer or operator.
    pub fix: String,
}

/// What a code (or a family of codes) means: category, reason, who fixes it and the words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Contract category.
    pub category: Category,
    /// Finer reason.
    pub reason: String,
    /// Who can fix it.
    pub who: WhoFixes,
    en: Words,
    de: Words,
}

impl Entry {
    /// The words in `lang`.
    pub fn words(&self, lang: Lang) -> &Words {
        match lang {
            Lang::En => &self.en,
            Lang::De => &self.de,
        }
    }
}

/// One known AADSTS code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeInfo {
    /// The number after `AADSTS`.
    pub code: u32,
    /// What it means.
    pub entry: Entry,
}

/// Codes sharing a prefix and a length, with a common meaning (530xxx: Conditional Access).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// The leading digits.
    pub prefix: String,
    /// How many digits a member has.
    pub digits: usize,
    /// What its members mean when the table does not list them.
    pub entry: Entry,
}

impl Family {
    /// Whether `code` belongs to this family.
    pub fn contains(&self, code: u32) -> bool {
        let digits = code.to_string();
        digits.len() == self.digits && digits.starts_with(&self.prefix)
    }

    /// The family's usual name, e.g. `530xxx`.
    pub fn pattern(&self) -> String {
        format!(
            "{}{}",
            self.prefix,
            "x".repeat(self.digits.saturating_sub(self.prefix.len()))
        )
    }
}

/// The parsed table.
#[derive(Debug)]
pub struct Table {
    /// Sorted by code.
    codes: Vec<CodeInfo>,
    families: Vec<Family>,
    wrappers: Vec<u32>,
}

impl Table {
    /// The entry for `code`, when listed.
    pub fn lookup(&self, code: u32) -> Option<&CodeInfo> {
        self.codes
            .binary_search_by_key(&code, |c| c.code)
            .ok()
            .map(|i| &self.codes[i])
    }

    /// The family of `code` (the longest matching prefix).
    pub fn family(&self, code: u32) -> Option<&Family> {
        self.families
            .iter()
            .filter(|f| f.contains(code))
            .max_by_key(|f| f.prefix.len())
    }
}

/// The table's source, compiled in.
pub const SOURCE: &str = include_str!("aadsts.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    wrappers: Vec<u32>,
    code: Vec<RawEntry>,
    #[serde(default)]
    texts: HashMap<String, RawTexts>,
    family: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTexts {
    en: [String; 2],
    de: [String; 2],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    #[serde(default)]
    code: Option<u32>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    digits: Option<usize>,
    category: Category,
    reason: String,
    who: WhoFixes,
    #[serde(default)]
    en: Option<[String; 2]>,
    #[serde(default)]
    de: Option<[String; 2]>,
    #[serde(default)]
    text: Option<String>,
}

fn words([meaning, fix]: [String; 2]) -> Words {
    Words { meaning, fix }
}

impl RawEntry {
    /// The entry, with shared texts resolved; `what` names it in errors.
    fn entry(self, texts: &HashMap<String, RawTexts>, what: &str) -> Result<Entry, String> {
        if self.category == Category::Unknown {
            return Err(format!("{what}: no known category"));
        }
        if self.reason.is_empty() || !self.reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(format!("{what}: reason {:?} is not snake_case", self.reason));
        }
        if self.who == WhoFixes::Unknown {
            return Err(format!("{what}: nobody fixes it"));
        }
        let (en, de) = match (self.text, self.en, self.de) {
            (Some(name), None, None) => {
                let shared = texts.get(&name).ok_or_else(|| format!("{what}: no [texts.{name}]"))?;
                (shared.en.clone(), shared.de.clone())
            }
            (None, Some(en), Some(de)) => (en, de),
            _ => return Err(format!("{what}: needs both en and de, or a text")),
        };
        if en.iter().chain(de.iter()).any(|s| s.trim().is_empty()) {
            return Err(format!("{what}: an empty meaning or fix"));
        }
        if en == de {
            return Err(format!("{what}: the German words are the English ones"));
        }
        Ok(Entry {
            category: self.category,
            reason: self.reason,
            who: self.who,
            en: words(en),
            de: words(de),
        })
    }
}

/// Parses and checks a table: every code once, classified, in both languages; families with a
/// numeric prefix shorter than their length.
pub fn parse(source: &str) -> Result<Table, String> {
    let raw: RawTable = toml::from_str(source).map_err(|e| e.to_string())?;
    let mut codes = Vec::with_capacity(raw.code.len());
    let mut seen = HashSet::new();
    for r in raw.code {
        let Some(code) = r.code else {
            return Err("a code entry without `code`".into());
        };
        if r.prefix.is_some() || r.digits.is_some() {
            return Err(format!("{code}: prefix and digits belong to families"));
        }
        if !seen.insert(code) {
            return Err(format!("{code}: listed twice"));
        }
        codes.push(CodeInfo {
            code,
            entry: r.entry(&raw.texts, &code.to_string())?,
        });
    }
    codes.sort_by_key(|c| c.code);
    let mut families = Vec::with_capacity(raw.family.len());
    for r in raw.family {
        let (Some(prefix), Some(digits), None) = (r.prefix.clone(), r.digits, r.code) else {
            return Err("a family needs prefix and digits, and no code".into());
        };
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.len() >= digits || digits > 9 {
            return Err(format!(
                "family {prefix}/{digits}: not a digit prefix shorter than the code"
            ));
        }
        if families
            .iter()
            .any(|f: &Family| f.prefix == prefix && f.digits == digits)
        {
            return Err(format!("family {prefix}/{digits}: listed twice"));
        }
        let entry = r.entry(&raw.texts, &format!("family {prefix}"))?;
        families.push(Family { prefix, digits, entry });
    }
    for w in &raw.wrappers {
        if !seen.contains(w) {
            return Err(format!("wrapper {w}: not in the table"));
        }
    }
    Ok(Table {
        codes,
        families,
        wrappers: raw.wrappers,
    })
}

// The compiled-in table is checked by the tests below; a broken one fails them all.
static TABLE: LazyLock<Table> =
    LazyLock::new(|| parse(SOURCE).unwrap_or_else(|e| panic!("src/entra/aadsts.toml: {e}")));

/// AADSTS90095: the tenant's admin consent workflow is on and the user already asked for approval
/// while signing in, so the approval page says "your request was sent" instead of "ask IT".
pub const APPROVAL_REQUESTED: u32 = 90095;

/// AADSTS65004: consent was declined or the prompt cancelled; on the admin-consent callback it
/// means the admin cancelled, which is not a failure.
pub const CONSENT_DECLINED: u32 = 65004;

/// Codes with which an admin-consent callback says the signed-in account cannot approve for the
/// organization, so the page asks for an administrator instead of reporting an error: 90093 (this
/// account may not grant these permissions), 50020 (an account of another organization) and
/// 500201 (treated the same since the approval experience's first version; not in the table).
pub const NOT_AN_APPROVER: [u32; 3] = [90093, 50020, 500201];

/// Every listed code, by number.
pub fn all() -> &'static [CodeInfo] {
    &TABLE.codes
}

/// Every family.
pub fn families() -> &'static [Family] {
    &TABLE.families
}

/// The entry for `code`, when the table lists it.
pub fn lookup(code: u32) -> Option<&'static CodeInfo> {
    TABLE.lookup(code)
}

/// The family `code` belongs to.
pub fn family(code: u32) -> Option<&'static Family> {
    TABLE.family(code)
}

/// What `code` means: its own entry, else its family's.
pub fn resolve(code: u32) -> Option<&'static Entry> {
    lookup(code)
        .map(|c| &c.entry)
        .or_else(|| family(code).map(|f| &f.entry))
}

/// Whether `code` only wraps a more specific one (`AADSTS70002: Error validating credentials.
/// AADSTS54005: ...`).
pub fn is_wrapper(code: u32) -> bool {
    TABLE.wrappers.contains(&code)
}

// Kept for the tests below, which compare the old table's classification with the data file's.
#[cfg(test)]
const PREVIOUS: &[(u32, Category, &str, WhoFixes)] = {
    use Category::*;
    use WhoFixes::{ConnectorDeveloper as Dev, Operator as Op, Retry, TenantAdmin as Admin, User};
    &[
        (65001, ConsentRequired, "consent_missing", User),
        (65004, UserDeclined, "consent_declined", User),
        (90094, AdminApprovalRequired, "admin_consent_workflow_off", Admin),
        (90095, AdminApprovalRequired, "approval_requested", Admin),
        (53003, ConditionalAccess, "blocked_by_policy", Admin),
        (50105, NotAssigned, "user_not_assigned", Admin),
        (7000222, ClientCredentialInvalid, "secret_expired", Op),
        (50011, AppMisconfigured, "redirect_uri_mismatch", Dev),
        (50196, Transient, "throttled", Retry),
        (54005, InvalidRequest, "code_already_redeemed", Dev),
        (700082, ReauthRequired, "refresh_token_inactive", User),
        (50076, InteractionRequired, "mfa_required", User),
        (90002, TenantMisconfigured, "tenant_not_found", Admin),
    ]
};

#[cfg(test)]
#[path = "aadsts_tests.rs"]
mod tests;
