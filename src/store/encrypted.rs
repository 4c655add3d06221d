//! Encryption at rest: [`EncryptedStore`] wraps any backend and seals every value with
//! XChaCha20-Poly1305 before the backend sees it, so a copy of the redb file or of the Redis
//! keyspace (a backup, a replica, a dump) holds no token, refresh token or PKCE verifier in clear.
//!
//! Record keys pass through unchanged (they hold no secret: bearer values appear in them only as
//! SHA-256 digests), and so do versions and expiries, which the backends keep outside the value.
//!
//! # Blob format (versions 1 and 2)
//!
//! | offset   | size   | content                                                       |
//! |----------|--------|---------------------------------------------------------------|
//! | 0        | 1      | format version, `0x01` or `0x02`                              |
//! | 1        | 1      | `L`, the length of the key id (1 to 32)                       |
//! | 2        | `L`    | the key id, ASCII `A-Z a-z 0-9 . _ -`                         |
//! | 2+L      | 24     | the nonce, random from the OS generator                       |
//! | 26+L     | n + 16 | the n-byte payload encrypted, then the Poly1305 tag           |
//!
//! In version 1 the payload is the value itself: a blob is 42 + L bytes longer than its value.
//! In version 2 it is the value's length (4 bytes, little-endian) followed by the value
//! compressed as a raw deflate stream ([`envelope`] says how opening bounds it). With
//! `[encryption] compress` on, a value is sealed as version 2 when that is smaller (values under
//! [`MIN_COMPRESSED_LEN`] bytes are not tried), else as version 1; both versions always open.
//!
//! The associated data is the header (bytes `0..2+L`, the format byte included, so a blob
//! relabelled from one version to the other fails to open) followed by the record key as the broker
//! names it (without the Redis `key_prefix`, so moving a keyspace to another prefix keeps it
//! readable). A blob copied under another record key, or whose key id was edited, fails to open.
//! XChaCha's 192-bit random nonces make nonce reuse a non-issue for any number of writes per key.
//!
//! A blob that names a key id that is not configured, or does not open with the key it names, is
//! [`StoreError::Corrupt`] naming the record and the key id (never key material): the broker must
//! not take an unreadable record for an absent one.
//!
//! Several keys may be configured ([`Keyring`]): the primary seals, every key opens. Rotation
//! (`consent-broker rotate-keys`, [`super::rotate`]) re-seals records under the primary with
//! [`EncryptedStore::reseal`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretBox, SecretString};

use super::{CasOutcome, Store, StoreError, Versioned, Write, WriteOutcome};
pub use envelope::{FORMAT_V1, FORMAT_V2, MAX_INFLATED_LEN, MIN_COMPRESSED_LEN};
use envelope::{Sealed, Shape, corrupt, parse};

mod envelope;

/// Bytes of a key (256 bits).
pub const KEY_LEN: usize = 32;
/// Longest key id.
pub const MAX_KEY_ID_LEN: usize = 32;
const NOT_ENCRYPTED: &str = "the value is not encrypted (written before encryption was turned on? see `rotate-keys --encrypt-plaintext`) or is damaged";
/// How often [`EncryptedStore::reseal`] re-reads a record that keeps changing under it.
const RESEAL_ATTEMPTS: usize = 8;

/// True for an acceptable key id: 1 to 32 characters of `A-Z a-z 0-9 . _ -`. Ids are written in
/// every blob and shown in errors, so they are short and printable.
pub fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// One 256-bit key. Zeroized on drop; `Debug` shows nothing of it.
pub struct EncryptionKey(SecretBox<[u8; KEY_LEN]>);

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey([redacted])")
    }
}

impl EncryptionKey {
    /// A fresh key from the OS generator.
    pub fn generate() -> Self {
        Self(SecretBox::init_with_mut(|k: &mut [u8; KEY_LEN]| {
            let fresh = Zeroizing::new(crate::crypto::random_bytes::<KEY_LEN>());
            k.copy_from_slice(fresh.as_slice());
        }))
    }

