//! Entra's error model (entra.md §1.4, §2.4, §2.6): an OAuth `error` string, one or more AADSTS codes,
//! a developer text, optional `suberror`/`claims`, and the per-request trace trailer. One value renders
//! three ways: token-endpoint JSON, redirect parameters, or the "Sorry, but we're having trouble
//! signing you in" page.
//!
//! Texts follow the observed Entra wording where entra.md quotes it. Where it does not, the text is
//! written in Entra's style and the comment says so.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use time::OffsetDateTime;
use time::macros::format_description;
use uuid::Uuid;

use crate::web::html_escape;

// The constructors (the data); this file renders what they build.
mod catalog;

/// The per-request identifiers Entra prints in every error.
#[derive(Debug, Clone)]
pub struct Trace {
    /// `trace_id` / `x-ms-request-id` / "Trace ID".
    pub trace_id: Uuid,
    /// `correlation_id`; echoes the client's `client-request-id` when it is a GUID.
    pub correlation_id: Uuid,
    /// Whether the correlation id came from the client (then it is echoed as a header too).
    pub correlation_from_client: bool,
    /// Time of the request on the simulator's clock.
    pub at: OffsetDateTime,
}

impl Trace {
    /// Starts a trace for a request received at `at`.
    pub fn new(at: OffsetDateTime, client_request_id: Option<&str>) -> Self {
        let client_id = client_request_id.and_then(|raw| Uuid::parse_str(raw.trim()).ok());
        Self {
            trace_id: Uuid::new_v4(),
            correlation_id: client_id.unwrap_or_else(Uuid::new_v4),
            correlation_from_client: client_id.is_some(),
            at,
        }
    }

    /// `YYYY-MM-DD HH:MM:SSZ`, the format of `timestamp` and the description trailer.
    pub fn timestamp(&self) -> String {
        format_timestamp(self.at)
    }
}

/// Formats an instant as Entra's `YYYY-MM-DD HH:MM:SSZ`.
pub fn format_timestamp(at: OffsetDateTime) -> String {
    let utc = at.to_offset(time::UtcOffset::UTC);
    utc.format(format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z"))
        .unwrap_or_default()
}

/// Formats an instant like the ISO timestamps inside 700082/50173 texts (`2020-02-26T21:52:54.2810613Z`).
fn format_iso(at: OffsetDateTime) -> String {
    let utc = at.to_offset(time::UtcOffset::UTC);
    utc.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:7]Z"
    ))
    .unwrap_or_default()
}

/// Formats a key credential's date the way Entra prints "Found key 'Start=…, End=…'"
/// (`02/07/2021 17:00:39`).
fn format_key_date(at: OffsetDateTime) -> String {
    let utc = at.to_offset(time::UtcOffset::UTC);
    utc.format(format_description!("[month]/[day]/[year] [hour]:[minute]:[second]"))
        .unwrap_or_default()
}

/// Which endpoint an outcome is reported on; several conditions use different `error` values there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `/authorize` and `/adminconsent` redirects.
    Authorize,
    /// `/token` JSON.
    Token,
}

/// An Entra error, ready to be rendered.
#[derive(Debug, Clone)]
pub struct AadError {
    /// HTTP status when rendered as JSON.
    pub status: StatusCode,
    /// OAuth `error`.
    pub error: &'static str,
    /// `error_codes`; several when Entra chains codes.
    pub codes: Vec<u32>,
    /// First line of `error_description`: `AADSTS<n>: <text>` (possibly chained).
    pub text: String,
    /// `suberror` (token endpoint).
    pub suberror: Option<&'static str>,
    /// `claims` challenge (token endpoint).
    pub claims: Option<Box<str>>,
    /// `error_subcode=cancel` on redirects: the user backed out.
    pub cancelled: bool,
}

impl AadError {
    fn new(status: StatusCode, error: &'static str, code: u32, text: impl AsRef<str>) -> Self {
        Self {
            status,
            error,
            codes: vec![code],
            text: format!("AADSTS{code}: {}", text.as_ref()),
            suberror: None,
            claims: None,
            cancelled: false,
        }
    }

    fn bad_request(error: &'static str, code: u32, text: impl AsRef<str>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, code, text)
    }

