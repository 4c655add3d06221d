//! id_token validation for a multi-tenant app (entra.md §7.3), with a per-tenant key cache.
//!
//! Keys are fetched per tenant (a shared key today may become tenant-specific), kept for the
//! configured TTL, and refetched when a token names an unknown `kid` — but at most once per
//! `jwks_min_refetch_interval` per tenant, so forged `kid`s cannot make us hammer Entra.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, errors::ErrorKind};
use serde::Deserialize;

use super::client::EntraClient;
use crate::crypto::ct_eq;
use crate::ids::TenantId;

/// Why an id_token was refused. Messages never include the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    /// Not a JWT, wrong algorithm, or missing required claims.
    #[error("id_token is malformed: {0}")]
    Malformed(String),
    /// Signed by a key the tenant does not publish.
    #[error("id_token is signed by an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("id_token signature is invalid")]
    BadSignature,
    /// `iss` does not match the token's `tid` (or the key's issuer).
    #[error("id_token issuer does not match its tenant")]
    WrongIssuer,
    /// `aud` is not the connector's client id.
    #[error("id_token audience is not this connector")]
    WrongAudience,
    /// Expired or not yet valid.
    #[error("id_token is expired or not yet valid")]
    Expired,
    /// `nonce` differs from the flow's.
    #[error("id_token nonce does not match the sign-in")]
    NonceMismatch,
    /// `tid` is not the tenant the flow was started for.
    #[error("id_token is for another tenant than requested")]
    TenantMismatch,
    /// The tenant's keys could not be fetched.
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

/// The claims the broker keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdClaims {
    /// Tenant GUID, lowercase.
    pub tid: TenantId,
    /// User object id.
    pub oid: String,
    /// Display name.
    pub name: Option<String>,
    /// Sign-in name.
    pub preferred_username: Option<String>,
}

#[derive(Deserialize)]
struct RawClaims {
    tid: Option<String>,
    oid: Option<String>,
    name: Option<String>,
    preferred_username: Option<String>,
    nonce: Option<String>,
    ver: Option<String>,
    iss: Option<String>,
}

struct CachedKey {
    key: DecodingKey,
    issuer: Option<String>,
}

#[derive(Default)]
struct TenantKeys {
    keys: HashMap<String, Arc<CachedKey>>,
    fetched_at: Option<Instant>,
}

/// Per-tenant signing keys with rate-limited refetch.
pub struct KeyCache {
    client: EntraClient,
    tenants: Mutex<HashMap<String, Arc<tokio::sync::Mutex<TenantKeys>>>>,
    ttl: Duration,
    min_refetch: Duration,
}

impl KeyCache {
    /// An empty cache.
    pub fn new(client: EntraClient, ttl: Duration, min_refetch: Duration) -> Self {
        Self {
            client,
            tenants: Mutex::new(HashMap::new()),
            ttl,
            min_refetch,
        }
    }

    fn tenant_slot(&self, tid: &str) -> Arc<tokio::sync::Mutex<TenantKeys>> {
        let mut map = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(tid.to_string()).or_default().clone()
    }

