//! The fuzz targets' bodies, in one place: the libFuzzer binaries in `fuzz_targets/` call them with
//! whatever the fuzzer makes, and the broker's stable test `tests/fuzz_corpus.rs` includes this
//! file (`#[path]`) and calls them with every committed corpus and regression input. Each body
//! panics when an invariant breaks, so a finding fails both the same way.
//!
//! Inputs are text with one field per line (see each function), so seeds are readable and
//! libFuzzer's mutations of one line rarely destroy the others.
//!
//! This file may use only what the broker's own dependencies offer (`consent_broker`, `url`,
//! `http`, `bytes`): the corpus test compiles it inside the broker's test suite.

use std::time::Duration;

use consent_broker::entra::client::{TokenError, token_answer};
use consent_broker::entra::resilience::{Answer, parse_retry_after};
use consent_broker::entra::{Classification, EntraError, classify};
use consent_broker::flow::CallbackParams;
use consent_broker::flow::return_url;
use url::Url;

/// A target's body: panics when an invariant breaks.
pub type Body = fn(&[u8]);

/// Every target: its name (the binary and the corpus directory) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("explain", explain),
    ("callback_params", callback_params),
    ("return_url", return_url),
    ("token_error_body", token_error_body),
    ("config", config),
];

/// Query parameters the broker appends to a return URL; a caller's own query must never be able
/// to stand in for them.
const BROKER_PARAMS: [&str; 4] = ["handoff", "state", "error", "aadsts"];

/// Compared without case: some frameworks read query names that way, so a return URL's `State`
/// may be refused or dropped just like `state`.
fn is_broker_param(name: &str) -> bool {
    BROKER_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p))
}

/// `POST /v1/explain`: any pasted text is explained and rendered without panicking, in English
/// and German; the explanation is the one its classification implies, both languages classify
/// alike, and the codes answered are distinct and appear in the text (or stand for its wording).
pub fn explain(data: &[u8]) {
    use consent_broker::entra::explain::{Explanation, explain_in, render_text};
    use consent_broker::http::i18n::Lang;

    let text = String::from_utf8_lossy(data);
    let explained = explain_in(&text, Lang::En);
    let rendered = render_text(&explained);
    assert!(
        rendered.contains(explained.classification.category.as_str()),
        "the rendering names the category: {rendered:?}"
    );
    let again = Explanation::from(explained.classification.clone());
    assert_eq!(
        again, explained,
        "who fixes it and the messages follow the classification"
    );
    let german = explain_in(&text, Lang::De);
    assert_eq!(
        german.classification, explained.classification,
        "the language changes only the words"
    );
    assert_eq!(german, Explanation::in_lang(explained.classification.clone(), Lang::De));
    let rendered = render_text(&german);
    assert!(
        rendered.contains(german.classification.category.as_str()),
        "{rendered:?}"
    );
    let codes = &explained.classification.aadsts;
    for (i, c) in codes.iter().enumerate() {
        assert!(!codes[..i].contains(c), "AADSTS{c} answered twice: {codes:?}");
    }
    if explained.classification.category == consent_broker::entra::Category::Unknown {
        assert!(
            codes
                .iter()
                .all(|c| consent_broker::entra::aadsts::resolve(*c).is_none()),
            "a known code answered unknown: {codes:?}"
        );
    }
}

/// `GET /v1/callback`'s query string: accepted exactly when no security parameter repeats or
/// exceeds its limit, and then carrying exactly the values sent. Kept from the first version of
/// this target: the same text as a return URL against a fixed allow-list.
pub fn callback_params(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = CallbackParams::parse(&text);

    // The contract, restated independently of the parser: (name, length limit).
    const LIMITS: [(&str, usize); 8] = [
        ("state", 512),
        ("code", 16_384),
        ("error", 256),
        ("error_description", 8_192),
        ("error_subcode", 256),
        ("suberror", 256),
        ("trace_id", 64),
        ("correlation_id", 64),
    ];
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(text.as_bytes()).into_owned().collect();
    let value = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let acceptable = LIMITS.iter().all(|(name, max)| {
        let mut values = pairs.iter().filter(|(k, _)| k == name);
        match (values.next(), values.next()) {
            (Some(_), Some(_)) => false,
            (Some((_, v)), None) => v.len() <= *max,
            (None, _) => true,
        }
    });
    match parsed {
        Ok(params) => {
            assert!(acceptable, "accepted a repeated or too long parameter: {text:?}");
            assert_eq!(params.state, value("state"));
            assert_eq!(params.code, value("code"));
            match params.error {
                Some(err) => {
                    assert_eq!(err.error, value("error"));
                    assert_eq!(err.error_description, value("error_description"));
                    assert_eq!(err.suberror, value("suberror"));
                    assert_eq!(err.error_subcode, value("error_subcode"));
                    assert_eq!(err.trace_id, value("trace_id"));
                    assert_eq!(err.correlation_id, value("correlation_id"));
                    check_classification(&err, &classify(&err));
                }
                None => assert!(value("error").is_none(), "an error parameter was dropped"),
            }
        }
        Err(_) => assert!(!acceptable, "refused an acceptable query: {text:?}"),
    }

    let allowed = [Url::parse("https://app.example.com/oauth/done").expect("static URL")];
    if let Some(u) = return_url::check(&allowed, &text) {
        assert_eq!(u.host_str(), Some("app.example.com"));
        assert_eq!(u.path(), "/oauth/done");
    }
}

