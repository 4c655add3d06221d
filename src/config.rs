//! Configuration: a TOML file, overridden by `BROKER_*` environment variables.
//!
//! Loading is two steps: figment deserialises the raw shape (its errors name the key and the
//! source), then [`Config::from_raw`] validates meaning and resolves secrets, naming the file and
//! the key of whatever is wrong. A config that loads is one the broker can run with.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::crypto::Sensitive;
use crate::entra::credential::{CertificatePart, ClientCertificate, ClientCredential};
use crate::store::Keyring;
use crate::store::encrypted::{EncryptionKey, MAX_KEY_ID_LEN, valid_key_id};

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

/// The raw file shape. Every key is documented in `config/example.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    #[serde(default)]
    entra: RawEntra,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    flow: RawFlow,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    connectors: Vec<RawConnector>,
    #[serde(default)]
    encryption: RawEncryption,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    tokens: RawTokens,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTokens {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: SocketAddr,
    public_url: String,
    #[serde(default)]
    plain_http: bool,
    tls: Option<RawTls>,
    #[serde(default = "default_shutdown_grace")]
    shutdown_grace_secs: u64,
    metrics_listen: Option<SocketAddr>,
    metrics_token_env: Option<String>,
    metrics_token_file: Option<PathBuf>,
    trusted_proxy_header: Option<String>,
    #[serde(default = "default_header_read_timeout")]
    header_read_timeout_secs: u64,
    #[serde(default = "default_body_timeout")]
    body_timeout_secs: u64,
    #[serde(default = "default_http_request_timeout")]
    request_timeout_secs: u64,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntra {
    #[serde(default = "default_authority")]
    authority: String,
    #[serde(default = "default_connect_timeout")]
    connect_timeout_secs: u64,
    #[serde(default = "default_request_timeout")]
    request_timeout_secs: u64,
    #[serde(default = "default_jwks_refetch")]
    jwks_min_refetch_interval_secs: u64,
    #[serde(default = "default_jwks_ttl")]
    jwks_cache_ttl_secs: u64,
    #[serde(default = "default_clock_skew")]
    clock_skew_secs: u64,
    #[serde(default = "default_retry_after")]
    default_retry_after_secs: u64,
    #[serde(default = "default_max_retries")]
    max_retries: u32,
    #[serde(default = "default_retry_base_delay")]
    retry_base_delay_ms: u64,
    #[serde(default = "default_retry_max_delay")]
    retry_max_delay_ms: u64,
    #[serde(default = "default_circuit_threshold")]
    circuit_failure_threshold: u32,
    #[serde(default = "default_circuit_open")]
    circuit_open_secs: u64,
}

fn default_max_retries() -> u32 {
    2
}
fn default_retry_base_delay() -> u64 {
    200
}
fn default_retry_max_delay() -> u64 {
    2_000
}
fn default_circuit_threshold() -> u32 {
    5
}
fn default_circuit_open() -> u64 {
    30
}

/// `[limits]`: requests per minute and burst per key; 0 per minute turns a limit off.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
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

impl Default for RawEntra {
    fn default() -> Self {
        Self {
            authority: default_authority(),
            connect_timeout_secs: default_connect_timeout(),
            request_timeout_secs: default_request_timeout(),
            jwks_min_refetch_interval_secs: default_jwks_refetch(),
            jwks_cache_ttl_secs: default_jwks_ttl(),
            clock_skew_secs: default_clock_skew(),
            default_retry_after_secs: default_retry_after(),
            max_retries: default_max_retries(),
            retry_base_delay_ms: default_retry_base_delay(),
            retry_max_delay_ms: default_retry_max_delay(),
            circuit_failure_threshold: default_circuit_threshold(),
            circuit_open_secs: default_circuit_open(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default = "default_backend")]
    backend: String,
    #[serde(default = "default_store_path")]
    path: PathBuf,
    #[serde(default = "default_purge_interval")]
    purge_interval_secs: u64,
    // The Redis backend's keys; rejected with any other backend so a stray one is noticed.
    url: Option<String>,
    #[serde(default)]
    cluster_urls: Vec<String>,
    #[serde(default)]
    sentinel_urls: Vec<String>,
    sentinel_master: Option<String>,
    sentinel_master_username: Option<String>,
    sentinel_master_password_env: Option<String>,
    #[serde(default)]
    sentinel_wait_replicas: u32,
    #[serde(default = "default_key_prefix")]
    key_prefix: String,
    #[serde(default = "default_redis_connect_timeout")]
    connect_timeout_ms: u64,
    #[serde(default = "default_redis_response_timeout")]
    response_timeout_ms: u64,
    tls_ca_file: Option<PathBuf>,
    // The refresh lease, for every backend.
    #[serde(default = "default_refresh_lease")]
    refresh_lease_ms: u64,
    #[serde(default = "default_refresh_wait")]
    refresh_wait_ms: u64,
    #[serde(default = "default_true")]
    refresh_lease_renew: bool,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            backend: default_backend(),
            path: default_store_path(),
            purge_interval_secs: default_purge_interval(),
            url: None,
            cluster_urls: Vec::new(),
            sentinel_urls: Vec::new(),
            sentinel_master: None,
            sentinel_master_username: None,
            sentinel_master_password_env: None,
            sentinel_wait_replicas: 0,
            key_prefix: default_key_prefix(),
            connect_timeout_ms: default_redis_connect_timeout(),
            response_timeout_ms: default_redis_response_timeout(),
            tls_ca_file: None,
            refresh_lease_ms: default_refresh_lease(),
            refresh_wait_ms: default_refresh_wait(),
            refresh_lease_renew: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    #[serde(default = "default_state_ttl")]
    state_ttl_secs: u64,
    #[serde(default = "default_session_ttl")]
    session_ttl_secs: u64,
    #[serde(default = "default_handoff_ttl")]
    handoff_ttl_secs: u64,
    #[serde(default = "default_min_ttl")]
    default_min_ttl_secs: u64,
}

impl Default for RawFlow {
    fn default() -> Self {
        Self {
            state_ttl_secs: default_state_ttl(),
            session_ttl_secs: default_session_ttl(),
            handoff_ttl_secs: default_handoff_ttl(),
            default_min_ttl_secs: default_min_ttl(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default = "default_log_format")]
    format: String,
    #[serde(default = "default_log_level")]
    level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: default_log_format(),
            level: default_log_level(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnector {
    id: String,
    display_name: String,
    client_id: String,
    client_secret_env: Option<String>,
    client_secret_file: Option<PathBuf>,
    client_secret_expires_at: Option<String>,
    client_certificate_file: Option<PathBuf>,
    client_certificate_key_file: Option<PathBuf>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    return_urls: Vec<String>,
    #[serde(default)]
    api_key_hashes: Vec<String>,
    #[serde(default = "default_tenant")]
    tenant: String,
    #[serde(default)]
    publisher_verified: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEncryption {
    primary: Option<String>,
    #[serde(default)]
    keys: Vec<RawEncryptionKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEncryptionKey {
    id: String,
    env: Option<String>,
    file: Option<PathBuf>,
}

fn default_shutdown_grace() -> u64 {
    20
}
fn default_header_read_timeout() -> u64 {
    10
}
fn default_body_timeout() -> u64 {
    10
}
fn default_http_request_timeout() -> u64 {
    60
}
fn default_max_connections() -> usize {
    10_000
}
fn default_authority() -> String {
    "https://login.microsoftonline.com".into()
}
fn default_connect_timeout() -> u64 {
    5
}
fn default_request_timeout() -> u64 {
    15
}
fn default_jwks_refetch() -> u64 {
    300
}
fn default_jwks_ttl() -> u64 {
    86_400
}
fn default_clock_skew() -> u64 {
    120
}
fn default_retry_after() -> u64 {
    30
}
fn default_backend() -> String {
    "embedded".into()
}
fn default_store_path() -> PathBuf {
    PathBuf::from("data/consent-broker.redb")
}
fn default_purge_interval() -> u64 {
    60
}
fn default_key_prefix() -> String {
    "cb:".into()
}
fn default_redis_connect_timeout() -> u64 {
    1_000
}
fn default_redis_response_timeout() -> u64 {
    500
}
fn default_refresh_lease() -> u64 {
    10_000
}
fn default_refresh_wait() -> u64 {
    15_000
}
fn default_true() -> bool {
    true
}
fn default_state_ttl() -> u64 {
    600
}
fn default_session_ttl() -> u64 {
    3_600
}
fn default_handoff_ttl() -> u64 {
    300
}
fn default_min_ttl() -> u64 {
    300
}
fn default_log_format() -> String {
    "text".into()
}
fn default_log_level() -> String {
    "info".into()
}
fn default_tenant() -> String {
    "organizations".into()
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
    /// What loading noticed but tolerated (ignored environment variables), for the caller to log.
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

/// PEM files for the in-process TLS listener.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Private key (PEM).
    pub key_file: PathBuf,
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

/// One rate limit: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per minute, sustained.
    pub per_minute: u32,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
}

/// The HTTP server's own limits (`[server]`): what a slow or greedy client can hold.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Longest time a client may take to send a request's headers (HTTP/1).
    pub header_read_timeout: Duration,
    /// Longest pause while a request body is being read.
    pub body_timeout: Duration,
    /// Longest time one request may take, answer included.
    pub request_timeout: Duration,
    /// Most connections served at once; further ones are closed at accept.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(default_header_read_timeout()),
            body_timeout: Duration::from_secs(default_body_timeout()),
            request_timeout: Duration::from_secs(default_http_request_timeout()),
            max_connections: default_max_connections(),
        }
    }
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

/// The store backend.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// In-process, lost on exit (tests).
    Memory {
        /// How often expired records are purged.
        purge_interval: Duration,
    },
    /// Single-file ACID store (redb).
    Embedded {
        /// Database file.
        path: PathBuf,
        /// How often expired records are purged.
        purge_interval: Duration,
    },
    /// Redis, standalone or Cluster, shared by any number of brokers.
    Redis {
        /// Where and how to connect.
        redis: RedisConfig,
        /// How often the purge task runs (a no-op here: Redis expires keys itself).
        purge_interval: Duration,
    },
}

/// How the broker reaches Redis. `Debug` never shows the URLs: they may carry a password.
#[derive(Clone)]
pub struct RedisConfig {
    /// The server's URL (standalone), or the seed nodes' URLs (cluster); `redis://` or `rediss://`
    /// (TLS), possibly with credentials.
    pub urls: Vec<String>,
    /// True for Redis Cluster (`cluster_urls`), false for one server (`url`) or Sentinel.
    pub cluster: bool,
    /// Set for Redis Sentinel (`sentinel_urls`): then `urls` are the sentinels' URLs.
    pub sentinel: Option<SentinelConfig>,
    /// Prepended to every key, so several applications can share one Redis.
    pub key_prefix: String,
    /// Limit for each attempt to open a connection to a Redis node.
    pub connect_timeout: Duration,
    /// Limit for one store operation, from sending it to having its answer (reconnects included).
    pub response_timeout: Duration,
    /// PEM certificates trusted for `rediss://` instead of the system's roots.
    pub tls_ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field(
                "urls",
                &self.urls.iter().map(|u| redact_redis_url(u)).collect::<Vec<_>>(),
            )
            .field("cluster", &self.cluster)
            .field("sentinel", &self.sentinel)
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

/// Redis Sentinel: which master to ask the sentinels for, and how to log in to it. `Debug` never
/// shows the password.
#[derive(Clone)]
pub struct SentinelConfig {
    /// The name the sentinels monitor the master under (`sentinel_master`).
    pub master: String,
    /// The ACL user on the master and replicas (`sentinel_master_username`).
    pub username: Option<String>,
    /// The data nodes' password, read from the variable `sentinel_master_password_env` names.
    pub password: Option<String>,
    /// Replicas that must confirm each write (`WAIT`) before it counts as done; 0 for none.
    pub wait_replicas: u32,
}

impl std::fmt::Debug for SentinelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelConfig")
            .field("master", &self.master)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("wait_replicas", &self.wait_replicas)
            .finish()
    }
}

/// A Redis URL fit for logs: scheme, host and port only (credentials, database and options dropped).
pub fn redact_redis_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(url) => {
            let host = url.host_str().unwrap_or("?");
            match url.port() {
                Some(port) => format!("{}://{host}:{port}", url.scheme()),
                None => format!("{}://{host}", url.scheme()),
            }
        }
        Err(_) => "<unparsable redis url>".into(),
    }
}

/// The per-connection refresh lease (`[store] refresh_*`), which makes one broker among all that
/// share the store call Entra for a connection while the others wait for its result.
#[derive(Debug, Clone)]
pub struct RefreshConfig {
    /// How long a lease lives unless its holder renews it (it renews every third of this while
    /// its Entra call runs, so a crashed holder blocks the others for at most this long).
    pub lease: Duration,
    /// How long a caller waits for another broker's refresh before answering 503.
    pub wait: Duration,
    /// Whether the holder renews its lease; `false` only for tests and diagnosis (a slow refresh
    /// then loses its lease, which fencing must make harmless).
    pub renew: bool,
}

/// `[tokens]`: the guards that keep callers from turning the broker into a hammer on Entra.
#[derive(Debug, Clone)]
pub struct TokensConfig {
    /// After a refresh (or sign-in), the connection is not refreshed again for this long while
    /// its token is valid and was issued for what the connector asks; zero turns the floor off.
    pub min_refresh_interval: Duration,
    /// Refreshes one connector may send to Entra per minute from this broker; `None` is no limit.
    pub max_refreshes_per_minute: Option<std::num::NonZeroU32>,
}

/// Lifetimes of the flow's short-lived records.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    /// `state` lifetime (sign-in must finish within it).
    pub state_ttl: Duration,
    /// Connect-session lifetime.
    pub session_ttl: Duration,
    /// Handoff-code lifetime (at most 5 minutes per contract).
    pub handoff_ttl: Duration,
    /// `min_ttl` when the caller gives none.
    pub default_min_ttl: Duration,
}

