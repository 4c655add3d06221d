//! `[[connectors]]`: the registered connectors, their Entra app credentials (a client secret or
//! a certificate, never inline), scopes, return URLs and API key hashes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use super::Invalid;
use super::values::{is_loopback_url, is_tenant_segment, read_secret};
use super::webhooks::WebhookEndpoint;
use crate::entra::credential::{CertificatePart, ClientCertificate, ClientCredential};
use crate::ids::ConnectorId;

// A connector has required keys (id, display_name, client_id), so its one non-trivial default,
// `tenant`, is a function rather than an `impl Default`.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnector {
    id: String,
    display_name: String,
    client_id: String,
    client_secret_env: Option<String>,
    client_secret_file: Option<PathBuf>,
    client_secret_expires_at: Option<String>,
    client_certificate_file: Option<PathBuf>,
    client_certificate_key_file: Option<PathBuf>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    return_urls: Vec<String>,
    #[serde(default)]
    api_key_hashes: Vec<String>,
    #[serde(default = "default_tenant")]
    tenant: String,
    #[serde(default)]
    publisher_verified: bool,
    publisher_name: Option<String>,
    publisher_url: Option<String>,
    privacy_url: Option<String>,
    terms_url: Option<String>,
    logo_url: Option<String>,
    #[serde(default)]
    webhooks: Vec<super::webhooks::RawWebhook>,
}

fn default_tenant() -> String {
    "organizations".into()
}

/// Every configured connector by id, shared by the services.
pub type Connectors = std::sync::Arc<std::collections::HashMap<ConnectorId, ConnectorConfig>>;

/// A registered connector.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// Stable id used in the API.
    pub id: ConnectorId,
    /// Name shown to users.
    pub display_name: String,
    /// Entra application (client) id.
    pub client_id: String,
    /// How the broker authenticates as the app: a client secret (from env or file) or a
    /// certificate and its private key (loaded and checked at config time).
    pub credential: ClientCredential,
    /// Resource scopes the connector needs (OIDC scopes are added by the broker).
    pub scopes: Vec<String>,
    /// Allowed return URLs (exact scheme, host, port and path).
    pub return_urls: Vec<Url>,
    /// Hex SHA-256 digests of the connector's API keys.
    pub api_key_hashes: Vec<String>,
    /// Tenant segment for sign-ins without a tenant hint (`organizations`, a GUID or a domain).
    pub tenant: String,
    /// Whether the app's publisher is verified by Microsoft (changes what the approval page says).
    pub publisher_verified: bool,
    /// Who publishes the app and where its policies are, as the approval page shows them.
    pub publisher: Publisher,
    /// Where the connector's lifecycle events are delivered (none: no events are kept).
    pub webhooks: Vec<WebhookEndpoint>,
}

/// The connector's publisher as people deciding whether to trust it see it on the approval page:
/// its name and links (each absolute https, or http on a loopback host).
#[derive(Debug, Clone, Default)]
pub struct Publisher {
    /// The publisher's name (`publisher_name`).
    pub name: Option<String>,
    /// The publisher's website (`publisher_url`).
    pub url: Option<Url>,
    /// The privacy statement (`privacy_url`).
    pub privacy_url: Option<Url>,
    /// The terms of use (`terms_url`).
    pub terms_url: Option<Url>,
    /// A logo image shown next to the connector's name (`logo_url`).
    pub logo_url: Option<Url>,
}

/// A link the approval page shows: absolute https (http only on loopback, for tests), no
/// credentials; anything else would be a way to put an untrusted or script URL on the page.
fn parse_page_link(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("not an absolute URL: {e}"))?;
    if url.scheme() != "https" && !(url.scheme() == "http" && is_loopback_url(&url)) {
        return Err("must be https (http only for a loopback host)".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    Ok(url)
}

fn publisher(c: &RawConnector) -> Result<Publisher, (&'static str, String)> {
    let link = |field: &'static str, raw: &Option<String>| {
        raw.as_deref().map(parse_page_link).transpose().map_err(|m| (field, m))
    };
    let name = match c.publisher_name.as_deref().map(str::trim) {
        Some("") => return Err(("publisher_name", "must not be empty (leave it out instead)".into())),
        Some(n) if n.chars().count() > 200 => return Err(("publisher_name", "must be at most 200 characters".into())),
        other => other.map(str::to_string),
    };
    Ok(Publisher {
        name,
        url: link("publisher_url", &c.publisher_url)?,
        privacy_url: link("privacy_url", &c.privacy_url)?,
        terms_url: link("terms_url", &c.terms_url)?,
        logo_url: link("logo_url", &c.logo_url)?,
    })
}

