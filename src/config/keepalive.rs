//! `[keepalive]`: refreshing connections nobody refreshed for a while, before Entra drops their
//! refresh token (it does after 90 days unused, AADSTS700082).

use std::time::Duration;

use serde::Deserialize;

use super::Invalid;

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawKeepalive {
    idle_after_secs: u64,
    check_interval_secs: u64,
}

impl Default for RawKeepalive {
    fn default() -> Self {
        Self {
            idle_after_secs: 14 * 24 * 3600,
            check_interval_secs: 300,
        }
    }
}

/// `[keepalive]`: when a connection counts as idle, and how often brokers look for idle ones.
#[derive(Debug, Clone)]
pub struct KeepaliveConfig {
    /// A connection nobody refreshed for this long is refreshed by the broker itself.
    pub idle_after: Duration,
    /// How often each broker looks for idle connections.
    pub check_interval: Duration,
}

impl RawKeepalive {
    /// Both must be at least a second (tests use seconds; production days and minutes).
    pub(super) fn validate(self) -> Result<KeepaliveConfig, Invalid> {
        if self.idle_after_secs == 0 {
            return Err(Invalid::new("keepalive.idle_after_secs", "must be at least 1 second"));
        }
        if self.check_interval_secs == 0 {
            return Err(Invalid::new(
                "keepalive.check_interval_secs",
                "must be at least 1 second",
            ));
        }
        Ok(KeepaliveConfig {
            idle_after: Duration::from_secs(self.idle_after_secs),
            check_interval: Duration::from_secs(self.check_interval_secs),
        })
    }
}

#[cfg(test)]
// figment's Jail closures return its (large) error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use std::time::Duration;

    use super::super::Config;
    use super::super::testing::base;

    #[test]
    fn defaults_seconds_and_zero() {
        figment::Jail::expect_with(|_| {
            let cfg = Config::from_toml_str(&base(""), "t.toml").expect("defaults");
            assert_eq!(cfg.keepalive.idle_after, Duration::from_secs(1_209_600));
            assert_eq!(cfg.keepalive.check_interval, Duration::from_secs(300));
            let cfg = Config::from_toml_str(
                &base("[keepalive]\nidle_after_secs = 2\ncheck_interval_secs = 1"),
                "t.toml",
            )
            .expect("seconds");
            assert_eq!(cfg.keepalive.idle_after, Duration::from_secs(2));
            for zero in ["idle_after_secs = 0", "check_interval_secs = 0"] {
                let e = Config::from_toml_str(&base(&format!("[keepalive]\n{zero}")), "t.toml")
                    .unwrap_err()
                    .to_string();
                assert!(e.contains("keepalive.") && e.contains("at least 1 second"), "{e}");
            }
            Ok(())
        });
    }
}
