//! The one place where errors become HTTP responses: JSON for the connector API, pages for
//! browsers. Internal details (store errors, Entra texts) go to the log, never to the client.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::api_types::{EntraRefusedBody, ErrorBody, ErrorCode, ReauthRequiredBody, RetryableErrorBody};
use super::i18n::{Lang, fill};
use super::pages::{self, PageContent};
use crate::entra::Category;
use crate::flow::FlowError;
use crate::store::StoreError;
use crate::tokens::TokenServiceError;

/// Retry-After for store outages: short, the store usually comes back quickly.
const STORE_RETRY_AFTER: Duration = Duration::from_secs(5);

/// An error answer of the connector API: `{"error": "<code>", "message": "...", ...}`.
#[derive(Debug)]
pub enum ApiError {
    /// Missing or wrong API key (401).
    Unauthorized,
    /// Not found, or not this connector's (404).
    NotFound,
    /// The body is larger than the broker accepts (413).
    TooLarge,
    /// Malformed input (400).
    BadRequest {
        /// Which 400.
        code: ErrorCode,
        /// Human text.
        message: String,
    },
    /// The connection needs a new sign-in (409).
    ReauthRequired {
        /// Category.
        category: Category,
        /// AADSTS code.
        aadsts: Option<u32>,
        /// URL that starts a new flow.
        reconnect_url: String,
    },
    /// Entra or the store is unavailable (503 with Retry-After).
    Unavailable {
        /// Which 503.
        code: ErrorCode,
        /// When to retry.
        retry_after: Duration,
        /// Human text.
        message: &'static str,
    },
    /// Over a rate limit (429 with Retry-After).
    RateLimited {
        /// When to retry.
        retry_after: Duration,
    },
    /// Entra refused for a reason the user cannot fix (502).
    Upstream {
        /// Category.
        category: Category,
        /// AADSTS code.
        aadsts: Option<u32>,
    },
}

impl ApiError {
    /// A 400 with a code and message.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error while serving the API");
        Self::Unavailable {
            code: ErrorCode::StoreUnavailable,
            retry_after: STORE_RETRY_AFTER,
            message: "the token store is temporarily unavailable",
        }
    }
}

impl From<crate::ratelimit::Limited> for ApiError {
    fn from(l: crate::ratelimit::Limited) -> Self {
        Self::RateLimited {
            retry_after: l.retry_after,
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::TooLarge;
        }
        Self::bad_request(
            ErrorCode::InvalidBody,
            format!("the request body is not valid: {}", e.body_text()),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::bad_request(
            ErrorCode::InvalidQuery,
            format!("the query string is not valid: {}", e.body_text()),
        )
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        Self::bad_request(
            ErrorCode::InvalidPath,
            format!("the path is not valid: {}", e.body_text()),
        )
    }
}

impl From<FlowError> for ApiError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::UnknownConnector | FlowError::UnknownSession => Self::NotFound,
            FlowError::ReturnUrlNotAllowed => Self::bad_request(
                ErrorCode::ReturnUrlNotAllowed,
                "return_url does not match any return URL registered for this connector",
            ),
            FlowError::InvalidParameter { .. } => Self::bad_request(ErrorCode::InvalidParameter, e.to_string()),
            FlowError::Store(s) => s.into(),
            FlowError::RateLimited { retry_after } => Self::RateLimited { retry_after },
            // Errors of the browser's steps (link, state, callback, Entra): the API's calls
            // (sessions, handoff, reconnect links) do not make them today, so one arriving here
            // is logged as unexpected and answered as a retryable 503.
            other @ (FlowError::SessionCompleted
            | FlowError::InvalidState
            | FlowError::OtherBrowser
            | FlowError::IdToken(_)
            | FlowError::EntraUnavailable { .. }
            | FlowError::EntraProtocol(_)) => {
                tracing::error!(error = %other, "unexpected flow error in the API");
                Self::Unavailable {
                    code: ErrorCode::Unavailable,
                    retry_after: STORE_RETRY_AFTER,
                    message: "the broker could not complete the request",
                }
            }
        }
    }
}

impl From<TokenServiceError> for ApiError {
    fn from(e: TokenServiceError) -> Self {
        match e {
            TokenServiceError::NotFound => Self::NotFound,
            TokenServiceError::Unavailable { retry_after } => Self::Unavailable {
                code: ErrorCode::EntraUnavailable,
                retry_after,
                message: "Microsoft Entra is unavailable or throttling and the cached token has expired",
            },
            TokenServiceError::RefreshInProgress { retry_after } => Self::Unavailable {
                code: ErrorCode::RefreshInProgress,
                retry_after,
                message: "another broker instance is refreshing this connection and the cached token has expired; retry shortly",
            },
            TokenServiceError::Upstream(c) => Self::Upstream {
                category: c.category,
                aadsts: c.primary_code(),
            },
            TokenServiceError::Store(s) => s.into(),
            // The caller adds the reconnect URL (it needs a new session); this is a fallback.
            TokenServiceError::ReauthRequired(r) => Self::ReauthRequired {
                category: r.category,
                aadsts: r.aadsts,
                reconnect_url: String::new(),
            },
        }
    }
}

