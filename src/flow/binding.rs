//! Binding a sign-in to the browser that started it.
//!
//! Every start hands the browser a random cookie and stores its SHA-256 with the flow; the
//! callback, and an approval page's "continue", go on only in a browser that carries it. Without
//! this, Entra's redirect back (`/v1/callback?code&state`) captured in one browser would complete
//! the sign-in in any other: an attacker could attach their own Microsoft account to a victim's
//! connector account (login CSRF), or finish a waiting user's session with their own tokens.

use crate::crypto::{ct_eq, sha256_hex};

/// The digest of a browser's binding cookie, as stored with flows and approval pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding(String);

impl Binding {
    /// The binding of a cookie value.
    pub fn of(cookie_value: &str) -> Self {
        Self(sha256_hex(cookie_value))
    }

    /// The stored form (lowercase hex).
    pub fn digest(&self) -> &str {
        &self.0
    }

    /// True when `stored` (a flow's or approval page's digest) is this browser's, in constant
    /// time. A record stored without one (empty) matches no browser.
    pub fn matches(&self, stored: &str) -> bool {
        !stored.is_empty() && ct_eq(self.0.as_bytes(), stored.as_bytes())
    }
}

/// True when `browser` carries the binding `stored` was made with.
pub fn same_browser(browser: Option<&Binding>, stored: &str) -> bool {
    browser.is_some_and(|b| b.matches(stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_matches_only_its_own_digest() {
        let a = Binding::of("cookie-a");
        assert!(a.matches(Binding::of("cookie-a").digest()));
        assert!(!a.matches(Binding::of("cookie-b").digest()));
        assert!(!a.matches(""), "records without a binding match nobody");
        assert!(!same_browser(None, a.digest()), "no cookie, no match");
        assert!(same_browser(Some(&a), a.digest()));
    }
}