    /// The key `kid` of tenant `tid`, fetching when stale or unknown (rate-limited).
    async fn key(&self, tid: &str, kid: &str) -> Result<Arc<CachedKey>, IdTokenError> {
        let slot = self.tenant_slot(tid);
        // Holding the tenant's lock while fetching makes concurrent callbacks share one fetch.
        let mut keys = slot.lock().await;
        let fresh = keys.fetched_at.is_some_and(|t| t.elapsed() < self.ttl);
        if fresh && let Some(k) = keys.keys.get(kid) {
            return Ok(k.clone());
        }
        let may_fetch = !fresh || keys.fetched_at.is_none_or(|t| t.elapsed() >= self.min_refetch);
        if may_fetch {
            match self.client.signing_keys(tid).await {
                Ok(published) => {
                    keys.keys = published
                        .into_iter()
                        .filter_map(|p| {
                            let kid = p.jwk.common.key_id.clone()?;
                            let key = DecodingKey::from_jwk(&p.jwk).ok()?;
                            Some((kid, Arc::new(CachedKey { key, issuer: p.issuer })))
                        })
                        .collect();
                    keys.fetched_at = Some(Instant::now());
                }
                // Keep last-known-good keys when a refresh fails (entra.md §7.4).
                Err(e) if keys.keys.is_empty() => return Err(IdTokenError::KeysUnavailable(e)),
                Err(e) => tracing::warn!(tenant = tid, error = %e, "signing key refresh failed; keeping cached keys"),
            }
        }
        keys.keys.get(kid).cloned().ok_or(IdTokenError::UnknownKey)
    }
}

/// What the flow expects of the id_token.
pub struct Expected<'a> {
    /// Connector's client id.
    pub client_id: &'a str,
    /// The flow's nonce.
    pub nonce: &'a str,
    /// The tenant the flow was started for, when it named a GUID.
    pub tenant_guid: Option<&'a str>,
    /// Allowed clock skew.
    pub leeway: Duration,
}