/// The error bodies differ in shape, so each arm of the match below serializes its own.
fn json(body: impl serde::Serialize) -> Response {
    Json(body).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let plain = |error, message: &str| {
            json(ErrorBody {
                error,
                message: message.to_string(),
            })
        };
        let (status, body, retry_after) = match self {
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                plain(
                    ErrorCode::Unauthorized,
                    "a valid connector API key is required (Authorization: Bearer <key>)",
                ),
                None,
            ),
            Self::NotFound => (StatusCode::NOT_FOUND, plain(ErrorCode::NotFound, "no such resource"), None),
            Self::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                plain(
                    ErrorCode::BodyTooLarge,
                    "the request body is larger than the broker accepts",
                ),
                None,
            ),
            Self::BadRequest { code, message } => (
                StatusCode::BAD_REQUEST,
                json(ErrorBody { error: code, message }),
                None,
            ),
            Self::ReauthRequired {
                category,
                aadsts,
                reconnect_url,
            } => (
                StatusCode::CONFLICT,
                json(ReauthRequiredBody {
                    error: ErrorCode::ReauthRequired,
                    category,
                    aadsts,
                    message: "the connection can no longer be refreshed; the user must sign in again".into(),
                    reconnect_url,
                }),
                None,
            ),
            Self::Unavailable {
                code,
                retry_after,
                message,
            } => (
                StatusCode::SERVICE_UNAVAILABLE,
                json(RetryableErrorBody {
                    error: code,
                    message: message.into(),
                    retry_after: retry_after.as_secs(),
                }),
                Some(retry_after),
            ),
            Self::RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                json(RetryableErrorBody {
                    error: ErrorCode::RateLimited,
                    message: "too many requests; retry after the number of seconds in Retry-After".into(),
                    retry_after: retry_after.as_secs(),
                }),
                Some(retry_after),
            ),
            Self::Upstream { category, aadsts } => (
                StatusCode::BAD_GATEWAY,
                json(EntraRefusedBody {
                    error: ErrorCode::EntraRefused,
                    category,
                    aadsts,
                    message: "Microsoft Entra refused the refresh for a reason the user cannot fix; the operator has been told in the logs".into(),
                }),
                None,
            ),
        };
        let mut response = (status, body).into_response();
        if let Some(r) = retry_after
            && let Ok(v) = HeaderValue::from_str(&r.as_secs().max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

/// An error answer for a browser: a readable page with the right status.
#[derive(Debug)]
pub struct PageError {
    /// HTTP status.
    pub status: StatusCode,
    /// The page.
    pub content: PageContent,
    /// Retry-After, for 503s and 429s.
    pub retry_after: Option<Duration>,
}

impl From<QueryRejection> for PageError {
    fn from(_: QueryRejection) -> Self {
        FlowError::InvalidParameter {
            field: "query",
            message: "is not a valid query string",
        }
        .into()
    }
}

impl From<FlowError> for PageError {
    fn from(e: FlowError) -> Self {
        PageError::from_flow(e, Lang::En)
    }
}

impl PageError {
    /// The page for a flow error, in the reader's language.
    pub fn from_flow(e: FlowError, lang: Lang) -> Self {
        let (status, retry_after) = match &e {
            FlowError::UnknownConnector
            | FlowError::ReturnUrlNotAllowed
            | FlowError::InvalidParameter { .. }
            | FlowError::UnknownSession
            | FlowError::SessionCompleted
            | FlowError::InvalidState
            | FlowError::IdToken(_)
            | FlowError::OtherBrowser => (StatusCode::BAD_REQUEST, None),
            FlowError::EntraUnavailable { retry_after } => (StatusCode::SERVICE_UNAVAILABLE, Some(*retry_after)),
            FlowError::EntraProtocol(m) => {
                tracing::error!(error = %m, "unexpected answer from Entra");
                (StatusCode::BAD_GATEWAY, None)
            }
            FlowError::Store(s) => {
                tracing::error!(error = %s, "store error in a browser flow");
                (StatusCode::SERVICE_UNAVAILABLE, Some(STORE_RETRY_AFTER))
            }
            FlowError::RateLimited { retry_after } => (StatusCode::TOO_MANY_REQUESTS, Some(*retry_after)),
        };
        let t = lang.texts();
        let (title, text) = t.flow_errors.for_error(&e);
        // The sentence names only the parameter (a word of the link, the same in any language);
        // what is wrong with it, in the developers' English, goes to the support reference.
        let (detail, mut details) = match &e {
            FlowError::InvalidParameter { field, .. } => {
                (field.to_string(), vec![(t.label_detail.to_string(), e.to_string())])
            }
            _ => (String::new(), Vec::new()),
        };
        details.insert(
            0,
            (
                t.label_category.to_string(),
                super::approval::category_name(e.category(), lang),
            ),
        );
        PageError {
            status,
            content: PageContent {
                lang,
                back_button: true,
                details,
                ..PageContent::message(title, fill(text, &[("detail", &detail)]))
            },
            retry_after,
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let mut response = pages::render(self.status, &self.content);
        if let Some(r) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&r.as_secs().max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}