    /// Parses the configured form: exactly 64 hex digits (either case), surrounding whitespace
    /// ignored (key files usually end with a newline). Messages never echo the text.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.len() != 2 * KEY_LEN {
            return Err(format!(
                "must be {} hex digits (a {KEY_LEN}-byte key; generate one with `consent-broker new-encryption-key`), found {} characters",
                2 * KEY_LEN,
                text.chars().count()
            ));
        }
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "must be {} hex digits: it contains a character that is not a hex digit",
                2 * KEY_LEN
            ));
        }
        Ok(Self(SecretBox::init_with_mut(|k: &mut [u8; KEY_LEN]| {
            for (byte, pair) in k.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
                *byte = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
            }
        })))
    }

    /// The key as 64 lowercase hex digits (for `new-encryption-key` and the demo's key file).
    pub fn to_hex(&self) -> SecretString {
        let mut out = String::with_capacity(2 * KEY_LEN);
        for b in self.0.expose_secret() {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        SecretString::from(out)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        // The cipher holds a copy of the key and zeroizes it on drop (the crate's `zeroize` feature).
        XChaCha20Poly1305::new(self.0.expose_secret().into())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The value of one hex digit already checked with `is_ascii_hexdigit`.
fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// The configured keys by id and which one seals. Cheap to clone (shared); `Debug` lists the ids
/// only. The second field says whether seals may write version 2 (compressed); see
/// [`Keyring::with_compression`].
#[derive(Clone)]
pub struct Keyring(Arc<KeyringInner>, bool);

struct KeyringInner {
    primary: String,
    keys: BTreeMap<String, EncryptionKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", &self.0.primary)
            .field("ids", &self.0.keys.keys().collect::<Vec<_>>())
            .field("compress", &self.1)
            .finish()
    }
}

impl Keyring {
    /// A keyring whose `primary` seals and whose every key opens. Fails (a message naming ids,
    /// never material) on an invalid or duplicate id, or a primary that is not among the keys.
    pub fn new(primary: &str, keys: Vec<(String, EncryptionKey)>) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for (id, key) in keys {
            if !valid_key_id(&id) {
                return Err(format!(
                    "key id {id:?} must be 1-{MAX_KEY_ID_LEN} characters of A-Z, a-z, 0-9, '.', '_' or '-'"
                ));
            }
            if map.insert(id.clone(), key).is_some() {
                return Err(format!("duplicate key id {id:?}"));
            }
        }
        if !map.contains_key(primary) {
            return Err(format!("the primary key id {primary:?} is not among the keys"));
        }
        Ok(Self(
            Arc::new(KeyringInner {
                primary: primary.to_string(),
                keys: map,
            }),
            false,
        ))
    }

    /// The same keys, sealing compressed values (version 2) where that makes them smaller, or
    /// only version 1. Off by default: brokers older than version 2 cannot open such values, so
    /// it is turned on (`[encryption] compress`) once every broker sharing the store reads them.
    /// Opening reads both versions either way.
    pub fn with_compression(self, compress: bool) -> Self {
        Self(self.0, compress)
    }

    /// Whether seals may write version 2.
    pub fn compresses(&self) -> bool {
        self.1
    }

    /// The id of the key that seals.
    pub fn primary_id(&self) -> &str {
        &self.0.primary
    }

    /// Every configured id, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.keys.keys().map(String::as_str)
    }

    /// Seals `plaintext` for the record `record_key` under the primary key: compressed
    /// (version 2) when compression is on and makes it smaller, else as it is (version 1).
    pub fn seal(&self, record_key: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let key = self
            .0
            .keys
            .get(&self.0.primary)
            .ok_or_else(|| StoreError::backend("the primary encryption key is missing"))?;
        envelope::seal(&key.cipher(), &self.0.primary, record_key, plaintext, self.1)
    }

    /// Opens a blob sealed for `record_key`. Anything but a blob that opens with the key it names
    /// is [`StoreError::Corrupt`] (a value that is not a blob at all, an unknown key id, a wrong
    /// key, a changed byte, a blob moved from another record).
    pub fn open(&self, record_key: &str, blob: &[u8]) -> Result<Vec<u8>, StoreError> {
        match parse(record_key, blob)? {
            Shape::Sealed(sealed) => self.open_sealed(record_key, &sealed),
            Shape::Foreign => Err(corrupt(record_key, NOT_ENCRYPTED.into())),
        }
    }

    fn open_sealed(&self, record_key: &str, sealed: &Sealed<'_>) -> Result<Vec<u8>, StoreError> {
        let key = self.0.keys.get(sealed.key_id).ok_or_else(|| {
            corrupt(
                record_key,
                format!(
                    "encrypted with key id {:?}, which is not configured (configured: {})",
                    sealed.key_id,
                    self.ids().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        envelope::open(&key.cipher(), record_key, sealed)
    }

    /// The key id a stored value names, or `None` when it is not a blob.
    pub fn key_id_of<'a>(&self, record_key: &str, blob: &'a [u8]) -> Result<Option<&'a str>, StoreError> {
        Ok(match parse(record_key, blob)? {
            Shape::Sealed(sealed) => Some(sealed.key_id),
            Shape::Foreign => None,
        })
    }
}

/// A [`Store`] that seals values on the way in and opens them on the way out, over any backend.
pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    keys: Keyring,
}

