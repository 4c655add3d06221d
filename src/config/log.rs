//! `[log]`: the output format and the filter directive.

use serde::Deserialize;

use super::Invalid;
use super::values::choice;

/// `[log] format`, spelled as serde renames the variants; messages list them in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub(super) enum Format {
    /// For people.
    Text,
    /// For log pipelines.
    Json,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    #[serde(deserialize_with = "choice")]
    format: Format,
    level: String,
    successful_token_calls: bool,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: Format::Text,
            level: "info".into(),
            successful_token_calls: false,
        }
    }
}

/// Log format and filter.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `text` or `json`.
    pub json: bool,
    /// An `EnvFilter` directive, e.g. `info` or `consent_broker=debug`.
    pub level: String,
    /// Whether a successful token call writes its access line at info like every other request
    /// (by default at debug: see `http::observe`).
    pub successful_token_calls: bool,
}

impl RawLog {
    /// Checks that the level parses as a filter.
    pub(super) fn validate(self) -> Result<LogConfig, Invalid> {
        let json = self.format == Format::Json;
        if tracing_subscriber::EnvFilter::try_new(&self.level).is_err() {
            return Err(Invalid::new(
                "log.level",
                format!("{:?} is not a valid filter directive", self.level),
            ));
        }
        Ok(LogConfig {
            json,
            level: self.level,
            successful_token_calls: self.successful_token_calls,
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
    fn format_and_level() {
        figment::Jail::expect_with(|_| {
            let cfg = Config::from_toml_str(&base(""), "t.toml").expect("defaults");
            assert!(!cfg.log.json);
            assert_eq!(cfg.log.level, "info");
            assert!(!cfg.log.successful_token_calls);
            let cfg = Config::from_toml_str(
                &base("[log]\nformat = \"json\"\nlevel = \"consent_broker=debug\""),
                "t.toml",
            )
            .expect("set");
            assert!(cfg.log.json);
            assert_eq!(cfg.log.level, "consent_broker=debug");
            let cfg = Config::from_toml_str(&base("[log]\nsuccessful_token_calls = true"), "t.toml").expect("set");
            assert!(cfg.log.successful_token_calls);
            Ok(())
        });
        assert_eq!(
            err_of(&base("[log]\nformat = \"JSON\"")),
            "t.toml: log.format: unknown format \"JSON\"; expected \"text\" or \"json\""
        );
        let e = err_of(&base("[log]\nformat = 1"));
        assert!(e.contains("expected a string") && e.contains("log.format"), "{e}");
        let e = err_of(&base("[log]\nsuccessful_token_calls = \"yes\""));
        assert!(e.contains("log.successful_token_calls"), "{e}");
        let e = err_of(&base("[log]\nlevel = \"consent_broker=loud\""));
        assert!(e.starts_with("t.toml: log.level: "), "{e}");
    }
}
