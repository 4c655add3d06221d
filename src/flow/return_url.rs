//! Return-URL allow-list matching (contract: exact scheme, host, port and path; query allowed).
//!
//! The candidate is parsed with the WHATWG URL parser (the one browsers use), and the redirect
//! is built from the *parsed* form, so what we check is what the browser will visit. Anything a
//! browser might read differently from us — credentials, fragments, control characters, encoded
//! slashes or backslashes in the path — is refused rather than normalised.

use url::{Position, Url};

/// Longest return URL accepted.
pub const MAX_LEN: usize = 2048;

/// Query parameters the broker itself adds to a return URL. A return URL that already carries
/// one is refused: a connector reading the first `handoff` or `state` would otherwise read a
/// value planted by whoever made the link instead of the broker's.
pub const RESERVED: [&str; 4] = ["handoff", "state", "error", "aadsts"];

/// True when `url`'s query carries a parameter the broker adds (compared case-insensitively, as
/// some frameworks read query names).
pub fn carries_reserved(url: &Url) -> bool {
    url.query_pairs()
        .any(|(k, _)| RESERVED.iter().any(|r| k.eq_ignore_ascii_case(r)))
}

/// Checks `candidate` against the allow-list; returns the URL to redirect to.
pub fn check(allowed: &[Url], candidate: &str) -> Option<Url> {
    if candidate.is_empty() || candidate.len() > MAX_LEN {
        return None;
    }
    if candidate
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return None;
    }
    let url = Url::parse(candidate).ok()?;
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return None;
    }
    let lower_path = url.path().to_ascii_lowercase();
    if lower_path.contains("%2f") || lower_path.contains("%5c") || lower_path.contains("%2e") {
        return None;
    }
    if carries_reserved(&url) {
        return None;
    }
    allowed
        .iter()
        .any(|a| {
            a.scheme() == url.scheme()
                && a.host() == url.host()
                && a.port_or_known_default() == url.port_or_known_default()
                && a.path() == url.path()
                // And the same text up to the query: for schemes without an authority, `p://`
                // and `p:` have equal parts but are different URLs (found by fuzzing).
                && a[..Position::AfterPath] == url[..Position::AfterPath]
        })
        .then_some(url)
}

/// Appends the broker's query parameters to a return URL, keeping the rest of its own query.
/// Any reserved parameter already there is dropped first (return URLs stored before they were
/// refused), so the broker's values are the only ones the connector reads.
pub fn with_params(base: &Url, params: &[(&str, &str)]) -> Url {
    let mut url = base.clone();
    if carries_reserved(base) {
        let kept: Vec<(String, String)> = base
            .query_pairs()
            .filter(|(k, _)| !RESERVED.iter().any(|r| k.eq_ignore_ascii_case(r)))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.set_query(None);
        if !kept.is_empty() {
            url.query_pairs_mut().extend_pairs(kept);
        }
    }
    if !params.is_empty() {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<Url> {
        vec![
            Url::parse("https://app.example.com/oauth/done").unwrap(),
            Url::parse("http://127.0.0.1:9000/cb").unwrap(),
        ]
    }

    #[test]
    fn exact_matches_pass_with_query() {
        assert!(check(&allowed(), "https://app.example.com/oauth/done").is_some());
        assert!(check(&allowed(), "https://app.example.com/oauth/done?tab=2").is_some());
        assert!(check(&allowed(), "https://APP.example.com:443/oauth/done").is_some());
        assert!(check(&allowed(), "http://127.0.0.1:9000/cb").is_some());
    }

    #[test]
    fn lookalikes_and_tricks_fail() {
        for bad in [
            "https://app.example.com.evil.com/oauth/done",
            "https://evilapp.example.com/oauth/done",
            "https://app.example.com@evil.com/oauth/done",
            "https://user:pw@app.example.com/oauth/done",
            "https://evil.com/oauth/done?x=https://app.example.com/oauth/done",
            "https://app.example.com:8443/oauth/done",
            "http://app.example.com/oauth/done",
            "javascript:alert(1)//app.example.com/oauth/done",
            "data:text/html,https://app.example.com/oauth/done",
            "https://app.example.com/oauth/done/",
            "https://app.example.com/oauth/done/../other",
            "https://app.example.com/oauth/done%2F..%2Fother",
            "https://app.example.com/oauth%2fdone",
            "https://app.example.com/oauth/done#frag",
            "https://app.example.com\\@evil.com/oauth/done",
            "//app.example.com/oauth/done",
            "/oauth/done",
            "https://app.example.com/oauth/done\n",
            "https://app.example.com/oauth/DONE",
            "http://127.0.0.1:9001/cb",
            "http://localhost:9000/cb",
            "",
        ] {
            assert!(check(&allowed(), bad).is_none(), "accepted {bad:?}");
        }
        let long = format!("https://app.example.com/oauth/done?{}", "a".repeat(MAX_LEN));
        assert!(check(&allowed(), &long).is_none());
    }

    #[test]
    fn urls_that_differ_only_in_their_authority_marker_do_not_match() {
        let opaque = vec![Url::parse("p:").unwrap(), Url::parse("myapp:/cb").unwrap()];
        assert!(check(&opaque, "p://").is_none());
        assert!(check(&opaque, "myapp:///cb").is_none());
        assert!(check(&opaque, "p:").is_some());
    }

    #[test]
    fn return_urls_carrying_the_brokers_parameters_are_refused() {
        for bad in [
            "https://app.example.com/oauth/done?handoff=planted",
            "https://app.example.com/oauth/done?tab=2&state=planted",
            "https://app.example.com/oauth/done?ERROR=x",
            "https://app.example.com/oauth/done?aadsts=1",
            "https://app.example.com/oauth/done?st%61te=planted",
        ] {
            assert!(check(&allowed(), bad).is_none(), "accepted {bad:?}");
        }
        assert!(check(&allowed(), "https://app.example.com/oauth/done?statement=1&handoffs=2").is_some());
    }

    #[test]
    fn planted_parameters_never_reach_the_connector() {
        let base = Url::parse("https://app.example.com/done?handoff=planted&tab=2&State=x").unwrap();
        let u = with_params(&base, &[("handoff", "real"), ("state", "s")]);
        assert_eq!(u.as_str(), "https://app.example.com/done?tab=2&handoff=real&state=s");
        let only = Url::parse("https://app.example.com/done?state=x").unwrap();
        assert_eq!(
            with_params(&only, &[("handoff", "h")]).as_str(),
            "https://app.example.com/done?handoff=h"
        );
    }

    #[test]
    fn params_are_appended() {
        let base = Url::parse("https://app.example.com/done?tab=2").unwrap();
        let u = with_params(&base, &[("handoff", "h&1"), ("state", "s")]);
        assert_eq!(u.as_str(), "https://app.example.com/done?tab=2&handoff=h%261&state=s");
    }

    proptest::proptest! {
        #[test]
        fn never_accepts_other_hosts(s in "[a-z0-9:/@.%?#\\\\-]{0,60}") {
            if let Some(u) = check(&allowed(), &format!("https://{s}")) {
                proptest::prop_assert!(u.host_str() == Some("app.example.com"));
                proptest::prop_assert_eq!(u.path(), "/oauth/done");
            }
        }
    }
}