/// Log format and filter.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `text` or `json`.
    pub json: bool,
    /// An `EnvFilter` directive, e.g. `info` or `consent_broker=debug`.
    pub level: String,
}

/// A registered connector.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// Stable id used in the API.
    pub id: String,
    /// Name shown to users.
    pub display_name: String,
    /// Entra application (client) id.
    pub client_id: String,
    /// How the broker authenticates as the app: a client secret (from env or file) or a
    /// certificate and its private key (loaded and checked at config time).
    pub credential: ClientCredential,
    /// Resource scopes the connector needs (OIDC scopes are added by the broker).
    pub scopes: Vec<String>,
    /// Allowed return URLs (exact scheme, host, port and path).
    pub return_urls: Vec<Url>,
    /// Hex SHA-256 digests of the connector's API keys.
    pub api_key_hashes: Vec<String>,
    /// Tenant segment for sign-ins without a tenant hint (`organizations`, a GUID or a domain).
    pub tenant: String,
    /// Whether the app's publisher is verified by Microsoft (changes what the approval page says).
    pub publisher_verified: bool,
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
                        return Err(ConfigError::Parse {
                            file: name.clone(),
                            source: Box::new(e),
                        });
                    }
                    ignored.extend(unknown);
                }
            }
        };
        let mut config = Self::from_raw(raw, &name)?;
        config.warnings = ignored
            .iter()
            .map(|key| {
                format!(
                    "ignoring the environment variable BROKER_{}: it names no config key",
                    key.replace('.', "__").to_ascii_uppercase()
                )
            })
            .collect();
        Ok(config)
    }

    fn from_raw(raw: RawConfig, file: &str) -> Result<Self, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            file: file.to_string(),
            key: key.to_string(),
            message,
        };
        let positive_secs = |key: &str, secs: u64| match secs {
            0 => Err(invalid(key, "must be at least 1 second".into())),
            s => Ok(Duration::from_secs(s)),
        };

        let public_url = parse_base_url(&raw.server.public_url).map_err(|m| invalid("server.public_url", m))?;
        if public_url.scheme() != "https" && !is_loopback_url(&public_url) {
            return Err(invalid(
                "server.public_url",
                "must be https (http is accepted only for a loopback host)".into(),
            ));
        }
        let tls = match (raw.server.tls, raw.server.plain_http) {
            (Some(_), true) => {
                return Err(invalid(
                    "server.plain_http",
                    "set either [server.tls] or plain_http = true, not both".into(),
                ));
            }
            (None, false) => {
                return Err(invalid(
                    "server.tls",
                    "missing: configure cert_file and key_file, or set plain_http = true explicitly (e.g. behind a TLS-terminating proxy)".into(),
                ));
            }
            (Some(t), false) => {
                for (key, path) in [
                    ("server.tls.cert_file", &t.cert_file),
                    ("server.tls.key_file", &t.key_file),
                ] {
                    if !path.is_file() {
                        return Err(invalid(key, format!("file {} not found", path.display())));
                    }
                }
                Some(TlsConfig {
                    cert_file: t.cert_file,
                    key_file: t.key_file,
                })
            }
            (None, true) => None,
        };

        let authority = parse_base_url(&raw.entra.authority).map_err(|m| invalid("entra.authority", m))?;
        if authority.scheme() != "https" && !is_loopback_url(&authority) {
            return Err(invalid(
                "entra.authority",
                "must be https; http:// is accepted only for a loopback host (the simulator)".into(),
            ));
        }
        if raw.entra.request_timeout_secs == 0 || raw.entra.connect_timeout_secs == 0 {
            return Err(invalid(
                "entra.request_timeout_secs",
                "timeouts must be at least 1 second".into(),
            ));
        }

        let purge_interval = Duration::from_secs(raw.store.purge_interval_secs.max(1));
        for (key, ms) in [
            ("store.refresh_lease_ms", raw.store.refresh_lease_ms),
            ("store.refresh_wait_ms", raw.store.refresh_wait_ms),
        ] {
            if ms == 0 || ms > 600_000 {
                return Err(invalid(key, "must be between 1 and 600000 milliseconds".into()));
            }
        }
        let refresh = RefreshConfig {
            lease: Duration::from_millis(raw.store.refresh_lease_ms),
            wait: Duration::from_millis(raw.store.refresh_wait_ms),
            renew: raw.store.refresh_lease_renew,
        };
        if raw.store.backend != "redis" {
            if raw.store.url.is_some() {
                return Err(invalid("store.url", "only used with backend = \"redis\"".into()));
            }
            if !raw.store.cluster_urls.is_empty() {
                return Err(invalid(
                    "store.cluster_urls",
                    "only used with backend = \"redis\"".into(),
                ));
            }
            if !raw.store.sentinel_urls.is_empty() {
                return Err(invalid(
                    "store.sentinel_urls",
                    "only used with backend = \"redis\"".into(),
                ));
            }
        }
        let store = match raw.store.backend.as_str() {
            "memory" => StoreConfig::Memory { purge_interval },
            "embedded" => StoreConfig::Embedded {
                path: raw.store.path,
                purge_interval,
            },
            "redis" => StoreConfig::Redis {
                redis: redis_config(raw.store).map_err(|(key, m)| invalid(key, m))?,
                purge_interval,
            },
            other => {
                return Err(invalid(
                    "store.backend",
                    format!("unknown backend {other:?}; expected \"embedded\", \"memory\" or \"redis\""),
                ));
            }
        };

        let encryption = encryption_keys(raw.encryption, &store).map_err(|(key, m)| invalid(&key, m))?;

        if raw.flow.handoff_ttl_secs == 0 || raw.flow.handoff_ttl_secs > 300 {
            return Err(invalid(
                "flow.handoff_ttl_secs",
                "must be between 1 and 300 seconds".into(),
            ));
        }
        if raw.flow.state_ttl_secs == 0 || raw.flow.state_ttl_secs > 3_600 {
            return Err(invalid(
                "flow.state_ttl_secs",
                "must be between 1 and 3600 seconds".into(),
            ));
        }
        if raw.flow.session_ttl_secs == 0 {
            return Err(invalid("flow.session_ttl_secs", "must be at least 1 second".into()));
        }

        let json = match raw.log.format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(invalid(
                    "log.format",
                    format!("unknown format {other:?}; expected \"text\" or \"json\""),
                ));
            }
        };
        if tracing_subscriber::EnvFilter::try_new(&raw.log.level).is_err() {
            return Err(invalid(
                "log.level",
                format!("{:?} is not a valid filter directive", raw.log.level),
            ));
        }

        let mut connectors = Vec::with_capacity(raw.connectors.len());
        let mut ids = HashSet::new();
        for (i, c) in raw.connectors.into_iter().enumerate() {
            let key = |field: &str| format!("connectors[{i}].{field}");
            if c.id.is_empty()
                || c.id.len() > 64
                || !c
                    .id
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                return Err(invalid(
                    &key("id"),
                    "must be 1-64 characters of a-z, A-Z, 0-9, - or _".into(),
                ));
            }
            if !ids.insert(c.id.clone()) {
                return Err(invalid(&key("id"), format!("duplicate connector id {:?}", c.id)));
            }
            if c.display_name.trim().is_empty() {
                return Err(invalid(&key("display_name"), "must not be empty".into()));
            }
            if uuid::Uuid::parse_str(&c.client_id).is_err() {
                return Err(invalid(
                    &key("client_id"),
                    "must be the application (client) id GUID".into(),
                ));
            }
            let credential = connector_credential(&c).map_err(|(field, m)| invalid(&key(field), m))?;
            if c.scopes
                .iter()
                .any(|s| s.trim().is_empty() || s.contains(char::is_whitespace))
            {
                return Err(invalid(&key("scopes"), "each scope must be one non-empty word".into()));
            }
            let mut return_urls = Vec::new();
            for (j, u) in c.return_urls.iter().enumerate() {
                let url = parse_return_url_entry(u).map_err(|m| invalid(&key(&format!("return_urls[{j}]")), m))?;
                return_urls.push(url);
            }
            let mut api_key_hashes = Vec::new();
            for (j, h) in c.api_key_hashes.iter().enumerate() {
                let hex = h
                    .strip_prefix("sha256:")
                    .filter(|hex| hex.len() == 64 && hex.chars().all(|ch| ch.is_ascii_hexdigit()))
                    .ok_or_else(|| {
                        invalid(
                            &key(&format!("api_key_hashes[{j}]")),
                            "must be \"sha256:<64 hex digits>\" (generate with `consent-broker new-api-key`)".into(),
                        )
                    })?;
                api_key_hashes.push(hex.to_ascii_lowercase());
            }
            if !is_tenant_segment(&c.tenant) {
                return Err(invalid(
                    &key("tenant"),
                    "must be \"organizations\", \"common\", a tenant GUID or a domain".into(),
                ));
            }
            connectors.push(ConnectorConfig {
                id: c.id,
                display_name: c.display_name,
                client_id: c.client_id.to_ascii_lowercase(),
                credential,
                scopes: c.scopes,
                return_urls,
                api_key_hashes,
                tenant: c.tenant,
                publisher_verified: c.publisher_verified,
            });
        }

        let metrics_token = match (&raw.server.metrics_token_env, &raw.server.metrics_token_file) {
            (None, None) => None,
            (env, file) => {
                let key = if env.is_some() {
                    "server.metrics_token_env"
                } else {
                    "server.metrics_token_file"
                };
                let token = read_secret(env.as_deref(), file.as_deref())
                    .map_err(|m| invalid(key, m.replace("client_secret", "metrics_token")))?;
                if token.expose_secret().len() < 16 {
                    return Err(invalid(key, "the metrics token must be at least 16 characters".into()));
                }
                Some(Sensitive::new(token.expose_secret().to_string()))
            }
        };
        let trusted_proxy_header = match raw.server.trusted_proxy_header.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => Some(
                http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| {
                    invalid(
                        "server.trusted_proxy_header",
                        format!("{name:?} is not a header name (e.g. \"x-forwarded-for\")"),
                    )
                })?,
            ),
        };
        let limit = |key: &str, per_minute: u32, burst: u32| -> Result<Option<RateLimit>, ConfigError> {
            match (per_minute, burst) {
                (0, _) => Ok(None),
                (_, 0) => Err(invalid(
                    &format!("limits.{key}_burst"),
                    "must be at least 1 when the limit is on".into(),
                )),
                (per_minute, burst) => Ok(Some(RateLimit { per_minute, burst })),
            }
        };
        let l = &raw.limits;
        let limits = LimitsConfig {
            per_ip: limit("ip", l.ip_per_minute, l.ip_burst)?,
            per_connector: limit("connector", l.connector_per_minute, l.connector_burst)?,
            per_tenant: limit(
                "tenant_flow_starts",
                l.tenant_flow_starts_per_minute,
                l.tenant_flow_starts_burst,
            )?,
        };

        Ok(Config {
            listen: raw.server.listen,
            public_url,
            tls,
            shutdown_grace: Duration::from_secs(raw.server.shutdown_grace_secs),
            metrics_listen: raw.server.metrics_listen,
            metrics_token,
            warnings: Vec::new(),
            http: HttpLimits {
                header_read_timeout: positive_secs(
                    "server.header_read_timeout_secs",
                    raw.server.header_read_timeout_secs,
                )?,
                body_timeout: positive_secs("server.body_timeout_secs", raw.server.body_timeout_secs)?,
                request_timeout: positive_secs("server.request_timeout_secs", raw.server.request_timeout_secs)?,
                max_connections: match raw.server.max_connections {
                    0 => return Err(invalid("server.max_connections", "must be at least 1".into())),
                    n => n,
                },
            },
            trusted_proxy_header,
            limits,
            entra: EntraConfig {
                authority,
                connect_timeout: Duration::from_secs(raw.entra.connect_timeout_secs),
                request_timeout: Duration::from_secs(raw.entra.request_timeout_secs),
                jwks_min_refetch_interval: Duration::from_secs(raw.entra.jwks_min_refetch_interval_secs),
                jwks_cache_ttl: Duration::from_secs(raw.entra.jwks_cache_ttl_secs.max(60)),
                clock_skew: Duration::from_secs(raw.entra.clock_skew_secs),
                default_retry_after: Duration::from_secs(raw.entra.default_retry_after_secs.max(1)),
                retry: RetryConfig {
                    max_retries: raw.entra.max_retries.min(10),
                    base_delay: Duration::from_millis(raw.entra.retry_base_delay_ms),
                    max_delay: Duration::from_millis(raw.entra.retry_max_delay_ms),
                },
                breaker: BreakerConfig {
                    failure_threshold: raw.entra.circuit_failure_threshold,
                    open_for: Duration::from_secs(raw.entra.circuit_open_secs.max(1)),
                },
            },
            store,
            refresh,
            tokens: TokensConfig {
                min_refresh_interval: Duration::from_secs(raw.tokens.min_refresh_interval_secs),
                max_refreshes_per_minute: std::num::NonZeroU32::new(raw.tokens.max_refreshes_per_minute),
            },
            flow: FlowConfig {
                state_ttl: Duration::from_secs(raw.flow.state_ttl_secs),
                session_ttl: Duration::from_secs(raw.flow.session_ttl_secs),
                handoff_ttl: Duration::from_secs(raw.flow.handoff_ttl_secs),
                default_min_ttl: Duration::from_secs(raw.flow.default_min_ttl_secs),
            },
            log: LogConfig {
                json,
                level: raw.log.level,
            },
            connectors,
            encryption,
        })
    }

    /// Parses a config from TOML text (no environment overrides); for tests and the demo.
    pub fn from_toml_str(text: &str, name: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = Figment::new()
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError::Parse {
                file: name.to_string(),
                source: Box::new(e),
            })?;
        Self::from_raw(raw, name)
    }

    /// The connector with this id.
    pub fn connector(&self, id: &str) -> Option<&ConnectorConfig> {
        self.connectors.iter().find(|c| c.id == id)
    }
}

