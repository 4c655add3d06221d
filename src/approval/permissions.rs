//! What each delegated permission lets an app do, in plain words (English and German), and
//! whether it needs admin consent in every tenant: every delegated permission of Microsoft Graph's
//! permissions reference and those of the other well-known Microsoft APIs (Azure Storage,
//! Dynamics 365, SharePoint, Azure Service Management), from `permissions.toml`, which is compiled
//! in and parsed once. Its head names the source.
//!
//! Permissions that do not need admin consent are the ones an admin may classify as "low impact"
//! so users can consent to them themselves (for apps of verified publishers).

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::scope;

/// The catalogue's source, compiled in.
const DATA: &str = include_str!("permissions.toml");

/// One permission's description.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permission {
    /// Scope name as the API publishes it (without the resource prefix).
    pub name: String,
    /// Needs admin consent in every tenant.
    #[serde(rename = "admin")]
    pub admin_only: bool,
    /// What it allows, in English.
    pub en: String,
    /// What it allows, in German.
    pub de: String,
}

/// One API (resource) and its delegated permissions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// Our id for it (`graph`, `azure-storage`, `dynamics-crm`, `azure-management`, `sharepoint`).
    pub id: String,
    /// Its name in English.
    pub en: String,
    /// Its name in German.
    pub de: String,
    /// Its delegated permissions.
    pub permissions: Vec<Permission>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Data {
    api: Vec<Api>,
}

/// The parsed catalogue with a case-insensitive index.
#[derive(Debug, Default)]
pub struct Catalogue {
    apis: Vec<Api>,
    index: HashMap<(String, String), (usize, usize)>,
}

impl Catalogue {
    /// Parses the data file; errors name the problem (a duplicate, a missing translation).
    fn parse(text: &str) -> Result<Self, String> {
        let data: Data = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut index = HashMap::new();
        for (a, api) in data.api.iter().enumerate() {
            for (p, perm) in api.permissions.iter().enumerate() {
                if perm.en.trim().is_empty() || perm.de.trim().is_empty() || perm.en == perm.de {
                    return Err(format!(
                        "{}/{}: needs an English and a German description",
                        api.id, perm.name
                    ));
                }
                let key = (api.id.clone(), perm.name.to_ascii_lowercase());
                if index.insert(key, (a, p)).is_some() {
                    return Err(format!("{}/{}: listed twice", api.id, perm.name));
                }
            }
        }
        Ok(Self { apis: data.api, index })
    }

    /// An API by id.
    pub fn api(&self, id: &str) -> Option<&Api> {
        self.apis.iter().find(|a| a.id == id)
    }

    /// Every API, in file order.
    pub fn apis(&self) -> &[Api] {
        &self.apis
    }

    /// A permission of an API (name case-insensitive).
    pub fn lookup(&self, api: &str, name: &str) -> Option<&Permission> {
        let (a, p) = self.index.get(&(api.to_string(), name.to_ascii_lowercase()))?;
        Some(&self.apis[*a].permissions[*p])
    }
}

/// The catalogue, parsed on first use. The file is compiled in and a unit test parses it, so an
/// empty catalogue (every permission then shows as undescribed) only follows a broken build.
pub fn catalogue() -> &'static Catalogue {
    static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(|| {
        Catalogue::parse(DATA).unwrap_or_else(|e| {
            tracing::error!(error = %e, "the permissions catalogue does not parse; permissions show undescribed");
            Catalogue::default()
        })
    });
    &CATALOGUE
}

/// Which well-known API a (normalised, see [`scope::resource`]) resource is, and the host to
/// show beside its name when one API has many (a national cloud's Graph, an organization's
/// Dynamics 365 or SharePoint).
fn api_of(resource: &str) -> Option<(&'static str, Option<String>)> {
    let host = resource.strip_prefix("https://").filter(|h| !h.contains('/'));
    match resource {
        "https://graph.microsoft.com" => return Some(("graph", None)),
        "https://storage.azure.com" => return Some(("azure-storage", None)),
        "https://management.azure.com"
        | "https://management.core.windows.net"
        | "https://management.usgovcloudapi.net"
        | "https://management.core.usgovcloudapi.net"
        | "https://management.chinacloudapi.cn"
        | "https://management.core.chinacloudapi.cn" => return Some(("azure-management", None)),
        // SharePoint Online's application id, which a scope may name instead of a site host.
        "00000003-0000-0ff1-ce00-000000000000" => return Some(("sharepoint", None)),
        _ => {}
    }
    let host = host?;
    if matches!(
        host,
        "graph.microsoft.us" | "dod-graph.microsoft.us" | "microsoftgraph.chinacloudapi.cn"
    ) {
        return Some(("graph", Some(host.to_string())));
    }
    if is_dynamics_host(host) {
        return Some(("dynamics-crm", Some(host.to_string())));
    }
    let sharepoint = [
        ".sharepoint.com",
        ".sharepoint.us",
        ".sharepoint-mil.us",
        ".sharepoint.cn",
    ];
    if sharepoint
        .iter()
        .any(|suffix| host.strip_suffix(suffix).is_some_and(is_label))
    {
        return Some(("sharepoint", Some(host.to_string())));
    }
    None
}

