//! `[server]` and `[server.tls]`: the listener, TLS, the HTTP server's own limits and who may
//! read `/metrics`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Deserialize;
use url::Url;

use super::Invalid;
use super::values::{is_loopback_url, parse_base_url, read_secret};
use crate::crypto::Sensitive;

// `listen` and `public_url` have no default, so this section cannot take one `impl Default`
// (serde's container default would make them optional): each default is a function named by
// its field, the only place it is written; `HttpLimits::default` calls the same functions.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
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
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
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

/// PEM files for the in-process TLS listener.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Private key (PEM).
    pub key_file: PathBuf,
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

/// The validated `[server]` keys; [`Config`](super::Config) keeps them as top-level fields.
pub(super) struct Server {
    pub(super) listen: SocketAddr,
    pub(super) public_url: Url,
    pub(super) tls: Option<TlsConfig>,
    pub(super) shutdown_grace: Duration,
    pub(super) metrics_listen: Option<SocketAddr>,
    pub(super) metrics_token: Option<Sensitive>,
    pub(super) http: HttpLimits,
    pub(super) trusted_proxy_header: Option<http::HeaderName>,
}

impl RawServer {
    /// Checks the URLs and files and reads the metrics token.
    pub(super) fn validate(self) -> Result<Server, Invalid> {
        let public_url = parse_base_url(&self.public_url).map_err(|m| Invalid::new("server.public_url", m))?;
        if public_url.scheme() != "https" && !is_loopback_url(&public_url) {
            return Err(Invalid::new(
                "server.public_url",
                "must be https (http is accepted only for a loopback host)",
            ));
        }
        let tls = match (self.tls, self.plain_http) {
            (Some(_), true) => {
                return Err(Invalid::new(
                    "server.plain_http",
                    "set either [server.tls] or plain_http = true, not both",
                ));
            }
            (None, false) => {
                return Err(Invalid::new(
                    "server.tls",
                    "missing: configure cert_file and key_file, or set plain_http = true explicitly (e.g. behind a TLS-terminating proxy)",
                ));
            }
            (Some(t), false) => {
                for (key, path) in [
                    ("server.tls.cert_file", &t.cert_file),
                    ("server.tls.key_file", &t.key_file),
                ] {
                    if !path.is_file() {
                        return Err(Invalid::new(key, format!("file {} not found", path.display())));
                    }
                }
                Some(TlsConfig {
                    cert_file: t.cert_file,
                    key_file: t.key_file,
                })
            }
            (None, true) => None,
        };

        let metrics_token = match (&self.metrics_token_env, &self.metrics_token_file) {
            (None, None) => None,
            (env, file) => {
                let key = if env.is_some() {
                    "server.metrics_token_env"
                } else {
                    "server.metrics_token_file"
                };
                let token = read_secret(env.as_deref(), file.as_deref())
                    .map_err(|m| Invalid::new(key, m.replace("client_secret", "metrics_token")))?;
                if token.expose_secret().len() < 16 {
                    return Err(Invalid::new(key, "the metrics token must be at least 16 characters"));
                }
                Some(Sensitive::new(token.expose_secret().to_string()))
            }
        };
        let trusted_proxy_header = match self.trusted_proxy_header.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => Some(
                http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| {
                    Invalid::new(
                        "server.trusted_proxy_header",
                        format!("{name:?} is not a header name (e.g. \"x-forwarded-for\")"),
                    )
                })?,
            ),
        };

        let positive_secs = |key: &str, secs: u64| match secs {
            0 => Err(Invalid::new(key, "must be at least 1 second")),
            s => Ok(Duration::from_secs(s)),
        };
        let http = HttpLimits {
            header_read_timeout: positive_secs("server.header_read_timeout_secs", self.header_read_timeout_secs)?,
            body_timeout: positive_secs("server.body_timeout_secs", self.body_timeout_secs)?,
            request_timeout: positive_secs("server.request_timeout_secs", self.request_timeout_secs)?,
            max_connections: match self.max_connections {
                0 => return Err(Invalid::new("server.max_connections", "must be at least 1")),
                n => n,
            },
        };

        Ok(Server {
            listen: self.listen,
            public_url,
            tls,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            metrics_listen: self.metrics_listen,
            metrics_token,
            http,
            trusted_proxy_header,
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
    fn plain_http_must_be_explicit() {
        let text = base("").replace("plain_http = true\n", "");
        let e = err_of(&text);
        assert!(e.contains("server.tls: missing"), "{e}");
    }

    #[test]
    fn trusted_proxy_header_is_a_lower_cased_header_name() {
        figment::Jail::expect_with(|_| {
            let cfg = Config::from_toml_str(&base(""), "t.toml").expect("defaults");
            assert!(cfg.trusted_proxy_header.is_none() && cfg.metrics_listen.is_none());
            let text = base("").replace(
                "plain_http = true",
                "plain_http = true\ntrusted_proxy_header = \"X-Forwarded-For\"",
            );
            let cfg = Config::from_toml_str(&text, "t.toml").expect("set");
            assert_eq!(
                cfg.trusted_proxy_header.as_ref().map(|h| h.as_str()),
                Some("x-forwarded-for")
            );
            Ok(())
        });
        let e = err_of(&base("").replace(
            "plain_http = true",
            "plain_http = true\ntrusted_proxy_header = \"x forwarded\"",
        ));
        assert!(e.contains("server.trusted_proxy_header"), "{e}");
    }
}
