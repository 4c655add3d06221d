//! Certificate credentials for tests: self-signed RSA certificates made on the fly (no key is
//! ever committed) and hand-made client assertions.
//!
//! rcgen makes RSA keys only with its aws-lc-rs backend, which is the one this crate uses (ring
//! cannot generate RSA keys).

use std::path::{Path, PathBuf};

use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;
use time::OffsetDateTime;

/// A certificate and its private key.
pub struct TestCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The PKCS#8 private key, PEM.
    pub key_pem: String,
    /// The end of its validity, unix seconds.
    pub not_after: i64,
    der: Vec<u8>,
}

impl TestCert {
    /// A self-signed RSA-2048 certificate valid from `from_days` to `until_days` relative to now.
    pub fn rsa(from_days: i64, until_days: i64) -> TestCert {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key generation");
        let mut params = rcgen::CertificateParams::new(vec!["connector.test".into()]).expect("params");
        let now = OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from_days);
        params.not_after = now + time::Duration::days(until_days);
        let cert = params.self_signed(&key).expect("self-signed certificate");
        TestCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after: params.not_after.unix_timestamp(),
            der: cert.der().to_vec(),
        }
    }

    /// Valid from yesterday for a year.
    pub fn valid() -> TestCert {
        Self::rsa(-1, 365)
    }

    /// `x5t#S256`: base64url SHA-256 of the DER.
    pub fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(digest(&SHA256, &self.der))
    }

    /// Legacy `x5t`: base64url SHA-1 of the DER.
    pub fn x5t(&self) -> String {
        URL_SAFE_NO_PAD.encode(digest(&SHA1_FOR_LEGACY_USE_ONLY, &self.der))
    }

    /// SHA-1 thumbprint in upper-case hex, as the portal (and the broker's logs) show it.
    pub fn thumbprint(&self) -> String {
        digest(&SHA1_FOR_LEGACY_USE_ONLY, &self.der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect()
    }

    /// Upper-case hex of the SHA-256 (what Entra prints for an `x5t#S256` it does not know).
    pub fn sha256_hex(&self) -> String {
        digest(&SHA256, &self.der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect()
    }

    /// Writes `cert.pem` and `key.pem` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, &self.cert_pem).expect("write certificate");
        std::fs::write(&key, &self.key_pem).expect("write key");
        (cert, key)
    }

    /// The connector TOML lines that use this certificate (written into `dir`).
    pub fn connector_lines(&self, dir: &Path) -> String {
        let (cert, key) = self.write(dir);
        format!(
            "client_certificate_file = \"{}\"\nclient_certificate_key_file = \"{}\"",
            cert.display(),
            key.display()
        )
    }

    /// The simulator's `certificates` entry registering this certificate.
    pub fn registration(&self) -> Value {
        serde_json::json!({ "pem": self.cert_pem })
    }

    /// Signs `claims` with this certificate's key under `header` (whose `alg` must be RS256/PS256).
    pub fn sign(&self, header: &Header, claims: &Value) -> String {
        let key = EncodingKey::from_rsa_pem(self.key_pem.as_bytes()).expect("RSA key");
        jsonwebtoken::encode(header, claims, &key).expect("sign")
    }
}

/// A header with `alg` and, when given, `x5t#S256` and `x5t`.
pub fn header(alg: Algorithm, x5t_s256: Option<String>, x5t: Option<String>) -> Header {
    let mut header = Header::new(alg);
    header.typ = Some("JWT".into());
    header.x5t_s256 = x5t_s256;
    header.x5t = x5t;
    header
}

/// Entra's assertion claims for `client_id` and `aud`, valid from `nbf` to `exp` (unix seconds).
pub fn claims(client_id: &str, aud: &str, nbf: i64, exp: i64) -> Value {
    serde_json::json!({
        "aud": aud,
        "iss": client_id,
        "sub": client_id,
        "jti": uuid::Uuid::new_v4().to_string(),
        "nbf": nbf,
        "iat": nbf,
        "exp": exp,
    })
}

/// Now, in unix seconds.
pub fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}
