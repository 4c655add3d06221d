//! Fault injection (`POST /_sim/faults`): outages, throttling, dropped connections, latency, and bad
//! ID tokens, so the broker's resilience paths can be exercised deterministically.
//!
//! Faults are kept in insertion order; a request takes the first fault that matches it. Request-level
//! kinds are taken when the request arrives; `id_token_*` kinds are taken only when an ID token is
//! actually signed, so a failing token request does not use them up.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::conn::ConnHandle;
use crate::errors::AadError;
use crate::state::SimState;
use crate::stats::Endpoint;

/// Which endpoint a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultEndpoint {
    /// Every simulated Entra endpoint.
    #[default]
    Any,
    /// `/authorize`.
    Authorize,
    /// `/token`.
    Token,
    /// `/discovery/v2.0/keys`.
    Keys,
    /// `/.well-known/openid-configuration`.
    OpenidConfiguration,
    /// `/v2.0/adminconsent`.
    Adminconsent,
}

impl FaultEndpoint {
    fn matches(self, endpoint: Endpoint) -> bool {
        match self {
            FaultEndpoint::Any => true,
            FaultEndpoint::Authorize => endpoint == Endpoint::Authorize,
            FaultEndpoint::Token => endpoint == Endpoint::Token,
            FaultEndpoint::Keys => endpoint == Endpoint::Keys,
            FaultEndpoint::OpenidConfiguration => endpoint == Endpoint::OpenidConfiguration,
            FaultEndpoint::Adminconsent => endpoint == Endpoint::AdminConsent,
        }
    }
}

/// What the fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Sleep `latency_ms`, then answer normally.
    Latency,
    /// 503 `temporarily_unavailable` AADSTS90033.
    Unavailable,
    /// 500 `server_error` AADSTS90041.
    ServerError,
    /// 429 with `Retry-After` and a plain-text body.
    Throttle,
    /// Close the connection without any response.
    Drop,
    /// 400 `invalid_grant` AADSTS50196 (request loop): an answer about one client's request.
    LoopDetected,
    /// 200 with an HTML page instead of JSON (a proxy's or a sign-in page).
    Html,
    /// 200 `application/json` whose body is cut off halfway.
    TruncatedJson,
    /// A normal token answer without its `refresh_token` (token endpoint only).
    NoRefreshToken,
    /// A normal token answer whose `token_type` is `pop` (token endpoint only).
    WrongTokenType,
    /// Sign the ID token with a key that is not in the JWKS.
    IdTokenUnknownKey,
    /// Put another tenant's issuer in `iss` (while `tid` stays the user's tenant).
    IdTokenWrongTenant,
    /// Issue an ID token that expired an hour ago.
    IdTokenExpired,
}

impl FaultKind {
    fn is_id_token(self) -> bool {
        matches!(
            self,
            FaultKind::IdTokenUnknownKey | FaultKind::IdTokenWrongTenant | FaultKind::IdTokenExpired
        )
    }
}

/// A fault as posted to the control API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Endpoint filter.
    #[serde(default)]
    pub endpoint: FaultEndpoint,
    /// Only token requests with this `grant_type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_type: Option<String>,
    /// The effect.
    pub kind: FaultKind,
    /// For `latency`.
    #[serde(default)]
    pub latency_ms: u64,
    /// For `throttle`.
    #[serde(default = "default_retry_after")]
    pub retry_after_secs: u64,
    /// How many matching requests it affects; absent = until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

fn default_retry_after() -> u64 {
    5
}

impl FaultSpec {
    fn matches(&self, endpoint: Endpoint, grant_type: Option<&str>) -> bool {
        self.endpoint.matches(endpoint)
            && self
                .grant_type
                .as_deref()
                .is_none_or(|wanted| grant_type == Some(wanted))
    }
}

/// The active faults, in the order they were added.
#[derive(Debug, Default)]
pub struct Faults(Vec<FaultSpec>);

impl Faults {
    /// Adds a fault after the existing ones.
    pub fn add(&mut self, fault: FaultSpec) {
        if fault.count != Some(0) {
            self.0.push(fault);
        }
    }

    /// Removes every fault.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    fn take(&mut self, wanted: impl Fn(&FaultSpec) -> bool) -> Option<FaultSpec> {
        let index = self.0.iter().position(wanted)?;
        let fault = self.0[index].clone();
        if let Some(count) = &mut self.0[index].count {
            *count -= 1;
            if *count == 0 {
                self.0.remove(index);
            }
        }
        Some(fault)
    }

    /// Takes the first request-level fault matching this request.
    pub fn take_request_fault(&mut self, endpoint: Endpoint, grant_type: Option<&str>) -> Option<FaultSpec> {
        self.take(|f| !f.kind.is_id_token() && f.matches(endpoint, grant_type))
    }

    /// Takes the first ID-token fault matching a token request with this grant type.
    pub fn take_id_token_fault(&mut self, grant_type: &str) -> Option<FaultKind> {
        self.take(|f| f.kind.is_id_token() && f.matches(Endpoint::Token, Some(grant_type)))
            .map(|f| f.kind)
    }
}

/// What a request-level fault does to the request at hand.
pub enum FaultAction {
    /// No fault (or latency already served): handle normally.
    Proceed,
    /// Answer with this response instead.
    Respond(Response),
    /// Fail with this Entra error, rendered the endpoint's way.
    Fail(AadError),
    /// Handle normally, then alter the token answer this way (`no_refresh_token`, `wrong_token_type`).
    Alter(FaultKind),
}

/// Takes and applies the first matching request-level fault.
pub async fn apply(state: &SimState, endpoint: Endpoint, grant_type: Option<&str>, conn: &ConnHandle) -> FaultAction {
    let fault = state.faults().take_request_fault(endpoint, grant_type);
    let Some(fault) = fault else {
        return FaultAction::Proceed;
    };
    tracing::info!(endpoint = endpoint.name(), kind = ?fault.kind, "injecting fault");
    match fault.kind {
        FaultKind::Latency => {
            tokio::time::sleep(Duration::from_millis(fault.latency_ms)).await;
            FaultAction::Proceed
        }
        FaultKind::Unavailable => FaultAction::Fail(AadError::temporarily_unavailable()),
        FaultKind::ServerError => FaultAction::Fail(AadError::server_error()),
        FaultKind::Throttle => FaultAction::Respond(throttled(fault.retry_after_secs)),
        FaultKind::LoopDetected => FaultAction::Fail(AadError::request_loop()),
        FaultKind::Html => FaultAction::Respond(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                "<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body>Working...</body></html>",
            )
                .into_response(),
        ),
        FaultKind::TruncatedJson => FaultAction::Respond(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                r#"{"token_type":"Bearer","scope":"Files.Read","expires_in":3599,"access_tok"#,
            )
                .into_response(),
        ),
        kind @ (FaultKind::NoRefreshToken | FaultKind::WrongTokenType) => FaultAction::Alter(kind),
        FaultKind::Drop => {
            conn.kill();
            // Never written: the killed connection fails on the first write.
            FaultAction::Respond(StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        // Filtered out by `take_request_fault`.
        FaultKind::IdTokenUnknownKey | FaultKind::IdTokenWrongTenant | FaultKind::IdTokenExpired => {
            FaultAction::Proceed
        }
    }
}

/// 429 with `Retry-After: <secs>` and the plain-text body Entra sends when throttling.
pub fn throttled(retry_after_secs: u64) -> Response {
    let mut response = (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}
