//! HTTP calls to Entra: the authorize URL, the token endpoint and the signing keys.
//!
//! The authorize URL and PKCE come from the `oauth2` crate. The token endpoint is called by hand:
//! `oauth2`'s error path drops the HTTP status, `Retry-After` and Entra's `error_codes`, trace and
//! correlation ids, and the broker needs all of them to tell "sign in again" from "try later".

use std::time::Duration;

use oauth2::{AuthUrl, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope, basic::BasicClient};
use std::sync::Arc;

use serde::Deserialize;
use url::Url;

use super::credential::{ASSERTION_TYPE, ClientCredential};
use super::errors::EntraError;
use super::resilience::{Answer, CallFailure, Resilient};
use super::tenants::TenantCache;
use crate::config::EntraConfig;
use crate::crypto::Sensitive;
use crate::ids::TenantId;
use crate::metrics::Metrics;

/// The scope of the app-only token that verifies an admin consent. Microsoft Graph has a service
/// principal in every tenant and Entra issues a Graph `.default` token to any app that has one
/// there, with or without Graph application permissions (the token then carries no roles), so it
/// works whatever resource the connector itself uses; the connector's own resource might have no
/// service principal in the tenant and fail for reasons that say nothing about the consent.
pub const VERIFY_SCOPE: &str = "https://graph.microsoft.com/.default";

/// A successful token-endpoint answer.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: Sensitive,
    /// Lifetime in seconds (Entra sends a number; MSAL also tolerates a string).
    #[serde(deserialize_with = "number_or_string")]
    pub expires_in: i64,
    /// Granted scopes, space separated.
    #[serde(default)]
    pub scope: Option<String>,
    /// A new refresh token (Entra rotates on every use).
    #[serde(default)]
    pub refresh_token: Option<Sensitive>,
    /// The id_token (code redemption, and refreshes with `openid`).
    #[serde(default)]
    pub id_token: Option<Sensitive>,
    /// `Bearer` from Entra; anything else is a token the broker cannot hand on as a bearer.
    #[serde(default)]
    pub token_type: Option<String>,
}

fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Int(i64),
        Str(String),
    }
    match N::deserialize(d)? {
        N::Int(i) => Ok(i),
        N::Str(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// Why a token request failed. Display strings never contain tokens or codes.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Entra answered with an OAuth error (4xx with a JSON body).
    #[error("Entra rejected the token request ({})", .0.error.as_deref().unwrap_or("no error code"))]
    Rejected(EntraError),
    /// Entra could not be reached, timed out, throttled (429) or failed (5xx).
    #[error("Entra is unavailable: {detail}")]
    Unavailable {
        /// `Retry-After` if Entra sent one.
        retry_after: Option<Duration>,
        /// What happened, for logs.
        detail: String,
        /// Entra's error body when it sent one (for its trace ids).
        error: Option<EntraError>,
    },
    /// Entra answered something that is not its protocol.
    #[error("unexpected answer from Entra: {0}")]
    Protocol(String),
    /// The broker could not produce its own credential (signing the client assertion failed);
    /// nothing was sent.
    #[error("cannot build the client credential: {0}")]
    Credential(String),
}

impl TokenError {
    /// The `Retry-After` Entra sent with an unavailable answer.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Entra's trace and correlation ids from the error body, `""` when absent: every log line
    /// about a failed call carries them, so an admin can find it in the Entra sign-in logs.
    pub fn entra_ids(&self) -> (&str, &str) {
        let e = match self {
            Self::Rejected(e) => Some(e),
            Self::Unavailable { error, .. } => error.as_ref(),
            Self::Protocol(_) | Self::Credential(_) => None,
        };
        (
            e.and_then(|e| e.trace_id.as_deref()).unwrap_or(""),
            e.and_then(|e| e.correlation_id.as_deref()).unwrap_or(""),
        )
    }
}

/// Maps the token endpoint's answer (any status and body) to tokens or a [`TokenError`]. Kept
/// apart from the HTTP call so the fuzz targets and the corpus test can feed it any answer.
// The same TokenError token_request has always returned (Entra's error body, unboxed); clippy
// flags the size only because this function is public.
#[allow(clippy::result_large_err)]
pub fn token_answer(answer: &Answer) -> Result<TokenResponse, TokenError> {
    let status = answer.status;
    if status.is_success() {
        let tokens: TokenResponse = serde_json::from_slice(&answer.body)
            .map_err(|e| TokenError::Protocol(format!("token response is not the expected JSON: {e}")))?;
        if let Some(kind) = tokens.token_type.as_deref()
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(TokenError::Protocol(format!(
                "token response has token_type {:?}, not Bearer",
                kind.chars().take(32).collect::<String>()
            )));
        }
        return Ok(tokens);
    }
    let error = answer.error();
    if answer.is_transient() {
        return Err(TokenError::Unavailable {
            retry_after: answer.retry_after,
            detail: format!("token endpoint answered {status}"),
            error,
        });
    }
    match error {
        Some(e) if e.error.is_some() => Err(TokenError::Rejected(e)),
        _ => Err(TokenError::Protocol(format!(
            "token endpoint answered {status} without an OAuth error body"
        ))),
    }
}

