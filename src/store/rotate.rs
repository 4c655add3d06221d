//! `consent-broker rotate-keys`: re-encrypts every record that is not under the primary key.
//!
//! Online: brokers may keep running and writing. Records are listed with [`Store::scan`] in pages
//! of at most about `batch` keys (memory use stays bounded however large the store), and each one
//! is re-sealed with [`EncryptedStore::reseal`], which replaces it only if it is still exactly
//! what was read, keeping its version and expiry; a concurrent write wins and the record is read
//! again. Running it twice is harmless: the second run finds everything under the primary key.

use super::encrypted::Resealed;
use super::{Store, StoreError};

/// Default page size of `rotate-keys`.
pub const DEFAULT_BATCH: usize = 500;
/// How many failures a report lists (the count is always complete).
const LISTED_FAILURES: usize = 50;

/// How to rotate.
#[derive(Debug, Clone, Copy)]
pub struct RotateOptions {
    /// Keys per page (a `SCAN` `COUNT` hint on Redis).
    pub batch: usize,
    /// Also seal records that are not encrypted at all (written before encryption was turned on)
    /// instead of reporting them as failures.
    pub encrypt_plaintext: bool,
}

impl Default for RotateOptions {
    fn default() -> Self {
        Self {
            batch: DEFAULT_BATCH,
            encrypt_plaintext: false,
        }
    }
}

/// What a rotation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Records re-encrypted under the primary key.
    pub reencrypted: u64,
    /// Records already under the primary key (on Redis a key the scan returned twice counts
    /// twice).
    pub skipped: u64,
    /// Records that disappeared between the listing and the re-encryption (expired, taken,
    /// deleted).
    pub gone: u64,
    /// Records that could not be re-encrypted (unreadable, or a store error).
    pub failed: u64,
    /// The first failures, as `record key: reason` (never key material).
    pub failures: Vec<String>,
}

impl std::fmt::Display for RotationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} re-encrypted, {} already under the primary key, {} gone meanwhile, {} failed",
            self.reencrypted, self.skipped, self.gone, self.failed
        )
    }
}

/// Why a rotation could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The store is not encrypted, so there is nothing to rotate.
    #[error("encryption at rest is not configured: add [encryption] keys to the config (see config/example.toml)")]
    NotEncrypted,
    /// Listing the records failed; the records handled so far are in the report.
    #[error("listing the records failed after {report}: {source}")]
    Scan {
        /// What was done before the failure.
        report: RotationReport,
        /// The store's error.
        source: StoreError,
    },
}

