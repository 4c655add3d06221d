//! Browsers get pages, programs get JSON: an error answer that is not a page (the API's JSON, or
//! the router's bare 405 and the body limit's plain text) to a request that asks for HTML (a
//! browser's navigation sends `Accept: text/html,...`) is replaced by a readable page with the same
//! status and `Retry-After`. Requests that do not ask for HTML, which is every API client, probe
//! and the approval page's own status poll, get the answer unchanged.

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;

use super::i18n::Lang;
use super::pages::{self, PageContent};

/// Whether the request is a browser navigating: a GET (or HEAD) without credentials that asks
/// for HTML. API calls carry `Authorization` and keep their JSON even when their HTTP library
/// sends a browser-like `Accept` (Java's default one names `text/html`), and so do POSTs.
pub fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    matches!(*method, Method::GET | Method::HEAD) && !headers.contains_key(header::AUTHORIZATION) && wants_html(headers)
}

/// Whether the request asks for HTML, not JSON.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let mut pieces = part.trim().split(';');
            let kind = pieces.next().unwrap_or("").trim();
            // `text/html;q=0` is a refusal, not a request.
            let refused = pieces.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            kind.eq_ignore_ascii_case("text/html") && !refused
        })
}

fn is_page(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}

/// What a request's error answer becomes: taken before the request is served (the headers are
/// gone after), applied to its answer by the one middleware in front of every route
/// ([`super::observe::record`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorPages {
    html: bool,
    lang: Lang,
}

impl ErrorPages {
    /// For a request that is a browser's navigation (`html`, see [`is_navigation`]) or not.
    pub(crate) fn new(html: bool, lang: Lang) -> Self {
        Self { html, lang }
    }

    /// `response`, or the readable page that replaces it (see the module's comment).
    pub(crate) fn apply(self, response: Response) -> Response {
        let status = response.status();
        if !self.html || !(status.is_client_error() || status.is_server_error()) || is_page(&response) {
            return response;
        }
        let t = self.lang.texts();
        let (message, back) = match status {
            StatusCode::NOT_FOUND => (t.page_not_found, true),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => (t.service_busy, false),
            _ => (t.api_address, true),
        };
        let mut content = PageContent {
            lang: self.lang,
            ..PageContent::message(message.0, message.1)
        };
        content.back_button = back;
        let mut page = pages::render(status, &content);
        // What a browser needs of the original answer: when to retry, and how to authenticate.
        for name in [header::RETRY_AFTER, header::WWW_AUTHENTICATE, header::ALLOW] {
            if let Some(v) = response.headers().get(&name) {
                page.headers_mut().insert(name, v.clone());
            }
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, v.parse().unwrap());
        h
    }

    #[test]
    fn only_requests_that_ask_for_html_are_browsers() {
        assert!(wants_html(&accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )));
        assert!(wants_html(&accept("TEXT/HTML")));
        assert!(!wants_html(&accept("application/json")));
        assert!(!wants_html(&accept("*/*")));
        assert!(!wants_html(&accept("application/json, text/html;q=0")));
        assert!(!wants_html(&HeaderMap::new()));
    }

    #[test]
    fn api_calls_are_never_navigations_whatever_they_accept() {
        let java = accept("text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2");
        assert!(is_navigation(&Method::GET, &java));
        assert!(!is_navigation(&Method::POST, &java), "a POST is a program's");
        let mut with_key = java.clone();
        with_key.insert(header::AUTHORIZATION, "Bearer k".parse().unwrap());
        assert!(
            !is_navigation(&Method::GET, &with_key),
            "a call with credentials is a program's"
        );
    }
}