/// Validates the `[store]` keys of the Redis backend; errors name the key. URLs never appear in
/// messages: they may carry a password.
fn redis_config(raw: RawStore) -> Result<RedisConfig, (&'static str, String)> {
    let modes = [
        raw.url.is_some(),
        !raw.cluster_urls.is_empty(),
        !raw.sentinel_urls.is_empty(),
    ];
    if modes.iter().filter(|m| **m).count() > 1 {
        let key = if raw.url.is_some() {
            "store.url"
        } else {
            "store.cluster_urls"
        };
        return Err((
            key,
            "set only one of url (one server), cluster_urls (Redis Cluster) and sentinel_urls (Redis Sentinel)".into(),
        ));
    }
    if raw.sentinel_urls.is_empty() {
        for (key, set) in [
            ("store.sentinel_master", raw.sentinel_master.is_some()),
            ("store.sentinel_master_username", raw.sentinel_master_username.is_some()),
            (
                "store.sentinel_master_password_env",
                raw.sentinel_master_password_env.is_some(),
            ),
            ("store.sentinel_wait_replicas", raw.sentinel_wait_replicas != 0),
        ] {
            if set {
                return Err((key, "only used with sentinel_urls (Redis Sentinel)".into()));
            }
        }
    }
    let (urls, cluster, key, sentinel) = if let Some(url) = raw.url {
        (vec![url], false, "store.url", None)
    } else if !raw.cluster_urls.is_empty() {
        (raw.cluster_urls, true, "store.cluster_urls", None)
    } else if !raw.sentinel_urls.is_empty() {
        let sentinel = sentinel_config(
            raw.sentinel_master,
            raw.sentinel_master_username,
            raw.sentinel_master_password_env,
            raw.sentinel_wait_replicas,
        )?;
        (raw.sentinel_urls, false, "store.sentinel_urls", Some(sentinel))
    } else {
        return Err((
            "store.url",
            "missing: set url (one server), cluster_urls (Redis Cluster seed nodes) or sentinel_urls (Redis Sentinel)"
                .into(),
        ));
    };
    let mut schemes = HashSet::new();
    for url in &urls {
        schemes.insert(check_redis_url(url, cluster).map_err(|m| (key, m))?);
        if sentinel.is_some() && !Url::parse(url).is_ok_and(|u| u.path().trim_start_matches('/').is_empty()) {
            // A sentinel has no databases; a number here would be silently ignored.
            return Err((key, "a sentinel URL takes no database number".into()));
        }
    }
    if sentinel.is_some() {
        // The client logs in to every sentinel with one set of credentials.
        let logins: HashSet<_> = urls
            .iter()
            .filter_map(|u| Url::parse(u).ok())
            .map(|u| (u.username().to_string(), u.password().map(str::to_string)))
            .collect();
        if logins.len() > 1 {
            return Err((
                key,
                "every sentinel URL must carry the same user and password (or none)".into(),
            ));
        }
    }
    if schemes.len() > 1 {
        return Err((
            key,
            "mixes redis:// and rediss://; use one scheme for every node".into(),
        ));
    }
    if raw.key_prefix.len() > 64
        || !raw
            .key_prefix
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '{' && c != '}')
    {
        // Braces would become a Redis Cluster hash tag and pin every key to one slot.
        return Err((
            "store.key_prefix",
            "must be at most 64 printable ASCII characters without spaces, { or }".into(),
        ));
    }
    for (key, ms) in [
        ("store.connect_timeout_ms", raw.connect_timeout_ms),
        ("store.response_timeout_ms", raw.response_timeout_ms),
    ] {
        if ms == 0 || ms > 60_000 {
            return Err((key, "must be between 1 and 60000 milliseconds".into()));
        }
    }
    if let Some(ca) = &raw.tls_ca_file {
        if !schemes.contains("rediss") {
            return Err(("store.tls_ca_file", "only used with rediss:// URLs".into()));
        }
        if !ca.is_file() {
            return Err(("store.tls_ca_file", format!("file {} not found", ca.display())));
        }
    }
    Ok(RedisConfig {
        urls,
        cluster,
        sentinel,
        key_prefix: raw.key_prefix,
        connect_timeout: Duration::from_millis(raw.connect_timeout_ms),
        response_timeout: Duration::from_millis(raw.response_timeout_ms),
        tls_ca_file: raw.tls_ca_file,
    })
}