/// Re-encrypts every record of `store` (which must be an [`super::EncryptedStore`]) that is not
/// under its primary key. Per-record failures are counted and logged (record key and reason) and
/// the rotation goes on; a failure to list records stops it.
pub async fn rotate_all(store: &dyn Store, options: RotateOptions) -> Result<RotationReport, RotateError> {
    let encrypted = store.encryption().ok_or(RotateError::NotEncrypted)?;
    let primary = encrypted.keyring().primary_id().to_string();
    tracing::info!(primary = %primary, batch = options.batch, "re-encrypting the store under the primary key");
    let mut report = RotationReport::default();
    let mut cursor = None;
    loop {
        let (keys, next) = match store.scan(cursor.take(), options.batch).await {
            Ok(page) => page,
            Err(source) => return Err(RotateError::Scan { report, source }),
        };
        for key in keys {
            match encrypted.reseal(&key, options.encrypt_plaintext).await {
                Ok(Resealed::Rewritten) => report.reencrypted += 1,
                Ok(Resealed::AlreadyPrimary) => report.skipped += 1,
                Ok(Resealed::Gone) => report.gone += 1,
                Err(e) => {
                    tracing::warn!(record = %key, error = %e, "cannot re-encrypt a record");
                    report.failed += 1;
                    if report.failures.len() < LISTED_FAILURES {
                        report.failures.push(match e {
                            StoreError::Corrupt { key, message } => format!("{key}: {message}"),
                            StoreError::Backend { message, .. } => format!("{key}: {message}"),
                            other @ StoreError::NewerFormat { .. } => other.to_string(),
                        });
                    }
                }
            }
        }
        tracing::debug!(progress = %report, "re-encryption page done");
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    tracing::info!(result = %report, "re-encryption finished");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::store::encrypted::EncryptionKey;
    use crate::store::{EncryptedStore, Keyring, MemoryStore};

    fn ring(primary: &str, ids: &[(&str, u8)]) -> Keyring {
        Keyring::new(
            primary,
            ids.iter()
                .map(|(id, fill)| {
                    (
                        id.to_string(),
                        EncryptionKey::from_hex(&format!("{fill:02x}").repeat(32)).unwrap(),
                    )
                })
                .collect(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn rotates_in_batches_and_a_second_run_finds_nothing_to_do() {
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let old = EncryptedStore::new(inner.clone(), ring("k1", &[("k1", 1)]));
        for i in 0..23 {
            let ttl = (i % 2 == 0).then(|| Duration::from_secs(600));
            old.put(&format!("rec:{i:02}"), format!("value {i}").into_bytes(), ttl)
                .await
                .unwrap();
        }
        let both = EncryptedStore::new(inner.clone(), ring("k2", &[("k1", 1), ("k2", 2)]));
        both.put("rec:new", b"already k2".to_vec(), None).await.unwrap();
        // A record only a forgotten key can open fails, and is reported, without stopping the rest.
        let lost = EncryptedStore::new(inner.clone(), ring("k0", &[("k0", 9)]));
        lost.put("rec:lost", b"?".to_vec(), None).await.unwrap();

        let options = RotateOptions {
            batch: 4,
            ..Default::default()
        };
        let report = rotate_all(&both, options).await.unwrap();
        assert_eq!(
            (report.reencrypted, report.skipped, report.gone, report.failed),
            (23, 1, 0, 1)
        );
        assert_eq!(report.failures.len(), 1);
        assert!(
            report.failures[0].starts_with("rec:lost: ") && report.failures[0].contains("\"k0\""),
            "{:?}",
            report.failures
        );

        let again = rotate_all(&both, options).await.unwrap();
        assert_eq!((again.reencrypted, again.skipped, again.failed), (0, 24, 1));

        let k2_only = EncryptedStore::new(inner.clone(), ring("k2", &[("k2", 2)]));
        for i in 0..23 {
            let v = k2_only.get(&format!("rec:{i:02}")).await.unwrap().unwrap();
            assert_eq!(v.value, format!("value {i}").into_bytes());
            assert_eq!(v.version, 1, "re-encryption keeps versions");
        }
    }

    #[tokio::test]
    async fn rotates_a_store_of_mixed_formats_and_can_turn_compression_on_or_off() {
        use crate::store::encrypted::{FORMAT_V1, FORMAT_V2};
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let big = |i: usize| format!("{{\"record\":{i},\"pad\":\"{}\"}}", "abcdefgh".repeat(64)).into_bytes();
        let v1 = EncryptedStore::new(inner.clone(), ring("k1", &[("k1", 1)]));
        let v2 = EncryptedStore::new(inner.clone(), ring("k1", &[("k1", 1)]).with_compression(true));
        for i in 0..6 {
            let writer = if i % 2 == 0 { &v1 } else { &v2 };
            writer.put(&format!("big:{i}"), big(i), None).await.unwrap();
            writer
                .put(&format!("small:{i}"), b"{\"s\":1}".to_vec(), None)
                .await
                .unwrap();
        }
        inner.put("plain", big(99), None).await.unwrap();
        let first_byte = |key: String| {
            let inner = inner.clone();
            async move { inner.get(&key).await.unwrap().unwrap().value[0] }
        };
        assert_eq!(first_byte("big:0".into()).await, FORMAT_V1);
        assert_eq!(first_byte("big:1".into()).await, FORMAT_V2);

        // Under a new primary with compression on: every compressible record becomes version 2.
        let to_k2 = EncryptedStore::new(
            inner.clone(),
            ring("k2", &[("k1", 1), ("k2", 2)]).with_compression(true),
        );
        let options = RotateOptions {
            batch: 5,
            encrypt_plaintext: true,
        };
        let report = rotate_all(&to_k2, options).await.unwrap();
        assert_eq!((report.reencrypted, report.failed), (13, 0), "{report:?}");
        for i in 0..6 {
            assert_eq!(first_byte(format!("big:{i}")).await, FORMAT_V2);
            assert_eq!(
                first_byte(format!("small:{i}")).await,
                FORMAT_V1,
                "too small to compress"
            );
        }
        assert_eq!(first_byte("plain".into()).await, FORMAT_V2);

        // And back: a rotation with compression off writes version 1 only (what an older broker
        // reads), so a store can be prepared for a downgrade.
        let to_k3 = EncryptedStore::new(inner.clone(), ring("k3", &[("k2", 2), ("k3", 3)]));
        let report = rotate_all(&to_k3, options).await.unwrap();
        assert_eq!((report.reencrypted, report.failed), (13, 0), "{report:?}");
        let k3_only = EncryptedStore::new(inner.clone(), ring("k3", &[("k3", 3)]));
        for i in 0..6 {
            assert_eq!(first_byte(format!("big:{i}")).await, FORMAT_V1);
            assert_eq!(k3_only.get(&format!("big:{i}")).await.unwrap().unwrap().value, big(i));
            assert_eq!(
                k3_only.get(&format!("small:{i}")).await.unwrap().unwrap().value,
                b"{\"s\":1}"
            );
        }
        assert_eq!(k3_only.get("plain").await.unwrap().unwrap().value, big(99));
    }

    #[tokio::test]
    async fn a_store_without_encryption_is_refused() {
        let e = rotate_all(&MemoryStore::new(), RotateOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(e, RotateError::NotEncrypted), "{e}");
    }
}
