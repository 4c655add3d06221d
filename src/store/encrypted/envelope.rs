//! The sealed value's bytes: header, nonce, ciphertext and tag (layout in [`super`]), and the
//! compression of version 2.
//!
//! Version 2 seals `u32 LE length of the plaintext ‖ raw deflate of the plaintext` instead of
//! the plaintext itself. The declared length bounds what opening allocates (checked against
//! [`MAX_INFLATED_LEN`] first), and the deflate stream is inflated into exactly that many bytes,
//! so a stream that would inflate further fails instead of growing a buffer: no record can make
//! a broker allocate more than the cap, whatever it holds.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use miniz_oxide::DataFormat;
use miniz_oxide::deflate::core::{CompressorOxide, TDEFLFlush, TDEFLStatus, compress};
use secrecy::zeroize::Zeroizing;

use super::{MAX_KEY_ID_LEN, StoreError, valid_key_id};

/// First byte of a version-1 sealed value: the plaintext sealed as it is. JSON (what the broker
/// stores) never starts with it, which is what lets `rotate-keys --encrypt-plaintext` tell
/// records written before encryption apart.
pub const FORMAT_V1: u8 = 0x01;
/// First byte of a version-2 sealed value: the plaintext deflated, then sealed. No JSON text, and
/// no tagged record (which starts with a NUL byte), starts with it either.
pub const FORMAT_V2: u8 = 0x02;
/// Longest plaintext a version-2 value may declare. The broker's largest records (a connection
/// with two tokens as Entra issues them, about 3.5 KB; an outbox event; a flow) are a few KB, so
/// 1 MiB leaves room of more than a hundred times for tokens that grow (a user in many groups
/// gets a much longer token) while keeping what one damaged or hostile record can make a broker
/// allocate small. Larger plaintexts are sealed as version 1 (not refused), so every value
/// written opens again.
pub const MAX_INFLATED_LEN: usize = 1 << 20;
/// Plaintexts shorter than this stay version 1. Deflate's block header and the 4-byte length
/// leave little or nothing to gain on a few dozen bytes (a handoff code's target, a reconnect
/// link's pointer), and skipping them spares setting up a compressor for every small write.
pub const MIN_COMPRESSED_LEN: usize = 128;
/// Bytes of the nonce (XChaCha20's 192 bits).
pub(super) const NONCE_LEN: usize = 24;
/// Bytes of the Poly1305 tag.
pub(super) const TAG_LEN: usize = 16;
/// Bytes of the declared plaintext length at the start of a version-2 payload.
const LEN_PREFIX: usize = 4;
/// zlib's default level: on a connection record (mostly random base64url) higher levels find
/// nothing more, and the Huffman coding of the base64 alphabet is most of the gain. The stream is
/// raw deflate (no zlib header or checksum): the AEAD tag already authenticates every byte.
const LEVEL: u8 = 6;

/// The parts of a sealed value.
pub(super) struct Sealed<'a> {
    /// [`FORMAT_V1`] or [`FORMAT_V2`].
    pub format: u8,
    /// Format byte, key id length and key id: authenticated as associated data.
    pub header: &'a [u8],
    pub key_id: &'a str,
    pub nonce: &'a [u8],
    pub ciphertext: &'a [u8],
}

/// What a stored value is, judged by its first bytes only (no key needed).
pub(super) enum Shape<'a> {
    Sealed(Sealed<'a>),
    /// Not a sealed value of a version this broker knows: written before encryption was turned
    /// on, or damaged.
    Foreign,
}

pub(super) fn corrupt(record_key: &str, message: String) -> StoreError {
    StoreError::Corrupt {
        key: record_key.to_string(),
        message,
    }
}

/// Splits a stored value; a value that starts like a blob but is malformed is an error.
pub(super) fn parse<'a>(record_key: &str, blob: &'a [u8]) -> Result<Shape<'a>, StoreError> {
    let format = match blob.first() {
        Some(&f @ (FORMAT_V1 | FORMAT_V2)) => f,
        _ => return Ok(Shape::Foreign),
    };
    let malformed = || corrupt(record_key, "the encrypted value is malformed (truncated header)".into());
    let id_len = usize::from(*blob.get(1).ok_or_else(malformed)?);
    let header_len = 2 + id_len;
    if id_len == 0 || id_len > MAX_KEY_ID_LEN || blob.len() < header_len + NONCE_LEN + TAG_LEN {
        return Err(malformed());
    }
    let key_id = std::str::from_utf8(&blob[2..header_len])
        .ok()
        .filter(|id| valid_key_id(id))
        .ok_or_else(|| corrupt(record_key, "the encrypted value names an invalid key id".into()))?;
    Ok(Shape::Sealed(Sealed {
        format,
        header: &blob[..header_len],
        key_id,
        nonce: &blob[header_len..header_len + NONCE_LEN],
        ciphertext: &blob[header_len + NONCE_LEN..],
    }))
}