/// A JWK as Entra publishes it: the key plus its `issuer` (possibly templated with `{tenantid}`).
#[derive(Debug, Clone)]
pub struct PublishedKey {
    /// The key.
    pub jwk: jsonwebtoken::jwk::Jwk,
    /// Entra's per-key issuer, if present.
    pub issuer: Option<String>,
}

/// How the broker authenticates as a connector's app at the token endpoint.
pub struct ClientAuth<'a> {
    /// Application (client) id.
    pub client_id: &'a str,
    /// A secret (sent as `client_secret_post`) or a certificate (a fresh client assertion per request).
    pub credential: &'a ClientCredential,
}

/// The form fields that authenticate one token request.
enum AuthFields<'a> {
    Secret(&'a str),
    Assertion(Sensitive),
}

impl AuthFields<'_> {
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        match self {
            Self::Secret(secret) => vec![("client_secret", *secret)],
            Self::Assertion(jwt) => vec![
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", jwt.expose()),
            ],
        }
    }
}

/// A tenant look-up that got no answer (transport error, 5xx, throttled).
struct Unreachable;

/// Client for one Entra authority (one cloud).
#[derive(Clone)]
pub struct EntraClient {
    http: reqwest::Client,
    authority: Url,
    resilient: Resilient,
    tenants: Arc<TenantCache>,
}

/// What the broker sends to `/authorize`.
pub struct AuthorizeRequest<'a> {
    /// Tenant path segment.
    pub tenant: &'a str,
    /// Application (client) id.
    pub client_id: &'a str,
    /// The broker's callback.
    pub redirect_uri: &'a str,
    /// All scopes to request.
    pub scopes: &'a [String],
    /// Fresh state.
    pub state: &'a str,
    /// Fresh nonce.
    pub nonce: &'a str,
    /// PKCE challenge (S256).
    pub pkce_challenge: PkceCodeChallenge,
    /// UPN hint.
    pub login_hint: Option<&'a str>,
    /// Domain hint (tenant GUID or domain).
    pub domain_hint: Option<&'a str>,
    /// `prompt` (e.g. `select_account`, so the person sees which account is being connected).
    pub prompt: Option<&'a str>,
}