/// Return-URL matching and the redirect built from it. Input lines: the candidate return URL,
/// the connector's `state`, then the allow-list entries (none: one default entry).
///
/// Invariants that hold whether or not a caller's query may carry the broker's own parameter
/// names (a change under way strips or refuses those): an accepted URL is exactly an entry plus
/// an optional query, and survives the round trip through the store; the redirect keeps it and
/// ends with the broker's parameters, in order, and keeps the caller's other parameters.
pub fn return_url(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let candidate = lines.next().unwrap_or("");
    let state = lines.next().filter(|s| is_connector_state(s));
    let mut allowed: Vec<Url> = lines
        .filter_map(|l| Url::parse(l).ok())
        // Config refuses entries with a query, fragment or credentials (src/config/connectors.rs); the
        // invariants below are about the entries a broker can actually run with.
        .filter(|u| u.query().is_none() && u.fragment().is_none() && u.username().is_empty() && u.password().is_none())
        .take(8)
        .collect();
    if allowed.is_empty() {
        allowed.push(Url::parse("https://app.example.com/oauth/done").expect("static URL"));
    }

    assert!(
        return_url::check(&[], candidate).is_none(),
        "an empty allow-list accepts nothing"
    );
    let Some(accepted) = return_url::check(&allowed, candidate) else {
        return;
    };
    assert!(!candidate.is_empty() && candidate.len() <= return_url::MAX_LEN);
    assert!(accepted.username().is_empty() && accepted.password().is_none());
    assert!(accepted.fragment().is_none(), "fragments are refused: {candidate:?}");
    let entry = allowed
        .iter()
        .find(|a| {
            a.scheme() == accepted.scheme()
                && a.host_str() == accepted.host_str()
                && a.port_or_known_default() == accepted.port_or_known_default()
                && a.path() == accepted.path()
                // `p:` and `p://` have equal parts: the entry is the one with the same text.
                && a[..url::Position::AfterPath] == accepted[..url::Position::AfterPath]
        })
        .unwrap_or_else(|| panic!("{candidate:?} accepted as {accepted} but matches no entry of {allowed:?}"));
    // What the browser is sent to starts with the registered URL itself.
    let serialized = accepted.as_str();
    let rest = serialized
        .strip_prefix(entry.as_str())
        .unwrap_or_else(|| panic!("{serialized:?} does not start with its entry {entry}"));
    assert!(
        rest.is_empty() || rest.starts_with('?'),
        "{serialized:?} adds {rest:?} to {entry}"
    );

    // The flow stores the URL as text and parses it again when it ends (flow/mod.rs).
    let base =
        Url::parse(serialized).unwrap_or_else(|e| panic!("stored return URL {serialized:?} no longer parses: {e}"));
    assert_eq!(base, accepted, "the stored return URL reads back differently");

    let code = "aadsts-code-65001";
    let handoff = "hc_3q2-7ZfKx_0bVYc";
    let mut completed = vec![("handoff", handoff)];
    let mut failed = vec![("error", "admin_approval_required"), ("aadsts", code)];
    if let Some(s) = state {
        completed.push(("state", s));
        failed.push(("state", s));
    }
    for params in [completed, failed] {
        check_redirect(&base, &params);
    }
}

/// What a connector may pass as `state` (flow/mod.rs `check_text`: 1-512 bytes, no control characters).
fn is_connector_state(s: &str) -> bool {
    !s.is_empty() && s.len() <= 512 && !s.chars().any(char::is_control)
}

fn check_redirect(base: &Url, params: &[(&str, &str)]) {
    let out = return_url::with_params(base, params);
    let reread = Url::parse(out.as_str()).unwrap_or_else(|e| panic!("redirect {out} does not parse: {e}"));
    assert_eq!(reread, out, "the redirect reads back differently");
    assert_eq!(
        (
            out.scheme(),
            out.host_str(),
            out.port_or_known_default(),
            out.path(),
            out.fragment()
        ),
        (
            base.scheme(),
            base.host_str(),
            base.port_or_known_default(),
            base.path(),
            base.fragment()
        ),
        "with_params changed more than the query of {base}"
    );
    assert!(out.username().is_empty() && out.password().is_none());

    let pairs: Vec<(String, String)> = reread.query_pairs().into_owned().collect();
    let n = params.len();
    assert!(pairs.len() >= n, "{out} lost parameters");
    let (own, ours) = pairs.split_at(pairs.len() - n);
    let expected: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(
        ours,
        expected.as_slice(),
        "the broker's parameters come last, in order, unaltered: {out}"
    );

    let callers: Vec<(String, String)> = base.query_pairs().into_owned().collect();
    let not_ours = |p: &&(String, String)| !is_broker_param(&p.0);
    assert_eq!(
        own.iter().filter(not_ours).collect::<Vec<_>>(),
        callers.iter().filter(not_ours).collect::<Vec<_>>(),
        "the caller's own parameters are kept, in order: {out}"
    );
    if !callers.iter().any(|(k, _)| is_broker_param(k)) {
        for (k, _) in params {
            let times = pairs.iter().filter(|(name, _)| name == k).count();
            assert_eq!(times, 1, "{k} appears {times} times in {out}");
        }
    }
}