    /// Appends a wrapped code, as in `AADSTS70002: Error validating credentials. AADSTS50011: …`.
    fn chain(mut self, code: u32, text: impl AsRef<str>) -> Self {
        self.codes.push(code);
        self.text = format!("{} AADSTS{code}: {}", self.text, text.as_ref());
        self
    }

    fn suberror(mut self, suberror: &'static str) -> Self {
        self.suberror = Some(suberror);
        self
    }

    fn subcode_cancel(mut self) -> Self {
        self.cancelled = true;
        self
    }

    /// The first AADSTS code (what MSAL calls `errorNo`).
    pub fn code(&self) -> u32 {
        self.codes.first().copied().unwrap_or_default()
    }

    /// `error_description`: the text plus the CRLF-separated trace trailer.
    pub fn description(&self, trace: &Trace) -> String {
        format!(
            "{}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
            self.text,
            trace.trace_id,
            trace.correlation_id,
            trace.timestamp()
        )
    }

    /// `error_uri` for the first code.
    pub fn error_uri(&self) -> String {
        format!("https://login.microsoftonline.com/error?code={}", self.code())
    }

    /// The token-endpoint JSON body and status (headers are added by the caller).
    pub fn json_response(&self, trace: &Trace) -> Response {
        let body = ErrorBody {
            error: self.error,
            error_description: self.description(trace),
            error_codes: &self.codes,
            timestamp: trace.timestamp(),
            trace_id: trace.trace_id.to_string(),
            correlation_id: trace.correlation_id.to_string(),
            error_uri: self.error_uri(),
            suberror: self.suberror,
            claims: self.claims.as_deref(),
        };
        json_with_status(self.status, &body)
    }

    /// Redirect parameters, in Entra's order.
    pub fn redirect_params(&self, trace: &Trace) -> Vec<(&'static str, String)> {
        let mut params = vec![
            ("error", self.error.to_string()),
            ("error_description", self.description(trace)),
            ("error_uri", self.error_uri()),
        ];
        if self.cancelled {
            params.push(("error_subcode", "cancel".to_string()));
        }
        params
    }

    /// Entra's own error page, used when the redirect target cannot be trusted.
    ///
    /// Status 400: Entra's status for these pages is not recorded in entra.md; browsers ignore it and
    /// a non-2xx status makes the failure obvious to programmatic callers.
    pub fn page(&self, trace: &Trace) -> Response {
        let html = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Sign in to your account</title></head><body>\n\
<h1>Sign in</h1>\n<h2>Sorry, but we\u{2019}re having trouble signing you in.</h2>\n\
<p id=\"error-message\">{text}</p>\n\
<h3>Troubleshooting details</h3>\n<table>\n\
<tr><td>Request Id:</td><td id=\"request-id\">{trace_id}</td></tr>\n\
<tr><td>Correlation Id:</td><td id=\"correlation-id\">{correlation_id}</td></tr>\n\
<tr><td>Timestamp:</td><td id=\"timestamp\">{timestamp}</td></tr>\n\
<tr><td>Message:</td><td>{text}</td></tr>\n</table>\n\
<pre id=\"error-description\">{description}</pre>\n</body></html>\n",
            text = html_escape(&self.text),
            trace_id = trace.trace_id,
            correlation_id = trace.correlation_id,
            timestamp = trace.timestamp(),
            description = html_escape(&self.description(trace)),
        );
        let mut response = (StatusCode::BAD_REQUEST, html).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: String,
    error_codes: &'a [u32],
    timestamp: String,
    trace_id: String,
    correlation_id: String,
    error_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    suberror: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    claims: Option<&'a str>,
}

/// Serialises `body` as `application/json; charset=utf-8` with `status`.
pub fn json_with_status<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = (status, bytes).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            response
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_has_crlf_trailer() {
        let trace = Trace::new(OffsetDateTime::UNIX_EPOCH, None);
        let description = AadError::code_redirect_mismatch("http://x/cb").description(&trace);
        assert!(description.starts_with("AADSTS70002: Error validating credentials. AADSTS50011: "));
        assert!(description.ends_with("\r\nTimestamp: 1970-01-01 00:00:00Z"));
    }

    #[test]
    fn inactivity_window_is_rendered_like_entra() {
        let error = AadError::refresh_token_inactive(OffsetDateTime::UNIX_EPOCH, 90 * 86_400);
        assert!(error.text.contains("was inactive for 90.00:00:00."), "{}", error.text);
    }
}
