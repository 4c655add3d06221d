//! Calls to Entra that survive Entra: bounded retries with full-jitter backoff on transient
//! failures only (connection errors, timeouts, 5xx, 429, AADSTS codes the table marks
//! transient), `Retry-After` honoured, and a circuit breaker per authority so a failing Entra
//! costs fast 503s instead of piled-up requests.
//!
//! Written by hand: the retry crates (`backoff`, `tokio-retry`) neither read `Retry-After` nor
//! classify Entra's answers, and the breaker is a dozen lines over a mutex.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;

use super::aadsts;
use super::errors::{Category, EntraError};
use crate::config::{BreakerConfig, RetryConfig};
use crate::metrics::{EntraResult, Metrics};

/// Where a breaker stands.
#[derive(Debug, Default)]
struct BreakerState {
    /// Consecutive failed calls.
    failures: u32,
    /// Set while open.
    open_until: Option<Instant>,
    /// When the half-open trial call was let through (a dropped trial must not wedge the
    /// breaker, so a trial older than the open period allows another).
    trial_since: Option<Instant>,
}

/// The circuit breaker of one Entra authority.
pub struct Breaker {
    authority: String,
    config: BreakerConfig,
    state: Mutex<BreakerState>,
    metrics: Arc<Metrics>,
}

impl Breaker {
    /// A closed breaker for `authority`.
    pub fn new(authority: &str, config: BreakerConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            authority: authority.to_string(),
            config,
            state: Mutex::default(),
            metrics,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        // The state is a few integers, valid whatever a panicking holder left behind.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May a call go out now? `Err(wait)` while the circuit is open (or its one trial call is
    /// under way): fail fast and retry after `wait`.
    pub fn permit(&self) -> Result<(), Duration> {
        if self.config.failure_threshold == 0 {
            return Ok(());
        }
        let mut s = self.state();
        let Some(until) = s.open_until else {
            return Ok(());
        };
        let now = Instant::now();
        if now < until {
            return Err(until - now);
        }
        match s.trial_since {
            Some(since) if now.duration_since(since) < self.config.open_for => Err(Duration::from_secs(1)),
            _ => {
                s.trial_since = Some(now);
                Ok(())
            }
        }
    }

    /// Records how a permitted call ended: Entra answered (`true`, even with an OAuth error)
    /// or failed transiently after its retries.
    pub fn record(&self, answered: bool) {
        if self.config.failure_threshold == 0 {
            return;
        }
        let mut s = self.state();
        if answered {
            let was_open = s.open_until.is_some();
            *s = BreakerState::default();
            if was_open {
                drop(s);
                tracing::info!(authority = %self.authority, "Entra answers again; circuit closed");
                self.metrics.circuit_open(&self.authority, false);
            }
            return;
        }
        s.failures = s.failures.saturating_add(1);
        let trial_failed = s.trial_since.is_some();
        if trial_failed || s.failures >= self.config.failure_threshold {
            let reopened = s.open_until.is_some();
            s.open_until = Some(Instant::now() + self.config.open_for);
            s.trial_since = None;
            let failures = s.failures;
            drop(s);
            if !reopened {
                tracing::warn!(
                    authority = %self.authority,
                    failures,
                    open_secs = self.config.open_for.as_secs(),
                    "Entra keeps failing; circuit open, calls fail fast"
                );
            }
            self.metrics.circuit_open(&self.authority, true);
        }
    }
}

/// An answer Entra gave (any status).
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// Its `Retry-After`, in seconds (HTTP dates are ignored), capped at an hour.
    pub retry_after: Option<Duration>,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// Entra's OAuth error body, if the body is one.
    pub fn error(&self) -> Option<EntraError> {
        let mut e: EntraError = serde_json::from_slice(&self.body).ok()?;
        e.http_status = Some(self.status.as_u16());
        Some(e)
    }

    /// 429, 5xx, or an error whose AADSTS code the table marks transient: worth retrying.
    pub fn is_transient(&self) -> bool {
        if self.status == StatusCode::TOO_MANY_REQUESTS || self.status.is_server_error() {
            return true;
        }
        !self.status.is_success()
            && self.error().is_some_and(|e| {
                e.error_codes
                    .iter()
                    .any(|c| aadsts::resolve(*c).is_some_and(|i| i.category == Category::Transient))
            })
    }

    fn result(&self) -> EntraResult {
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            EntraResult::Throttled
        } else if self.is_transient() {
            EntraResult::Unavailable
        } else if self.status.is_success() {
            EntraResult::Ok
        } else {
            EntraResult::Rejected
        }
    }
}