/// Validates an id_token from the code redemption and returns its identity claims.
pub async fn validate(cache: &KeyCache, token: &str, expected: &Expected<'_>) -> Result<IdClaims, IdTokenError> {
    let header = decode_header(token).map_err(|e| IdTokenError::Malformed(e.to_string()))?;
    if header.alg != Algorithm::RS256 {
        return Err(IdTokenError::Malformed(format!(
            "algorithm {:?} is not RS256",
            header.alg
        )));
    }
    let kid = header
        .kid
        .ok_or_else(|| IdTokenError::Malformed("no kid in header".into()))?;
    // The tenant (and so which keys and issuer apply) is read before verification; everything
    // read here is checked again once the signature is verified.
    let unverified: RawClaims =
        jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|e| IdTokenError::Malformed(e.to_string()))?;
    let tid = unverified
        .tid
        .filter(|t| uuid::Uuid::parse_str(t).is_ok())
        .ok_or_else(|| IdTokenError::Malformed("tid is missing or not a GUID".into()))?
        .to_ascii_lowercase();
    if let Some(guid) = expected.tenant_guid
        && !guid.eq_ignore_ascii_case(&tid)
    {
        return Err(IdTokenError::TenantMismatch);
    }
    let key = cache.key(&tid, &kid).await?;

    let issuer = cache.client.issuer_for(&tid);
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[expected.client_id]);
    validation.set_issuer(&[issuer.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.validate_nbf = true;
    validation.leeway = expected.leeway.as_secs();
    let data = decode::<RawClaims>(token, &key.key, &validation).map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature => IdTokenError::BadSignature,
        ErrorKind::InvalidIssuer => IdTokenError::WrongIssuer,
        ErrorKind::InvalidAudience => IdTokenError::WrongAudience,
        ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => IdTokenError::Expired,
        _ => IdTokenError::Malformed(e.to_string()),
    })?;
    let claims = data.claims;
    if claims.tid.as_deref().map(str::to_ascii_lowercase).as_deref() != Some(tid.as_str()) {
        return Err(IdTokenError::WrongIssuer);
    }
    if let Some(template) = &key.issuer {
        let key_issuer = template.replace("{tenantid}", &tid);
        if claims.iss.as_deref() != Some(key_issuer.as_str()) {
            return Err(IdTokenError::WrongIssuer);
        }
    }
    if claims.ver.as_deref() != Some("2.0") {
        return Err(IdTokenError::Malformed("ver is not 2.0".into()));
    }
    let nonce = claims.nonce.unwrap_or_default();
    if !ct_eq(nonce.as_bytes(), expected.nonce.as_bytes()) {
        return Err(IdTokenError::NonceMismatch);
    }
    let oid = claims
        .oid
        .filter(|o| !o.is_empty())
        .ok_or_else(|| IdTokenError::Malformed("oid is missing (request the profile scope)".into()))?;
    Ok(IdClaims {
        tid: TenantId::new(tid),
        oid,
        name: claims.name,
        preferred_username: claims.preferred_username,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use crate::entra::EntraClient;
    use crate::metrics::Metrics;

    const TID: &str = "3f2c5d1e-8a4b-4c7d-9e0f-1a2b3c4d5e6f";

    /// A cache whose authority nobody listens on: a test that reached a key fetch would fail
    /// with "keys unavailable", not with the error it expects.
    fn cache() -> KeyCache {
        let config = crate::config::Config::from_toml_str(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1\"\nplain_http = true\n[entra]\nauthority = \"http://127.0.0.1:9\"\nmax_retries = 0\n[store]\nbackend = \"memory\"\n",
            "t.toml",
        )
        .unwrap();
        let client = EntraClient::new(&config.entra, Arc::new(Metrics::new())).unwrap();
        KeyCache::new(client, Duration::from_secs(3_600), Duration::from_secs(300))
    }

    fn jwt(header: serde_json::Value, claims: serde_json::Value) -> String {
        let part = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.{}",
            part(header),
            part(claims),
            URL_SAFE_NO_PAD.encode(b"signature")
        )
    }

    fn expected(tenant_guid: Option<&str>) -> Expected<'_> {
        Expected {
            client_id: "a1b2c3d4-0001-4e5f-8a9b-0c1d2e3f4a5b",
            nonce: "n",
            tenant_guid,
            leeway: Duration::from_secs(60),
        }
    }

    fn claims(tid: &str) -> serde_json::Value {
        serde_json::json!({"tid": tid, "oid": "o", "ver": "2.0", "nonce": "n", "aud": "a1b2c3d4-0001-4e5f-8a9b-0c1d2e3f4a5b", "exp": 4_000_000_000u64})
    }

    #[tokio::test]
    async fn only_rs256_is_accepted_whatever_the_token_claims() {
        let cache = cache();
        for alg in ["none", "HS256", "RS512", "ES256", "PS256"] {
            let token = jwt(serde_json::json!({"alg": alg, "kid": "k", "typ": "JWT"}), claims(TID));
            let err = validate(&cache, &token, &expected(None)).await.unwrap_err();
            assert!(matches!(err, IdTokenError::Malformed(_)), "{alg}: {err:?}");
        }
        let unsigned = format!(
            "{}.",
            jwt(serde_json::json!({"alg": "none"}), claims(TID))
                .rsplit_once('.')
                .unwrap()
                .0
        );
        assert!(validate(&cache, &unsigned, &expected(None)).await.is_err());
    }

    #[tokio::test]
    async fn the_tenant_is_checked_before_any_key_is_fetched() {
        let cache = cache();
        let header = serde_json::json!({"alg": "RS256", "kid": "k", "typ": "JWT"});
        let other = "7b9d1f3a-5c6e-4a8b-8c0d-2e4f6a8b0c1d";
        let err = validate(&cache, &jwt(header.clone(), claims(other)), &expected(Some(TID)))
            .await
            .unwrap_err();
        assert!(matches!(err, IdTokenError::TenantMismatch), "{err:?}");
        for tid in ["", "common", "not-a-guid"] {
            let err = validate(&cache, &jwt(header.clone(), claims(tid)), &expected(None))
                .await
                .unwrap_err();
            assert!(matches!(err, IdTokenError::Malformed(_)), "{tid:?}: {err:?}");
        }
        let no_kid = jwt(serde_json::json!({"alg": "RS256"}), claims(TID));
        assert!(matches!(
            validate(&cache, &no_kid, &expected(None)).await.unwrap_err(),
            IdTokenError::Malformed(_)
        ));
    }
}