/// The Sentinel keys besides the URLs. The data nodes' password comes from an environment variable
/// so that it stays out of the file; the sentinels' own password, if any, is in their URLs.
fn sentinel_config(
    master: Option<String>,
    username: Option<String>,
    password_env: Option<String>,
    wait_replicas: u32,
) -> Result<SentinelConfig, (&'static str, String)> {
    let master = master.ok_or((
        "store.sentinel_master",
        "missing: name the master the sentinels monitor (their `sentinel monitor <name> …`)".to_string(),
    ))?;
    if master.is_empty() || !master.chars().all(|c| c.is_ascii_graphic()) {
        return Err((
            "store.sentinel_master",
            "must be a non-empty name of printable ASCII characters without spaces".into(),
        ));
    }
    if username.as_deref().is_some_and(str::is_empty) {
        return Err(("store.sentinel_master_username", "must not be empty".into()));
    }
    let password = match password_env {
        None => None,
        // figment reads every BROKER_* variable as a config override.
        Some(var) if var.to_ascii_uppercase().starts_with("BROKER_") => {
            return Err((
                "store.sentinel_master_password_env",
                format!("{var} starts with BROKER_, which is reserved for config overrides; use another name"),
            ));
        }
        Some(var) => match std::env::var(&var) {
            Ok(pw) if !pw.is_empty() => Some(pw),
            Ok(_) => return Err(("store.sentinel_master_password_env", format!("{var} is empty"))),
            Err(_) => return Err(("store.sentinel_master_password_env", format!("{var} is not set"))),
        },
    };
    if wait_replicas > 16 {
        return Err(("store.sentinel_wait_replicas", "must be between 0 and 16".into()));
    }
    Ok(SentinelConfig {
        master,
        username,
        password,
        wait_replicas,
    })
}