/// Header and record key: what the tag authenticates besides the ciphertext. The header starts
/// with the format byte, so a version-1 value relabelled as version 2 (or the reverse) does not
/// open.
fn associated_data(header: &[u8], record_key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + record_key.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(record_key.as_bytes());
    aad
}

/// The version-2 payload of `plaintext`, or `None` when it would not be smaller than the
/// plaintext (then version 1 is written). Deflate writes into a buffer one byte shorter than the
/// plaintext, allocated once and wiped on drop, so no copy of the compressed secret is left in
/// freed memory by a growing buffer; running out of room means compression does not pay.
fn deflate(plaintext: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if plaintext.len() < MIN_COMPRESSED_LEN || plaintext.len() > MAX_INFLATED_LEN {
        return None;
    }
    let mut out = Zeroizing::new(vec![0u8; plaintext.len() - 1]);
    // MAX_INFLATED_LEN fits a u32.
    out[..LEN_PREFIX].copy_from_slice(&(plaintext.len() as u32).to_le_bytes());
    let mut compressor = CompressorOxide::default();
    compressor.set_format_and_level(DataFormat::Raw, LEVEL);
    let (status, consumed, written) = compress(&mut compressor, plaintext, &mut out[LEN_PREFIX..], TDEFLFlush::Finish);
    if status != TDEFLStatus::Done || consumed != plaintext.len() {
        return None;
    }
    out.truncate(LEN_PREFIX + written);
    Some(out)
}

/// The plaintext of a version-2 payload. Any inflate error, a declared length over
/// [`MAX_INFLATED_LEN`], or a stream that inflates to more or fewer bytes than declared is
/// [`StoreError::Corrupt`]. Only a payload that passed authentication gets here, so only a holder
/// of the key could have made a bad one; it is bounded all the same.
fn inflate(record_key: &str, payload: &[u8]) -> Result<Vec<u8>, StoreError> {
    let bad = |why: &str| corrupt(record_key, format!("the compressed value does not inflate ({why})"));
    let (declared, stream) = payload
        .split_first_chunk::<LEN_PREFIX>()
        .ok_or_else(|| bad("no length"))?;
    let declared = u32::from_le_bytes(*declared) as usize;
    if declared > MAX_INFLATED_LEN {
        return Err(bad(&format!(
            "it declares {declared} bytes, more than the {MAX_INFLATED_LEN}-byte limit"
        )));
    }
    let mut out = Zeroizing::new(vec![0u8; declared]);
    match miniz_oxide::inflate::decompress_slice_iter_to_slice(&mut out, std::iter::once(stream), false, true) {
        Ok(n) if n == declared => Ok(std::mem::take(&mut *out)),
        Ok(n) => Err(bad(&format!("{n} bytes instead of the {declared} declared"))),
        Err(miniz_oxide::inflate::TINFLStatus::HasMoreOutput) => {
            Err(bad(&format!("more than the {declared} bytes declared")))
        }
        Err(status) => Err(bad(&format!("{status:?}"))),
    }
}

/// Seals `plaintext` for `record_key` under `cipher`, whose id is `key_id` (checked by the
/// keyring: at most 32 bytes). With `compress`, writes version 2 when that is smaller.
pub(super) fn seal(
    cipher: &XChaCha20Poly1305,
    key_id: &str,
    record_key: &str,
    plaintext: &[u8],
    compress: bool,
) -> Result<Vec<u8>, StoreError> {
    let deflated = if compress { deflate(plaintext) } else { None };
    match &deflated {
        Some(payload) => seal_payload(cipher, FORMAT_V2, key_id, record_key, payload),
        None => seal_payload(cipher, FORMAT_V1, key_id, record_key, plaintext),
    }
}

