//! Certificate credentials at `/token` (entra.md §2.2): a client assertion is a JWT signed with
//! the key of a certificate registered on the app, found by the thumbprint in its header.
//!
//! Both generations Entra accepts are accepted: `x5t#S256` (SHA-256 of the certificate) and the
//! legacy `x5t` (SHA-1), each with RS256 or PS256. Checks, in Entra's order of trust: the header
//! names a registered certificate, the signature verifies with it, the certificate is within its
//! validity, then the claims (time window, audience, issuer and subject).
//!
//! Clocks: certificate validity follows the simulator clock (like client secrets, so advancing it
//! expires a certificate), but the assertion's `nbf`/`exp` are compared with real time, because
//! the broker makes them from its own clock.

use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, SHA256, digest};
use aws_lc_rs::signature::{self, VerificationAlgorithm};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::config::AppConfig;
use crate::errors::AadError;

/// RFC 7523's `client_assertion_type`, the only one Entra takes.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Clock skew tolerated on `nbf`/`exp`: the 5 minutes Microsoft's token validation uses by default.
const CLOCK_SKEW_SECS: i64 = 300;

/// A registered certificate, parsed: what a client assertion is checked against.
#[derive(Debug, Clone)]
pub struct RegisteredCertificate {
    /// SHA-1 of the DER (the legacy `x5t`).
    sha1: Vec<u8>,
    /// SHA-256 of the DER (`x5t#S256`).
    sha256: Vec<u8>,
    /// The RSA public key (PKCS#1 `RSAPublicKey`).
    public_key: Vec<u8>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl RegisteredCertificate {
    /// Parses the first `CERTIFICATE` block of a PEM text; the key must be RSA (as Entra's
    /// certificate credentials are here).
    pub fn parse(pem: &str) -> anyhow::Result<Self> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("not a PEM certificate: {e}"))?;
        if block.label != "CERTIFICATE" {
            anyhow::bail!("expected a PEM \"CERTIFICATE\" block, found {:?}", block.label);
        }
        let der = block.contents;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| anyhow::anyhow!("not an X.509 certificate: {e}"))?;
        let spki = cert.public_key();
        if spki.algorithm.algorithm != x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION {
            anyhow::bail!("the certificate's key is not RSA");
        }
        Ok(Self {
            sha1: digest(&SHA1_FOR_LEGACY_USE_ONLY, &der).as_ref().to_vec(),
            sha256: digest(&SHA256, &der).as_ref().to_vec(),
            public_key: spki.subject_public_key.data.to_vec(),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
        })
    }
}

/// What the assertion must match, from the request.
pub struct Expected<'a> {
    /// The app the request names in `client_id`.
    pub app: &'a AppConfig,
    /// Token endpoint URLs `aud` may be: the one called (by the segment in its path) and, for a
    /// specific tenant, the same by tenant GUID.
    pub audiences: Vec<String>,
    /// Simulator time (certificate validity).
    pub sim_now: OffsetDateTime,
    /// Real time (the assertion's time window).
    pub wall_now: OffsetDateTime,
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    x5t: Option<String>,
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    aud: Option<serde_json::Value>,
    iss: Option<String>,
    sub: Option<String>,
    nbf: Option<i64>,
    exp: Option<i64>,
}

/// Which thumbprint the header carried.
enum Thumbprint {
    Sha256(Vec<u8>),
    Sha1(Vec<u8>),
}

impl Thumbprint {
    /// Upper-case hex, as Entra prints "Thumbprint of key used by client".
    fn hex(&self) -> String {
        let (Self::Sha256(bytes) | Self::Sha1(bytes)) = self;
        bytes.iter().map(|b| format!("{b:02X}")).collect()
    }

    fn matches(&self, cert: &RegisteredCertificate) -> bool {
        match self {
            Self::Sha256(t) => *t == cert.sha256,
            Self::Sha1(t) => *t == cert.sha1,
        }
    }
}

