//! Finding Entra's fields in pasted text: the forms a text may hide them in (URL-encoded,
//! JSON-escaped, HTML-escaped, or one inside the other), token-endpoint bodies embedded in log
//! lines, redirect queries, and codes in every way Entra and the tools around it print them.
//! Everything here is bounded by the input's length and never panics.

use std::sync::LazyLock;

use regex::Regex;

use super::errors::EntraError;

/// How many forms of one text are looked at (the text, decoded, and decoded twice).
const MAX_FORMS: usize = 6;

/// How many `{` before an `"error"` are tried as the start of a JSON body.
const MAX_JSON_STARTS: usize = 8;

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| unreachable!("{e}"))
}

static ERROR_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r#"(?i)(?:^|[^a-z_])error["']?\s*[:=]\s*["']?([a-z][a-z_]{2,40})"#));
static SUBERROR_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r#"(?i)(?:suberror|sub_error|error_subcode|classification)["']?\s*[:=]\s*["']?([a-z][a-z_]{2,40})"#)
});
static ERROR_CODES_RE: LazyLock<Regex> = LazyLock::new(|| re(r#"(?i)error_?codes["']?\s*[:=]\s*\[([\d,\s]{1,200})\]"#));
// "Error Code: 53003" (sign-in pages), "ErrorCode: 53003" (SDK logs), "error_code=53003",
// "Fehlercode: 53003" (German pages).
static LABELLED_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r#"(?i)(?:^|[^a-z_])(?:error|fehler)[ _-]?code["']?\s*[:=]?\s*["']?(\d{4,8})\b"#));
// "Code: 53003", "?code=65004" (Entra's error_uri): only near other evidence of Entra.
static LOOSE_RE: LazyLock<Regex> = LazyLock::new(|| re(r#"(?i)(?:^|[^a-z_])code["']?\s*[:=]\s*["']?(\d{4,8})\b"#));
// Entra's sign-in pages call the trace id "Request Id".
static REQUEST_ID_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r#"(?i)request[ _-]?id["']?\s*[:=]?\s*["']?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"#)
});

/// The forms of `text` worth scanning: as given, then URL-decoded, JSON-unescaped and
/// HTML-unescaped, and each of those decoded once more (a JSON body inside a query, a query inside
/// a JSON string). Identical forms are kept once.
pub fn forms(text: &str) -> Vec<String> {
    let mut out = vec![text.to_string()];
    let mut next = 0;
    while next < out.len() && out.len() < MAX_FORMS {
        // Only the given text and its first decodings are decoded again.
        if next > 3 {
            break;
        }
        let current = out[next].clone();
        for decoded in [
            url_decoded(&current),
            json_unescaped(&current),
            html_unescaped(&current),
        ]
        .into_iter()
        .flatten()
        {
            if out.len() < MAX_FORMS && !out.contains(&decoded) {
                out.push(decoded);
            }
        }
        next += 1;
    }
    out
}

fn url_decoded(text: &str) -> Option<String> {
    if !text.contains('%') && !text.contains('+') {
        return None;
    }
    // '&' is kept as text so that the whole string, not its parameters, is decoded.
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
    (decoded != text).then_some(decoded)
}

fn json_unescaped(text: &str) -> Option<String> {
    if !text.contains('\\') {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => out.push('\u{fffd}'),
                }
            }
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    (out != text).then_some(out)
}

fn html_unescaped(text: &str) -> Option<String> {
    if !text.contains("&#") && !text.contains("&quot;") && !text.contains("&amp;") && !text.contains("&apos;") {
        return None;
    }
    let out = text
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&apos;", "'")
        .replace("&#34;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    (out != text).then_some(out)
}

/// A token-endpoint body embedded anywhere in the text (a log line around it, text after it).
pub fn embedded_json(text: &str) -> Option<EntraError> {
    let mut starts: Vec<usize> = Vec::new();
    if let Some(first) = text.find('{') {
        starts.push(first);
    }
    for (at, _) in text.match_indices("\"error").take(MAX_JSON_STARTS) {
        if let Some(open) = text[..at].rfind('{')
            && !starts.contains(&open)
        {
            starts.push(open);
        }
    }
    starts.into_iter().find_map(|start| {
        serde_json::Deserializer::from_str(&text[start..])
            .into_iter::<EntraError>()
            .next()
            .and_then(Result::ok)
            .filter(|e| e.error.is_some() || !e.error_codes.is_empty() || e.error_description.is_some())
    })
}

/// The error parameters of a redirect URL or a bare query string in the text.
pub fn query_error(text: &str) -> Option<EntraError> {
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

/// An OAuth `error = value` written anywhere (log lines, exception texts).
pub fn oauth_error(text: &str) -> Option<String> {
    capture(&ERROR_RE, text).map(|e| e.to_ascii_lowercase())
}

/// A `suberror`, `error_subcode` or MSAL `classification` written anywhere.
pub fn suberror(text: &str) -> Option<String> {
    capture(&SUBERROR_RE, text).map(|e| e.to_ascii_lowercase())
}

/// The codes of an `error_codes: [..]` list.
pub fn error_codes_list(text: &str) -> Vec<u32> {
    capture(&ERROR_CODES_RE, text)
        .map(|list| list.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Codes after an "Error Code:" label (or `ErrorCode`, `error_code`, `Fehlercode`), in order.
pub fn labelled_codes(text: &str) -> Vec<u32> {
    numbers(&LABELLED_RE, text)
}

/// Codes after a bare "Code:" or `code=`, in order; only meaningful near Entra's wording.
pub fn loose_codes(text: &str) -> Vec<u32> {
    numbers(&LOOSE_RE, text)
}

fn numbers(re: &Regex, text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for cap in re.captures_iter(text) {
        if let Some(n) = cap.get(1).and_then(|m| m.as_str().parse::<u32>().ok())
            && !out.contains(&n)
        {
            out.push(n);
        }
    }
    out
}

/// The "Request Id" of a sign-in page (Entra's trace id).
pub fn request_id(text: &str) -> Option<String> {
    capture(&REQUEST_ID_RE, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_nested_encodings() {
        let f = forms("body=%7B%5C%22error%5C%22%3A%5C%22invalid_grant%5C%22%7D");
        assert!(f.iter().any(|v| v.contains(r#"{"error":"invalid_grant"}"#)), "{f:?}");
        assert!(forms("plain text").len() == 1);
        assert!(forms("it&#39;s &quot;x&quot;").iter().any(|v| v == "it's \"x\""));
        assert_eq!(json_unescaped(r#"a\u00e4\nb\"c\"\\"#), Some("aä\nb\"c\"\\".to_string()));
        assert_eq!(json_unescaped(r"bad \uZZ"), Some("bad \u{fffd}".to_string()));
        assert!(forms(&"%".repeat(100)).len() <= MAX_FORMS);
    }

    #[test]
    fn codes_in_every_label() {
        assert_eq!(labelled_codes("Error Code: 53003\nRequest Id: x"), vec![53003]);
        assert_eq!(
            labelled_codes("ErrorCode: 50105, errorCode\":7000222 error_code=65001"),
            vec![50105, 7000222, 65001]
        );
        assert_eq!(labelled_codes("Fehlercode: 53003"), vec![53003]);
        assert_eq!(labelled_codes("error code 404; errorCode: 1.5"), Vec::<u32>::new());
        assert!(labelled_codes("error_codes: [53003]").is_empty());
        assert_eq!(loose_codes("Code: 53003 and ?code=65004&x"), vec![53003, 65004]);
        assert!(loose_codes("code=0.AXoA1234 authcode: 12").is_empty());
        assert_eq!(error_codes_list(r#""error_codes":[50076, 50079]"#), vec![50076, 50079]);
    }

    #[test]
    fn json_bodies_after_and_among_other_text() {
        let e = embedded_json(
            r#"at 12:00 {"level":1} then {"error":"invalid_grant","error_codes":[70008]} trailing } junk"#,
        )
        .unwrap();
        assert_eq!(
            (e.error.as_deref(), e.error_codes),
            (Some("invalid_grant"), vec![70008])
        );
        assert!(embedded_json("{not json").is_none());
        assert!(embedded_json(r#"{"unrelated":true}"#).is_none());
    }
}
