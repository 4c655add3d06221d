//! Configuration: a TOML file, overridden by `BROKER_*` environment variables.
//!
//! Loading is two steps: figment deserialises the raw shape (its errors name the key and the
//! source), then [`Config::from_raw`] validates meaning and resolves secrets, naming the file and
//! the key of whatever is wrong. A config that loads is one the broker can run with.
//!
//! Each section's raw shape, validated type and tests live in its own file; this one loads the
//! file, assembles the sections and checks what spans them. Every default is written once, in
//! its raw shape; the raw shapes also derive `Serialize` in tests, so that `example.rs` can hold
//! `config/example.toml` to those defaults.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use url::Url;

use crate::crypto::Sensitive;
use crate::store::Keyring;

mod connectors;
mod encryption;
mod entra;
#[cfg(test)]
mod example;
mod flow;
mod keepalive;
mod limits;
mod log;
mod redis;
mod server;
mod store;
#[cfg(test)]
mod testing;
mod tokens;
mod values;
mod webhooks;

pub use self::redis::{RedisConfig, SentinelConfig, redact_redis_url};
pub use connectors::{ConnectorConfig, Connectors, Publisher};
pub use entra::{BreakerConfig, EntraConfig, RetryConfig};
pub use flow::FlowConfig;
pub use keepalive::KeepaliveConfig;
pub use limits::{LimitsConfig, RateLimit};
pub use log::LogConfig;
pub use server::{HttpLimits, TlsConfig};
pub use store::{DEFAULT_EMBEDDED_CACHE_MB, RefreshConfig, StoreConfig};
pub use tokens::TokensConfig;
pub use values::{is_loopback_url, is_tenant_segment};
pub use webhooks::{WebhookEndpoint, WebhookSecret, WebhooksConfig};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing, not TOML, or a value has the wrong type.
    #[error("{file}: {source}")]
    Parse {
        /// The config file.
        file: String,
        /// figment's error, naming key and source.
        source: Box<figment::Error>,
    },
    /// A value parses but is not acceptable.
    #[error("{file}: {key}: {message}")]
    Invalid {
        /// The config file.
        file: String,
        /// The offending key, e.g. `connectors[0].client_id`.
        key: String,
        /// What is wrong, in words.
        message: String,
    },
}

/// What a section found wrong with one of its keys; the file is added by [`Invalid::in_file`].
#[derive(Debug)]
struct Invalid {
    key: String,
    message: String,
}

impl Invalid {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }

    fn in_file(self, file: &str) -> ConfigError {
        ConfigError::Invalid {
            file: file.to_string(),
            key: self.key,
            message: self.message,
        }
    }
}

/// The raw file shape. Every key is documented in `config/example.toml`.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: server::RawServer,
    #[serde(default)]
    entra: entra::RawEntra,
    #[serde(default)]
    store: store::RawStore,
    #[serde(default)]
    flow: flow::RawFlow,
    #[serde(default)]
    log: log::RawLog,
    #[serde(default)]
    connectors: Vec<connectors::RawConnector>,
    #[serde(default)]
    encryption: encryption::RawEncryption,
    #[serde(default)]
    limits: limits::RawLimits,
    #[serde(default)]
    tokens: tokens::RawTokens,
    #[serde(default)]
    keepalive: keepalive::RawKeepalive,
    #[serde(default)]
    webhooks: webhooks::RawWebhooks,
}

