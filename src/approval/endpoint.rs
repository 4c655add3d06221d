//! The calls to Entra the admin-consent round trip makes, behind a trait so its paths can be
//! driven by a scripted endpoint in unit tests.

use async_trait::async_trait;
use url::Url;

use crate::entra::EntraClient;
use crate::entra::client::{ClientAuth, TokenError};
use crate::ids::TenantId;

/// Entra as admin consent sees it.
#[async_trait]
pub trait ConsentEndpoint: Send + Sync {
    /// The tenant GUID of a domain or GUID, when Entra knows it.
    async fn resolve_tenant(&self, tenant: &str) -> Option<TenantId>;

    /// The `/adminconsent` URL an admin is sent to.
    fn admin_consent_url(
        &self,
        tenant: &str,
        client_id: &str,
        scopes: &[String],
        redirect_uri: &str,
        state: &str,
    ) -> Result<Url, String>;

    /// Whether Entra issues the app an app-only token in `tenant`: it does only where the app
    /// has a service principal, which an admin's consent creates.
    async fn app_only_token_issued(&self, tenant: &TenantId, client: &ClientAuth<'_>) -> Result<(), TokenError>;
}

#[async_trait]
impl ConsentEndpoint for EntraClient {
    async fn resolve_tenant(&self, tenant: &str) -> Option<TenantId> {
        EntraClient::resolve_tenant(self, tenant).await
    }

    fn admin_consent_url(
        &self,
        tenant: &str,
        client_id: &str,
        scopes: &[String],
        redirect_uri: &str,
        state: &str,
    ) -> Result<Url, String> {
        EntraClient::admin_consent_url(self, tenant, client_id, scopes, redirect_uri, state)
    }

    async fn app_only_token_issued(&self, tenant: &TenantId, client: &ClientAuth<'_>) -> Result<(), TokenError> {
        EntraClient::app_only_token_issued(self, tenant.as_str(), client).await
    }
}
