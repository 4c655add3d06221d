//! Value checks that more than one section uses: choices, base URLs, loopback hosts, tenant
//! segments and secrets read from an environment variable or a file.

use std::net::IpAddr;
use std::path::Path;

use secrecy::SecretString;
use serde::de::value::StringDeserializer;
use serde::{Deserialize, Deserializer};
use url::Url;

/// Reads a choice (a unit-only enum deriving `Deserialize`) from a string only, for
/// `#[serde(deserialize_with)]`: figment hands an enum a number as the index of a variant, so
/// without this `backend = 1` would mean the second backend. A string that is no variant's
/// spelling fails as serde's unknown variant, which [`super::parse_error`] words for people.
pub(super) fn choice<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    let spelling = String::deserialize(d)?;
    T::deserialize(StringDeserializer::<D::Error>::new(spelling))
}

/// A base URL: absolute, http(s), no query, fragment or credentials; trailing `/` removed.
pub(super) fn parse_base_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim_end_matches('/')).map_err(|e| format!("not an absolute URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http(s) URL".into());
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a query, fragment or credentials".into());
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

/// A secret from the environment variable `env` or the file `file` (exactly one is set); the
/// messages name the keys as `client_secret_*`, callers for other secrets rename them.
pub(super) fn read_secret(env: Option<&str>, file: Option<&Path>) -> Result<SecretString, String> {
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
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        assert!(is_loopback_url(&Url::parse("http://127.0.0.1:9/").unwrap()));
        assert!(is_loopback_url(&Url::parse("http://[::1]:9/").unwrap()));
        assert!(is_loopback_url(&Url::parse("http://localhost/").unwrap()));
        assert!(!is_loopback_url(&Url::parse("http://127.0.0.1.evil.com/").unwrap()));
        assert!(!is_loopback_url(&Url::parse("http://10.0.0.1/").unwrap()));
    }
}