/// Validates every connector; keys are named `connectors[i].field`.
pub(super) fn validate(raw: Vec<RawConnector>) -> Result<Vec<ConnectorConfig>, Invalid> {
    let mut connectors = Vec::with_capacity(raw.len());
    let mut ids = HashSet::new();
    // A key must name one connector: the API finds the caller by the key's digest.
    let mut key_owners: HashMap<String, ConnectorId> = HashMap::new();
    for (i, c) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("connectors[{i}].{field}");
        let invalid = |field: &str, message: String| Invalid::new(key(field), message);
        if c.id.is_empty()
            || c.id.len() > 64
            || !c
                .id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            return Err(invalid("id", "must be 1-64 characters of a-z, A-Z, 0-9, - or _".into()));
        }
        if !ids.insert(c.id.clone()) {
            return Err(invalid("id", format!("duplicate connector id {:?}", c.id)));
        }
        if c.display_name.trim().is_empty() {
            return Err(invalid("display_name", "must not be empty".into()));
        }
        if uuid::Uuid::parse_str(&c.client_id).is_err() {
            return Err(invalid("client_id", "must be the application (client) id GUID".into()));
        }
        let credential = connector_credential(&c).map_err(|(field, m)| invalid(field, m))?;
        if c.scopes
            .iter()
            .any(|s| s.trim().is_empty() || s.contains(char::is_whitespace))
        {
            return Err(invalid("scopes", "each scope must be one non-empty word".into()));
        }
        let mut return_urls = Vec::new();
        for (j, u) in c.return_urls.iter().enumerate() {
            let url = parse_return_url_entry(u).map_err(|m| invalid(&format!("return_urls[{j}]"), m))?;
            return_urls.push(url);
        }
        let mut api_key_hashes = Vec::new();
        for (j, h) in c.api_key_hashes.iter().enumerate() {
            let hex = h
                .strip_prefix("sha256:")
                .filter(|hex| hex.len() == 64 && hex.chars().all(|ch| ch.is_ascii_hexdigit()))
                .ok_or_else(|| {
                    invalid(
                        &format!("api_key_hashes[{j}]"),
                        "must be \"sha256:<64 hex digits>\" (generate with `consent-broker new-api-key`)".into(),
                    )
                })?;
            let hex = hex.to_ascii_lowercase();
            if let Some(owner) = key_owners.get(&hex).filter(|o| o.as_str() != c.id) {
                return Err(invalid(
                    &format!("api_key_hashes[{j}]"),
                    format!(
                        "is also an API key of connector {:?}; give each connector its own keys",
                        owner.as_str()
                    ),
                ));
            }
            key_owners.insert(hex.clone(), c.id.as_str().into());
            api_key_hashes.push(hex);
        }
        if !is_tenant_segment(&c.tenant) {
            return Err(invalid(
                "tenant",
                "must be \"organizations\", \"common\", a tenant GUID or a domain".into(),
            ));
        }
        let publisher = publisher(&c).map_err(|(field, m)| invalid(field, m))?;
        let webhooks = super::webhooks::validate(c.webhooks, &|j, field| key(&format!("webhooks[{j}].{field}")))?;
        connectors.push(ConnectorConfig {
            id: ConnectorId::new(c.id),
            display_name: c.display_name,
            client_id: c.client_id.to_ascii_lowercase(),
            credential,
            scopes: c.scopes,
            return_urls,
            api_key_hashes,
            tenant: c.tenant,
            publisher_verified: c.publisher_verified,
            publisher,
            webhooks,
        });
    }
    Ok(connectors)
}

/// What `check-config` (and the broker at start-up) says of the connectors' scopes: a connector
/// whose scopes name several resources gets tokens for the first only (Entra issues a token for one
/// resource per request), and a bare SharePoint permission name means Microsoft Graph's, which
/// does not exist.
pub(super) fn scope_warnings(connectors: &[ConnectorConfig]) -> Vec<String> {
    let catalogue = crate::approval::permissions::catalogue();
    let mut warnings = Vec::new();
    for c in connectors {
        warnings.extend(crate::scope::mixing_warning(c.id.as_str(), &c.scopes));
        for s in &c.scopes {
            let bare = crate::scope::split(s).0.is_none();
            if bare && catalogue.lookup("graph", s).is_none() && catalogue.lookup("sharepoint", s).is_some() {
                warnings.push(format!(
                    "connector {}: {s} is a SharePoint permission, but a scope without a resource means Microsoft Graph's; write it with the SharePoint host, e.g. https://<tenant>.sharepoint.com/{s}",
                    c.id
                ));
            }
        }
    }
    warnings
}