/// A call that got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// No answer: connection failed, timed out or broke (what happened, without URL or body).
    Transport(&'static str),
    /// Not sent: the authority's circuit is open; retry after this long.
    CircuitOpen(Duration),
}

/// Retries and the breaker around requests to one authority.
#[derive(Clone)]
pub struct Resilient {
    retry: RetryConfig,
    breaker: Arc<Breaker>,
    metrics: Arc<Metrics>,
}

impl Resilient {
    /// Wraps calls to `authority`.
    pub fn new(authority: &str, retry: RetryConfig, breaker: BreakerConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            retry,
            breaker: Arc::new(Breaker::new(authority, breaker, metrics.clone())),
            metrics,
        }
    }

    /// Sends the request `make` builds (again for each retry) to `endpoint` (`token`, `keys`,
    /// `metadata`): retries transient failures within the configured bounds, then returns the
    /// last answer, transient or not, for the caller to map.
    pub async fn send(
        &self,
        endpoint: &'static str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Answer, CallFailure> {
        if let Err(wait) = self.breaker.permit() {
            self.metrics.entra_request(endpoint, EntraResult::ShortCircuited);
            return Err(CallFailure::CircuitOpen(wait));
        }
        let mut retries = 0;
        loop {
            let outcome = attempt(make()).await;
            let (result, retry_after) = match &outcome {
                Ok(answer) => (answer.result(), answer.retry_after),
                Err(_) => (EntraResult::Unavailable, None),
            };
            self.metrics.entra_request(endpoint, result);
            if matches!(result, EntraResult::Ok | EntraResult::Rejected) {
                self.breaker.record(true);
                return outcome;
            }
            let wait = retry_after.unwrap_or_else(|| backoff(&self.retry, retries));
            let (trace_id, correlation_id) = outcome
                .as_ref()
                .ok()
                .and_then(Answer::error)
                .map(|e| (e.trace_id.unwrap_or_default(), e.correlation_id.unwrap_or_default()))
                .unwrap_or_default();
            let give_up = retries >= self.retry.max_retries || wait > self.retry.max_delay;
            tracing::warn!(
                endpoint,
                attempt = retries + 1,
                status = outcome.as_ref().map(|a| a.status.as_u16()).unwrap_or(0),
                failure = outcome.as_ref().err().map(|f| format!("{f:?}")).unwrap_or_default(),
                trace_id,
                correlation_id,
                retry_in_ms = if give_up { 0 } else { wait.as_millis() as u64 },
                "call to Entra failed{}",
                if give_up { "; giving up" } else { "; retrying" }
            );
            if give_up {
                // An answer Entra gave about this request (a throttled client, a request loop,
                // an OAuth error with a transient code) says nothing about the authority: only
                // no answer or a 5xx counts, so one user's errors cannot stop everyone.
                self.breaker.record(!authority_failed(&outcome));
                return outcome;
            }
            self.metrics.entra_retry(endpoint);
            retries += 1;
            tokio::time::sleep(wait).await;
        }
    }
}

/// True when a call that failed after its retries means the authority itself is failing: no
/// answer at all (connection refused, timed out, broken) or a 5xx (Entra's outage codes such as
/// 90033 come with 503). 4xx answers, 429 included, are Entra answering.
fn authority_failed(outcome: &Result<Answer, CallFailure>) -> bool {
    match outcome {
        Err(_) => true,
        Ok(answer) => answer.status.is_server_error(),
    }
}

async fn attempt(request: reqwest::RequestBuilder) -> Result<Answer, CallFailure> {
    let response = request
        .send()
        .await
        .map_err(|e| CallFailure::Transport(transport_kind(&e)))?;
    let status = response.status();
    let retry_after = parse_retry_after(response.headers().get(RETRY_AFTER));
    let body = response
        .bytes()
        .await
        .map_err(|e| CallFailure::Transport(transport_kind(&e)))?;
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

/// What went wrong with a request, without its URL (ours, but logs stay short and uniform) and
/// never its body.
pub fn transport_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_decode() {
        "could not decode the body"
    } else {
        "request failed"
    }
}

/// `Retry-After` in seconds (Entra sends integers; HTTP dates are ignored), capped at an hour.
pub fn parse_retry_after(value: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    let secs: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(3_600)))
}

