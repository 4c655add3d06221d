//! The connector an API key belongs to, found by the key's SHA-256 digest in a map built once
//! from `api_key_hashes`.
//!
//! A map lookup is not constant-time, and needs not be: what it compares is the digest of the
//! presented key, which its sender chooses only through SHA-256. Timing could at most tell how
//! the digest of a guess relates to a stored digest, which says nothing about any key that would
//! match it (finding one is a preimage attack). Hashing every presented key first is what keeps
//! the secret out of reach; comparing against every stored hash in turn only made each request
//! cost more as connectors and rotated keys were added.

use std::collections::HashMap;

use sha2::{Digest as _, Sha256};

use crate::config::ConnectorConfig;
use crate::ids::ConnectorId;

/// API key digests and their connectors.
pub struct ApiKeys(HashMap<[u8; 32], ConnectorId>);

impl ApiKeys {
    /// Every `sha256:<hex>` of every connector (validated by the config: 64 hex digits, and no
    /// digest shared by two connectors).
    pub fn new<'a>(connectors: impl IntoIterator<Item = &'a ConnectorConfig>) -> Self {
        let mut map = HashMap::new();
        for c in connectors {
            for hex in &c.api_key_hashes {
                if let Some(digest) = decode_hex32(hex) {
                    map.insert(digest, c.id.clone());
                }
            }
        }
        Self(map)
    }

    /// The connector `key` belongs to.
    pub fn connector(&self, key: &str) -> Option<&ConnectorId> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.0.get(&digest)
    }
}

/// 64 hex digits as 32 bytes.
fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::api_key_hash;

    fn connector(id: &str, keys: &[&str]) -> ConnectorConfig {
        ConnectorConfig {
            id: id.into(),
            display_name: id.into(),
            client_id: "client".into(),
            credential: crate::entra::credential::ClientCredential::Secret {
                secret: "s3cret".to_string().into(),
                expires_at: None,
            },
            scopes: vec!["User.Read".into()],
            return_urls: Vec::new(),
            api_key_hashes: keys
                .iter()
                .map(|k| api_key_hash(k).trim_start_matches("sha256:").to_string())
                .collect(),
            tenant: "organizations".into(),
            publisher_verified: false,
            publisher: Default::default(),
            webhooks: Vec::new(),
        }
    }

    #[test]
    fn finds_the_connector_of_each_key_and_nothing_else() {
        let keys = ApiKeys::new(&[connector("files", &["k1", "k1-rotated"]), connector("crm", &["k2"])]);
        assert_eq!(keys.connector("k1").map(ConnectorId::as_str), Some("files"));
        assert_eq!(keys.connector("k1-rotated").map(ConnectorId::as_str), Some("files"));
        assert_eq!(keys.connector("k2").map(ConnectorId::as_str), Some("crm"));
        for wrong in ["", "k3", "K1", "k1 ", &api_key_hash("k1"), &"k".repeat(300)] {
            assert!(keys.connector(wrong).is_none(), "{wrong:?}");
        }
    }

    #[test]
    fn decodes_hex_of_either_case_and_refuses_the_rest() {
        let upper = "AB".repeat(32);
        assert_eq!(decode_hex32(&upper), Some([0xab; 32]));
        assert_eq!(decode_hex32(&"0f".repeat(32)), Some([0x0f; 32]));
        for bad in ["", &"0".repeat(63), &"0".repeat(65), &format!("{}zz", "0".repeat(62))] {
            assert!(decode_hex32(bad).is_none(), "{bad:?}");
        }
    }
}