/// A connector's credential: exactly one of a client secret (env or file) and a certificate
/// (certificate and key files). Errors name the field at fault, relative to the connector.
fn connector_credential(c: &RawConnector) -> Result<ClientCredential, (&'static str, String)> {
    let secret = c.client_secret_env.is_some() || c.client_secret_file.is_some();
    let certificate = c.client_certificate_file.is_some() || c.client_certificate_key_file.is_some();
    if secret && certificate {
        return Err((
            "client_certificate_file",
            "set a client secret (client_secret_env or client_secret_file) or a certificate (client_certificate_file and client_certificate_key_file), not both".into(),
        ));
    }
    if !certificate {
        let secret = resolve_secret(c.client_secret_env.as_deref(), c.client_secret_file.as_deref())
            .map_err(|m| ("client_secret_env", m))?;
        let expires_at = c
            .client_secret_expires_at
            .as_deref()
            .map(parse_expiry)
            .transpose()
            .map_err(|m| ("client_secret_expires_at", m))?;
        return Ok(ClientCredential::Secret { secret, expires_at });
    }
    if c.client_secret_expires_at.is_some() {
        return Err((
            "client_secret_expires_at",
            "only used with a client secret; a certificate's expiry is read from the certificate".into(),
        ));
    }
    let (cert_file, key_file) = match (&c.client_certificate_file, &c.client_certificate_key_file) {
        (Some(cert), Some(key)) => (cert, key),
        (None, _) => {
            return Err((
                "client_certificate_file",
                "missing: a certificate credential needs the certificate (PEM) as well as its key".into(),
            ));
        }
        (_, None) => {
            return Err((
                "client_certificate_key_file",
                "missing: a certificate credential needs its private key (PEM, PKCS#8 RSA)".into(),
            ));
        }
    };
    let cert = ClientCertificate::load(cert_file, key_file).map_err(|e| {
        let field = match e.part {
            CertificatePart::Certificate => "client_certificate_file",
            CertificatePart::Key => "client_certificate_key_file",
        };
        (field, e.message)
    })?;
    Ok(ClientCredential::Certificate(std::sync::Arc::new(cert)))
}

/// An expiry the operator copied from the portal: an RFC 3339 date-time, or a date (midnight UTC).
fn parse_expiry(raw: &str) -> Result<time::OffsetDateTime, String> {
    let raw = raw.trim();
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .or_else(|_| {
            time::Date::parse(raw, time::macros::format_description!("[year]-[month]-[day]"))
                .map(|d| d.midnight().assume_utc())
        })
        .map_err(|_| format!("{raw:?} is not an RFC 3339 date-time such as \"2027-06-30T00:00:00Z\" (or a date such as \"2027-06-30\")"))
}

fn resolve_secret(env: Option<&str>, file: Option<&Path>) -> Result<SecretString, String> {
    match (env, file) {
        (None, None) => Err("missing: name the environment variable (client_secret_env) or file (client_secret_file) holding the client secret (secrets are never inline), or configure a certificate with client_certificate_file and client_certificate_key_file".into()),
        _ => read_secret(env, file),
    }
}

/// A registered return URL: absolute https (http only on loopback), no fragment or credentials.
fn parse_return_url_entry(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("not an absolute URL: {e}"))?;
    if url.scheme() != "https" && !(url.scheme() == "http" && is_loopback_url(&url)) {
        return Err("must be https (http only for a loopback host)".into());
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a fragment or credentials".into());
    }
    if url.query().is_some() {
        return Err("register the URL without a query; callers may add one".into());
    }
    Ok(url)
}