/// Checks one Redis URL and returns its scheme. Messages never echo the URL.
fn check_redis_url(raw: &str, cluster: bool) -> Result<&'static str, String> {
    let url = Url::parse(raw)
        .map_err(|_| "not a valid URL (expected redis://host:port or rediss://host:port)".to_string())?;
    let scheme = match url.scheme() {
        "redis" => "redis",
        "rediss" => "rediss",
        _ => return Err("must start with redis:// or rediss:// (TLS)".into()),
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    if url.fragment().is_some() {
        // redis-rs reads `#insecure` as "skip certificate checks"; never accept that silently.
        return Err("must not carry a #fragment (certificate checks cannot be turned off)".into());
    }
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u16>().is_err() {
        return Err("the path must be empty or a database number".into());
    }
    if cluster && !db.is_empty() && db != "0" {
        return Err("Redis Cluster has only database 0".into());
    }
    if redis::IntoConnectionInfo::into_connection_info(raw).is_err() {
        return Err("not accepted by the Redis client (check the host, port and options)".into());
    }
    Ok(scheme)
}

/// A base URL: absolute, http(s), no query, fragment or credentials; trailing `/` removed.
fn parse_base_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim_end_matches('/')).map_err(|e| format!("not an absolute URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http(s) URL".into());
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a query, fragment or credentials".into());
    }
    Ok(url)
}

/// A registered return URL: absolute https (http only on loopback), no fragment or credentials.
fn parse_return_url_entry(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("not an absolute URL: {e}"))?;
    if url.scheme() != "https" && !(url.scheme() == "http" && is_loopback_url(&url)) {
        return Err("must be https (http only for a loopback host)".into());
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a fragment or credentials".into());
    }
    if url.query().is_some() {
        return Err("register the URL without a query; callers may add one".into());
    }
    Ok(url)
}

/// True when the URL's host is a loopback address or `localhost`.
pub fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// A tenant path segment Entra accepts: `organizations`, `common`, `consumers`, a GUID or a domain.
pub fn is_tenant_segment(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 256
        && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !t.starts_with('.')
        && !t.starts_with('-')
}

/// Validates `[encryption]` and reads the keys. Encryption is required for the stores that keep
/// tokens at rest (embedded, redis); the memory store may run without. Messages name ids, files
/// and variables, never key material.
fn encryption_keys(raw: RawEncryption, store: &StoreConfig) -> Result<Option<Keyring>, (String, String)> {
    if raw.keys.is_empty() {
        if raw.primary.is_some() {
            return Err((
                "encryption.primary".into(),
                "set, but no [[encryption.keys]] is configured".into(),
            ));
        }
        let backend = match store {
            StoreConfig::Memory { .. } => return Ok(None),
            StoreConfig::Embedded { .. } => "embedded",
            StoreConfig::Redis { .. } => "redis",
        };
        return Err((
            "encryption.keys".into(),
            format!(
                "missing: the {backend} store keeps tokens at rest, encrypted. Generate a key with `consent-broker new-encryption-key > /path/to/key-file` (readable only by the broker), then add [[encryption.keys]] with id = \"k1\" and file = \"/path/to/key-file\" (or env = \"VARIABLE\"); see config/example.toml"
            ),
        ));
    }
    let mut keys = Vec::with_capacity(raw.keys.len());
    let mut ids = HashSet::new();
    for (i, k) in raw.keys.into_iter().enumerate() {
        let at = |field: &str| format!("encryption.keys[{i}].{field}");
        if !valid_key_id(&k.id) {
            return Err((
                at("id"),
                format!("must be 1-{MAX_KEY_ID_LEN} characters of A-Z, a-z, 0-9, '.', '_' or '-'"),
            ));
        }
        if !ids.insert(k.id.clone()) {
            return Err((at("id"), format!("duplicate key id {:?}", k.id)));
        }
        // The key text (wiped when dropped), the field it came from and how to name its source.
        let (text, field, source) = match (k.env, k.file) {
            (Some(_), Some(_)) => return Err((at("env"), "set env or file, not both".into())),
            (None, None) => {
                return Err((
                    at("env"),
                    "missing: name the environment variable (env) or file (file) holding the key; keys are never inline".into(),
                ));
            }
            (Some(var), None) => {
                if var.to_ascii_uppercase().starts_with("BROKER_") {
                    // figment reads every BROKER_* variable as a config override.
                    return Err((
                        at("env"),
                        format!("{var} starts with BROKER_, which is reserved for config overrides; use another name"),
                    ));
                }
                match std::env::var(&var) {
                    Ok(v) if !v.trim().is_empty() => (Zeroizing::new(v), "env", format!("environment variable {var}")),
                    _ => return Err((at("env"), format!("environment variable {var} is not set or empty"))),
                }
            }
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(v) if !v.trim().is_empty() => (Zeroizing::new(v), "file", format!("key file {}", path.display())),
                Ok(_) => return Err((at("file"), format!("key file {} is empty", path.display()))),
                Err(e) => return Err((at("file"), format!("cannot read key file {}: {e}", path.display()))),
            },
        };
        let key = EncryptionKey::from_hex(&text).map_err(|m| (at(field), format!("{source}: {m}")))?;
        keys.push((k.id, key));
    }
    let primary = match (raw.primary, keys.len()) {
        (Some(p), _) => p,
        (None, 1) => keys[0].0.clone(),
        (None, _) => {
            return Err((
                "encryption.primary".into(),
                "missing: with several keys, name the one that encrypts (the others only decrypt)".into(),
            ));
        }
    };
    if !ids.contains(&primary) {
        return Err((
            "encryption.primary".into(),
            format!("no key with id {primary:?} in [[encryption.keys]]"),
        ));
    }
    Keyring::new(&primary, keys)
        .map(Some)
        .map_err(|m| ("encryption.keys".into(), m))
}

/// A connector's credential: exactly one of a client secret (env or file) and a certificate
/// (certificate and key files). Errors name the field at fault, relative to the connector.
fn connector_credential(c: &RawConnector) -> Result<ClientCredential, (&'static str, String)> {
    let secret = c.client_secret_env.is_some() || c.client_secret_file.is_some();
    let certificate = c.client_certificate_file.is_some() || c.client_certificate_key_file.is_some();
    if secret && certificate {
        return Err((
            "client_certificate_file",
            "set a client secret (client_secret_env or client_secret_file) or a certificate (client_certificate_file and client_certificate_key_file), not both".into(),
        ));
    }
    if !certificate {
        let secret = resolve_secret(c.client_secret_env.as_deref(), c.client_secret_file.as_deref())
            .map_err(|m| ("client_secret_env", m))?;
        let expires_at = c
            .client_secret_expires_at
            .as_deref()
            .map(parse_expiry)
            .transpose()
            .map_err(|m| ("client_secret_expires_at", m))?;
        return Ok(ClientCredential::Secret { secret, expires_at });
    }
    if c.client_secret_expires_at.is_some() {
        return Err((
            "client_secret_expires_at",
            "only used with a client secret; a certificate's expiry is read from the certificate".into(),
        ));
    }
    let (cert_file, key_file) = match (&c.client_certificate_file, &c.client_certificate_key_file) {
        (Some(cert), Some(key)) => (cert, key),
        (None, _) => {
            return Err((
                "client_certificate_file",
                "missing: a certificate credential needs the certificate (PEM) as well as its key".into(),
            ));
        }
        (_, None) => {
            return Err((
                "client_certificate_key_file",
                "missing: a certificate credential needs its private key (PEM, PKCS#8 RSA)".into(),
            ));
        }
    };
    let cert = ClientCertificate::load(cert_file, key_file).map_err(|e| {
        let field = match e.part {
            CertificatePart::Certificate => "client_certificate_file",
            CertificatePart::Key => "client_certificate_key_file",
        };
        (field, e.message)
    })?;
    Ok(ClientCredential::Certificate(std::sync::Arc::new(cert)))
}

/// An expiry the operator copied from the portal: an RFC 3339 date-time, or a date (midnight UTC).
fn parse_expiry(raw: &str) -> Result<time::OffsetDateTime, String> {
    let raw = raw.trim();
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .or_else(|_| {
            time::Date::parse(raw, time::macros::format_description!("[year]-[month]-[day]"))
                .map(|d| d.midnight().assume_utc())
        })
        .map_err(|_| format!("{raw:?} is not an RFC 3339 date-time such as \"2027-06-30T00:00:00Z\" (or a date such as \"2027-06-30\")"))
}

