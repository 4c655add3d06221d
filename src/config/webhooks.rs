//! `[[connectors.webhooks]]` (where a connector's events go, and the secrets that sign them) and
//! `[webhooks]` (how deliveries are retried).

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretBox};
use serde::Deserialize;
use url::Url;

use super::Invalid;
use super::values::{is_loopback_url, read_secret};

/// One endpoint block as written.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    url: String,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
}

/// A signing secret's bytes (the base64 after `whsec_`), never logged.
pub struct WebhookSecret(SecretBox<Vec<u8>>);

impl WebhookSecret {
    /// One `whsec_<base64>` secret of 24 to 64 bytes.
    pub fn from_whsec(value: &str) -> Result<Self, String> {
        let mut all = parse_secrets(value)?;
        match (all.pop(), all.is_empty()) {
            (Some(one), true) => Ok(one),
            _ => Err("holds more than one secret".into()),
        }
    }

    /// The HMAC key.
    pub fn bytes(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

impl Clone for WebhookSecret {
    fn clone(&self) -> Self {
        Self(SecretBox::new(Box::new(self.bytes().to_vec())))
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(redacted)")
    }
}

/// One endpoint a connector's events are delivered to.
#[derive(Debug, Clone)]
pub struct WebhookEndpoint {
    /// Where events are POSTed (https, or http on a loopback host).
    pub url: Url,
    /// Every secret a delivery is signed with, one signature each: several while a secret
    /// rotates, the receiver accepting any.
    pub secrets: Vec<WebhookSecret>,
}

/// Validates a connector's endpoint blocks; `key` names one, e.g. `connectors[0].webhooks[1]`.
pub(super) fn validate(
    raw: Vec<RawWebhook>,
    key: &dyn Fn(usize, &str) -> String,
) -> Result<Vec<WebhookEndpoint>, Invalid> {
    let mut endpoints: Vec<WebhookEndpoint> = Vec::with_capacity(raw.len());
    for (i, w) in raw.into_iter().enumerate() {
        let url = Url::parse(&w.url).map_err(|e| Invalid::new(key(i, "url"), format!("is not a URL: {e}")))?;
        let secure = url.scheme() == "https" || (url.scheme() == "http" && is_loopback_url(&url));
        if !secure || url.host().is_none() {
            return Err(Invalid::new(
                key(i, "url"),
                "must be https (or http on a loopback host)",
            ));
        }
        if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
            return Err(Invalid::new(key(i, "url"), "must not carry credentials or a fragment"));
        }
        if endpoints.iter().any(|e| e.url == url) {
            return Err(Invalid::new(key(i, "url"), "is listed twice for this connector"));
        }
        let value = read_secret(w.secret_env.as_deref(), w.secret_file.as_deref())
            .map_err(|m| Invalid::new(key(i, "secret_env"), m.replace("client_secret", "secret")))?;
        let secrets = parse_secrets(value.expose_secret()).map_err(|m| Invalid::new(key(i, "secret_env"), m))?;
        endpoints.push(WebhookEndpoint { url, secrets });
    }
    Ok(endpoints)
}

/// The secret value: one or more `whsec_<base64>` separated by whitespace (new first while one
/// rotates), each 24 to 64 random bytes. Messages never repeat the value.
fn parse_secrets(value: &str) -> Result<Vec<WebhookSecret>, String> {
    let mut secrets = Vec::new();
    for (n, word) in value.split_whitespace().enumerate() {
        let encoded = word
            .strip_prefix("whsec_")
            .ok_or_else(|| format!("secret {} must start with whsec_", n + 1))?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| format!("secret {} is not whsec_ followed by base64", n + 1))?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(format!(
                "secret {} must decode to 24-64 bytes, not {}",
                n + 1,
                bytes.len()
            ));
        }
        secrets.push(WebhookSecret(SecretBox::new(Box::new(bytes))));
    }
    if secrets.is_empty() {
        return Err("holds no secret".into());
    }
    Ok(secrets)
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawWebhooks {
    first_retry_secs: u64,
    retry_window_secs: u64,
    timeout_secs: u64,
}

impl Default for RawWebhooks {
    fn default() -> Self {
        Self {
            first_retry_secs: 5,
            retry_window_secs: 24 * 3600,
            timeout_secs: 10,
        }
    }
}

