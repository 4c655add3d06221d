//! Random identifiers, secret hashing and constant-time comparison.
//!
//! Everything the broker hands out as a bearer (state, handoff codes, connect tokens, API keys) is
//! 256 bits from the OS CSPRNG; the store only ever sees its SHA-256, so a dump of the store does
//! not reveal live codes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Fills `N` bytes from the OS CSPRNG.
///
/// The OS generator only fails on a broken platform; there is no safe way to continue then.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the OS random number generator is unavailable");
    buf
}

/// A 256-bit random value, base64url without padding (43 characters).
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A prefixed random identifier such as `conn_...` (128 bits: ids are not bearers).
pub fn random_id(prefix: &str) -> String {
    format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(random_bytes::<16>()))
}

/// SHA-256 of `value`, lowercase hex.
pub fn sha256_hex(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time equality of two byte strings (length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Formats an API key hash the way the config stores it: `sha256:<hex>`.
pub fn api_key_hash(key: &str) -> String {
    format!("sha256:{}", sha256_hex(key))
}

/// A fresh API key for a connector (shown once; only its hash goes in the config).
pub fn new_api_key() -> String {
    format!("cbk_{}", random_token())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_url_safe() {
        let a = random_token();
        let b = random_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn api_key_hash_matches_sha256() {
        assert_eq!(
            api_key_hash("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn ct_eq_compares_content() {
        assert!(ct_eq(b"same", b"same"));
        assert!(!ct_eq(b"same", b"diff"));
        assert!(!ct_eq(b"short", b"longer"));
    }
}

/// A secret string that serialises normally (it must reach the store) but never prints:
/// `Debug` and `Display` show `[redacted]`, so a stray `{:?}` cannot leak a token into a log.
/// Its bytes are wiped when it is dropped.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Sensitive(String);

impl Sensitive {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it must leave the process.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Sensitive {
    fn drop(&mut self) {
        secrecy::zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl secrecy::zeroize::ZeroizeOnDrop for Sensitive {}

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod sensitive_tests {
    use super::Sensitive;

    #[test]
    fn debug_redacts_but_serde_keeps() {
        let s = Sensitive::new("rt-123");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"rt-123\"");
    }
}
