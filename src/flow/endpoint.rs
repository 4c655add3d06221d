//! The calls to Entra a sign-in makes, behind a trait so the flow's paths can be driven by a
//! scripted endpoint in unit tests.

use async_trait::async_trait;
use url::Url;

use crate::entra::EntraClient;
use crate::entra::client::{AuthorizeRequest, ClientAuth, TokenError, TokenResponse};
use crate::entra::id_token::{self, Expected, IdClaims, IdTokenError, KeyCache};
use crate::ids::TenantId;

/// Entra as a sign-in sees it: the authorize URL, the code exchange, the id_token's signature
/// and claims, and tenant lookups for approval pages.
#[async_trait]
pub trait SignInEndpoint: Send + Sync {
    /// The `/authorize` URL the browser is sent to.
    fn authorize_url(&self, req: AuthorizeRequest<'_>) -> Result<Url, String>;

    /// Redeems an authorization code with its PKCE verifier.
    async fn exchange_code(
        &self,
        tenant: &str,
        client: &ClientAuth<'_>,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: &str,
        scopes: &[String],
    ) -> Result<TokenResponse, TokenError>;

    /// Checks an id_token against the tenant's signing keys and `expected`.
    async fn validate_id_token(&self, token: &str, expected: &Expected<'_>) -> Result<IdClaims, IdTokenError>;

    /// The tenant GUID of a domain or GUID, when Entra knows it.
    async fn resolve_tenant(&self, tenant: &str) -> Option<TenantId>;
}

/// Entra itself: its HTTP client and the cache of its signing keys.
pub struct EntraSignIn {
    client: EntraClient,
    keys: KeyCache,
}

impl EntraSignIn {
    /// Signs in through `client`, checking id_tokens with `keys`.
    pub fn new(client: EntraClient, keys: KeyCache) -> Self {
        Self { client, keys }
    }
}

#[async_trait]
impl SignInEndpoint for EntraSignIn {
    fn authorize_url(&self, req: AuthorizeRequest<'_>) -> Result<Url, String> {
        self.client.authorize_url(req)
    }

    async fn exchange_code(
        &self,
        tenant: &str,
        client: &ClientAuth<'_>,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: &str,
        scopes: &[String],
    ) -> Result<TokenResponse, TokenError> {
        self.client
            .exchange_code(tenant, client, code, redirect_uri, pkce_verifier, scopes)
            .await
    }

    async fn validate_id_token(&self, token: &str, expected: &Expected<'_>) -> Result<IdClaims, IdTokenError> {
        id_token::validate(&self.keys, token, expected).await
    }

    async fn resolve_tenant(&self, tenant: &str) -> Option<TenantId> {
        self.client.resolve_tenant(tenant).await
    }
}
