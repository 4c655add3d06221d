//! How the broker proves to Entra that it is a connector's app: a client secret, or a certificate
//! whose private key signs a fresh client assertion for every token request (entra.md §2.2).
//!
//! Everything here is loaded and checked once, at config time, so that a broken credential stops
//! start-up with a message naming the file instead of failing the first sign-in. Secret and key
//! material never reaches `Debug`, `Display` or an error message.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;
use secrecy::zeroize::Zeroizing;
use serde::Serialize;
use time::OffsetDateTime;

use crate::crypto::Sensitive;

/// `client_assertion_type` for a JWT client assertion (RFC 7523).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Lifetime of a client assertion: Entra's docs ask for "5-10 minutes after nbf at most", and each
/// one is used for a single request anyway.
pub const ASSERTION_LIFETIME_SECS: i64 = 300;

/// A connector's credential at the token endpoint.
#[derive(Clone)]
pub enum ClientCredential {
    /// A client secret, sent as `client_secret` (client_secret_post).
    Secret {
        /// The secret value.
        secret: SecretString,
        /// When the secret expires, as the operator copied it from the portal (Entra never says).
        expires_at: Option<OffsetDateTime>,
    },
    /// A certificate whose key signs client assertions (private_key_jwt).
    Certificate(Arc<ClientCertificate>),
}

impl ClientCredential {
    /// `"secret"` or `"certificate"`, as used in logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Secret { .. } => "secret",
            Self::Certificate(_) => "certificate",
        }
    }

    /// When the credential stops working, if known.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        match self {
            Self::Secret { expires_at, .. } => *expires_at,
            Self::Certificate(cert) => Some(cert.not_after),
        }
    }
}

impl std::fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Secret { expires_at, .. } => f
                .debug_struct("Secret")
                .field("secret", &"[redacted]")
                .field("expires_at", expires_at)
                .finish(),
            Self::Certificate(cert) => f.debug_tuple("Certificate").field(cert).finish(),
        }
    }
}

/// An X.509 certificate and its RSA private key, checked to belong together.
pub struct ClientCertificate {
    file: PathBuf,
    key: EncodingKey,
    x5t_s256: String,
    thumbprint: String,
    subject: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("file", &self.file)
            .field("thumbprint", &self.thumbprint)
            .field("subject", &self.subject)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// Which of the two files a certificate problem is about (config errors name that key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificatePart {
    /// The certificate (`client_certificate_file`).
    Certificate,
    /// The private key (`client_certificate_key_file`).
    Key,
}

/// Why a certificate credential could not be loaded. The message never contains key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateError {
    /// The file at fault.
    pub part: CertificatePart,
    /// What is wrong, in words.
    pub message: String,
}

fn cert_error(message: impl Into<String>) -> CertificateError {
    CertificateError {
        part: CertificatePart::Certificate,
        message: message.into(),
    }
}