/// A DNS label: letters, digits and inner hyphens.
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// `<org>.crm<N>.dynamics.com` (`crm`, `crm2` … per region), `<org>.api.crm<N>.dynamics.com` and
/// the US Government cloud's `<org>.crm<N>.microsoftdynamics.us`.
fn is_dynamics_host(host: &str) -> bool {
    let Some(rest) = host
        .strip_suffix(".dynamics.com")
        .or_else(|| host.strip_suffix(".microsoftdynamics.us"))
    else {
        return false;
    };
    let Some((org, crm)) = rest.rsplit_once('.') else {
        return false;
    };
    let org = org.strip_suffix(".api").unwrap_or(org);
    crm.strip_prefix("crm")
        .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
        && is_label(org)
}

/// What the pages say about one scope.
#[derive(Debug, Clone, Copy)]
pub struct Described<'a> {
    /// The permission's name (what follows the resource).
    pub name: &'a str,
    /// The resource as the scope names it (`None`: Microsoft Graph by default, or OIDC).
    pub resource: Option<&'a str>,
    /// The well-known API it belongs to, `None` for an API we do not know (a custom API).
    pub api: Option<&'static Api>,
    /// The host to show beside the API's name (national cloud, organization).
    pub host: Option<&'a str>,
    /// The catalogue entry, `None` when the API or this permission of it is unknown.
    pub permission: Option<&'static Permission>,
}

impl Described<'_> {
    /// Needs admin consent in every tenant (known permissions only).
    pub fn admin_only(&self) -> bool {
        self.permission.is_some_and(|p| p.admin_only)
    }

    /// Known not to need admin consent: what an admin may classify as low impact.
    pub fn user_consentable(&self) -> bool {
        self.permission.is_some_and(|p| !p.admin_only)
    }
}