impl EntraClient {
    /// Builds the client: one connection pool (connections are reused), timeouts from config, no
    /// redirects followed, retries and a circuit breaker around every call.
    pub fn new(cfg: &EntraConfig, metrics: Arc<Metrics>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("consent-broker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            authority: cfg.authority.clone(),
            resilient: Resilient::new(cfg.authority.as_str(), cfg.retry.clone(), cfg.breaker.clone(), metrics),
            tenants: Arc::default(),
        })
    }

    /// `{authority}/{tenant}/{path}`.
    fn endpoint(&self, tenant: &str, path: &str) -> String {
        format!("{}/{tenant}/{path}", self.authority.as_str().trim_end_matches('/'))
    }

    /// The token endpoint of a tenant segment: where token requests go, and so the audience of
    /// client assertions.
    fn token_endpoint(&self, tenant: &str) -> String {
        self.endpoint(tenant, "oauth2/v2.0/token")
    }

    /// The client-authentication fields for a request to `tenant`'s token endpoint. A certificate
    /// gets an assertion of its own per request: it is bound to that endpoint and lives 5 minutes.
    fn auth_fields<'a>(&self, tenant: &str, client: &'a ClientAuth<'a>) -> Result<AuthFields<'a>, String> {
        match client.credential {
            ClientCredential::Secret { secret, .. } => {
                Ok(AuthFields::Secret(secrecy::ExposeSecret::expose_secret(secret)))
            }
            ClientCredential::Certificate(cert) => cert
                .assertion(
                    client.client_id,
                    &self.token_endpoint(tenant),
                    time::OffsetDateTime::now_utc(),
                )
                .map(AuthFields::Assertion),
        }
    }

    /// The issuer Entra puts in tokens for tenant `tid`.
    pub fn issuer_for(&self, tid: &str) -> String {
        self.endpoint(tid, "v2.0")
    }

    /// The authorize URL for a new flow.
    pub fn authorize_url(&self, req: AuthorizeRequest<'_>) -> Result<Url, String> {
        let auth_url = AuthUrl::new(self.endpoint(req.tenant, "oauth2/v2.0/authorize")).map_err(|e| e.to_string())?;
        let redirect = RedirectUrl::new(req.redirect_uri.to_string()).map_err(|e| e.to_string())?;
        let client = BasicClient::new(ClientId::new(req.client_id.to_string()))
            .set_auth_uri(auth_url)
            .set_redirect_uri(redirect);
        let state = req.state.to_string();
        let mut builder = client
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(req.scopes.iter().map(|s| Scope::new(s.clone())))
            .set_pkce_challenge(req.pkce_challenge)
            .add_extra_param("response_mode", "query")
            .add_extra_param("nonce", req.nonce);
        if let Some(hint) = req.login_hint {
            builder = builder.add_extra_param("login_hint", hint);
        }
        if let Some(hint) = req.domain_hint {
            builder = builder.add_extra_param("domain_hint", hint);
        }
        if let Some(prompt) = req.prompt {
            builder = builder.add_extra_param("prompt", prompt);
        }
        Ok(builder.url().0)
    }

    /// Redeems an authorization code.
    pub async fn exchange_code(
        &self,
        tenant: &str,
        client: &ClientAuth<'_>,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: &str,
        scopes: &[String],
    ) -> Result<TokenResponse, TokenError> {
        let scope = scopes.join(" ");
        let grant = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", pkce_verifier),
            ("scope", scope.as_str()),
        ];
        self.token_request(tenant, client, &grant).await
    }

    /// Redeems a refresh token.
    pub async fn refresh(
        &self,
        tenant: &str,
        client: &ClientAuth<'_>,
        refresh_token: &str,
        scopes: &[String],
    ) -> Result<TokenResponse, TokenError> {
        let scope = scopes.join(" ");
        let grant = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("scope", scope.as_str()),
        ];
        self.token_request(tenant, client, &grant).await
    }

    /// Whether Entra issues the app an app-only token in `tenant` (client-credentials grant for
    /// [`VERIFY_SCOPE`]). It does only where the app has a service principal, which admin consent
    /// creates, so this tells a real consent from a callback anyone could have typed. The token
    /// is dropped here, unread.
    pub async fn app_only_token_issued(&self, tenant: &str, client: &ClientAuth<'_>) -> Result<(), TokenError> {
        let grant = [("grant_type", "client_credentials"), ("scope", VERIFY_SCOPE)];
        self.token_request(tenant, client, &grant).await.map(drop)
    }

    /// Posts `grant` with the client's credential to the token endpoint. Each attempt (retries
    /// included) carries a freshly signed assertion: a retried request may have reached Entra,
    /// and an assertion's `jti` is meant to be used once (RFC 7523 §3).
    async fn token_request(
        &self,
        tenant: &str,
        client: &ClientAuth<'_>,
        grant: &[(&str, &str)],
    ) -> Result<TokenResponse, TokenError> {
        let url = self.endpoint(tenant, "oauth2/v2.0/token");
        // Signed up front so a credential that cannot sign fails before any call.
        let first = self.auth_fields(tenant, client).map_err(TokenError::Credential)?;
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let answer = self
            .resilient
            .send("token", || {
                let retry = attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) > 0;
                // A key that signed once signs again; should it not, the first assertion goes.
                let fresh = retry.then(|| self.auth_fields(tenant, client).ok()).flatten();
                let auth = fresh.as_ref().unwrap_or(&first);
                let mut form = vec![("client_id", client.client_id)];
                form.extend(auth.pairs());
                form.extend_from_slice(grant);
                self.http
                    .post(&url)
                    .header("x-ms-lib-capability", "retry-after, h429")
                    .form(&form)
            })
            .await
            .map_err(|f| match f {
                CallFailure::Transport(kind) => TokenError::Unavailable {
                    retry_after: None,
                    detail: format!("token endpoint: {kind}"),
                    error: None,
                },
                CallFailure::CircuitOpen(wait) => TokenError::Unavailable {
                    retry_after: Some(wait.max(Duration::from_secs(1))),
                    detail: "circuit open after repeated failures; not calling Entra".into(),
                    error: None,
                },
            })?;
        token_answer(&answer)
    }

    /// The tenant GUID for a tenant segment: a GUID as is; a domain via its OpenID metadata
    /// (whose issuer names the GUID); `None` for `organizations`/`common`/`consumers` or when the
    /// lookup fails (callers then show the domain and match approvals on the callback's GUID).
    pub async fn resolve_tenant(&self, tenant: &str) -> Option<TenantId> {
        self.resolve_tenant_text(tenant).await.map(TenantId::new)
    }

    async fn resolve_tenant_text(&self, tenant: &str) -> Option<String> {
        if uuid::Uuid::parse_str(tenant).is_ok() {
            return Some(tenant.to_ascii_lowercase());
        }
        if matches!(tenant, "organizations" | "common" | "consumers") || !crate::config::is_tenant_segment(tenant) {
            return None;
        }
        let domain = tenant.to_ascii_lowercase();
        if let Some(answer) = self.tenants.get(&domain) {
            return answer;
        }
        match self.look_up_tenant(&domain).await {
            Ok(answer) => {
                self.tenants.put(&domain, answer.clone());
                answer
            }
            // Not remembered: Entra may well answer the next time.
            Err(Unreachable) => None,
        }
    }

    /// Asks Entra for a domain's tenant GUID (its OpenID metadata's issuer names it); `Ok(None)`
    /// when Entra answered that it knows no such tenant.
    async fn look_up_tenant(&self, tenant: &str) -> Result<Option<String>, Unreachable> {
        #[derive(Deserialize)]
        struct Metadata {
            issuer: String,
        }
        let url = self.endpoint(tenant, "v2.0/.well-known/openid-configuration");
        let answer = self
            .resilient
            .send("metadata", || self.http.get(&url))
            .await
            .map_err(|_| Unreachable)?;
        if answer.status.is_server_error() || answer.status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Unreachable);
        }
        if !answer.status.is_success() {
            return Ok(None);
        }
        let Ok(metadata) = serde_json::from_slice::<Metadata>(&answer.body) else {
            return Ok(None);
        };
        Ok(metadata
            .issuer
            .trim_end_matches('/')
            .trim_end_matches("/v2.0")
            .rsplit('/')
            .next()
            .filter(|t| uuid::Uuid::parse_str(t).is_ok())
            .map(str::to_ascii_lowercase))
    }

    /// The v2.0 admin-consent URL (entra.md §3.1): explicit scopes, each qualified with its resource.
    pub fn admin_consent_url(
        &self,
        tenant: &str,
        client_id: &str,
        scopes: &[String],
        redirect_uri: &str,
        state: &str,
    ) -> Result<Url, String> {
        let scope: Vec<String> = scopes.iter().map(|s| crate::scope::qualified(s)).collect();
        let mut url = Url::parse(&self.endpoint(tenant, "v2.0/adminconsent")).map_err(|e| e.to_string())?;
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("scope", &scope.join(" "))
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state);
        Ok(url)
    }

    /// Fetches a tenant's published signing keys.
    pub async fn signing_keys(&self, tenant: &str) -> Result<Vec<PublishedKey>, String> {
        #[derive(Deserialize)]
        struct KeySet {
            keys: Vec<serde_json::Value>,
        }
        let url = self.endpoint(tenant, "discovery/v2.0/keys");
        let answer = self
            .resilient
            .send("keys", || self.http.get(&url))
            .await
            .map_err(|f| format!("keys endpoint: {f:?}"))?;
        if !answer.status.is_success() {
            return Err(format!("keys endpoint answered {}", answer.status));
        }
        let set: KeySet = serde_json::from_slice(&answer.body).map_err(|e| format!("keys document unreadable: {e}"))?;
        Ok(set
            .keys
            .into_iter()
            .filter_map(|v| {
                let issuer = v.get("issuer").and_then(|i| i.as_str()).map(str::to_string);
                serde_json::from_value(v).ok().map(|jwk| PublishedKey { jwk, issuer })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_accepts_string() {
        let t: TokenResponse =
            serde_json::from_str(r#"{"access_token":"a","expires_in":"3599","token_type":"Bearer"}"#).unwrap();
        assert_eq!(t.expires_in, 3599);
    }

    #[test]
    fn the_credential_decides_the_authentication_fields() {
        let config = crate::config::Config::from_toml_str(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1\"\nplain_http = true\n[store]\nbackend = \"memory\"\n",
            "t.toml",
        )
        .unwrap();
        let entra = EntraClient::new(&config.entra, Arc::new(Metrics::new())).unwrap();
        let client_id = "11111111-2222-3333-4444-555555555555";

        let secret = ClientCredential::Secret {
            secret: secrecy::SecretString::from("s3cret"),
            expires_at: None,
        };
        let auth = ClientAuth {
            client_id,
            credential: &secret,
        };
        let fields = entra.auth_fields("contoso.com", &auth).unwrap();
        assert_eq!(fields.pairs(), [("client_secret", "s3cret")]);

        let (cert, key) = crate::entra::credential::test_certificate(30);
        let cert = crate::entra::ClientCertificate::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        let certificate = ClientCredential::Certificate(std::sync::Arc::new(cert));
        let auth = ClientAuth {
            client_id,
            credential: &certificate,
        };
        let fields = entra.auth_fields("contoso.com", &auth).unwrap();
        let pairs = fields.pairs();
        let names: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["client_assertion_type", "client_assertion"]);
        assert_eq!(pairs[0].1, "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
        let claims = jsonwebtoken::dangerous::insecure_decode_claims::<serde_json::Value>(pairs[1].1).unwrap();
        assert_eq!(
            claims["aud"],
            "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token"
        );
        assert_eq!(claims["iss"], client_id);
    }
}
