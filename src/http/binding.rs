//! The browser-binding cookie on the wire (see `flow::binding` for why it exists).
//!
//! One random value per browser, reused by every start in it, so that sign-ins in two tabs do
//! not undo each other. On https the name carries the `__Host-` prefix: the browser then accepts
//! it only from this host, with `Secure` and `Path=/`, so a sibling subdomain cannot plant its
//! own value. `SameSite=Lax` still sends it on Entra's top-level redirect back to the callback.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use cookie::{Cookie, SameSite};

use crate::crypto::random_token;
use crate::flow::binding::Binding;

/// The cookie's name on https.
pub const SECURE_NAME: &str = "__Host-cb_browser";
/// The cookie's name on plain http (loopback only: development and tests).
pub const PLAIN_NAME: &str = "cb_browser";

/// A browser's binding cookie value.
pub struct BrowserCookie {
    value: String,
    secure: bool,
}

fn well_formed(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl BrowserCookie {
    /// The cookie the request carries, when it carries a well-formed one (the first, if several).
    pub fn read(headers: &HeaderMap, secure: bool) -> Option<Self> {
        let name = if secure { SECURE_NAME } else { PLAIN_NAME };
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|c| c.name() == name)
            .map(|c| c.value().to_string())
            .filter(|v| well_formed(v))
            .map(|value| Self { value, secure })
    }

    /// The request's cookie, or a fresh one for a browser that has none.
    pub fn read_or_new(headers: &HeaderMap, secure: bool) -> Self {
        Self::read(headers, secure).unwrap_or_else(|| Self {
            value: random_token(),
            secure,
        })
    }

    /// What flows and approval pages store of it.
    pub fn binding(&self) -> Binding {
        Binding::of(&self.value)
    }

    /// Sets (or re-sets, with a new lifetime) the cookie on `response`.
    pub fn set(&self, response: &mut Response, max_age: Duration) {
        let name = if self.secure { SECURE_NAME } else { PLAIN_NAME };
        let cookie = Cookie::build((name, self.value.as_str()))
            .http_only(true)
            .same_site(SameSite::Lax)
            .path("/")
            .secure(self.secure)
            .max_age(cookie::time::Duration::seconds(
                max_age.as_secs().min(i64::MAX as u64) as i64
            ))
            .build();
        if let Ok(v) = HeaderValue::from_str(&cookie.to_string()) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        h
    }

    #[test]
    fn reads_only_its_own_well_formed_cookie() {
        let v = "A".repeat(43);
        let c = BrowserCookie::read(&headers(&format!("other=1; cb_browser={v}")), false).unwrap();
        assert_eq!(c.binding(), Binding::of(&v));
        assert!(
            BrowserCookie::read(&headers(&format!("cb_browser={v}")), true).is_none(),
            "https wants the __Host- name"
        );
        assert!(BrowserCookie::read(&headers(&format!("__Host-cb_browser={v}")), true).is_some());
        for bad in [
            "cb_browser=short",
            "cb_browser=",
            "cb_browser=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3B",
            "nothing",
        ] {
            assert!(BrowserCookie::read(&headers(bad), false).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_browser_without_a_cookie_gets_a_fresh_one_with_every_attribute() {
        let c = BrowserCookie::read_or_new(&HeaderMap::new(), true);
        let mut r = Response::new(axum::body::Body::empty());
        c.set(&mut r, Duration::from_secs(600));
        let set = r.headers()[header::SET_COOKIE].to_str().unwrap().to_string();
        for part in [
            "__Host-cb_browser=",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            "Secure",
            "Max-Age=600",
        ] {
            assert!(set.contains(part), "{set} lacks {part}");
        }
        let again = BrowserCookie::read(&headers(set.split(';').next().unwrap()), true).unwrap();
        assert_eq!(again.binding(), c.binding(), "the same value comes back");
    }
}