fn key_error(message: impl Into<String>) -> CertificateError {
    CertificateError {
        part: CertificatePart::Key,
        message: message.into(),
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: i64,
    iat: i64,
    exp: i64,
}

impl ClientCertificate {
    /// Reads a PEM certificate (the first block is the app's certificate; a chain may follow) and a
    /// PEM PKCS#8 RSA private key, and checks that the key is the certificate's.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, CertificateError> {
        let cert_pem = std::fs::read(cert_file)
            .map_err(|e| cert_error(format!("cannot read certificate file {}: {e}", cert_file.display())))?;
        let key_pem = Zeroizing::new(
            std::fs::read(key_file)
                .map_err(|e| key_error(format!("cannot read key file {}: {e}", key_file.display())))?,
        );
        let mut cert = Self::from_pem(&cert_pem, &key_pem).map_err(|e| CertificateError {
            message: format!(
                "{}: {}",
                match e.part {
                    CertificatePart::Certificate => cert_file.display(),
                    CertificatePart::Key => key_file.display(),
                },
                e.message
            ),
            ..e
        })?;
        cert.file = cert_file.to_path_buf();
        Ok(cert)
    }

    /// [`ClientCertificate::load`] from PEM text already in memory.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, CertificateError> {
        let certs = pem_blocks(cert_pem).map_err(cert_error)?;
        let cert_der = match certs.iter().find(|(label, _)| label == "CERTIFICATE") {
            Some((_, der)) => der,
            None => return Err(cert_error("no PEM \"CERTIFICATE\" block found")),
        };
        let (_, x509) = x509_parser::parse_x509_certificate(cert_der)
            .map_err(|e| cert_error(format!("not a valid X.509 certificate: {e}")))?;
        let spki = x509.public_key();
        if spki.algorithm.algorithm != x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION {
            return Err(cert_error(
                "the certificate's key is not RSA; Entra certificate credentials here need an RSA key (RS256)",
            ));
        }

        let keys = pem_blocks(key_pem).map_err(key_error)?;
        let pkcs8 = match keys.first() {
            Some((label, der)) if label == "PRIVATE KEY" => der,
            Some((label, _)) if label == "RSA PRIVATE KEY" => {
                return Err(key_error(
                    "is a PKCS#1 \"RSA PRIVATE KEY\"; convert it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt -in key.pem -out key-pkcs8.pem)",
                ));
            }
            Some((label, _)) if label == "ENCRYPTED PRIVATE KEY" => {
                return Err(key_error(
                    "is encrypted; give the broker an unencrypted PKCS#8 key readable only by it",
                ));
            }
            Some((label, _)) => {
                return Err(key_error(format!(
                    "holds a {label:?} block; expected an RSA private key as PKCS#8 \"PRIVATE KEY\""
                )));
            }
            None => return Err(key_error("no PEM \"PRIVATE KEY\" block found")),
        };
        let key_pair = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(pkcs8)
            .map_err(|_| key_error("is not an RSA private key (PKCS#8) of 2048 to 8192 bits"))?;
        let public = aws_lc_rs::signature::KeyPair::public_key(&key_pair);
        // The SPKI's bit string of an rsaEncryption key is the PKCS#1 RSAPublicKey, which is what
        // aws-lc-rs gives for the private key's public half.
        if public.as_ref() != spki.subject_public_key.data.as_ref() {
            return Err(key_error("does not match the certificate (it is another key pair's)"));
        }
        let pkcs1 = pkcs8_inner_key(pkcs8).ok_or_else(|| key_error("is not a well-formed PKCS#8 structure"))?;
        let key = EncodingKey::from_rsa_der(pkcs1);

        let cert = Self {
            file: PathBuf::new(),
            key,
            x5t_s256: URL_SAFE_NO_PAD.encode(digest(&SHA256, cert_der)),
            thumbprint: hex_upper(digest(&SHA1_FOR_LEGACY_USE_ONLY, cert_der).as_ref()),
            subject: x509.subject().to_string(),
            not_before: x509.validity().not_before.to_datetime(),
            not_after: x509.validity().not_after.to_datetime(),
        };
        // Sign once now, so a key jsonwebtoken cannot use stops start-up rather than a sign-in.
        cert.assertion(
            "00000000-0000-0000-0000-000000000000",
            "https://probe.invalid/",
            OffsetDateTime::now_utc(),
        )
        .map_err(|e| key_error(format!("cannot sign with this key: {e}")))?;
        Ok(cert)
    }

    /// A fresh client assertion (entra.md §2.2): RS256, `x5t#S256` of the certificate, `aud` the
    /// token endpoint being called, `iss` = `sub` = the client id, a unique `jti`, valid for
    /// [`ASSERTION_LIFETIME_SECS`] from `now`.
    pub fn assertion(&self, client_id: &str, audience: &str, now: OffsetDateTime) -> Result<Sensitive, String> {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.x5t_s256 = Some(self.x5t_s256.clone());
        let now = now.unix_timestamp();
        let claims = AssertionClaims {
            aud: audience,
            iss: client_id,
            sub: client_id,
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: now,
            iat: now,
            exp: now + ASSERTION_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(Sensitive::new)
            .map_err(|e| e.to_string())
    }

    /// The certificate file it was loaded from (empty when made with [`ClientCertificate::from_pem`]).
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// SHA-1 thumbprint in upper-case hex, as the Entra portal lists certificates.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// base64url SHA-256 of the certificate (the assertion's `x5t#S256`).
    pub fn x5t_s256(&self) -> &str {
        &self.x5t_s256
    }

    /// The certificate's subject, for logs.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Start of the certificate's validity.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// End of the certificate's validity (Entra stops accepting it then).
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }
}

/// A PEM block's label and DER contents (wiped on drop: it may be a key).
type PemBlock = (String, Zeroizing<Vec<u8>>);

/// Start-up warns about a credential from this many days before it expires.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// How close a credential is to its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryStatus {
    /// Unknown expiry, or more than [`EXPIRY_WARNING_DAYS`] away.
    Fine,
    /// Expires within [`EXPIRY_WARNING_DAYS`]; whole days left (0 on the last day).
    Soon(i64),
    /// Past its expiry: Entra refuses it.
    Expired,
}