/// Seals `payload` as it is under a header of `format`: the one place the layout is written.
fn seal_payload(
    cipher: &XChaCha20Poly1305,
    format: u8,
    key_id: &str,
    record_key: &str,
    payload: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let id = key_id.as_bytes();
    let mut blob = Vec::with_capacity(2 + id.len() + NONCE_LEN + payload.len() + TAG_LEN);
    blob.push(format);
    blob.push(id.len() as u8);
    blob.extend_from_slice(id);
    let nonce = crate::crypto::random_bytes::<NONCE_LEN>();
    let aad = associated_data(&blob, record_key);
    blob.extend_from_slice(&nonce);
    let ciphertext = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: payload,
                aad: &aad,
            },
        )
        .map_err(|_| StoreError::backend(format!("cannot encrypt record {record_key} (value too long)")))?;
    blob.extend_from_slice(&ciphertext);
    Ok(blob)
}

/// Opens a parsed value with the key it names (`cipher`): decrypts, then inflates version 2.
pub(super) fn open(cipher: &XChaCha20Poly1305, record_key: &str, sealed: &Sealed<'_>) -> Result<Vec<u8>, StoreError> {
    let nonce = XNonce::try_from(sealed.nonce)
        .map_err(|_| corrupt(record_key, "the encrypted value is malformed (nonce)".into()))?;
    let aad = associated_data(sealed.header, record_key);
    let opened = cipher
        .decrypt(
            &nonce,
            Payload {
                msg: sealed.ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| {
            corrupt(
                record_key,
                format!(
                    "does not decrypt with key id {:?} (a different key under that id, a changed byte, or a value copied from another record)",
                    sealed.key_id
                ),
            )
        })?;
    match sealed.format {
        FORMAT_V2 => inflate(record_key, &Zeroizing::new(opened)),
        _ => Ok(opened),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::super::{EncryptionKey, Keyring};
    use super::*;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn ring(compress: bool) -> Keyring {
        Keyring::new("k1", vec![("k1".into(), EncryptionKey::from_hex(K1).unwrap())])
            .unwrap()
            .with_compression(compress)
    }

    fn cipher() -> XChaCha20Poly1305 {
        EncryptionKey::from_hex(K1).unwrap().cipher()
    }

    fn is_corrupt(result: Result<Vec<u8>, StoreError>, words: &str) {
        match result {
            Err(StoreError::Corrupt { key, message }) => {
                assert!(key == "conn:{c}" && message.contains(words), "{key}: {message}")
            }
            other => panic!("expected Corrupt ({words}), got {other:?}"),
        }
    }

    /// `n` characters of random base64url: a token as random as it can be, the worst case for
    /// compression (a real JWT's header and claims compress better).
    fn random_token(n: usize) -> String {
        let bytes: Vec<u8> = (0..n.div_ceil(48))
            .flat_map(|_| crate::crypto::random_bytes::<36>())
            .collect();
        let mut token = URL_SAFE_NO_PAD.encode(bytes);
        token.truncate(n);
        token
    }

    /// A connection record as a sign-in writes it (the fields of `records::Connection`), with a
    /// 1,600-character access token and a 1,200-character refresh token.
    fn connection_record() -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": "conn_6c7xKJ0yq2e3Zt4Vw1BdAg",
            "connector": "files",
            "end_user": "user-4711",
            "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "user": {
                "oid": "9d4b4b8c-2a6e-4d0f-9a3b-5c1e2f3a4b5c",
                "name": "Adele Vance",
                "preferred_username": "adele.vance@contoso.onmicrosoft.com"
            },
            "scopes": ["https://graph.microsoft.com/Files.Read.All", "https://graph.microsoft.com/Sites.Read.All"],
            "access_token": random_token(1600),
            "access_expires_at": 1_796_140_800,
            "refresh_token": random_token(1200),
            "created_at": 1_796_119_200,
            "refreshed_at": 1_796_119_200,
            "status": "active",
            "reauth": null,
            "return_url": null,
            "token_identity": {
                "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
                "client_id": "4a1aa1d5-c567-49d0-ad0b-cd957a47f842",
                "scopes": ["https://graph.microsoft.com/Files.Read.All", "https://graph.microsoft.com/Sites.Read.All"]
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_connection_record_seals_a_quarter_smaller_and_round_trips() {
        let record = connection_record();
        let (v1, v2) = (ring(false), ring(true));
        let old = v1.seal("conn:{c}", &record).unwrap();
        let new = v2.seal("conn:{c}", &record).unwrap();
        assert_eq!((old[0], new[0]), (FORMAT_V1, FORMAT_V2));
        assert_eq!(old.len(), record.len() + 2 + 2 + NONCE_LEN + TAG_LEN);
        // Measured: this 3,555-byte record seals to 3,599 bytes as version 1 and 2,606 to 2,609 as
        // version 2, 27.5% less (deflate's Huffman codes give the 64 base64url characters 6 bits
        // each instead of 8, and the repeated names and scopes less). Asserted a little looser.
        let saved = 1.0 - new.len() as f64 / old.len() as f64;
        assert!(
            saved >= 0.25,
            "v1 {} bytes, v2 {} bytes: {:.1}% saved",
            old.len(),
            new.len(),
            saved * 100.0
        );
        // Either keyring opens either version.
        for keys in [&v1, &v2] {
            assert_eq!(keys.open("conn:{c}", &old).unwrap(), record);
            assert_eq!(keys.open("conn:{c}", &new).unwrap(), record);
        }
        assert!(
            !new.windows(40).any(|w| record.windows(40).any(|r| r == w)),
            "nothing in clear"
        );
        // Random nonces: the same record seals differently every time.
        assert_ne!(new, v2.seal("conn:{c}", &record).unwrap());
    }

    #[test]
    fn small_or_incompressible_values_stay_version_1() {
        let keys = ring(true);
        for value in [
            &b""[..],
            b"{\"connection\":\"conn_x\"}",
            &[b'a'; MIN_COMPRESSED_LEN - 1],
        ] {
            let blob = keys.seal("conn:{c}", value).unwrap();
            assert_eq!(blob[0], FORMAT_V1, "{} bytes", value.len());
            assert_eq!(blob.len(), value.len() + 4 + NONCE_LEN + TAG_LEN);
            assert_eq!(keys.open("conn:{c}", &blob).unwrap(), value);
        }
        let noise: Vec<u8> = (0..16).flat_map(|_| crate::crypto::random_bytes::<64>()).collect();
        assert_eq!(keys.seal("conn:{c}", &noise).unwrap()[0], FORMAT_V1);
    }

    /// A version-1 blob as brokers before version 2 sealed it (key `K1` under id "k1", record
    /// `conn:{c}`), pinned byte for byte; it must open for as long as such stores exist.
    const OLD_V1_BLOB: &str = concat!(
        "01026b31070707070707070707070707070707070707070707070707",
        "9d9d3abb3d0cb7e723ee1a4c25495b1abaa2b21c1984a04d5e49473b085aed2c97a7863c7d840877ae31e54b",
        "7fc8f8a056fe3f32e1b620ebefc104f6bcf2c487b998a67857190d2c"
    );

    #[test]
    fn a_version_1_blob_from_an_older_broker_still_opens() {
        let plaintext = br#"{"access_token":"at-secret","refresh_token":"rt-secret"}"#;
        // Built the way the old seal did, with a fixed nonce instead of a random one.
        let header = [FORMAT_V1, 2, b'k', b'1'];
        let nonce = [7u8; NONCE_LEN];
        let aad = [&header[..], b"conn:{c}"].concat();
        let sealed = cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .unwrap();
        let built = [&header[..], &nonce, &sealed].concat();
        let pinned: Vec<u8> = (0..OLD_V1_BLOB.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&OLD_V1_BLOB[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(built, pinned, "the version-1 layout changed");
        for keys in [ring(false), ring(true)] {
            assert_eq!(keys.open("conn:{c}", &pinned).unwrap(), plaintext);
        }
    }

    #[test]
    fn a_changed_relabelled_or_truncated_version_2_blob_is_corrupt() {
        let keys = ring(true);
        let record = connection_record();
        let blob = keys.seal("conn:{c}", &record).unwrap();
        assert_eq!(blob[0], FORMAT_V2);
        for i in (0..blob.len()).step_by(7).chain([1, 2, 3, blob.len() - 1]) {
            let mut bad = blob.clone();
            bad[i] ^= 0x20;
            assert!(
                matches!(keys.open("conn:{c}", &bad), Err(StoreError::Corrupt { .. })),
                "byte {i}"
            );
        }
        for len in (0..blob.len()).step_by(13) {
            assert!(
                matches!(keys.open("conn:{c}", &blob[..len]), Err(StoreError::Corrupt { .. })),
                "truncated to {len}"
            );
        }
        // Relabelled: the format byte is authenticated, so neither version passes for the other.
        let mut as_v1 = blob.clone();
        as_v1[0] = FORMAT_V1;
        is_corrupt(keys.open("conn:{c}", &as_v1), "does not decrypt");
        let mut as_v2 = ring(false).seal("conn:{c}", &record).unwrap();
        assert_eq!(as_v2[0], FORMAT_V1);
        as_v2[0] = FORMAT_V2;
        is_corrupt(keys.open("conn:{c}", &as_v2), "does not decrypt");
        // An unknown version is no blob of ours.
        let mut v3 = blob.clone();
        v3[0] = 0x03;
        is_corrupt(keys.open("conn:{c}", &v3), "not encrypted");
    }

    #[test]
    fn a_decompression_bomb_is_corrupt_and_bounded() {
        let keys = ring(true);
        // 16 MiB of zeros deflate to about 16 KB: what a key holder could seal to hurt a broker.
        let bomb = miniz_oxide::deflate::compress_to_vec(&vec![0u8; 16 << 20], 9);
        assert!(bomb.len() < 40_000, "{}", bomb.len());
        let sealed = |declared: u32| {
            let payload = [&declared.to_le_bytes()[..], &bomb].concat();
            seal_payload(&cipher(), FORMAT_V2, "k1", "conn:{c}", &payload).unwrap()
        };
        // Declaring the truth is over the cap; declaring less stops inflating at what it declared.
        is_corrupt(keys.open("conn:{c}", &sealed(16 << 20)), "limit");
        is_corrupt(keys.open("conn:{c}", &sealed(MAX_INFLATED_LEN as u32 + 1)), "limit");
        is_corrupt(
            keys.open("conn:{c}", &sealed(MAX_INFLATED_LEN as u32)),
            &format!("more than the {MAX_INFLATED_LEN} bytes declared"),
        );
        is_corrupt(
            keys.open("conn:{c}", &sealed(1000)),
            "more than the 1000 bytes declared",
        );
        // A payload that is no deflate stream at all, sealed with the right key.
        let junk = seal_payload(&cipher(), FORMAT_V2, "k1", "conn:{c}", &[0x10, 0, 0, 0, 0xff, 0xff]).unwrap();
        is_corrupt(keys.open("conn:{c}", &junk), "does not inflate");
        let empty = seal_payload(&cipher(), FORMAT_V2, "k1", "conn:{c}", &[]).unwrap();
        is_corrupt(keys.open("conn:{c}", &empty), "no length");
    }

    #[test]
    fn deflate_pays_only_on_larger_compressible_values() {
        assert!(
            deflate(&[b'a'; MIN_COMPRESSED_LEN - 1]).is_none(),
            "too short to bother"
        );
        let payload = deflate(&[b'a'; 4096]).expect("4 KB of one byte compresses");
        assert!(payload.len() < 40, "{}", payload.len());
        assert_eq!(&payload[..LEN_PREFIX], &4096u32.to_le_bytes());
        assert_eq!(inflate("rec", &payload).unwrap(), vec![b'a'; 4096]);
        // Random bytes do not compress: version 1.
        let noise: Vec<u8> = (0..16).flat_map(|_| crate::crypto::random_bytes::<64>()).collect();
        assert!(deflate(&noise).is_none());
        assert!(
            deflate(&vec![b'a'; MAX_INFLATED_LEN + 1]).is_none(),
            "over the cap: version 1"
        );
    }

    #[test]
    fn bad_payloads_are_corrupt_not_panics() {
        let payload = deflate(&[b'x'; 1000]).unwrap();
        let is_corrupt = |p: &[u8], words: &str| match inflate("rec", p) {
            Err(StoreError::Corrupt { key, message }) => {
                assert!(key == "rec" && message.contains(words), "{message}")
            }
            other => panic!("expected Corrupt, got {other:?}"),
        };
        is_corrupt(&payload[..3], "no length");
        is_corrupt(&payload[..payload.len() - 1], "inflate");
        // Declares less than the stream holds: stopped at the declared size, not grown.
        let mut short = payload.to_vec();
        short[..LEN_PREFIX].copy_from_slice(&999u32.to_le_bytes());
        is_corrupt(&short, "more than the 999 bytes declared");
        let mut long = payload.to_vec();
        long[..LEN_PREFIX].copy_from_slice(&1001u32.to_le_bytes());
        is_corrupt(&long, "1000 bytes instead of the 1001 declared");
        let mut huge = payload.to_vec();
        huge[..LEN_PREFIX].copy_from_slice(&u32::MAX.to_le_bytes());
        is_corrupt(&huge, "limit");
        let mut garbage = payload.to_vec();
        garbage[LEN_PREFIX..].fill(0xff);
        is_corrupt(&garbage, "inflate");
    }
}