/// Full jitter: uniform in `[0, min(max_delay, base * 2^retries)]`, so retrying brokers spread
/// out instead of hitting Entra in lockstep.
pub fn backoff(retry: &RetryConfig, retries: u32) -> Duration {
    let ceiling = retry
        .base_delay
        .saturating_mul(1u32 << retries.min(16))
        .min(retry.max_delay);
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return ceiling;
    }
    let fraction = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
    ceiling.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, open_ms: u64) -> (Breaker, Arc<Metrics>) {
        let m = Arc::new(Metrics::new());
        let b = Breaker::new(
            "https://login.example",
            BreakerConfig {
                failure_threshold: threshold,
                open_for: Duration::from_millis(open_ms),
            },
            m.clone(),
        );
        (b, m)
    }

    fn open_gauge(m: &Metrics) -> Option<String> {
        m.render()
            .lines()
            .find_map(|l| l.strip_prefix("consent_broker_entra_circuit_open{authority=\"https://login.example\"} "))
            .map(str::to_string)
    }

    #[test]
    fn opens_after_consecutive_failures_and_fails_fast() {
        let (b, m) = breaker(3, 60_000);
        for _ in 0..2 {
            assert!(b.permit().is_ok());
            b.record(false);
        }
        assert!(b.permit().is_ok(), "two failures: still closed");
        b.record(true);
        for _ in 0..2 {
            b.record(false);
        }
        assert!(b.permit().is_ok(), "a success resets the count");
        b.record(false);
        let wait = b.permit().unwrap_err();
        assert!(wait > Duration::from_secs(59), "{wait:?}");
        assert_eq!(open_gauge(&m).as_deref(), Some("1"));
    }

    #[test]
    fn lets_one_trial_through_after_the_open_period() {
        let (b, m) = breaker(1, 30);
        b.record(false);
        assert!(b.permit().is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.permit().is_ok(), "the trial");
        assert!(b.permit().is_err(), "only one trial at a time");
        b.record(false);
        assert!(b.permit().is_err(), "a failed trial reopens");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.permit().is_ok());
        b.record(true);
        assert!(b.permit().is_ok() && b.permit().is_ok(), "a good trial closes");
        assert_eq!(open_gauge(&m).as_deref(), Some("0"));
    }

    #[test]
    fn a_dropped_trial_does_not_wedge_the_breaker() {
        let (b, _) = breaker(1, 20);
        b.record(false);
        std::thread::sleep(Duration::from_millis(25));
        assert!(b.permit().is_ok(), "the trial, whose caller then goes away");
        std::thread::sleep(Duration::from_millis(25));
        assert!(b.permit().is_ok(), "another trial once the first is stale");
    }

    #[test]
    fn threshold_zero_never_opens() {
        let (b, _) = breaker(0, 60_000);
        for _ in 0..100 {
            b.record(false);
        }
        assert!(b.permit().is_ok());
    }

    #[test]
    fn backoff_is_jittered_and_bounded() {
        let retry = RetryConfig {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(250),
        };
        let samples: Vec<Duration> = (0..200).map(|_| backoff(&retry, 0)).collect();
        assert!(samples.iter().all(|d| *d <= Duration::from_millis(100)));
        assert!(samples.iter().any(|d| *d != samples[0]), "jittered");
        assert!((0..200).all(|_| backoff(&retry, 10) <= Duration::from_millis(250)));
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: None,
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn only_no_answer_or_a_5xx_counts_against_the_authority() {
        assert!(authority_failed(&Err(CallFailure::Transport("timeout"))));
        assert!(authority_failed(&Ok(answer(
            503,
            r#"{"error":"temporarily_unavailable","error_codes":[90033]}"#
        ))));
        assert!(authority_failed(&Ok(answer(500, ""))));
        for (status, body) in [
            (400, r#"{"error":"invalid_request","error_codes":[50196]}"#),
            (400, r#"{"error":"invalid_request","error_codes":[90055]}"#),
            (429, "Too Many Requests"),
            (400, r#"{"error":"invalid_grant","error_codes":[70008]}"#),
        ] {
            assert!(!authority_failed(&Ok(answer(status, body))), "{status} {body}");
        }
    }

    #[test]
    fn only_transient_answers_are_retried() {
        assert!(answer(503, "").is_transient());
        assert!(answer(429, "Too Many Requests").is_transient());
        assert!(answer(400, r#"{"error":"invalid_request","error_codes":[90055]}"#).is_transient());
        assert!(!answer(400, r#"{"error":"invalid_grant","error_codes":[70008]}"#).is_transient());
        assert!(!answer(401, r#"{"error":"invalid_client","error_codes":[7000215]}"#).is_transient());
        assert!(!answer(200, "{}").is_transient());
    }

    #[test]
    fn retry_after_parsing() {
        let v = reqwest::header::HeaderValue::from_static("7");
        assert_eq!(parse_retry_after(Some(&v)), Some(Duration::from_secs(7)));
        let v = reqwest::header::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(parse_retry_after(Some(&v)), None);
    }
}