impl ExpiryStatus {
    /// The status of something expiring at `expires_at`, seen at `now`.
    pub fn of(expires_at: Option<OffsetDateTime>, now: OffsetDateTime) -> Self {
        match expires_at {
            Some(at) if at <= now => Self::Expired,
            Some(at) if at - now < time::Duration::days(EXPIRY_WARNING_DAYS) => Self::Soon((at - now).whole_days()),
            _ => Self::Fine,
        }
    }
}

/// Logs a connector's credential that expires soon (WARN) or has expired (ERROR), so operators
/// rotate it before sign-ins fail. Names the connector, thumbprint and dates, never the secret or key.
pub fn log_expiry(connector: &str, credential: &ClientCredential, now: OffsetDateTime) {
    let status = ExpiryStatus::of(credential.expires_at(), now);
    let expires_at = credential
        .expires_at()
        .and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default();
    match (credential, status) {
        (_, ExpiryStatus::Fine) => {}
        (ClientCredential::Certificate(cert), ExpiryStatus::Soon(days_left)) => tracing::warn!(
            connector,
            thumbprint = cert.thumbprint(),
            file = %cert.file().display(),
            %expires_at,
            days_left,
            "the connector's client certificate expires soon: upload a new one to the app registration and configure it"
        ),
        (ClientCredential::Certificate(cert), ExpiryStatus::Expired) => tracing::error!(
            connector,
            thumbprint = cert.thumbprint(),
            file = %cert.file().display(),
            %expires_at,
            "the connector's client certificate has expired: Entra refuses it (AADSTS700027) until a new one is uploaded and configured"
        ),
        (ClientCredential::Secret { .. }, ExpiryStatus::Soon(days_left)) => tracing::warn!(
            connector,
            %expires_at,
            days_left,
            "the connector's client secret expires soon (client_secret_expires_at): create a new one in the app registration and configure it"
        ),
        (ClientCredential::Secret { .. }, ExpiryStatus::Expired) => tracing::error!(
            connector,
            %expires_at,
            "the connector's client secret has expired (client_secret_expires_at): Entra refuses it (AADSTS7000222) until a new one is configured"
        ),
    }
}

/// The PEM blocks of `text`, in order.
fn pem_blocks(text: &[u8]) -> Result<Vec<PemBlock>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "is not a PEM text file".to_string())?;
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(label) = line
            .trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = Zeroizing::new(String::new());
        let mut closed = false;
        for line in lines.by_ref() {
            let line = line.trim();
            if line == end {
                closed = true;
                break;
            }
            // RFC 1421 headers (Proc-Type, DEK-Info) only appear in encrypted legacy keys.
            if !line.contains(':') {
                body.push_str(line);
            }
        }
        if !closed {
            return Err(format!("the PEM block {label:?} has no END line"));
        }
        let der = Zeroizing::new(
            STANDARD
                .decode(body.as_bytes())
                .map_err(|_| format!("the PEM block {label:?} is not valid base64"))?,
        );
        blocks.push((label.to_string(), der));
    }
    Ok(blocks)
}

/// The `privateKey` octet string of a PKCS#8 `PrivateKeyInfo` (for RSA: the PKCS#1 key).
fn pkcs8_inner_key(pkcs8: &[u8]) -> Option<&[u8]> {
    let (_, info) = x509_parser::der_parser::der::parse_der(pkcs8).ok()?;
    let fields = info.as_sequence().ok()?;
    fields.get(2)?.as_slice().ok()
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// A self-signed RSA certificate and its PKCS#8 key (PEM), valid from yesterday for `days` from now.
/// rcgen makes RSA keys only with its aws-lc-rs backend, which is the one this crate uses.
#[cfg(test)]
pub(crate) fn test_certificate(days: i64) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
    let mut params = rcgen::CertificateParams::new(vec!["connector.example.com".into()]).expect("params");
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days);
    let cert = params.self_signed(&key).expect("self-signed");
    (cert.pem(), key.serialize_pem())
}

#[cfg(test)]
mod tests {
    use super::test_certificate as generate;
    use super::*;

    #[test]
    fn loads_a_matching_pair_and_signs_assertions_entra_accepts() {
        let (cert_pem, key_pem) = generate(90);
        let cert = ClientCertificate::from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).expect("loads");
        assert_eq!(cert.thumbprint().len(), 40);
        assert!((cert.not_after() - OffsetDateTime::now_utc()).whole_days() >= 89);

        let now = OffsetDateTime::now_utc();
        let aud = "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token";
        let client = "11111111-2222-3333-4444-555555555555";
        let a = cert.assertion(client, aud, now).unwrap();
        let b = cert.assertion(client, aud, now).unwrap();

