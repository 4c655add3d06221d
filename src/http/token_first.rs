//! The token call, served before axum's router.
//!
//! `GET /v1/connections/{connection_id}/token` is the broker's hot path: every data load of a
//! connector starts with it. Through axum's router each call also paid for the route match, a
//! table of path parameters and a clone of three boxed services (the route, the middleware
//! layered on it and the handler), which a profile under load put at about a tenth of a warm
//! token call. [`TokenFirst`] answers the plain form of the call itself, through the same
//! middleware ([`observe::observed`]), extractors and handler ([`api::token`]) in the same order,
//! and hands every other request to the router untouched: other paths, other methods (`HEAD`
//! included), and ids with anything but unreserved URL characters (a `%` escape, say), whose
//! decoding and errors stay the router's own.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::HttpBody as _;
use axum::extract::{FromRequestParts as _, Query, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse as _, Response};
use tower::Service;

use super::api::{self, ApiPath, ApiQuery, Caller};
use super::api_types::TokenQuery;
use super::error::ApiError;
use super::observe::{self, TOKEN_ROUTE};
use crate::app::AppState;
use crate::ids::ConnectionId;

/// The broker's service: the token call first, then axum's router for everything else.
#[derive(Clone)]
pub(crate) struct TokenFirst {
    state: AppState,
    routes: Router,
}

impl TokenFirst {
    /// Serves token calls from `state` and the rest through `routes`.
    pub(crate) fn new(state: AppState, routes: Router) -> Self {
        Self { state, routes }
    }
}

impl Service<Request> for TokenFirst {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Neither side ever waits: the router is always ready, and so is the token call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match plain_token_call(&req) {
            Some(id) => {
                let state = self.state.clone();
                Box::pin(async move { Ok(serve(state, req, id).await) })
            }
            None => Box::pin(self.routes.call(req)),
        }
    }
}

/// The connection id of a plain token call: `GET`, exactly the route's path, and an id of
/// unreserved characters only (RFC 3986: letters, digits, `-`, `.`, `_`, `~`), which no decoding
/// changes. Anything else is the router's.
fn plain_token_call(req: &Request) -> Option<ConnectionId> {
    if req.method() != Method::GET {
        return None;
    }
    let (prefix, suffix) = TOKEN_ROUTE.split_once("{connection_id}")?;
    let id = req.uri().path().strip_prefix(prefix)?.strip_suffix(suffix)?;
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    (!id.is_empty() && id.bytes().all(unreserved)).then(|| ConnectionId::from(id))
}

/// The token call, observed like every request.
async fn serve(state: AppState, req: Request, id: ConnectionId) -> Response {
    let observing = state.clone();
    let mut answer = observe::observed(&observing, TOKEN_ROUTE, req, |req| token_call(state, req, id)).await;
    // As axum's router does for a body of known length, around its routes' layers (so also for
    // an error page that replaced the body): hyper would too on the wire; this keeps the answers
    // equal to the router's.
    if let Some(len) = answer.body().size_hint().exact()
        && !answer.headers().contains_key(header::CONTENT_LENGTH)
    {
        answer
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    answer
}

/// The route's extractors in the handler's order (the key, then the query: an unauthenticated
/// caller learns nothing about its query), then the handler.
async fn token_call(state: AppState, req: Request, id: ConnectionId) -> Response {
    // The body is dropped here, as axum drops an unread one, not held through a refresh.
    let (mut parts, _) = req.into_parts();
    let caller = match Caller::from_request_parts(&mut parts, &state).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let query = match Query::<TokenQuery>::try_from_uri(&parts.uri) {
        Ok(Query(q)) => q,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match api::token(State(state), caller, ApiPath(id), ApiQuery(query)).await {
        Ok(answer) => answer,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    fn request(method: &str, uri: &str) -> Request {
        axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn takes_plain_token_calls_only() {
        for (uri, id) in [
            ("/v1/connections/conn_abc/token", "conn_abc"),
            ("/v1/connections/conn_abc/token?min_ttl=60", "conn_abc"),
            ("/v1/connections/a-b.c_d~e/token", "a-b.c_d~e"),
            // What the router makes of these is the same id (a 404 for the caller).
            ("/v1/connections/../token", ".."),
        ] {
            assert_eq!(
                plain_token_call(&request("GET", uri))
                    .as_ref()
                    .map(ConnectionId::as_str),
                Some(id),
                "{uri}"
            );
        }
        for (method, uri) in [
            ("HEAD", "/v1/connections/conn_abc/token"),
            ("POST", "/v1/connections/conn_abc/token"),
            ("DELETE", "/v1/connections/conn_abc/token"),
            ("GET", "/v1/connections/conn_abc"),
            ("GET", "/v1/connections//token"),
            ("GET", "/v1/connections/conn_abc/token/"),
            ("GET", "/v1/connections/a/b/token"),
            ("GET", "/v1/connections/conn%5Fabc/token"),
            ("GET", "/v1/connections/conn%2Fabc/token"),
            ("GET", "/v1/connections/%FF/token"),
            ("GET", "/v1/connections/conn+abc/token"),
            ("GET", "/v2/connections/conn_abc/token"),
            ("GET", "//v1/connections/conn_abc/token"),
        ] {
            assert!(plain_token_call(&request(method, uri)).is_none(), "{method} {uri}");
        }
    }

    #[test]
    fn the_token_route_has_nothing_the_call_served_first_would_skip() {
        let route = super::super::ROUTES
            .iter()
            .find(|r| r.path == TOKEN_ROUTE)
            .expect("the token route is in ROUTES");
        // A per-IP limit (or any route layer) on it would apply through the router only.
        assert!(!route.per_ip_limit, "give token_first.rs the same limit");
    }
}