/// Describes a scope: its API and catalogue entry, case-insensitively, whatever way it names the
/// resource (a bare name is Microsoft Graph, as in Entra).
pub fn describe(scope_value: &str) -> Described<'_> {
    let (resource, name) = scope::split(scope_value);
    let normalised = scope::resource(scope_value);
    let (api, host) = match normalised.as_deref().map(api_of) {
        // OIDC scopes are published by Microsoft Graph.
        None => (catalogue().api("graph"), None),
        Some(Some((id, host))) => (catalogue().api(id), host),
        Some(None) => (None, None),
    };
    // The host as the scope spells it, so the page shows what the config says.
    let host = host.and_then(|h| {
        let at = scope_value.to_ascii_lowercase().find(&h)?;
        scope_value.get(at..at + h.len())
    });
    let permission = api.and_then(|a| catalogue().lookup(&a.id, name));
    Described {
        name,
        resource,
        api,
        host,
        permission,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every delegated permission of the reference (298, with the four OIDC scopes) and the other
    /// APIs' (14): a lost or duplicated block of the file changes the count.
    #[test]
    fn catalogue_parses_whole_unique_and_translated() {
        let parsed = Catalogue::parse(DATA).expect("permissions.toml parses");
        let graph = parsed.api("graph").expect("graph").permissions.len();
        let others: usize = parsed
            .apis()
            .iter()
            .filter(|a| a.id != "graph")
            .map(|a| a.permissions.len())
            .sum();
        assert_eq!((graph, others), (298, 14));
        assert_eq!(catalogue().index.len(), 312, "the shared catalogue is the parsed file");
        for api in parsed.apis() {
            assert!(!api.en.is_empty() && !api.de.is_empty(), "{}", api.id);
            for p in &api.permissions {
                assert!(p.en.ends_with('.') && p.de.ends_with('.'), "{}/{}", api.id, p.name);
            }
        }
    }

    #[test]
    fn duplicates_and_missing_translations_are_refused() {
        let entry =
            |name: &str, de: &str| format!("{{ name = \"{name}\", admin = false, en = \"Read it.\", de = \"{de}\" }}");
        let file = |entries: &[String]| {
            format!(
                "[[api]]\nid = \"x\"\nen = \"X\"\nde = \"X\"\npermissions = [{}]",
                entries.join(", ")
            )
        };
        assert!(Catalogue::parse(&file(&[entry("A.Read", "Es lesen.")])).is_ok());
        let twice = Catalogue::parse(&file(&[entry("A.Read", "Es lesen."), entry("a.read", "Lesen.")]));
        assert_eq!(twice.unwrap_err(), "x/a.read: listed twice");
        let untranslated = Catalogue::parse(&file(&[entry("A.Read", "")]));
        assert!(untranslated.unwrap_err().contains("German"));
        assert!(Catalogue::parse("api = 3").is_err());
    }

    /// A sample of well-known permissions, their "Admin Consent Required" column checked against
    /// the reference by hand.
    #[test]
    fn flags_match_the_reference() {
        let admin = |scope: &str| {
            describe(scope)
                .permission
                .unwrap_or_else(|| panic!("{scope} is in the catalogue"))
                .admin_only
        };
        for scope in [
            "User.Read",
            "User.ReadBasic.All",
            "Files.Read.All",
            "Files.ReadWrite.All",
            "Sites.Read.All",
            "Mail.Read",
            "Mail.ReadWrite.Shared",
            "Mail.Send.Shared",
            "Calendars.ReadWrite",
            "Chat.ReadWrite",
            "Presence.Read.All",
            "offline_access",
            "https://storage.azure.com/user_impersonation",
            "https://management.azure.com/user_impersonation",
            "https://contoso.crm.dynamics.com/user_impersonation",
            "https://contoso.sharepoint.com/AllSites.Read",
        ] {
            assert!(!admin(scope), "{scope} needs no admin consent");
        }
        for scope in [
            "User.Read.All",
            "Directory.Read.All",
            "Group.Read.All",
            "GroupMember.Read.All",
            "Sites.FullControl.All",
            "ChannelMessage.Read.All",
            "Presence.ReadWrite",
            "OnlineMeetingTranscript.Read.All",
            "AuditLog.Read.All",
            "https://contoso.sharepoint.com/AllSites.FullControl",
        ] {
            assert!(admin(scope), "{scope} needs admin consent");
        }
    }

    #[test]
    fn both_languages_describe_the_same_permission() {
        let p = describe("Mail.Send.Shared").permission.unwrap();
        assert!(p.en.contains("on behalf of") && p.de.contains("im Auftrag"), "{p:?}");
        let p = describe("Files.Read.All").permission.unwrap();
        assert_eq!(p.en, "Read all files you can access, including files shared with you.");
        assert_eq!(
            p.de,
            "Alle Dateien lesen, auf die Sie zugreifen können, auch mit Ihnen geteilte."
        );
    }

    #[test]
    fn scopes_are_described_whatever_their_resource() {
        let d = describe("https://graph.microsoft.com/files.read.all");
        assert_eq!((d.api.map(|a| a.id.as_str()), d.host), (Some("graph"), None));
        assert_eq!(d.permission.map(|p| p.name.as_str()), Some("Files.Read.All"));

        let d = describe("https://Graph.Microsoft.US/Files.Read");
        assert_eq!(
            (d.api.map(|a| a.id.as_str()), d.host),
            (Some("graph"), Some("Graph.Microsoft.US"))
        );
        assert!(d.permission.is_some());
        for host in ["dod-graph.microsoft.us", "microsoftgraph.chinacloudapi.cn"] {
            assert!(
                describe(&format!("https://{host}/User.Read")).permission.is_some(),
                "{host}"
            );
        }

        let d = describe("https://storage.azure.com/user_impersonation");
        assert_eq!(d.api.map(|a| a.en.as_str()), Some("Azure Storage"));
        let d = describe("https://contoso.crm4.dynamics.com/user_impersonation");
        assert_eq!(
            (d.api.map(|a| a.id.as_str()), d.host),
            (Some("dynamics-crm"), Some("contoso.crm4.dynamics.com"))
        );
        assert!(
            describe("https://contoso.api.crm.dynamics.com/user_impersonation")
                .permission
                .is_some()
        );
        assert!(describe("https://evil.dynamics.com/user_impersonation").api.is_none());
        let d = describe("https://contoso-my.sharepoint.com/MyFiles.Read");
        assert_eq!(d.api.map(|a| a.id.as_str()), Some("sharepoint"));
        assert!(
            describe("https://management.core.windows.net//user_impersonation")
                .permission
                .is_some()
        );

        // A custom API: known to nobody here, shown with its resource.
        let d = describe("api://11111111-2222-3333-4444-555555555555/access_as_user");
        assert!(d.api.is_none() && d.permission.is_none());
        assert_eq!(
            (d.resource, d.name),
            (Some("api://11111111-2222-3333-4444-555555555555"), "access_as_user")
        );
        assert!(!d.admin_only() && !d.user_consentable());
        // A Graph name that does not exist; a SharePoint name without its resource is Graph's.
        assert!(describe("Custom.Scope").permission.is_none());
        assert!(describe("AllSites.Read").permission.is_none());
        assert!(describe("offline_access").user_consentable());
    }
}
