//! `[limits]`: the request rate limits per client IP, per connector and per tenant's flow starts.

use serde::Deserialize;

use super::Invalid;

/// `[limits]`: requests per minute and burst per key; 0 per minute turns a limit off.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLimits {
    ip_per_minute: u32,
    ip_burst: u32,
    connector_per_minute: u32,
    connector_burst: u32,
    tenant_flow_starts_per_minute: u32,
    tenant_flow_starts_burst: u32,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            ip_per_minute: 300,
            ip_burst: 60,
            connector_per_minute: 6_000,
            connector_burst: 600,
            tenant_flow_starts_per_minute: 120,
            tenant_flow_starts_burst: 30,
        }
    }
}

/// One rate limit: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per minute, sustained.
    pub per_minute: u32,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
}

/// `[limits]`: each `None` is off.
#[derive(Debug, Clone, Default)]
pub struct LimitsConfig {
    /// Per client IP, on browser endpoints.
    pub per_ip: Option<RateLimit>,
    /// Per connector, on the API.
    pub per_connector: Option<RateLimit>,
    /// Per tenant, on flow starts (redirects to Entra).
    pub per_tenant: Option<RateLimit>,
}

impl RawLimits {
    /// Pairs each rate with its burst; a limit that is on needs a burst of at least 1.
    pub(super) fn validate(self) -> Result<LimitsConfig, Invalid> {
        let limit = |key: &str, per_minute: u32, burst: u32| match (per_minute, burst) {
            (0, _) => Ok(None),
            (_, 0) => Err(Invalid::new(
                format!("limits.{key}_burst"),
                "must be at least 1 when the limit is on",
            )),
            (per_minute, burst) => Ok(Some(RateLimit { per_minute, burst })),
        };
        Ok(LimitsConfig {
            per_ip: limit("ip", self.ip_per_minute, self.ip_burst)?,
            per_connector: limit("connector", self.connector_per_minute, self.connector_burst)?,
            per_tenant: limit(
                "tenant_flow_starts",
                self.tenant_flow_starts_per_minute,
                self.tenant_flow_starts_burst,
            )?,
        })
    }
}

#[cfg(test)]
// figment's Jail closures return its (large) error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::super::Config;
    use super::super::testing::{base, err_of};
    use super::RateLimit;

    #[test]
    fn limits_default_turn_off_and_need_a_burst() {
        figment::Jail::expect_with(|_| {
            let cfg = Config::from_toml_str(&base(""), "t.toml").expect("defaults");
            assert_eq!(
                cfg.limits.per_ip,
                Some(RateLimit {
                    per_minute: 300,
                    burst: 60
                })
            );
            let text = base("[limits]\nip_per_minute = 0\nconnector_per_minute = 60\nconnector_burst = 1");
            let cfg = Config::from_toml_str(&text, "t.toml").expect("set");
            assert_eq!(cfg.limits.per_ip, None, "0 per minute turns a limit off");
            assert_eq!(
                cfg.limits.per_connector,
                Some(RateLimit {
                    per_minute: 60,
                    burst: 1
                })
            );
            Ok(())
        });
        let e = err_of(&base("[limits]\ntenant_flow_starts_burst = 0"));
        assert!(e.contains("limits.tenant_flow_starts_burst"), "{e}");
    }
}