        let header = jsonwebtoken::decode_header(a.expose()).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        let der = pem_blocks(cert_pem.as_bytes()).unwrap().remove(0).1;
        assert_eq!(
            header.x5t_s256.as_deref(),
            Some(URL_SAFE_NO_PAD.encode(digest(&SHA256, &der)).as_str())
        );
        assert!(header.x5t.is_none() && header.kid.is_none());

        let spki_cert = x509_parser::parse_x509_certificate(&der).unwrap().1;
        let public = spki_cert.public_key().subject_public_key.data.to_vec();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
        validation.set_audience(&[aud]);
        validation.set_issuer(&[client]);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        let claims: serde_json::Value = jsonwebtoken::decode(
            a.expose(),
            &jsonwebtoken::DecodingKey::from_rsa_der(&public),
            &validation,
        )
        .expect("signature and claims verify against the certificate")
        .claims;
        let t = now.unix_timestamp();
        assert_eq!(claims["sub"], client);
        assert_eq!((claims["nbf"].as_i64(), claims["iat"].as_i64()), (Some(t), Some(t)));
        assert_eq!(claims["exp"].as_i64(), Some(t + 300));
        assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
        let other = jsonwebtoken::dangerous::insecure_decode_claims::<serde_json::Value>(b.expose()).unwrap();
        assert_ne!(claims["jti"], other["jti"], "every assertion has its own jti");
    }

    #[test]
    fn rejects_mismatched_and_unsuitable_keys() {
        let (cert_pem, _) = generate(90);
        let (_, other_key) = generate(90);
        let e = ClientCertificate::from_pem(cert_pem.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert_eq!(e.part, CertificatePart::Key);
        assert!(e.message.contains("does not match"), "{e:?}");

        let ec_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let ec_cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&ec_key)
            .unwrap();
        let e = ClientCertificate::from_pem(ec_cert.pem().as_bytes(), ec_key.serialize_pem().as_bytes()).unwrap_err();
        assert_eq!(e.part, CertificatePart::Certificate);
        assert!(e.message.contains("not RSA"), "{e:?}");

        let (cert_pem, key_pem) = generate(90);
        let pkcs1 = key_pem.replace("PRIVATE KEY", "RSA PRIVATE KEY");
        let e = ClientCertificate::from_pem(cert_pem.as_bytes(), pkcs1.as_bytes()).unwrap_err();
        assert!(e.message.contains("PKCS#8"), "{e:?}");
        let e = ClientCertificate::from_pem(b"nothing here", key_pem.as_bytes()).unwrap_err();
        assert_eq!(e.part, CertificatePart::Certificate);
        let e = ClientCertificate::from_pem(cert_pem.as_bytes(), cert_pem.as_bytes()).unwrap_err();
        assert_eq!(e.part, CertificatePart::Key);
        assert!(e.message.contains("\"CERTIFICATE\""), "{e:?}");
    }

    #[test]
    fn expiry_status_warns_thirty_days_ahead() {
        let now = time::macros::datetime!(2026-11-01 12:00 UTC);
        let status = |days: i64, secs: i64| {
            ExpiryStatus::of(
                Some(now + time::Duration::days(days) + time::Duration::seconds(secs)),
                now,
            )
        };
        assert_eq!(ExpiryStatus::of(None, now), ExpiryStatus::Fine);
        assert_eq!(status(30, 0), ExpiryStatus::Fine);
        assert_eq!(status(30, -1), ExpiryStatus::Soon(29));
        assert_eq!(status(0, 1), ExpiryStatus::Soon(0));
        assert_eq!(status(0, 0), ExpiryStatus::Expired);
        assert_eq!(status(-400, 0), ExpiryStatus::Expired);
    }

    #[test]
    fn debug_shows_no_secret_or_key_material() {
        let (cert_pem, key_pem) = generate(90);
        let cert = ClientCertificate::from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
        let body: String = key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let shown = format!(
            "{:?} {:?}",
            ClientCredential::Certificate(Arc::new(cert)),
            ClientCredential::Secret {
                secret: SecretString::from("Qv8Q~the-secret-value"),
                expires_at: None,
            }
        );
        assert!(!shown.contains("the-secret-value"), "{shown}");
        for chunk in body.as_bytes().chunks(16) {
            assert!(!shown.contains(std::str::from_utf8(chunk).unwrap()), "{shown}");
        }
        assert!(shown.contains("[redacted]") && shown.contains("thumbprint"), "{shown}");
    }
}