/// The validated configuration the broker runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Socket address to listen on.
    pub listen: SocketAddr,
    /// The broker's public base URL (no trailing slash), used for `redirect_uri` and links.
    pub public_url: Url,
    /// TLS certificate and key; `None` only when `plain_http = true`.
    pub tls: Option<TlsConfig>,
    /// How long in-flight requests may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// A second listener serving only `/metrics`; when set, the main listener does not serve it.
    pub metrics_listen: Option<SocketAddr>,
    /// The bearer token `/metrics` requires, when `server.metrics_token_env` names one.
    pub metrics_token: Option<Sensitive>,
    /// Timeouts and the connection cap of the HTTP server.
    pub http: HttpLimits,
    /// What loading noticed but tolerated (ignored environment variables, connectors whose scopes
    /// mix resources), for the caller to log.
    pub warnings: Vec<String>,
    /// The header a trusted reverse proxy puts the client address in (lower-cased); without it
    /// the client IP is the TCP peer's.
    pub trusted_proxy_header: Option<http::HeaderName>,
    /// Rate limits.
    pub limits: LimitsConfig,
    /// Entra endpoints and client behaviour.
    pub entra: EntraConfig,
    /// Which store to use.
    pub store: StoreConfig,
    /// How brokers sharing a store agree on who refreshes a connection.
    pub refresh: RefreshConfig,
    /// How often one connection, and one connector, may be refreshed at Entra (`[tokens]`).
    pub tokens: TokensConfig,
    /// Refreshing connections nobody refreshed for a while (`[keepalive]`).
    pub keepalive: KeepaliveConfig,
    /// How webhook deliveries are retried (`[webhooks]`).
    pub webhooks: WebhooksConfig,
    /// Lifetimes of flows, sessions and codes.
    pub flow: FlowConfig,
    /// Log output.
    pub log: LogConfig,
    /// Registered connectors.
    pub connectors: Vec<ConnectorConfig>,
    /// Keys for encryption at rest (`[encryption]`); `None` only for the memory store, which
    /// may run without.
    pub encryption: Option<Keyring>,
}

impl Config {
    /// Loads `file`, applies `BROKER_*` environment overrides, validates, resolves secrets.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let name = file.display().to_string();
        if !file.is_file() {
            return Err(ConfigError::Invalid {
                file: name,
                key: "-".into(),
                message: "the config file does not exist or is not a regular file".into(),
            });
        }
        // Only variables that name a config key are overrides. Others (a Kubernetes Service
        // named `broker` injects BROKER_PORT, BROKER_SERVICE_HOST, ...) are ignored with a
        // warning: serde's unknown-field errors say which, and the file is read again without
        // them. A wrong value for a known key stays fatal.
        let mut ignored: Vec<String> = Vec::new();
        let raw: RawConfig = loop {
            let skip = ignored.clone();
            let env = Env::prefixed("BROKER_")
                // BROKER_CONFIG names the file itself (the CLI's --config), not a key in it.
                .ignore(&["config"])
                .split("__")
                .filter(move |key| !skip.iter().any(|s| s.eq_ignore_ascii_case(key.as_str())));
            match Figment::new().merge(Toml::file_exact(file)).merge(env).extract() {
                Ok(raw) => break raw,
                Err(e) => {
                    let unknown = unknown_env_keys(&e);
                    if unknown.is_empty() || unknown.iter().all(|k| ignored.contains(k)) {
                        return Err(parse_error(&name, e));
                    }
                    ignored.extend(unknown);
                }
            }
        };
        let mut config = Self::from_raw(raw, &name)?;
        let ignored_warnings = ignored.iter().map(|key| {
            format!(
                "ignoring the environment variable BROKER_{}: it names no config key",
                key.replace('.', "__").to_ascii_uppercase()
            )
        });
        config.warnings.splice(0..0, ignored_warnings);
        Ok(config)
    }

    /// Validates each section, then what spans sections (the store decides whether encryption
    /// keys are required).
    fn from_raw(raw: RawConfig, file: &str) -> Result<Self, ConfigError> {
        let in_file = |e: Invalid| e.in_file(file);
        let server = raw.server.validate().map_err(in_file)?;
        let entra = raw.entra.validate().map_err(in_file)?;
        let (store, refresh) = raw.store.validate().map_err(in_file)?;
        let encryption = encryption::encryption_keys(raw.encryption, &store)
            .map_err(|(key, m)| Invalid::new(key, m).in_file(file))?;
        let flow = raw.flow.validate().map_err(in_file)?;
        let log = raw.log.validate().map_err(in_file)?;
        let connectors = connectors::validate(raw.connectors).map_err(in_file)?;
        let limits = raw.limits.validate().map_err(in_file)?;
        let keepalive = raw.keepalive.validate().map_err(in_file)?;
        let webhooks = raw.webhooks.validate().map_err(in_file)?;
        Ok(Config {
            listen: server.listen,
            public_url: server.public_url,
            tls: server.tls,
            shutdown_grace: server.shutdown_grace,
            metrics_listen: server.metrics_listen,
            metrics_token: server.metrics_token,
            http: server.http,
            warnings: connectors::scope_warnings(&connectors),
            trusted_proxy_header: server.trusted_proxy_header,
            limits,
            entra,
            store,
            refresh,
            tokens: raw.tokens.validate(),
            keepalive,
            webhooks,
            flow,
            log,
            connectors,
            encryption,
        })
    }

    /// Parses a config from TOML text (no environment overrides); for tests and the demo.
    pub fn from_toml_str(text: &str, name: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = Figment::new()
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| parse_error(name, e))?;
        Self::from_raw(raw, name)
    }

    /// The connector with this id.
    pub fn connector(&self, id: &str) -> Option<&ConnectorConfig> {
        self.connectors.iter().find(|c| c.id == id)
    }
}