impl std::fmt::Debug for EncryptedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedStore")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// What [`EncryptedStore::reseal`] did to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resealed {
    /// Re-encrypted under the primary key (version and expiry unchanged).
    Rewritten,
    /// Already under the primary key; left alone.
    AlreadyPrimary,
    /// The record no longer exists (expired, taken or deleted meanwhile).
    Gone,
}

impl EncryptedStore {
    /// Wraps `inner`; `keys` decides which key seals and which keys open.
    pub fn new(inner: Arc<dyn Store>, keys: Keyring) -> Self {
        Self { inner, keys }
    }

    /// The keys.
    pub fn keyring(&self) -> &Keyring {
        &self.keys
    }

    /// The backend underneath, which sees only blobs (tests inspect it).
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// Re-encrypts one record under the primary key unless it already is, keeping its version and
    /// expiry ([`Store::rewrite_in_place`]), so that brokers running meanwhile are not disturbed:
    /// a write that lands first wins, and the record is read again. With `encrypt_plaintext`, a
    /// value that is not a blob (written before encryption was turned on) is sealed as it is;
    /// without it, such a value is [`StoreError::Corrupt`].
    pub async fn reseal(&self, key: &str, encrypt_plaintext: bool) -> Result<Resealed, StoreError> {
        for _ in 0..RESEAL_ATTEMPTS {
            let Some(current) = self.inner.get(key).await? else {
                return Ok(Resealed::Gone);
            };
            let plaintext = match parse(key, &current.value)? {
                Shape::Sealed(sealed) if sealed.key_id == self.keys.primary_id() => {
                    return Ok(Resealed::AlreadyPrimary);
                }
                Shape::Sealed(sealed) => Zeroizing::new(self.keys.open_sealed(key, &sealed)?),
                Shape::Foreign if encrypt_plaintext => Zeroizing::new(current.value.clone()),
                Shape::Foreign => return Err(corrupt(key, NOT_ENCRYPTED.into())),
            };
            let blob = self.keys.seal(key, &plaintext)?;
            if self
                .inner
                .rewrite_in_place(key, current.version, &current.value, blob)
                .await?
            {
                return Ok(Resealed::Rewritten);
            }
            // Someone wrote or deleted the record since it was read: look at it again.
        }
        Err(StoreError::backend(format!(
            "record {key} changed {RESEAL_ATTEMPTS} times while being re-encrypted; run rotate-keys again"
        )))
    }
}

/// Seals an owned plaintext and wipes it: the backend keeps only the blob.
fn seal_owned(keys: &Keyring, key: &str, value: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    let value = Zeroizing::new(value);
    keys.seal(key, &value)
}