/// The keys (dotted, lower case) of `BROKER_*` variables that name no config key.
fn unknown_env_keys(e: &figment::Error) -> Vec<String> {
    e.clone()
        .into_iter()
        .filter(|e| e.metadata.as_ref().is_some_and(|m| m.name.contains("BROKER_")))
        .filter_map(|e| match &e.kind {
            // The path already ends with the unknown field.
            figment::error::Kind::UnknownField(..) => Some(e.path.join(".").to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

fn resolve_secret(env: Option<&str>, file: Option<&Path>) -> Result<SecretString, String> {
    match (env, file) {
        (None, None) => Err("missing: name the environment variable (client_secret_env) or file (client_secret_file) holding the client secret (secrets are never inline), or configure a certificate with client_certificate_file and client_certificate_key_file".into()),
        _ => read_secret(env, file),
    }
}

/// A secret from the environment variable `env` or the file `file` (exactly one is set); the
/// messages name the keys as `client_secret_*`, callers for other secrets rename them.
fn read_secret(env: Option<&str>, file: Option<&Path>) -> Result<SecretString, String> {
    match (env, file) {
        (Some(_), Some(_)) | (None, None) => Err("set client_secret_env or client_secret_file, not both".into()),
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(SecretString::from(v.trim().to_string())),
            _ => Err(format!("environment variable {var} is not set or empty")),
        },
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(v) if !v.trim().is_empty() => Ok(SecretString::from(v.trim().to_string())),
            Ok(_) => Err(format!("secret file {} is empty", path.display())),
            Err(e) => Err(format!("cannot read secret file {}: {e}", path.display())),
        },
    }
}

#[cfg(test)]
// figment's Jail closures return its (large) error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    fn base(extra: &str) -> String {
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:8080"
plain_http = true
[store]
backend = "memory"
{extra}
"#
        )
    }

    const CONNECTOR: &str = r#"