/// figment's error as a [`ConfigError`]. A value that is none of a choice's spellings is reported
/// like the values validation refuses (file, key, what is allowed), plus the variable when it
/// came from the environment; other errors keep figment's wording, which names key and source.
fn parse_error(file: &str, e: figment::Error) -> ConfigError {
    match &e.kind {
        figment::error::Kind::UnknownVariant(found, allowed) if e.count() == 1 => {
            let field = e.path.last().map_or("value", String::as_str);
            let mut message = format!("unknown {field} {found:?}; expected {}", spellings(allowed));
            if from_env(&e) {
                let var = format!("BROKER_{}", e.path.join("__").to_ascii_uppercase());
                message.push_str(&format!(" (from the environment variable {var})"));
            }
            ConfigError::Invalid {
                file: file.to_string(),
                key: dotted_key(&e.path),
                message,
            }
        }
        _ => ConfigError::Parse {
            file: file.to_string(),
            source: Box::new(e),
        },
    }
}

/// `"a", "b" or "c"`.
fn spellings(allowed: &[&str]) -> String {
    let quoted: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

/// A figment path as validation names keys: `connectors[0].tenant`.
fn dotted_key(path: &[String]) -> String {
    let mut key = String::new();
    for part in path {
        if part.parse::<usize>().is_ok() {
            key.push_str(&format!("[{part}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(part);
        }
    }
    key
}

/// Whether the value at fault came from a `BROKER_*` variable rather than the file.
fn from_env(e: &figment::Error) -> bool {
    e.metadata.as_ref().is_some_and(|m| m.name.contains("BROKER_"))
}

/// The keys (dotted, lower case) of `BROKER_*` variables that name no config key.
fn unknown_env_keys(e: &figment::Error) -> Vec<String> {
    e.clone()
        .into_iter()
        .filter(from_env)
        .filter_map(|e| match &e.kind {
            // The path already ends with the unknown field.
            figment::error::Kind::UnknownField(..) => Some(e.path.join(".").to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
// figment's Jail closures return its (large) error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::testing::{CONNECTOR, base, err_of};
    use super::*;

    #[test]
    fn valid_config_loads() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CB_TEST_SECRET_PRESENT", "s3cret");
            let cfg = Config::from_toml_str(&base(CONNECTOR), "t.toml").expect("valid");
            assert_eq!(cfg.connectors.len(), 1);
            assert_eq!(cfg.connectors[0].tenant, "organizations");
            assert_eq!(cfg.flow.handoff_ttl, Duration::from_secs(300));
            Ok(())
        });
    }

    #[test]
    fn env_overrides_apply_but_broker_config_is_the_file_not_a_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("b.toml", &base(""))?;
            jail.set_env("BROKER_CONFIG", "b.toml");
            jail.set_env("BROKER_SERVER__SHUTDOWN_GRACE_SECS", "7");
            let cfg = Config::load(Path::new("b.toml")).map_err(|e| e.to_string())?;
            assert_eq!(cfg.shutdown_grace, Duration::from_secs(7));
            Ok(())
        });
    }

    #[test]
    fn unknown_sections_name_the_file_and_the_section() {
        let e = err_of(&base("[server2]\nx = 1"));
        assert!(e.starts_with("t.toml: ") && e.contains("server2"), "{e}");
    }
}
