//! Per-request observation: a request id on every log line of a request (and in the response),
//! an access-log line, and HTTP request counts and latency by route and status.

use std::future::Future;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::i18n::Lang;
use super::limits;
use super::negotiate::{self, ErrorPages};
use crate::app::AppState;
use crate::config::LogConfig;
use crate::metrics::method_label;

/// The header a request id is taken from and returned in.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    /// The id of the request being served, for the support reference on its pages.
    static CURRENT: String;
}

/// The id of the request this task is serving (outside a request: none).
pub fn current_request_id() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Longest incoming `x-request-id` adopted; longer ones are replaced (they end up in every log line).
const MAX_REQUEST_ID: usize = 128;

/// The request's id: the caller's `x-request-id` when it is short printable ASCII without
/// spaces (anything else could forge or break log lines), else the trace id of a W3C
/// `traceparent`, else a fresh random one.
pub fn request_id(headers: &HeaderMap) -> String {
    if let Some(id) = headers.get(&REQUEST_ID).and_then(|v| v.to_str().ok())
        && !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        return id.to_string();
    }
    if let Some(trace_id) = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(traceparent_trace_id)
    {
        return trace_id.to_string();
    }
    // Shaped like a W3C trace id, so it can be searched for alongside propagated ones.
    uuid::Uuid::new_v4().simple().to_string()
}

/// The trace id of a version-00 `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), unless all zero.
fn traceparent_trace_id(value: &str) -> Option<&str> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let valid = version == "00"
        && parts.next().is_none()
        && hex(trace_id, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace_id.bytes().any(|b| b != b'0');
    valid.then_some(trace_id)
}

/// The one middleware in front of every route of axum's router (one, not a stack of them: each
/// layer of axum's `from_fn` boxes and clones the service below it on every request, which showed
/// in the token call's profile): [`observed`] under the route template axum matched
/// (`/v1/connections/{connection_id}`, never the concrete path, which carries ids and tokens), or
/// `unmatched`.
pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // A clone of the matched path shares its text (no copy per request).
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    observed(&state, route, req, |req| next.run(req)).await
}

/// Serves `req` with `serve` the way every request is served: inside a span carrying its id,
/// route and method (so every log line of the request names them), within the request timeout
/// ([`limits::within_request_timeout`]); then turns an error answer to a browser into a page
/// ([`ErrorPages`]), adds the security headers ([`super::add_security_headers`]), returns the id
/// in `x-request-id`, logs one access line, and counts and times the request under `route`.
/// Used by [`record`] for the router's routes and by [`super::token_first`] for the token call.
pub(crate) async fn observed<F>(
    state: &AppState,
    route: &str,
    req: Request,
    serve: impl FnOnce(Request) -> F,
) -> Response
where
    F: Future<Output = Response>,
{
    let start = Instant::now();
    let method = method_label(req.method());
    let id = request_id(req.headers());
    let timeout_page = limits::times_out_as_page(req.headers());
    let html = negotiate::is_navigation(req.method(), req.headers());
    // Only pages are in a language; API callers rarely send Accept-Language anyway.
    let lang = if timeout_page || html {
        Lang::from_headers(req.headers())
    } else {
        Lang::default()
    };
    let pages = ErrorPages::new(html, lang);
    let span = tracing::info_span!("request", request_id = %id, method, route = %route);
    let serve = async {
        let response =
            limits::within_request_timeout(state.config.http.request_timeout, timeout_page, lang, serve(req)).await;
        // Inside the span and the request id's scope, so the pages it makes carry the id.
        pages.apply(response)
    };
    let mut response = CURRENT.scope(id.clone(), serve.instrument(span.clone())).await;
    let status = response.status().as_u16();
    let elapsed = start.elapsed();
    state.metrics.http_request(method, route, status, elapsed);
    span.in_scope(|| {
        let ms = elapsed.as_secs_f64() * 1_000.0;
        if quiet_when_answered(&state.config.log, route, status) {
            tracing::debug!(status, ms, "request answered");
        } else {
            tracing::info!(status, ms, "request answered");
        }
    });
    let headers = response.headers_mut();
    // Room for the headers added below, at once: growing the map for them one by one cost more
    // than writing them.
    headers.reserve(ADDED_HEADERS);
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID.clone(), v);
    }
    super::add_security_headers(headers, state.config.tls.is_some());
    response
}

/// Headers [`observed`] adds to an answer: the security headers, HSTS and the request id. A
/// handler that builds its own header map makes room for these besides its own.
pub(crate) const ADDED_HEADERS: usize = super::SECURITY_HEADER_COUNT + 2;

/// The token route's template, whose successful answers are the broker's hot path.
pub(crate) const TOKEN_ROUTE: &str = "/v1/connections/{connection_id}/token";

/// Whether a request's access line is at debug rather than info: probes and scrapes (they would
/// drown everything else), and successful token calls unless `[log] successful_token_calls`
/// asks for them (a connector's every data load makes one; they are counted in
/// `consent_broker_token_requests_total`, and a failed one is still logged at info).
fn quiet_when_answered(log: &LogConfig, route: &str, status: u16) -> bool {
    match route {
        "/healthz" | "/readyz" | "/metrics" | "/assets/approval.js" | "/assets/broker.css" => true,
        TOKEN_ROUTE => (200..300).contains(&status) && !log.successful_token_calls,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn adopts_a_sane_request_id() {
        assert_eq!(request_id(&headers(&[("x-request-id", "abc-123_X.y")])), "abc-123_X.y");
    }

    #[test]
    fn replaces_request_ids_that_could_forge_log_lines() {
        for bad in ["with space", "quote\"d", "", &"x".repeat(129), "ctl\u{7f}"] {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(bad) {
                h.insert(REQUEST_ID.clone(), v);
            }
            let id = request_id(&h);
            assert_ne!(id, bad);
            assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
    }

    #[test]
    fn falls_back_to_the_traceparent_trace_id() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            request_id(&headers(&[("traceparent", tp)])),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        // x-request-id wins over traceparent.
        assert_eq!(
            request_id(&headers(&[("traceparent", tp), ("x-request-id", "r1")])),
            "r1"
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_ne!(
                request_id(&headers(&[("traceparent", bad)])),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
        }
    }
}
