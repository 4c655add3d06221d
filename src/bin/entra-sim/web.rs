//! Small HTTP helpers: parameter parsing, Entra-style URL encoding, redirect delivery by response mode.

use std::collections::HashMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Parsed `application/x-www-form-urlencoded` parameters; the first occurrence of a name wins.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Parses a query string or form body. Fails on bytes that are not valid form encoding.
    pub fn parse(raw: &[u8]) -> Result<Self, ()> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(raw).map_err(|_| ())?;
        let mut map = HashMap::with_capacity(pairs.len());
        for (key, value) in pairs {
            map.entry(key).or_insert(value);
        }
        Ok(Self(map))
    }

    /// The value of `name`, if present and not blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.trim().is_empty())
    }
}

/// Encodes one value like Entra's redirects: `+` for spaces and lower-case percent escapes
/// (`%3a`, `%2f`, `%0d%0a`), keeping .NET's unreserved set.
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3 / 2);
    for byte in value.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'!' | b'*' | b'(' | b')' => {
                out.push(char::from(byte))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02x}")),
        }
    }
    out
}

/// Joins parameters as `k=v&k=v` with [`form_encode`].
pub fn encode_pairs(params: &[(&str, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Decodes one `application/x-www-form-urlencoded` component (for HTTP Basic client credentials,
/// which RFC 6749 §2.3.1 says are form-encoded before base64). Invalid escapes are kept verbatim.
pub fn form_decode(component: &str) -> String {
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).and_then(|v| u8::try_from(v).ok())
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// How `/authorize` returns its result to the app (`response_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    /// `?code=…` on the redirect URI (default for the code flow).
    Query,
    /// `#code=…`.
    Fragment,
    /// An auto-submitting HTML form POSTed to the redirect URI.
    FormPost,
}

impl ResponseMode {
    /// Parses `response_mode`; `None` (absent) means query.
    pub fn parse(raw: Option<&str>) -> Result<Self, String> {
        match raw {
            None | Some("query") => Ok(Self::Query),
            Some("fragment") => Ok(Self::Fragment),
            Some("form_post") => Ok(Self::FormPost),
            Some(other) => Err(other.to_string()),
        }
    }
}

/// Sends `params` to `redirect_uri` the way `mode` says; query/fragment use a 302 like Entra.
pub fn deliver(redirect_uri: &str, mode: ResponseMode, params: &[(&str, String)]) -> Response {
    deliver_with_suffix(redirect_uri, mode, params, "")
}

/// Like [`deliver`], appending `suffix` to a query-mode `Location` (Entra sometimes appends a bare `#`).
pub fn deliver_with_suffix(
    redirect_uri: &str,
    mode: ResponseMode,
    params: &[(&str, String)],
    suffix: &str,
) -> Response {
    match mode {
        ResponseMode::Query => {
            let separator = if redirect_uri.contains('?') { '&' } else { '?' };
            found(&format!("{redirect_uri}{separator}{}{suffix}", encode_pairs(params)))
        }
        ResponseMode::Fragment => found(&format!("{redirect_uri}#{}", encode_pairs(params))),
        ResponseMode::FormPost => {
            let inputs: String = params
                .iter()
                .map(|(k, v)| {
                    format!(
                        "<input type=\"hidden\" name=\"{}\" value=\"{}\" />",
                        html_escape(k),
                        html_escape(v)
                    )
                })
                .collect();
            let html = format!(
                "<html><head><title>Working...</title></head><body>\
<form method=\"POST\" name=\"hiddenform\" action=\"{}\">{inputs}\
<noscript><p>Script is disabled. Click Submit to continue.</p><input type=\"submit\" value=\"Submit\" /></noscript>\
</form><script language=\"javascript\">document.forms[0].submit();</script></body></html>",
                html_escape(redirect_uri)
            );
            let mut response = (StatusCode::OK, html).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
    }
}

fn found(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => {
            let mut response = StatusCode::FOUND.into_response();
            response.headers_mut().insert(header::LOCATION, value);
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store, no-cache"));
            response
        }
        // Only reachable if a registered redirect URI holds characters a header cannot carry.
        Err(_) => (StatusCode::BAD_REQUEST, "invalid redirect URI").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_entra() {
        assert_eq!(form_encode("AADSTS1: a/b\r\nc"), "AADSTS1%3a+a%2fb%0d%0ac");
    }

    #[test]
    fn decodes_form_components() {
        assert_eq!(form_decode("a%2Bb+c%7e"), "a+b c~");
        assert_eq!(form_decode("100%"), "100%");
        assert_eq!(form_decode("%zz"), "%zz");
    }
}
