//! Signing keys and the JWKS document (entra.md §7.1, §7.4).
//!
//! Three RSA-2048 keys are generated at start-up: the one that signs ID tokens, a published spare (Entra
//! always publishes more than one key), and a "rogue" key that is never published, used by the
//! `id_token_unknown_key` fault. `kid`s are derived from the modulus so all three look alike.
//!
//! `x5t`/`x5c` are omitted: there is no X.509 certificate behind these keys, and a thumbprint of a
//! made-up certificate would invite the broker to check something meaningless.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// One RSA key with its JWK public parts precomputed.
pub struct SigningKey {
    /// Key id (27 base64url characters, like Entra's).
    pub kid: String,
    key_pair: RsaKeyPair,
    n: String,
    e: String,
}

impl SigningKey {
    fn generate() -> anyhow::Result<Self> {
        let key_pair =
            RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| anyhow::anyhow!("RSA key generation failed"))?;
        let public = key_pair.public_key();
        let modulus = public.modulus();
        let exponent = public.exponent();
        let modulus = modulus.big_endian_without_leading_zero();
        let digest = Sha256::digest(modulus);
        Ok(Self {
            kid: URL_SAFE_NO_PAD.encode(&digest[..20]),
            n: URL_SAFE_NO_PAD.encode(modulus),
            e: URL_SAFE_NO_PAD.encode(exponent.big_endian_without_leading_zero()),
            key_pair,
        })
    }

    /// Signs `claims` as a compact RS256 JWT with header `{"typ":"JWT","alg":"RS256","kid":…}`.
    pub fn sign_jwt<T: Serialize>(&self, claims: &T) -> Result<String, SignError> {
        let header = JwtHeader {
            typ: "JWT",
            alg: "RS256",
            kid: &self.kid,
        };
        let header = serde_json::to_vec(&header).map_err(|_| SignError)?;
        let claims = serde_json::to_vec(claims).map_err(|_| SignError)?;
        let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let mut signature = vec![0; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| SignError)?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    fn jwk<'a>(&'a self, issuer: &'a str) -> Jwk<'a> {
        Jwk {
            kty: "RSA",
            r#use: "sig",
            kid: &self.kid,
            n: &self.n,
            e: &self.e,
            issuer,
        }
    }
}

/// Signing failed inside the crypto library (reported to clients as `server_error`).
#[derive(Debug)]
pub struct SignError;

#[derive(Serialize)]
struct JwtHeader<'a> {
    typ: &'a str,
    alg: &'a str,
    kid: &'a str,
}

#[derive(Serialize)]
struct Jwk<'a> {
    kty: &'a str,
    r#use: &'a str,
    kid: &'a str,
    n: &'a str,
    e: &'a str,
    issuer: &'a str,
}

/// The JWKS document body.
#[derive(Serialize)]
pub struct JwkSet<'a> {
    keys: Vec<Jwk<'a>>,
}

/// The simulator's key material.
pub struct Keys {
    /// Signs every ID token.
    pub signing: SigningKey,
    /// Published but never used (a rollover candidate).
    pub spare: SigningKey,
    /// Never published; signs ID tokens under the `id_token_unknown_key` fault.
    pub rogue: SigningKey,
}

impl Keys {
    /// Generates the three keys in parallel (RSA key generation is the slowest part of start-up).
    pub fn generate() -> anyhow::Result<Self> {
        std::thread::scope(|scope| {
            let spare = scope.spawn(SigningKey::generate);
            let rogue = scope.spawn(SigningKey::generate);
            let signing = SigningKey::generate()?;
            let join = |handle: std::thread::ScopedJoinHandle<'_, anyhow::Result<SigningKey>>| {
                handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("key generation thread panicked"))?
            };
            Ok(Self {
                signing,
                spare: join(spare)?,
                rogue: join(rogue)?,
            })
        })
    }

    /// The published keys (spare first: key order in a JWKS carries no meaning).
    pub fn jwks<'a>(&'a self, issuer_template: &'a str) -> JwkSet<'a> {
        JwkSet {
            keys: vec![self.spare.jwk(issuer_template), self.signing.jwk(issuer_template)],
        }
    }
}
