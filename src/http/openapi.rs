//! The OpenAPI 3.1 document of the broker's contract (docs/openapi.yaml), assembled at compile time
//! from the handlers' `#[utoipa::path]` attributes and the types in `api_types`. It is built only
//! when asked for (by the test that keeps docs/openapi.yaml current), never while serving.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{api, api_types, approval, browser, dead_letters};

/// The document's structure: every path the broker serves, in the order of the contract.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "consent-broker",
        description = "An OAuth 2.0 consent-flow broker between connector backends and Microsoft Entra ID. \
Connector backends call the JSON API with `Authorization: Bearer <connector API key>`; browsers follow \
the broker's redirects and pages; operators probe health and scrape metrics. docs/api.md is the guide \
for people.\n\nErrors of the JSON API are `{\"error\": \"<snake_case code>\", \"message\": \"<text>\", ...}`. \
A key of one connector never reaches another connector's sessions or connections: those answer 404, \
not 403, so that ids do not leak. Any path not listed here answers 404 `not_found`; a listed path \
with another method, 405.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        api::create_session,
        api::get_session,
        api::redeem,
        api::explain,
        api::token,
        api::list_connections,
        api::get_connection,
        api::delete_connection,
        dead_letters::list,
        dead_letters::retry,
        browser::connect,
        browser::authorize,
        browser::callback,
        approval::page,
        approval::status,
        approval::continue_flow,
        approval::admin_consent_start,
        approval::admin_consent_callback,
        super::healthz,
        super::readyz,
        super::metrics,
        super::script,
        super::stylesheet,
    ),
    components(schemas(api_types::ErrorCode, api_types::Category, api_types::WhoFixes)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "connect sessions", description = "Server to server: start a sign-in for one of the connector's users and follow its outcome."),
        (name = "connections", description = "Server to server: redeem the handoff code, then fetch fresh access tokens for the connection."),
        (name = "explain", description = "Server to server: classify an Entra error a user pasted."),
        (name = "webhooks", description = "Server to server: the connector's webhook events whose delivery was given up, and sending them again."),
        (name = "browser", description = "Pages and redirects the user's browser follows: starting a sign-in and Entra's callback. Limited per client address."),
        (name = "approval", description = "The approval page for tenants whose administrator must approve the connector, and the admin-consent round trip."),
        (name = "operator", description = "Health, readiness and metrics."),
        (name = "assets", description = "The script and stylesheet of the broker's pages."),
    )
)]
struct ApiDoc;

/// Names the two bearer schemes the operations refer to (utoipa's attribute cannot declare them).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.description = Some(description.to_string());
            SecurityScheme::Http(http)
        };
        components.add_security_scheme(
            "api_key",
            bearer(
                "A connector's API key (`consent-broker new-api-key` makes one; the config holds only its SHA-256).",
            ),
        );
        components.add_security_scheme(
            "metrics_token",
            bearer("The scrape token, when `server.metrics_token_env` is set."),
        );
    }
}

/// The OpenAPI document, as docs/openapi.yaml holds it.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
