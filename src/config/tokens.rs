//! `[tokens]`: the guards that keep callers from turning the broker into a hammer on Entra.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawTokens {
    min_refresh_interval_secs: u64,
    max_refreshes_per_minute: u32,
}

impl Default for RawTokens {
    fn default() -> Self {
        Self {
            min_refresh_interval_secs: 60,
            max_refreshes_per_minute: 20_000,
        }
    }
}

/// `[tokens]`: how often one connection, and one connector, may be refreshed at Entra.
#[derive(Debug, Clone)]
pub struct TokensConfig {
    /// After a refresh (or sign-in), the connection is not refreshed again for this long while
    /// its token is valid and was issued for what the connector asks; zero turns the floor off.
    pub min_refresh_interval: Duration,
    /// Refreshes one connector may send to Entra per minute from this broker; `None` is no limit.
    pub max_refreshes_per_minute: Option<NonZeroU32>,
}

impl RawTokens {
    /// Every value is acceptable: 0 turns either guard off.
    pub(super) fn validate(self) -> TokensConfig {
        TokensConfig {
            min_refresh_interval: Duration::from_secs(self.min_refresh_interval_secs),
            max_refreshes_per_minute: NonZeroU32::new(self.max_refreshes_per_minute),
        }
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
    fn zero_turns_the_guards_off() {
        figment::Jail::expect_with(|_| {
            let cfg = Config::from_toml_str(&base(""), "t.toml").expect("defaults");
            assert_eq!(cfg.tokens.min_refresh_interval, Duration::from_secs(60));
            assert_eq!(cfg.tokens.max_refreshes_per_minute.map(|n| n.get()), Some(20_000));
            let text = base("[tokens]\nmin_refresh_interval_secs = 0\nmax_refreshes_per_minute = 0");
            let cfg = Config::from_toml_str(&text, "t.toml").expect("set");
            assert_eq!(cfg.tokens.min_refresh_interval, Duration::ZERO);
            assert!(cfg.tokens.max_refreshes_per_minute.is_none());
            Ok(())
        });
    }
}
