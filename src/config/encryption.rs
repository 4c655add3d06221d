//! `[encryption]` and `[[encryption.keys]]`: the keys that encrypt every stored record, read from
//! environment variables or files (never inline). Messages name ids, files and variables, never
//! key material.

use std::collections::HashSet;
use std::path::PathBuf;

use secrecy::zeroize::Zeroizing;
use serde::Deserialize;

use super::StoreConfig;
use crate::store::Keyring;
use crate::store::encrypted::{EncryptionKey, MAX_KEY_ID_LEN, valid_key_id};

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawEncryption {
    primary: Option<String>,
    /// Seal values compressed (envelope version 2) where that makes them smaller.
    compress: bool,
    keys: Vec<RawEncryptionKey>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub(super) struct RawEncryptionKey {
    id: String,
    env: Option<String>,
    file: Option<PathBuf>,
}

/// Validates `[encryption]` and reads the keys. Encryption is required for the stores that keep
/// tokens at rest (embedded, redis); the memory store may run without. Messages name ids, files
/// and variables, never key material.
pub(super) fn encryption_keys(raw: RawEncryption, store: &StoreConfig) -> Result<Option<Keyring>, (String, String)> {
    if raw.keys.is_empty() {
        if raw.primary.is_some() {
            return Err((
                "encryption.primary".into(),
                "set, but no [[encryption.keys]] is configured".into(),
            ));
        }
        if raw.compress {
            return Err((
                "encryption.compress".into(),
                "set, but no [[encryption.keys]] is configured (only encrypted values are compressed)".into(),
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
    // Off unless asked for: brokers before envelope version 2 cannot open compressed values
    // (see the README's "Upgrades").
    Keyring::new(&primary, keys)
        .map(|keys| Some(keys.with_compression(raw.compress)))
        .map_err(|m| ("encryption.keys".into(), m))
}

#[cfg(test)]
// figment's Jail closures return its (large) error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::super::Config;
    use super::super::testing::{ONE_KEY, TEST_KEY, base, err_of};

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
            assert!(!keys.compresses(), "compression is off unless asked for");
            let compressed = format!("\n[encryption]\ncompress = true{ONE_KEY}");
            let cfg = Config::from_toml_str(&with_store("embedded", &compressed), "t.toml").expect("compress");
            assert!(cfg.encryption.expect("keys").compresses());

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
                base("").replace(
                    "backend = \"memory\"",
                    "backend = \"memory\"\n[encryption]\ncompress = true",
                ),
                "encryption.compress",
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
}