/// `[webhooks]`: how deliveries are retried.
#[derive(Debug, Clone)]
pub struct WebhooksConfig {
    /// Wait before the first retry; each later one waits twice as long as the one before.
    pub first_retry: Duration,
    /// How long after an event was raised it is still retried; then it is a dead letter.
    pub retry_window: Duration,
    /// How long an endpoint may take to answer.
    pub timeout: Duration,
}

impl RawWebhooks {
    /// The first retry comes within 5 s and the timeout within 10 s (the contract's limits),
    /// and the window is at least the first retry.
    pub(super) fn validate(self) -> Result<WebhooksConfig, Invalid> {
        if !(1..=5).contains(&self.first_retry_secs) {
            return Err(Invalid::new("webhooks.first_retry_secs", "must be 1 to 5 seconds"));
        }
        if self.retry_window_secs < self.first_retry_secs {
            return Err(Invalid::new(
                "webhooks.retry_window_secs",
                "must be at least first_retry_secs",
            ));
        }
        if !(1..=10).contains(&self.timeout_secs) {
            return Err(Invalid::new("webhooks.timeout_secs", "must be 1 to 10 seconds"));
        }
        Ok(WebhooksConfig {
            first_retry: Duration::from_secs(self.first_retry_secs),
            retry_window: Duration::from_secs(self.retry_window_secs),
            timeout: Duration::from_secs(self.timeout_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(len: usize) -> String {
        format!("whsec_{}", STANDARD.encode(vec![7u8; len]))
    }

    #[test]
    fn secrets_are_whsec_base64_of_24_to_64_bytes_and_may_be_several() {
        assert_eq!(parse_secrets(&secret(32)).unwrap()[0].bytes(), &[7u8; 32]);
        assert_eq!(
            parse_secrets(&format!("{} \n {}", secret(24), secret(64)))
                .unwrap()
                .len(),
            2
        );
        for bad in [
            String::new(),
            "   ".into(),
            secret(23),
            secret(65),
            "whsec_not base64!".into(),
            STANDARD.encode([1u8; 32]),
            format!("{} whsec_%%", secret(32)),
        ] {
            let err = parse_secrets(&bad).map(|_| ()).unwrap_err();
            if bad.len() > 10 {
                assert!(!err.contains(&bad[6..]), "the value is not repeated: {err}");
            }
        }
    }

    #[test]
    fn endpoints_must_be_https_or_loopback_http_and_listed_once() {
        let key = |i: usize, f: &str| format!("connectors[0].webhooks[{i}].{f}");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), secret(32)).unwrap();
        let raw = |url: &str| RawWebhook {
            url: url.into(),
            secret_env: None,
            secret_file: Some(file.path().to_path_buf()),
        };
        assert!(validate(vec![raw("https://hooks.example.com/x")], &key).is_ok());
        assert!(validate(vec![raw("http://127.0.0.1:9/hook")], &key).is_ok());
        for bad in [
            "http://hooks.example.com/x",
            "ftp://127.0.0.1/x",
            "https://user:pw@hooks.example.com/",
            "https://hooks.example.com/#f",
            "not a url",
        ] {
            let err = validate(vec![raw(bad)], &key).unwrap_err();
            assert_eq!(err.key, "connectors[0].webhooks[0].url", "{bad}");
        }
        let twice = validate(vec![raw("https://a.example/"), raw("https://a.example/")], &key).unwrap_err();
        assert_eq!(twice.key, "connectors[0].webhooks[1].url");
        let missing = validate(
            vec![RawWebhook {
                url: "https://a.example/".into(),
                secret_env: Some("WEBHOOK_TEST_SECRET_UNSET".into()),
                secret_file: None,
            }],
            &key,
        )
        .unwrap_err();
        assert_eq!(missing.key, "connectors[0].webhooks[0].secret_env");
    }

    #[test]
    fn retry_settings_stay_within_the_contracts_limits() {
        assert!(RawWebhooks::default().validate().is_ok());
        for bad in [
            RawWebhooks {
                first_retry_secs: 0,
                ..Default::default()
            },
            RawWebhooks {
                first_retry_secs: 6,
                ..Default::default()
            },
            RawWebhooks {
                timeout_secs: 11,
                ..Default::default()
            },
            RawWebhooks {
                retry_window_secs: 2,
                first_retry_secs: 3,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err());
        }
    }
}