/// Checks `client_assertion_type` and `client_assertion` for the expected app and endpoint.
pub fn verify(assertion_type: Option<&str>, assertion: &str, expected: &Expected<'_>) -> Result<(), AadError> {
    match assertion_type {
        None => return Err(AadError::missing_parameter("client_assertion_type")),
        Some(ASSERTION_TYPE) => {}
        Some(_) => return Err(AadError::unexpected_assertion_type()),
    }
    let reject = |why: &str, error: AadError| {
        tracing::info!(reason = why, "token: client assertion rejected");
        Err(error)
    };
    let mut parts = assertion.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return reject("not a compact JWS", AadError::assertion_malformed());
    };
    let Some(header) = decode_json::<Header>(header_b64) else {
        return reject("header is not base64url JSON", AadError::assertion_malformed());
    };
    let Some(claims) = decode_json::<Claims>(claims_b64) else {
        return reject("payload is not base64url JSON", AadError::assertion_malformed());
    };
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature_b64) else {
        return reject("signature is not base64url", AadError::assertion_malformed());
    };
    let algorithm: &dyn VerificationAlgorithm = match header.alg.as_deref() {
        Some("RS256") => &signature::RSA_PKCS1_2048_8192_SHA256,
        Some("PS256") => &signature::RSA_PSS_2048_8192_SHA256,
        _ => return reject("alg is not RS256 or PS256", AadError::assertion_malformed()),
    };
    let thumbprint = match (&header.x5t_s256, &header.x5t) {
        (Some(t), _) => URL_SAFE_NO_PAD.decode(t).map(Thumbprint::Sha256),
        (None, Some(t)) => URL_SAFE_NO_PAD.decode(t).map(Thumbprint::Sha1),
        (None, None) => return reject("no thumbprint", AadError::assertion_without_thumbprint()),
    };
    let Ok(thumbprint) = thumbprint else {
        return reject("thumbprint is not base64url", AadError::assertion_malformed());
    };
    let app = expected.app;
    let Some(cert) = app
        .certificates
        .iter()
        .filter_map(|c| RegisteredCertificate::parse(&c.pem).ok())
        .find(|c| thumbprint.matches(c))
    else {
        return reject(
            "no registered certificate has this thumbprint",
            AadError::assertion_key_not_found(&thumbprint.hex(), &app.client_id),
        );
    };
    let signing_input = &assertion[..header_b64.len() + 1 + claims_b64.len()];
    let key = signature::UnparsedPublicKey::new(algorithm, &cert.public_key);
    if key.verify(signing_input.as_bytes(), &signature).is_err() {
        return reject(
            "signature does not verify",
            AadError::assertion_bad_signature(&thumbprint.hex(), cert.not_before, cert.not_after),
        );
    }
    if expected.sim_now < cert.not_before || expected.sim_now > cert.not_after {
        return reject(
            "certificate outside its validity",
            AadError::assertion_key_expired(&thumbprint.hex(), cert.not_before, cert.not_after),
        );
    }

    let Some(exp) = claims.exp else {
        return reject("no exp", AadError::assertion_malformed());
    };
    let now = expected.wall_now.unix_timestamp();
    let nbf = claims.nbf.unwrap_or(0);
    if now + CLOCK_SKEW_SECS < nbf || now - CLOCK_SKEW_SECS >= exp {
        let at = |secs: i64| OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        return reject(
            "outside its time window",
            AadError::assertion_time_range(expected.wall_now, at(nbf), at(exp)),
        );
    }
    let audience_ok = match &claims.aud {
        Some(serde_json::Value::String(aud)) => expected.audiences.iter().any(|a| a.eq_ignore_ascii_case(aud)),
        _ => false,
    };
    if !audience_ok {
        return reject(
            "aud is not this token endpoint",
            AadError::assertion_audience_mismatch(),
        );
    }
    let is_client = |v: &Option<String>| v.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(&app.client_id));
    if !is_client(&claims.iss) || !is_client(&claims.sub) {
        return reject("iss/sub is not the client id", AadError::assertion_issuer_mismatch());
    }
    Ok(())
}

/// The `jti` claim of a compact JWT, whether or not it verifies.
pub fn jti(jwt: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Jti {
        jti: Option<String>,
    }
    decode_json::<Jti>(jwt.split('.').nth(1)?)?.jti
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}