[[connectors]]
id = "sp"
display_name = "SharePoint"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret_env = "CB_TEST_SECRET_PRESENT"
scopes = ["Files.Read.All"]
return_urls = ["https://app.example.com/oauth/done"]
api_key_hashes = ["sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"]
"#;

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

    fn err_of(text: &str) -> String {
        let mut out = String::new();
        figment::Jail::expect_with(|jail| {
            jail.set_env("CB_TEST_SECRET_PRESENT", "s3cret");
            jail.set_env("CB_TEST_KEY", TEST_KEY);
            out = Config::from_toml_str(text, "t.toml")
                .expect_err("must fail")
                .to_string();
            Ok(())
        });
        out
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
    fn limits_proxy_header_and_retries() {
        figment::Jail::expect_with(|_| {
            let cfg = Config::from_toml_str(&base(""), "t.toml").expect("defaults");
            assert_eq!(
                cfg.limits.per_ip,
                Some(RateLimit {
                    per_minute: 300,
                    burst: 60
                })
            );
            assert!(cfg.trusted_proxy_header.is_none() && cfg.metrics_listen.is_none());
            assert_eq!(cfg.entra.retry.max_retries, 2);
            assert_eq!(cfg.entra.breaker.failure_threshold, 5);
            let text = base("[limits]\nip_per_minute = 0\nconnector_per_minute = 60\nconnector_burst = 1").replace(
                "plain_http = true",
                "plain_http = true\ntrusted_proxy_header = \"X-Forwarded-For\"",
            );
            let cfg = Config::from_toml_str(&text, "t.toml").expect("set");
            assert_eq!(cfg.limits.per_ip, None, "0 per minute turns a limit off");
            assert_eq!(
                cfg.limits.per_connector,
                Some(RateLimit {
                    per_minute: 60,
                    burst: 1
                })
            );
            assert_eq!(
                cfg.trusted_proxy_header.as_ref().map(|h| h.as_str()),
                Some("x-forwarded-for")
            );
            Ok(())
        });
        let e = err_of(&base("[limits]\ntenant_flow_starts_burst = 0"));
        assert!(e.contains("limits.tenant_flow_starts_burst"), "{e}");
        let e = err_of(&base("").replace(
            "plain_http = true",
            "plain_http = true\ntrusted_proxy_header = \"x forwarded\"",
        ));
        assert!(e.contains("server.trusted_proxy_header"), "{e}");
    }

    #[test]
    fn refresh_lease_settings() {
        figment::Jail::expect_with(|_| {
            let cfg = Config::from_toml_str(&base(""), "t.toml").expect("defaults");
            assert_eq!(cfg.refresh.lease, Duration::from_secs(10));
            assert_eq!(cfg.refresh.wait, Duration::from_secs(15));
            assert!(cfg.refresh.renew);
            let cfg = Config::from_toml_str(
                &base("refresh_lease_ms = 300\nrefresh_wait_ms = 2000\nrefresh_lease_renew = false"),
                "t.toml",
            )
            .expect("set");
            assert_eq!(cfg.refresh.lease, Duration::from_millis(300));
            assert_eq!(cfg.refresh.wait, Duration::from_secs(2));
            assert!(!cfg.refresh.renew);
            Ok(())
        });
        let e = err_of(&base("refresh_lease_ms = 0"));
        assert!(e.contains("store.refresh_lease_ms"), "{e}");
        let e = err_of(&base("refresh_wait_ms = 600001"));
        assert!(e.contains("store.refresh_wait_ms"), "{e}");
    }

    #[test]
    fn errors_name_file_key_and_problem() {
        let e = err_of(&base(
            &CONNECTOR.replace("11111111-2222-3333-4444-555555555555", "nope"),
        ));
        assert!(e.starts_with("t.toml: connectors[0].client_id: must be"), "{e}");

        let e = err_of(&base(
            &CONNECTOR.replace("CB_TEST_SECRET_PRESENT", "CB_TEST_SECRET_ABSENT"),
        ));
        assert!(
            e.contains("connectors[0].client_secret_env") && e.contains("CB_TEST_SECRET_ABSENT"),
            "{e}"
        );

        let e = err_of(&base(
            &CONNECTOR.replace("https://app.example.com/oauth/done", "http://app.example.com/x"),
        ));
        assert!(e.contains("connectors[0].return_urls[0]"), "{e}");

        let e = err_of(&base(&CONNECTOR.replace("sha256:ba78", "md5:ba78")));
        assert!(e.contains("connectors[0].api_key_hashes[0]"), "{e}");

        let e = err_of(&base("[entra]\nauthority = \"http://login.example.com\""));
        assert!(e.contains("entra.authority"), "{e}");

        let e = err_of(&base("[server2]\nx = 1"));
        assert!(e.starts_with("t.toml: ") && e.contains("server2"), "{e}");

        let e = err_of(&base("[flow]\nhandoff_ttl_secs = 600"));
        assert!(e.contains("flow.handoff_ttl_secs"), "{e}");

        let e = err_of(&base(&format!("{CONNECTOR}{CONNECTOR}")));
        assert!(e.contains("duplicate connector id"), "{e}");
    }

    #[test]
    fn redis_store_config() {
        let store = |body: &str| format!("{}{ONE_KEY}", base("").replace("backend = \"memory\"", body));
        figment::Jail::expect_with(|jail| {
            jail.set_env("CB_TEST_KEY", TEST_KEY);
            let cfg = Config::from_toml_str(
                &store("backend = \"redis\"\nurl = \"redis://:pw@127.0.0.1:6379/2\""),
                "t.toml",
            )
            .expect("standalone");
            let StoreConfig::Redis { redis, .. } = cfg.store else {
                panic!("not redis: {:?}", cfg.store);
            };
            assert!(!redis.cluster);
            assert_eq!(redis.key_prefix, "cb:");
            assert_eq!(redis.connect_timeout, Duration::from_millis(1_000));
            assert_eq!(redis.response_timeout, Duration::from_millis(500));
            let shown = format!("{redis:?}");
            assert!(!shown.contains("pw"), "{shown}");
            assert!(shown.contains("redis://127.0.0.1:6379"), "{shown}");

            let cfg = Config::from_toml_str(
                &store(
                    "backend = \"redis\"\ncluster_urls = [\"rediss://a.example:7000\", \"rediss://b.example:7001\"]\nkey_prefix = \"\"\nconnect_timeout_ms = 250\nresponse_timeout_ms = 100",
                ),
                "t.toml",
            )
            .expect("cluster");
            let StoreConfig::Redis { redis, .. } = cfg.store else {
                panic!("not redis");
            };
            assert!(redis.cluster);
            assert_eq!(redis.urls.len(), 2);
            assert_eq!(redis.key_prefix, "");
            assert_eq!(redis.response_timeout, Duration::from_millis(100));
            assert!(redis.sentinel.is_none());

            jail.set_env("CB_TEST_REDIS_PW", "data-n0de-pw");
            let cfg = Config::from_toml_str(
                &store(
                    "backend = \"redis\"\nsentinel_urls = [\"rediss://:sent-pw@s1.example:26379\", \"rediss://:sent-pw@s2.example:26379\"]\nsentinel_master = \"mymaster\"\nsentinel_master_username = \"broker\"\nsentinel_master_password_env = \"CB_TEST_REDIS_PW\"\nsentinel_wait_replicas = 1",
                ),
                "t.toml",
            )
            .expect("sentinel");
            let StoreConfig::Redis { redis, .. } = cfg.store else {
                panic!("not redis");
            };
            assert!(!redis.cluster);
            assert_eq!(redis.urls.len(), 2);
            let sentinel = redis.sentinel.as_ref().expect("sentinel mode");
            assert_eq!(sentinel.master, "mymaster");
            assert_eq!(sentinel.username.as_deref(), Some("broker"));
            assert_eq!(sentinel.password.as_deref(), Some("data-n0de-pw"));
            assert_eq!(sentinel.wait_replicas, 1);
            let shown = format!("{redis:?}");
            assert!(!shown.contains("data-n0de-pw") && !shown.contains("sent-pw"), "{shown}");
            Ok(())
        });

        for (body, key, words) in [
            ("backend = \"redis\"", "store.url", "missing"),
            (
                "backend = \"redis\"\nurl = \"redis://h:1\"\ncluster_urls = [\"redis://h:2\"]",
                "store.url",
                "only one of",
            ),
            (
                "backend = \"redis\"\ncluster_urls = [\"redis://h:1\"]\nsentinel_urls = [\"redis://h:2\"]\nsentinel_master = \"m\"",
                "store.cluster_urls",
                "only one of",
            ),
            (
                "backend = \"redis\"\nsentinel_urls = [\"redis://h:26379\"]",
                "store.sentinel_master",
                "missing",
            ),
            (
                "backend = \"redis\"\nsentinel_urls = [\"redis://h:26379\"]\nsentinel_master = \"my master\"",
                "store.sentinel_master",
                "spaces",
            ),
            (
                "backend = \"redis\"\nsentinel_urls = [\"redis://:secret@h:26379/1\"]\nsentinel_master = \"m\"",
                "store.sentinel_urls",
                "database",
            ),
            (
                "backend = \"redis\"\nsentinel_urls = [\"redis://:secret@h:1\", \"redis://:other@h:2\"]\nsentinel_master = \"m\"",
                "store.sentinel_urls",
                "same user and password",
            ),
            (
                "backend = \"redis\"\nsentinel_urls = [\"redis://h:1\", \"rediss://h:2\"]\nsentinel_master = \"m\"",
                "store.sentinel_urls",
                "mixes",
            ),
            (
                "backend = \"redis\"\nsentinel_urls = [\"redis://h:1\"]\nsentinel_master = \"m\"\nsentinel_master_password_env = \"CB_TEST_REDIS_PW_ABSENT\"",
                "store.sentinel_master_password_env",
                "CB_TEST_REDIS_PW_ABSENT is not set",
            ),
            (
                "backend = \"redis\"\nsentinel_urls = [\"redis://h:1\"]\nsentinel_master = \"m\"\nsentinel_master_password_env = \"BROKER_REDIS_PW\"",
                "store.sentinel_master_password_env",
                "reserved",
            ),
            (
                "backend = \"redis\"\nsentinel_urls = [\"redis://h:1\"]\nsentinel_master = \"m\"\nsentinel_wait_replicas = 17",
                "store.sentinel_wait_replicas",
                "between",
            ),
            (
                "backend = \"redis\"\nurl = \"redis://h:1\"\nsentinel_master = \"m\"",
                "store.sentinel_master",
                "only used with sentinel_urls",
            ),
            (
                "backend = \"redis\"\nurl = \"redis://h:1\"\nsentinel_wait_replicas = 1",
                "store.sentinel_wait_replicas",
                "only used with sentinel_urls",
            ),
            (
                "backend = \"embedded\"\nsentinel_urls = [\"redis://:secret@h:1\"]",
                "store.sentinel_urls",
                "only used",
            ),
            (
                "backend = \"redis\"\nurl = \"http://:secret@h:1\"",
                "store.url",
                "redis://",
            ),
            (
                "backend = \"redis\"\nurl = \"rediss://:secret@h:1/#insecure\"",
                "store.url",
                "fragment",
            ),
            (
                "backend = \"redis\"\nurl = \"redis://:secret@h:1/x\"",
                "store.url",
                "database",
            ),
            (
                "backend = \"redis\"\ncluster_urls = [\"redis://:secret@h:1/3\"]",
                "store.cluster_urls",
                "database 0",
            ),
            (
                "backend = \"redis\"\ncluster_urls = [\"redis://h:1\", \"rediss://h:2\"]",
                "store.cluster_urls",
                "mixes",
            ),
            (
                "backend = \"redis\"\nurl = \"redis://h:1\"\nkey_prefix = \"{cb}:\"",
                "store.key_prefix",
                "{",
            ),
            (
                "backend = \"redis\"\nurl = \"redis://h:1\"\nkey_prefix = \"c b\"",
                "store.key_prefix",
                "spaces",
            ),
            (
                "backend = \"redis\"\nurl = \"redis://h:1\"\nconnect_timeout_ms = 0",
                "store.connect_timeout_ms",
                "between",
            ),
            (
                "backend = \"redis\"\nurl = \"redis://h:1\"\nresponse_timeout_ms = 600000",
                "store.response_timeout_ms",
                "between",
            ),
            (
                "backend = \"redis\"\nurl = \"redis://h:1\"\ntls_ca_file = \"/nonexistent.pem\"",
                "store.tls_ca_file",
                "rediss",
            ),
            (
                "backend = \"redis\"\nurl = \"rediss://h:1\"\ntls_ca_file = \"/nonexistent.pem\"",
                "store.tls_ca_file",
                "not found",
            ),
            (
                "backend = \"embedded\"\nurl = \"redis://:secret@h:1\"",
                "store.url",
                "only used",
            ),
            ("backend = \"redis2\"", "store.backend", "\"redis\""),
        ] {
            let e = err_of(&store(body));
            assert!(e.starts_with(&format!("t.toml: {key}: ")), "{body}: {e}");
            assert!(e.contains(words), "{body}: {e}");
            assert!(!e.contains("secret"), "a Redis URL's password leaked: {e}");
        }
    }

    const TEST_KEY: &str = "8f1c2e3d4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    const ONE_KEY: &str = "\n[[encryption.keys]]\nid = \"k1\"\nenv = \"CB_TEST_KEY\"\n";

    #[test]
    fn encryption_config() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("k2");
        std::fs::write(&key_file, format!("{}\n", TEST_KEY.to_uppercase().replace("8F", "7E"))).unwrap();
        let empty_file = dir.path().join("empty");
        std::fs::write(&empty_file, "\n").unwrap();
        let with_store = |backend: &str, encryption: &str| {
            format!(
                "{}{encryption}",
                base("").replace(
                    "backend = \"memory\"",
                    &format!(
                        "backend = \"{backend}\"\npath = \"{}\"",
                        dir.path().join("db.redb").display()
                    )
                )
            )
        };
        figment::Jail::expect_with(|jail| {
            jail.set_env("CB_TEST_KEY", TEST_KEY);
            // The memory store may run without keys.
            let cfg = Config::from_toml_str(&base(""), "t.toml").expect("memory without keys");
            assert!(cfg.encryption.is_none());

            let cfg = Config::from_toml_str(&with_store("embedded", ONE_KEY), "t.toml").expect("one key");
            let keys = cfg.encryption.expect("keys");
            assert_eq!(keys.primary_id(), "k1", "a single key is the primary");

            let two = format!(
                "\n[encryption]\nprimary = \"k2\"\n[[encryption.keys]]\nid = \"k1\"\nenv = \"CB_TEST_KEY\"\n[[encryption.keys]]\nid = \"k2\"\nfile = \"{}\"\n",
                key_file.display()
            );
            let cfg = Config::from_toml_str(&with_store("embedded", &two), "t.toml").expect("two keys");
            let keys = cfg.encryption.clone().expect("keys");
            assert_eq!(keys.primary_id(), "k2");
            assert_eq!(keys.ids().collect::<Vec<_>>(), ["k1", "k2"]);
            let shown = format!("{cfg:?}").to_ascii_lowercase();
            assert!(
                !shown.contains("8f1c2e3d") && !shown.contains("7e1c2e3d"),
                "key material in Debug: {shown}"
            );
            Ok(())
        });

        let cases: Vec<(String, &str, &str)> = vec![
            (with_store("embedded", ""), "encryption.keys", "new-encryption-key"),
            (
                base("").replace("backend = \"memory\"", "backend = \"redis\"\nurl = \"redis://h:1\""),
                "encryption.keys",
                "the redis store",
            ),
            (
                with_store("embedded", "\n[encryption]\nprimary = \"k1\"\n"),
                "encryption.primary",
                "no [[encryption.keys]]",
            ),
            (
                with_store("embedded", &ONE_KEY.replace("id = \"k1\"", "id = \"k 1\"")),
                "encryption.keys[0].id",
                "characters",
            ),
            (
                with_store("embedded", &format!("{ONE_KEY}{ONE_KEY}")),
                "encryption.keys[1].id",
                "duplicate",
            ),
            (
                with_store("embedded", &format!("{ONE_KEY}file = \"{}\"\n", key_file.display())),
                "encryption.keys[0].env",
                "not both",
            ),
            (
                with_store("embedded", "\n[[encryption.keys]]\nid = \"k1\"\n"),
                "encryption.keys[0].env",
                "never inline",
            ),
            (
                with_store("embedded", "\n[[encryption.keys]]\nid = \"k1\"\nkey = \"00\"\n"),
                "encryption.keys",
                "unknown field",
            ),
            (
                with_store("embedded", &ONE_KEY.replace("CB_TEST_KEY", "CB_TEST_KEY_ABSENT")),
                "encryption.keys[0].env",
                "CB_TEST_KEY_ABSENT is not set",
            ),
            (
                with_store("embedded", &ONE_KEY.replace("CB_TEST_KEY", "BROKER_KEY_K1")),
                "encryption.keys[0].env",
                "reserved",
            ),
            (
                with_store("embedded", &ONE_KEY.replace("CB_TEST_KEY", "CB_TEST_SECRET_PRESENT")),
                "encryption.keys[0].env",
                "64 hex digits",
            ),
            (
                with_store(
                    "embedded",
                    &format!(
                        "\n[[encryption.keys]]\nid = \"k1\"\nfile = \"{}\"\n",
                        empty_file.display()
                    ),
                ),
                "encryption.keys[0].file",
                "is empty",
            ),
            (
                with_store(
                    "embedded",
                    "\n[[encryption.keys]]\nid = \"k1\"\nfile = \"/nonexistent/key\"\n",
                ),
                "encryption.keys[0].file",
                "cannot read key file /nonexistent/key",
            ),
            (
                with_store(
                    "embedded",
                    &format!(
                        "{ONE_KEY}[[encryption.keys]]\nid = \"k2\"\nfile = \"{}\"\n",
                        key_file.display()
                    ),
                ),
                "encryption.primary",
                "several keys",
            ),
            (
                with_store("embedded", &format!("\n[encryption]\nprimary = \"k9\"{ONE_KEY}")),
                "encryption.primary",
                "\"k9\"",
            ),
        ];
        for (text, key, words) in cases {
            let e = err_of(&text);
            if words == "unknown field" {
                assert!(
                    e.starts_with("t.toml: ") && e.contains(words) && e.contains("key"),
                    "{e}"
                );
                continue;
            }
            assert!(e.starts_with(&format!("t.toml: {key}: ")), "{key}: {e}");
            assert!(e.contains(words), "{key}: {e}");
            assert!(
                !e.contains("s3cret") && !e.to_ascii_lowercase().contains("8f1c2e3d"),
                "a key leaked: {e}"
            );
        }
    }

    #[test]
    fn redis_urls_are_redacted_for_logs() {
        assert_eq!(
            redact_redis_url("rediss://user:pw@cache.example:6380/1?x=y"),
            "rediss://cache.example:6380"
        );
        assert_eq!(redact_redis_url("redis://:pw@h"), "redis://h");
        assert_eq!(redact_redis_url("nope"), "<unparsable redis url>");
    }

    #[test]
    fn certificate_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let (cert_pem, key_pem) = crate::entra::credential::test_certificate(90);
        let (_, other_key) = crate::entra::credential::test_certificate(90);
        let cert = write("cert.pem", &cert_pem);
        let key = write("key.pem", &key_pem);
        let other = write("other.pem", &other_key);
        let with =
            |credential: &str| base(&CONNECTOR.replace("client_secret_env = \"CB_TEST_SECRET_PRESENT\"", credential));
        let certificate = format!("client_certificate_file = \"{cert}\"\nclient_certificate_key_file = \"{key}\"");

        figment::Jail::expect_with(|jail| {
            jail.set_env("CB_TEST_SECRET_PRESENT", "s3cret-value");
            let cfg = Config::from_toml_str(&with(&certificate), "t.toml").expect("certificate loads");
            let ClientCredential::Certificate(loaded) = &cfg.connectors[0].credential else {
                panic!("not a certificate: {:?}", cfg.connectors[0].credential);
            };
            assert_eq!(loaded.file().display().to_string(), cert);
            assert_eq!(cfg.connectors[0].credential.kind(), "certificate");
            assert_eq!(cfg.connectors[0].credential.expires_at(), Some(loaded.not_after()));
            // Nothing of the private key reaches Debug (and so no log line built from it).
            let shown = format!("{cfg:?}");
            let key_body: String = key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
            for chunk in key_body.as_bytes().chunks(12) {
                assert!(
                    !shown.contains(std::str::from_utf8(chunk).unwrap()),
                    "key material in Debug"
                );
            }

            let secret = "client_secret_env = \"CB_TEST_SECRET_PRESENT\"\nclient_secret_expires_at = \"2027-06-30T12:00:00+02:00\"";
            let cfg = Config::from_toml_str(&with(secret), "t.toml").expect("secret with expiry");
            assert_eq!(
                cfg.connectors[0].credential.expires_at(),
                Some(time::macros::datetime!(2027-06-30 10:00 UTC))
            );
            let shown = format!("{cfg:?}");
            assert!(!shown.contains("s3cret-value"), "secret in Debug: {shown}");
            let cfg = Config::from_toml_str(
                &with("client_secret_env = \"CB_TEST_SECRET_PRESENT\"\nclient_secret_expires_at = \"2027-06-30\""),
                "t.toml",
            )
            .expect("a date is midnight UTC");
            assert_eq!(
                cfg.connectors[0].credential.expires_at(),
                Some(time::macros::datetime!(2027-06-30 0:00 UTC))
            );
            Ok(())
        });

        for (credential, key_name, words) in [
            (
                format!("client_secret_env = \"CB_TEST_SECRET_PRESENT\"\n{certificate}"),
                "client_certificate_file",
                "not both",
            ),
            (
                format!("client_secret_file = \"{cert}\"\nclient_certificate_key_file = \"{key}\""),
                "client_certificate_file",
                "not both",
            ),
            (
                format!("client_certificate_file = \"{cert}\""),
                "client_certificate_key_file",
                "missing",
            ),
            (
                format!("client_certificate_key_file = \"{key}\""),
                "client_certificate_file",
                "missing",
            ),
            (String::new(), "client_secret_env", "client_certificate_file"),
            (
                format!("{certificate}\nclient_secret_expires_at = \"2027-01-01\""),
                "client_secret_expires_at",
                "only used with a client secret",
            ),
            (
                "client_secret_env = \"CB_TEST_SECRET_PRESENT\"\nclient_secret_expires_at = \"next year\"".into(),
                "client_secret_expires_at",
                "RFC 3339",
            ),
            (
                format!("client_certificate_file = \"{cert}\"\nclient_certificate_key_file = \"{other}\""),
                "client_certificate_key_file",
                "does not match the certificate",
            ),
            (
                format!("client_certificate_file = \"{key}\"\nclient_certificate_key_file = \"{key}\""),
                "client_certificate_file",
                "CERTIFICATE",
            ),
            (
                format!("client_certificate_file = \"{cert}\"\nclient_certificate_key_file = \"{cert}\""),
                "client_certificate_key_file",
                "expected an RSA private key",
            ),
            (
                format!("client_certificate_file = \"{cert}.missing\"\nclient_certificate_key_file = \"{key}\""),
                "client_certificate_file",
                "cannot read certificate file",
            ),
        ] {
            let e = err_of(&with(&credential));
            assert!(
                e.starts_with(&format!("t.toml: connectors[0].{key_name}: ")),
                "{credential}: {e}"
            );
            assert!(e.contains(words), "{credential}: {e}");
            assert!(!e.contains("s3cret") && !e.contains("PRIVATE KEY-----"), "{e}");
        }
    }

    #[test]
    fn plain_http_must_be_explicit() {
        let text = base("").replace("plain_http = true\n", "");
        let e = err_of(&text);
        assert!(e.contains("server.tls: missing"), "{e}");
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback_url(&Url::parse("http://127.0.0.1:9/").unwrap()));
        assert!(is_loopback_url(&Url::parse("http://[::1]:9/").unwrap()));
        assert!(is_loopback_url(&Url::parse("http://localhost/").unwrap()));
        assert!(!is_loopback_url(&Url::parse("http://127.0.0.1.evil.com/").unwrap()));
        assert!(!is_loopback_url(&Url::parse("http://10.0.0.1/").unwrap()));
    }
}