/// The token endpoint's answer, as HTTP: the status on the first line, then header lines
/// (`Retry-After` is the one the broker reads), an empty line, and the body (any bytes).
///
/// Every answer maps to tokens or to the error kind its status implies, never a panic, and the
/// error body (when there is one) classifies without panicking.
pub fn token_error_body(data: &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n');
    let Some(status) = lines
        .next()
        .and_then(|l| l.trim().parse::<u16>().ok())
        .and_then(|s| http::StatusCode::from_u16(s).ok())
    else {
        // reqwest never hands the broker a status outside 100-999.
        return;
    };
    let retry_after_header = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("retry-after"))
        .and_then(|(_, value)| http::HeaderValue::from_bytes(value.trim().as_bytes()).ok());
    let retry_after = parse_retry_after(retry_after_header.as_ref());
    if let Some(r) = retry_after {
        assert!(
            r <= Duration::from_secs(3_600),
            "Retry-After is capped at an hour: {r:?}"
        );
    }
    let answer = Answer {
        status,
        retry_after,
        body: bytes::Bytes::copy_from_slice(body),
    };
    let error_body = answer.error();
    if let Some(e) = &error_body {
        assert_eq!(e.http_status, Some(status.as_u16()));
        check_classification(e, &classify(e));
    }

    let result = token_answer(&answer);
    if let Err(e) = &result {
        assert!(!e.to_string().is_empty());
        let _ = e.entra_ids();
    }
    let throttled_or_down = status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
    match result {
        Ok(tokens) => {
            assert!(status.is_success(), "tokens from a {status} answer");
            let _ = tokens.expires_in;
        }
        Err(TokenError::Rejected(e)) => {
            assert!(
                !status.is_success() && !throttled_or_down,
                "{status} answer taken as a refusal"
            );
            assert!(e.error.is_some(), "a refusal names Entra's OAuth error");
            assert_eq!(e.http_status, Some(status.as_u16()));
        }
        Err(TokenError::Unavailable {
            retry_after: r, error, ..
        }) => {
            assert!(
                !status.is_success(),
                "a {status} answer taken as Entra being unavailable"
            );
            assert_eq!(r, retry_after, "the Retry-After Entra sent is passed on");
            assert_eq!(
                error.is_some(),
                error_body.is_some(),
                "the error body is kept for its trace ids"
            );
        }
        Err(TokenError::Protocol(_)) => {
            assert!(
                !throttled_or_down,
                "a {status} answer is Entra being unavailable, not a protocol error"
            );
            if !status.is_success() {
                assert!(
                    error_body.as_ref().is_none_or(|e| e.error.is_none()),
                    "an OAuth error body was not taken as a refusal"
                );
            }
        }
        Err(TokenError::Credential(m)) => panic!("no credential is built from an answer: {m}"),
    }
}

/// What every classification must satisfy, whatever the error says.
fn check_classification(err: &EntraError, c: &Classification) {
    for code in &err.error_codes {
        assert!(
            c.aadsts.contains(code),
            "error_codes {code} missing from {:?}",
            c.aadsts
        );
    }
    let mut seen = c.aadsts.clone();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), c.aadsts.len(), "codes without duplicates: {:?}", c.aadsts);
    assert_eq!(c.primary_code(), c.aadsts.first().copied());
    assert!(!c.user_message().is_empty() && !c.admin_message().is_empty());
    let _ = c.who_fixes();
}

/// A config file's text: it loads or fails with an error naming the file, never panics, and a
/// config that loads keeps the promises `config/example.toml` makes about URLs.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Secret and key files named in the text are read: keep the fuzzer away from device and
    // kernel files, whose reads may block or never end; they say nothing about the parser.
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    let name = "fuzz.toml";
    let config = match consent_broker::config::Config::from_toml_str(text, name) {
        Ok(c) => c,
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.starts_with("fuzz.toml: "),
                "the error names the file: {message:?}"
            );
            return;
        }
    };
    let public = &config.public_url;
    assert!(
        public.scheme() == "https" || consent_broker::config::is_loopback_url(public),
        "{public}"
    );
    assert!(public.query().is_none() && public.fragment().is_none() && public.username().is_empty());
    let mut ids = std::collections::HashSet::new();
    for c in &config.connectors {
        assert!(ids.insert(c.id.as_str()), "duplicate connector id {:?}", c.id);
        for u in &c.return_urls {
            assert!(
                u.scheme() == "https" || (u.scheme() == "http" && consent_broker::config::is_loopback_url(u)),
                "return URL {u} of {:?}",
                c.id
            );
            assert!(u.query().is_none() && u.fragment().is_none() && u.username().is_empty() && u.password().is_none());
        }
    }
}
