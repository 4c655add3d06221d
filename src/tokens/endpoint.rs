//! The one call to Entra the token service makes, behind a trait so its paths can be driven by
//! a scripted endpoint in unit tests.

use async_trait::async_trait;

use crate::entra::EntraClient;
use crate::entra::client::{ClientAuth, TokenError, TokenResponse};

/// Redeems refresh tokens: Entra's token endpoint in production.
#[async_trait]
pub trait TokenEndpoint: Send + Sync {
    /// Redeems `refresh_token` in `tenant` for `scopes`.
    async fn refresh(
        &self,
        tenant: &str,
        client: &ClientAuth<'_>,
        refresh_token: &str,
        scopes: &[String],
    ) -> Result<TokenResponse, TokenError>;
}

#[async_trait]
impl TokenEndpoint for EntraClient {
    async fn refresh(
        &self,
        tenant: &str,
        client: &ClientAuth<'_>,
        refresh_token: &str,
        scopes: &[String],
    ) -> Result<TokenResponse, TokenError> {
        EntraClient::refresh(self, tenant, client, refresh_token, scopes).await
    }
}