#[async_trait]
impl Store for EncryptedStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        match self.inner.get(key).await? {
            Some(v) => Ok(Some(Versioned {
                value: self.keys.open(key, &v.value)?,
                version: v.version,
            })),
            None => Ok(None),
        }
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<u64, StoreError> {
        let blob = seal_owned(&self.keys, key, value)?;
        self.inner.put(key, blob, ttl).await
    }

    async fn insert_new(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<bool, StoreError> {
        let blob = seal_owned(&self.keys, key, value)?;
        self.inner.insert_new(key, blob, ttl).await
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        // A value that does not open is consumed all the same: it could not be used anyway, and
        // a single-use value must never be handed out twice.
        match self.inner.take(key).await? {
            Some(blob) => Ok(Some(self.keys.open(key, &blob)?)),
            None => Ok(None),
        }
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected_version: u64,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<CasOutcome, StoreError> {
        let blob = seal_owned(&self.keys, key, value)?;
        self.inner.compare_and_swap(key, expected_version, blob, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.delete(key).await
    }

    /// Seals the record's new value and the event's, each bound to its own record key like any
    /// other write; a delete carries no value and passes through.
    async fn write_with_event(
        &self,
        write: Write,
        event_key: &str,
        event_value: Vec<u8>,
        event_ttl: Option<Duration>,
    ) -> Result<WriteOutcome, StoreError> {
        let write = match write {
            Write::Put { key, value, ttl } => Write::Put {
                value: seal_owned(&self.keys, &key, value)?,
                key,
                ttl,
            },
            Write::Cas {
                key,
                expected_version,
                value,
                ttl,
            } => Write::Cas {
                value: seal_owned(&self.keys, &key, value)?,
                key,
                expected_version,
                ttl,
            },
            Write::InsertNew { key, value, ttl } => Write::InsertNew {
                value: seal_owned(&self.keys, &key, value)?,
                key,
                ttl,
            },
            delete @ Write::Delete { .. } => delete,
        };
        let event = seal_owned(&self.keys, event_key, event_value)?;
        self.inner.write_with_event(write, event_key, event, event_ttl).await
    }

    async fn purge_expired(&self) -> Result<usize, StoreError> {
        self.inner.purge_expired().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn scan(&self, cursor: Option<String>, limit: usize) -> Result<(Vec<String>, Option<String>), StoreError> {
        self.inner.scan(cursor, limit).await
    }

    /// Index members are ids and times, not secrets: they pass through unsealed.
    async fn index_add(&self, index: &str, member: &str) -> Result<(), StoreError> {
        self.inner.index_add(index, member).await
    }

    async fn index_remove(&self, index: &str, member: &str) -> Result<bool, StoreError> {
        self.inner.index_remove(index, member).await
    }

    async fn index_range(&self, index: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        self.inner.index_range(index, after, limit).await
    }

    /// Compares plaintexts: the stored blob is opened, compared with `expected_value`, and the
    /// replacement is conditional on that very blob, so the check and the write stay atomic.
    async fn rewrite_in_place(
        &self,
        key: &str,
        expected_version: u64,
        expected_value: &[u8],
        value: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let Some(current) = self.inner.get(key).await? else {
            return Ok(false);
        };
        if current.version != expected_version {
            return Ok(false);
        }
        let plaintext = Zeroizing::new(self.keys.open(key, &current.value)?);
        if !crate::crypto::ct_eq(&plaintext, expected_value) {
            return Ok(false);
        }
        let blob = seal_owned(&self.keys, key, value)?;
        self.inner
            .rewrite_in_place(key, expected_version, &current.value, blob)
            .await
    }

    /// Values leave still sealed: a backup holds no secret in clear.
    async fn export(&self, sink: &mut super::ExportSink<'_>) -> Result<(), StoreError> {
        self.inner.export(sink).await
    }

    /// Values arrive sealed (from an export) and are stored as they are.
    async fn import(&self, entries: Vec<super::Entry>) -> Result<(), StoreError> {
        self.inner.import(entries).await
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        self.inner.is_empty().await
    }

    fn encryption(&self) -> Option<&EncryptedStore> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::envelope::{NONCE_LEN, TAG_LEN};
    use super::*;
    use crate::store::{MemoryStore, conformance};

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "F0E1D2C3B4A5968778695A4B3C2D1E0F00112233445566778899AABBCCDDEEFF";

    fn key(hex: &str) -> EncryptionKey {
        EncryptionKey::from_hex(hex).unwrap()
    }

    fn ring(primary: &str, keys: &[(&str, &str)]) -> Keyring {
        Keyring::new(
            primary,
            keys.iter().map(|(id, hex)| (id.to_string(), key(hex))).collect(),
        )
        .unwrap()
    }

    fn message(e: StoreError) -> String {
        match e {
            StoreError::Corrupt { key, message } => format!("{key}: {message}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn round_trip_and_layout() {
        let keys = ring("k1", &[("k1", K1)]);
        let blob = keys.seal("conn:{c1}", b"{\"access_token\":\"at-secret\"}").unwrap();
        assert_eq!(blob[0], FORMAT_V1);
        assert_eq!(blob[1], 2);
        assert_eq!(&blob[2..4], b"k1");
        assert_eq!(blob.len(), 4 + NONCE_LEN + 28 + TAG_LEN);
        assert!(!blob.windows(9).any(|w| w == b"at-secret"), "the value is not in clear");
        assert_eq!(
            keys.open("conn:{c1}", &blob).unwrap(),
            b"{\"access_token\":\"at-secret\"}"
        );
        // Random nonces: the same value seals differently every time.
        assert_ne!(
            blob,
            keys.seal("conn:{c1}", b"{\"access_token\":\"at-secret\"}").unwrap()
        );
    }

    #[test]
    fn empty_values_round_trip() {
        let keys = ring("k1", &[("k1", K1)]);
        let blob = keys.seal("k", b"").unwrap();
        assert_eq!(blob.len(), 4 + NONCE_LEN + TAG_LEN);
        assert_eq!(keys.open("k", &blob).unwrap(), b"");
    }

    #[test]
    fn any_changed_byte_is_corrupt() {
        let keys = ring("k1", &[("k1", K1)]);
        let blob = keys.seal("rec", b"value").unwrap();
        for i in 0..blob.len() {
            for flip in [0x01u8, 0x80] {
                let mut bad = blob.clone();
                bad[i] ^= flip;
                let e = keys.open("rec", &bad).expect_err("a changed byte must not open");
                assert!(
                    matches!(e, StoreError::Corrupt { ref key, .. } if key == "rec"),
                    "byte {i}: {e:?}"
                );
            }
        }
        // Truncated and extended blobs too.
        for len in 0..blob.len() {
            assert!(keys.open("rec", &blob[..len]).is_err(), "truncated to {len}");
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(keys.open("rec", &longer).is_err());
    }

    #[test]
    fn a_blob_moved_to_another_record_is_corrupt() {
        let keys = ring("k1", &[("k1", K1)]);
        let blob = keys.seal("conn:{a}", b"alice's tokens").unwrap();
        let e = message(keys.open("conn:{b}", &blob).unwrap_err());
        assert!(e.starts_with("conn:{b}: ") && e.contains("\"k1\""), "{e}");
    }

    #[test]
    fn unknown_key_id_and_wrong_key_are_corrupt_and_name_the_id_only() {
        let old = ring("k1", &[("k1", K1)]);
        let blob = old.seal("rec", b"v").unwrap();

        let other = ring("k2", &[("k2", K2)]);
        let e = message(other.open("rec", &blob).unwrap_err());
        assert!(e.contains("\"k1\"") && e.contains("not configured"), "{e}");

        // Same id, different material.
        let wrong = ring("k1", &[("k1", K2)]);
        let e = message(wrong.open("rec", &blob).unwrap_err());
        assert!(e.contains("\"k1\"") && e.contains("does not decrypt"), "{e}");
        for hex in [K1, K2, &K2.to_ascii_lowercase()] {
            assert!(!e.contains(hex), "key material in an error");
        }

        // Not a blob at all (a record written before encryption).
        let e = message(old.open("rec", b"{\"json\":1}").unwrap_err());
        assert!(e.contains("not encrypted"), "{e}");
        let e = message(old.open("rec", b"").unwrap_err());
        assert!(e.contains("not encrypted"), "{e}");
    }

    #[test]
    fn several_keys_primary_seals_all_open() {
        let k1_only = ring("k1", &[("k1", K1)]);
        let old = k1_only.seal("rec", b"old").unwrap();
        let both = ring("k2", &[("k1", K1), ("k2", K2)]);
        assert_eq!(both.open("rec", &old).unwrap(), b"old");
        let new = both.seal("rec", b"new").unwrap();
        assert_eq!(both.key_id_of("rec", &new).unwrap(), Some("k2"));
        assert_eq!(both.key_id_of("rec", &old).unwrap(), Some("k1"));
        assert_eq!(both.key_id_of("rec", b"{}").unwrap(), None);
        assert!(k1_only.open("rec", &new).is_err());
    }

    #[test]
    fn keys_parse_from_hex_only_and_never_print() {
        assert!(
            EncryptionKey::from_hex(&format!("  {K1}\n")).is_ok(),
            "whitespace is trimmed"
        );
        let e = EncryptionKey::from_hex(&K1[..62]).unwrap_err();
        assert!(e.contains("64 hex digits") && e.contains("62"), "{e}");
        let e = EncryptionKey::from_hex(&format!("{}zz", &K1[..62])).unwrap_err();
        assert!(e.contains("not a hex digit") && !e.contains("zz"), "{e}");
        // base64 of 32 bytes is refused rather than guessed at.
        assert!(EncryptionKey::from_hex("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").is_err());

        let k = key(K2);
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&k.to_hex()),
            K2.to_ascii_lowercase()
        );
        assert!(!format!("{k:?}").to_ascii_lowercase().contains("f0e1"));
        let fresh = EncryptionKey::generate();
        let hex = fresh.to_hex();
        let hex = secrecy::ExposeSecret::expose_secret(&hex);
        assert_eq!(hex.len(), 64);
        assert!(EncryptionKey::from_hex(hex).is_ok());
        assert_ne!(
            hex,
            secrecy::ExposeSecret::expose_secret(&EncryptionKey::generate().to_hex())
        );

        let keys = ring("k2", &[("k1", K1), ("k2", K2)]);
        let shown = format!("{keys:?}");
        assert!(shown.contains("k1") && shown.contains("k2"), "{shown}");
        assert!(
            !shown.to_ascii_lowercase().contains("f0e1") && !shown.contains("0001"),
            "{shown}"
        );
    }

    #[test]
    fn keyring_validation() {
        let e = Keyring::new("k3", vec![("k1".into(), key(K1))]).unwrap_err();
        assert!(e.contains("\"k3\""), "{e}");
        let e = Keyring::new("k1", vec![("k1".into(), key(K1)), ("k1".into(), key(K2))]).unwrap_err();
        assert!(e.contains("duplicate"), "{e}");
        let e = Keyring::new("k 1", vec![("k 1".into(), key(K1))]).unwrap_err();
        assert!(e.contains("key id"), "{e}");
        assert!(valid_key_id("2026-11.primary_A"));
        assert!(!valid_key_id(""));
        assert!(!valid_key_id(&"k".repeat(33)));
    }

    fn encrypted_memory(keys: Keyring) -> (Arc<MemoryStore>, EncryptedStore) {
        let inner = Arc::new(MemoryStore::new());
        (inner.clone(), EncryptedStore::new(inner, keys))
    }

    /// The keyring of the conformance runs, compressing or not.
    fn conformance_ring(compress: bool) -> Keyring {
        ring("k1", &[("k1", K1)]).with_compression(compress)
    }

    #[tokio::test]
    async fn conformance_over_memory() {
        for compress in [false, true] {
            let keys = || conformance_ring(compress);
            let (_, store) = encrypted_memory(keys());
            conformance::run(&store).await;
            let (_, store) = encrypted_memory(keys());
            conformance::purge_counts(&store).await;
            let (_, store) = encrypted_memory(keys());
            conformance::scan_and_rewrite(&store).await;
            let (_, store) = encrypted_memory(keys());
            conformance::concurrent_take(Arc::new(store)).await;
            let (_, store) = encrypted_memory(keys());
            conformance::concurrent_write_with_event(Arc::new(store)).await;
            let (source_inner, source) = encrypted_memory(keys());
            let (_, target) = encrypted_memory(keys());
            conformance::export_and_import(&source, &target).await;
            // What leaves is what the backend holds: sealed, never the plaintext.
            let sealed = conformance::export_all(&source).await;
            assert_eq!(sealed, conformance::export_all(source_inner.as_ref()).await);
            let allowed: &[u8] = if compress {
                &[FORMAT_V1, FORMAT_V2]
            } else {
                &[FORMAT_V1]
            };
            assert!(sealed.iter().all(|e| match e {
                crate::store::Entry::Record(r) => r.value.first().is_some_and(|f| allowed.contains(f)),
                _ => true,
            }));
        }
    }

    #[tokio::test]
    async fn conformance_over_embedded() {
        for compress in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let inner = Arc::new(crate::store::EmbeddedStore::open(&dir.path().join("e.redb")).unwrap());
            let store = Arc::new(EncryptedStore::new(inner, conformance_ring(compress)));
            conformance::run(store.as_ref()).await;
            conformance::purge_counts(store.as_ref()).await;
            conformance::concurrent_take(store.clone()).await;
            conformance::concurrent_write_with_event(store.clone()).await;
            let dir = tempfile::tempdir().unwrap();
            let inner = Arc::new(crate::store::EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
            conformance::scan_and_rewrite(&EncryptedStore::new(inner, conformance_ring(compress))).await;
        }
    }

    #[tokio::test]
    async fn a_backup_of_mixed_formats_restores_and_opens() {
        // Records written before and after compression was turned on, exported as they are.
        let (source_inner, old) = encrypted_memory(conformance_ring(false));
        let new = EncryptedStore::new(source_inner.clone(), conformance_ring(true));
        let value = |i: u8| format!("{{\"n\":{i},\"scopes\":\"{}\"}}", "Files.Read.All ".repeat(20)).into_bytes();
        for i in 0..4u8 {
            let writer = if i % 2 == 0 { &old } else { &new };
            writer.put(&format!("conn:{{{i}}}"), value(i), None).await.unwrap();
        }
        let exported = conformance::export_all(&new).await;
        let formats: Vec<u8> = exported
            .iter()
            .filter_map(|e| match e {
                crate::store::Entry::Record(r) => r.value.first().copied(),
                _ => None,
            })
            .collect();
        assert_eq!(formats.len(), 4);
        assert!(
            formats.contains(&FORMAT_V1) && formats.contains(&FORMAT_V2),
            "{formats:?}"
        );
        // Restored under a broker that does not compress: both still open.
        let (_, target) = encrypted_memory(conformance_ring(false));
        target.import(exported).await.unwrap();
        for i in 0..4u8 {
            assert_eq!(
                target.get(&format!("conn:{{{i}}}")).await.unwrap().unwrap().value,
                value(i)
            );
        }
    }

    #[tokio::test]
    async fn the_backend_sees_only_blobs_and_unreadable_ones_are_errors() {
        let (inner, store) = encrypted_memory(ring("k1", &[("k1", K1)]));
        store
            .put("conn:{c}", b"refresh-token-value".to_vec(), None)
            .await
            .unwrap();
        let raw = inner.get("conn:{c}").await.unwrap().unwrap();
        assert_eq!(raw.value[0], FORMAT_V1);
        assert!(!raw.value.windows(13).any(|w| w == b"refresh-token"));

        // A blob copied over another record's key: an error, not "absent".
        inner.put("conn:{d}", raw.value.clone(), None).await.unwrap();
        assert!(matches!(store.get("conn:{d}").await, Err(StoreError::Corrupt { .. })));
        assert!(matches!(store.take("conn:{d}").await, Err(StoreError::Corrupt { .. })));
    }

    #[tokio::test]
    async fn write_with_event_seals_the_record_and_the_event_each_for_its_own_key() {
        let keys = ring("k1", &[("k1", K1)]);
        let (inner, store) = encrypted_memory(keys.clone());
        let in_clear = |blob: &[u8], text: &[u8]| blob.windows(text.len()).any(|w| w == text);
        let writes = [
            (
                Write::InsertNew {
                    key: "conn:{c}".into(),
                    value: b"record-secret-1".to_vec(),
                    ttl: None,
                },
                1,
            ),
            (
                Write::Cas {
                    key: "conn:{c}".into(),
                    expected_version: 1,
                    value: b"record-secret-2".to_vec(),
                    ttl: None,
                },
                2,
            ),
            (
                Write::Put {
                    key: "conn:{c}".into(),
                    value: b"record-secret-3".to_vec(),
                    ttl: None,
                },
                3,
            ),
        ];
        for (n, (write, version)) in writes.into_iter().enumerate() {
            let (record, event) = (format!("record-secret-{}", n + 1), format!("event-secret-{}", n + 1));
            let event_key = format!("event:{{c}}:{n}");
            assert_eq!(
                store
                    .write_with_event(write, &event_key, event.as_bytes().to_vec(), None)
                    .await
                    .unwrap(),
                WriteOutcome::Applied(version)
            );
            let raw_record = inner.get("conn:{c}").await.unwrap().unwrap().value;
            let raw_event = inner.get(&event_key).await.unwrap().unwrap().value;
            assert_eq!((raw_record[0], raw_event[0]), (FORMAT_V1, FORMAT_V1));
            assert!(!in_clear(&raw_record, record.as_bytes()), "the record is sealed");
            assert!(!in_clear(&raw_event, event.as_bytes()), "the event is sealed");
            // Each sealed for its own key: the event's blob does not open as the record.
            assert!(keys.open("conn:{c}", &raw_event).is_err());
            assert_eq!(keys.open(&event_key, &raw_event).unwrap(), event.as_bytes());
            assert_eq!(
                store.get("conn:{c}").await.unwrap(),
                Some(Versioned {
                    value: record.into_bytes(),
                    version
                })
            );
            assert_eq!(store.get(&event_key).await.unwrap().unwrap().value, event.as_bytes());
        }
        // A delete has no value to seal; its event is sealed all the same.
        assert_eq!(
            store
                .write_with_event(
                    Write::Delete { key: "conn:{c}".into() },
                    "event:{c}:del",
                    b"event-secret-del".to_vec(),
                    None
                )
                .await
                .unwrap(),
            WriteOutcome::Applied(0)
        );
        assert_eq!(inner.get("conn:{c}").await.unwrap(), None);
        let raw_event = inner.get("event:{c}:del").await.unwrap().unwrap().value;
        assert!(!in_clear(&raw_event, b"event-secret-del"));
        assert_eq!(
            store.get("event:{c}:del").await.unwrap().unwrap().value,
            b"event-secret-del"
        );
    }

    #[tokio::test]
    async fn reseal_moves_records_to_the_primary_and_keeps_version_and_expiry() {
        let inner = Arc::new(MemoryStore::new());
        let old = EncryptedStore::new(inner.clone(), ring("k1", &[("k1", K1)]));
        old.put("a", b"alpha".to_vec(), None).await.unwrap();
        old.put("a", b"alpha2".to_vec(), None).await.unwrap();
        old.put("t", b"short".to_vec(), Some(Duration::from_millis(80)))
            .await
            .unwrap();
        inner.put("plain", b"{\"legacy\":true}".to_vec(), None).await.unwrap();

        let new = EncryptedStore::new(inner.clone(), ring("k2", &[("k1", K1), ("k2", K2)]));
        assert_eq!(new.reseal("a", false).await.unwrap(), Resealed::Rewritten);
        assert_eq!(new.reseal("a", false).await.unwrap(), Resealed::AlreadyPrimary);
        assert_eq!(new.reseal("t", false).await.unwrap(), Resealed::Rewritten);
        assert_eq!(new.reseal("nothing", false).await.unwrap(), Resealed::Gone);
        assert!(matches!(
            new.reseal("plain", false).await,
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(new.reseal("plain", true).await.unwrap(), Resealed::Rewritten);

        let k2_only = EncryptedStore::new(inner.clone(), ring("k2", &[("k2", K2)]));
        assert_eq!(
            k2_only.get("a").await.unwrap(),
            Some(Versioned {
                value: b"alpha2".to_vec(),
                version: 2
            }),
            "same version: writers that read before the rotation still compare-and-swap"
        );
        assert_eq!(k2_only.get("plain").await.unwrap().unwrap().value, b"{\"legacy\":true}");
        assert_eq!(k2_only.get("t").await.unwrap().unwrap().value, b"short");
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(
            k2_only.get("t").await.unwrap(),
            None,
            "the expiry survived re-encryption"
        );
        assert_eq!(
            k2_only
                .compare_and_swap("a", 2, b"alpha3".to_vec(), None)
                .await
                .unwrap(),
            CasOutcome::Written(3)
        );
    }
}
