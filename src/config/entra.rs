//! `[entra]`: the authority, timeouts, signing-key caching, retries and the circuit breaker.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::Invalid;
use super::values::{is_loopback_url, parse_base_url};

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawEntra {
    authority: String,
    connect_timeout_secs: u64,
    request_timeout_secs: u64,
    jwks_min_refetch_interval_secs: u64,
    jwks_cache_ttl_secs: u64,
    clock_skew_secs: u64,
    default_retry_after_secs: u64,
    max_retries: u32,
    retry_base_delay_ms: u64,
    retry_max_delay_ms: u64,
    circuit_failure_threshold: u32,
    circuit_open_secs: u64,
}

impl Default for RawEntra {
    fn default() -> Self {
        Self {
            authority: "https://login.microsoftonline.com".into(),
            connect_timeout_secs: 5,
            request_timeout_secs: 15,
            jwks_min_refetch_interval_secs: 300,
            jwks_cache_ttl_secs: 86_400,
            clock_skew_secs: 120,
            default_retry_after_secs: 30,
            max_retries: 2,
            retry_base_delay_ms: 200,
            retry_max_delay_ms: 2_000,
            circuit_failure_threshold: 5,
            circuit_open_secs: 30,
        }
    }
}

/// How the broker talks to Entra.
#[derive(Debug, Clone)]
pub struct EntraConfig {
    /// Authority host, e.g. `https://login.microsoftonline.com` (no trailing slash).
    pub authority: Url,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Minimum time between two JWKS fetches for one tenant caused by an unknown `kid`.
    pub jwks_min_refetch_interval: Duration,
    /// How long fetched signing keys are trusted before a refetch.
    pub jwks_cache_ttl: Duration,
    /// Allowed clock skew when checking id_token times.
    pub clock_skew: Duration,
    /// `Retry-After` sent when Entra is unavailable and said nothing itself.
    pub default_retry_after: Duration,
    /// Retries of transient failures.
    pub retry: RetryConfig,
    /// The per-authority circuit breaker.
    pub breaker: BreakerConfig,
}

/// How failed calls to Entra are retried.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Retries after the first attempt (0: never retry).
    pub max_retries: u32,
    /// Backoff before the first retry; doubled per retry, with full jitter.
    pub base_delay: Duration,
    /// Longest wait before a retry, `Retry-After` included: a longer `Retry-After` is passed to
    /// the caller instead of waited out.
    pub max_delay: Duration,
}

/// When calls to an Entra authority stop being sent.
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Consecutive failed calls (after retries) that open the circuit (0: never).
    pub failure_threshold: u32,
    /// How long an open circuit fails calls fast before one trial call is let through.
    pub open_for: Duration,
}

impl RawEntra {
    /// Checks the authority and timeouts; out-of-range tuning values are clamped, not refused.
    pub(super) fn validate(self) -> Result<EntraConfig, Invalid> {
        let authority = parse_base_url(&self.authority).map_err(|m| Invalid::new("entra.authority", m))?;
        if authority.scheme() != "https" && !is_loopback_url(&authority) {
            return Err(Invalid::new(
                "entra.authority",
                "must be https; http:// is accepted only for a loopback host (the simulator)",
            ));
        }
        if self.request_timeout_secs == 0 || self.connect_timeout_secs == 0 {
            return Err(Invalid::new(
                "entra.request_timeout_secs",
                "timeouts must be at least 1 second",
            ));
        }
        Ok(EntraConfig {
            authority,
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            jwks_min_refetch_interval: Duration::from_secs(self.jwks_min_refetch_interval_secs),
            jwks_cache_ttl: Duration::from_secs(self.jwks_cache_ttl_secs.max(60)),
            clock_skew: Duration::from_secs(self.clock_skew_secs),
            default_retry_after: Duration::from_secs(self.default_retry_after_secs.max(1)),
            retry: RetryConfig {
                max_retries: self.max_retries.min(10),
                base_delay: Duration::from_millis(self.retry_base_delay_ms),
                max_delay: Duration::from_millis(self.retry_max_delay_ms),
            },
            breaker: BreakerConfig {
                failure_threshold: self.circuit_failure_threshold,
                open_for: Duration::from_secs(self.circuit_open_secs.max(1)),
            },
        })
    }
}

#[cfg(test)]
// figment's Jail closures return its (large) error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::super::Config;
    use super::super::testing::{base, err_of};

    #[test]
    fn retry_and_breaker_defaults() {
        figment::Jail::expect_with(|_| {
            let cfg = Config::from_toml_str(&base(""), "t.toml").expect("defaults");
            assert_eq!(cfg.entra.retry.max_retries, 2);
            assert_eq!(cfg.entra.breaker.failure_threshold, 5);
            Ok(())
        });
    }

    #[test]
    fn authority_must_be_https_unless_loopback() {
        let e = err_of(&base("[entra]\nauthority = \"http://login.example.com\""));
        assert!(e.contains("entra.authority"), "{e}");
    }
}