#[cfg(test)]
// figment's Jail closures return its (large) error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::super::Config;
    use super::super::testing::{CONNECTOR, base, err_of};
    use crate::entra::credential::ClientCredential;

    #[test]
    fn errors_name_the_connector_key() {
        let e = err_of(&base(
            &CONNECTOR.replace("11111111-2222-3333-4444-555555555555", "nope"),
        ));
        assert!(e.starts_with("t.toml: connectors[0].client_id: must be"), "{e}");

        let e = err_of(&base(
            &CONNECTOR.replace("CB_TEST_SECRET_PRESENT", "CB_TEST_SECRET_ABSENT"),
        ));
        assert!(
            e.contains("connectors[0].client_secret_env") && e.contains("CB_TEST_SECRET_ABSENT"),
            "{e}"
        );

        let e = err_of(&base(
            &CONNECTOR.replace("https://app.example.com/oauth/done", "http://app.example.com/x"),
        ));
        assert!(e.contains("connectors[0].return_urls[0]"), "{e}");

        let e = err_of(&base(&CONNECTOR.replace("sha256:ba78", "md5:ba78")));
        assert!(e.contains("connectors[0].api_key_hashes[0]"), "{e}");

        let e = err_of(&base(&format!("{CONNECTOR}{CONNECTOR}")));
        assert!(e.contains("duplicate connector id"), "{e}");

        let other = CONNECTOR.replacen("id = \"", "id = \"other-", 1);
        let e = err_of(&base(&format!("{CONNECTOR}{other}")));
        assert!(
            e.contains("api_key_hashes[0]") && e.contains("also an API key of connector"),
            "{e}"
        );
    }

    #[test]
    fn publisher_links_are_https_or_loopback() {
        let with = |line: &str| base(&CONNECTOR.replace("scopes = ", &format!("{line}\nscopes = ")));
        for (line, key) in [
            ("privacy_url = \"http://publisher.example.com/privacy\"", "privacy_url"),
            ("terms_url = \"javascript:alert(1)\"", "terms_url"),
            ("publisher_url = \"/relative\"", "publisher_url"),
            ("logo_url = \"https://u:p@publisher.example.com/logo.png\"", "logo_url"),
            ("publisher_name = \"  \"", "publisher_name"),
        ] {
            let e = err_of(&with(line));
            assert!(e.contains(&format!("connectors[0].{key}")), "{line}: {e}");
        }
        figment::Jail::expect_with(|jail| {
            jail.set_env("CB_TEST_SECRET_PRESENT", "s3cret-value");
            let cfg = Config::from_toml_str(
                &with("publisher_name = \"Contoso Ltd\"\nprivacy_url = \"https://contoso.example/privacy\"\nterms_url = \"http://127.0.0.1:9/terms\""),
                "t.toml",
            )
            .expect("valid");
            let p = &cfg.connectors[0].publisher;
            assert_eq!(p.name.as_deref(), Some("Contoso Ltd"));
            assert_eq!(
                p.privacy_url.as_ref().unwrap().as_str(),
                "https://contoso.example/privacy"
            );
            assert_eq!(p.terms_url.as_ref().unwrap().host_str(), Some("127.0.0.1"));
            assert!(p.url.is_none() && p.logo_url.is_none());
            Ok(())
        });
    }

    #[test]
    fn scopes_of_several_resources_are_a_warning() {
        let with =
            |scopes: &str| base(&CONNECTOR.replace("scopes = [\"Files.Read.All\"]", &format!("scopes = [{scopes}]")));
        figment::Jail::expect_with(|jail| {
            jail.set_env("CB_TEST_SECRET_PRESENT", "s3cret-value");
            let cfg = Config::from_toml_str(
                &with(r#""Files.Read.All", "https://graph.microsoft.com/Sites.Read.All""#),
                "t.toml",
            )
            .expect("valid");
            assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
            let cfg = Config::from_toml_str(
                &with(r#""Files.Read.All", "https://storage.azure.com/user_impersonation", "api://x/read""#),
                "t.toml",
            )
            .expect("mixing resources is valid");
            assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
            assert!(
                cfg.warnings[0]
                    .contains("3 resources (https://graph.microsoft.com, https://storage.azure.com, api://x)"),
                "{:?}",
                cfg.warnings
            );
            let cfg = Config::from_toml_str(&with(r#""AllSites.Read""#), "t.toml").expect("valid");
            assert!(
                cfg.warnings
                    .iter()
                    .any(|w| w.contains("AllSites.Read is a SharePoint permission")),
                "{:?}",
                cfg.warnings
            );
            Ok(())
        });
    }

    #[test]
    fn certificate_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let (cert_pem, key_pem) = crate::entra::credential::test_certificate(90);
        let (_, other_key) = crate::entra::credential::test_certificate(90);
        let cert = write("cert.pem", &cert_pem);
        let key = write("key.pem", &key_pem);
        let other = write("other.pem", &other_key);
        let with =
            |credential: &str| base(&CONNECTOR.replace("client_secret_env = \"CB_TEST_SECRET_PRESENT\"", credential));
        let certificate = format!("client_certificate_file = \"{cert}\"\nclient_certificate_key_file = \"{key}\"");

        figment::Jail::expect_with(|jail| {
            jail.set_env("CB_TEST_SECRET_PRESENT", "s3cret-value");
            let cfg = Config::from_toml_str(&with(&certificate), "t.toml").expect("certificate loads");
            let ClientCredential::Certificate(loaded) = &cfg.connectors[0].credential else {
                panic!("not a certificate: {:?}", cfg.connectors[0].credential);
            };
            assert_eq!(loaded.file().display().to_string(), cert);
            assert_eq!(cfg.connectors[0].credential.kind(), "certificate");
            assert_eq!(cfg.connectors[0].credential.expires_at(), Some(loaded.not_after()));
            // Nothing of the private key reaches Debug (and so no log line built from it).
            let shown = format!("{cfg:?}");
            let key_body: String = key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
            for chunk in key_body.as_bytes().chunks(12) {
                assert!(
                    !shown.contains(std::str::from_utf8(chunk).unwrap()),
                    "key material in Debug"
                );
            }

            let secret = "client_secret_env = \"CB_TEST_SECRET_PRESENT\"\nclient_secret_expires_at = \"2027-06-30T12:00:00+02:00\"";
            let cfg = Config::from_toml_str(&with(secret), "t.toml").expect("secret with expiry");
            assert_eq!(
                cfg.connectors[0].credential.expires_at(),
                Some(time::macros::datetime!(2027-06-30 10:00 UTC))
            );
            let shown = format!("{cfg:?}");
            assert!(!shown.contains("s3cret-value"), "secret in Debug: {shown}");
            let cfg = Config::from_toml_str(
                &with("client_secret_env = \"CB_TEST_SECRET_PRESENT\"\nclient_secret_expires_at = \"2027-06-30\""),
                "t.toml",
            )
            .expect("a date is midnight UTC");
            assert_eq!(
                cfg.connectors[0].credential.expires_at(),
                Some(time::macros::datetime!(2027-06-30 0:00 UTC))
            );
            Ok(())
        });

        for (credential, key_name, words) in [
            (
                format!("client_secret_env = \"CB_TEST_SECRET_PRESENT\"\n{certificate}"),
                "client_certificate_file",
                "not both",
            ),
            (
                format!("client_secret_file = \"{cert}\"\nclient_certificate_key_file = \"{key}\""),
                "client_certificate_file",
                "not both",
            ),
            (
                format!("client_certificate_file = \"{cert}\""),
                "client_certificate_key_file",
                "missing",
            ),
            (
                format!("client_certificate_key_file = \"{key}\""),
                "client_certificate_file",
                "missing",
            ),
            (String::new(), "client_secret_env", "client_certificate_file"),
            (
                format!("{certificate}\nclient_secret_expires_at = \"2027-01-01\""),
                "client_secret_expires_at",
                "only used with a client secret",
            ),
            (
                "client_secret_env = \"CB_TEST_SECRET_PRESENT\"\nclient_secret_expires_at = \"next year\"".into(),
                "client_secret_expires_at",
                "RFC 3339",
            ),
            (
                format!("client_certificate_file = \"{cert}\"\nclient_certificate_key_file = \"{other}\""),
                "client_certificate_key_file",
                "does not match the certificate",
            ),
            (
                format!("client_certificate_file = \"{key}\"\nclient_certificate_key_file = \"{key}\""),
                "client_certificate_file",
                "CERTIFICATE",
            ),
            (
                format!("client_certificate_file = \"{cert}\"\nclient_certificate_key_file = \"{cert}\""),
                "client_certificate_key_file",
                "expected an RSA private key",
            ),
            (
                format!("client_certificate_file = \"{cert}.missing\"\nclient_certificate_key_file = \"{key}\""),
                "client_certificate_file",
                "cannot read certificate file",
            ),
        ] {
            let e = err_of(&with(&credential));
            assert!(
                e.starts_with(&format!("t.toml: connectors[0].{key_name}: ")),
                "{credential}: {e}"
            );
            assert!(e.contains(words), "{credential}: {e}");
            assert!(!e.contains("s3cret") && !e.contains("PRIVATE KEY-----"), "{e}");
        }
    }
}
