//! Scope strings the way Entra reads them: `<resource>/<permission>` (`https://storage.azure.com/user_impersonation`,
//! `api://<id>/<scope>`, `<app id>/<scope>`), a bare name meaning Microsoft Graph
//! (`User.Read` ≡ `https://graph.microsoft.com/User.Read`), and the OpenID Connect scopes, which
//! name no resource.
//!
//! `/authorize` may ask for permissions of several resources at once (the user or admin consents
//! to all of them), but a v2 token request names one resource: Entra refuses a code redemption or
//! refresh whose `scope` spans several (AADSTS700022). So the broker consents to every scope of a
//! connector and asks for tokens of the first resource its scopes name ([`for_token_request`]);
//! `check-config` says so when a connector mixes resources ([`mixing_warning`]).

/// Microsoft Graph's resource prefix, which Entra assumes for a scope that names no resource.
pub const GRAPH: &str = "https://graph.microsoft.com/";

/// Microsoft Graph's resource without the trailing slash, as [`resource`] reports it.
const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";

/// Microsoft Graph's application id, which a scope may name instead of its URI.
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// The OpenID Connect scopes: they name no resource and go with every token request.
const OIDC: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// The OIDC scopes every sign-in asks for besides the connector's: an ID token with the user's
/// profile, and a refresh token.
pub const SIGN_IN_OIDC: [&str; 3] = ["openid", "profile", "offline_access"];

/// True for the OIDC scopes every sign-in carries (`openid`, `profile`, `email`, `offline_access`).
pub fn is_oidc(scope: &str) -> bool {
    OIDC.iter().any(|o| o.eq_ignore_ascii_case(scope))
}

/// A scope split into the resource it names (`None`: none, so Microsoft Graph or OIDC) and the
/// permission (`https://storage.azure.com/user_impersonation` → `https://storage.azure.com`,
/// `user_impersonation`). The permission is what follows the last `/`, as in Entra.
pub fn split(scope: &str) -> (Option<&str>, &str) {
    match scope.rsplit_once('/') {
        // `https://host` alone names a resource without a permission.
        Some((resource, _)) if resource.ends_with(':') || resource.ends_with(":/") => (Some(scope), ""),
        Some((resource, permission)) => (Some(resource), permission),
        None => (None, scope),
    }
}

/// A resource identifier as compared: lower case, without trailing slashes, Graph's application
/// id as Graph's URI (`https://management.core.windows.net/` and `…windows.net` are one resource).
fn normalise(resource: &str) -> String {
    let r = resource.trim_end_matches('/').to_ascii_lowercase();
    if r == GRAPH_APP_ID {
        GRAPH_RESOURCE.to_string()
    } else {
        r
    }
}

/// The resource a scope's token is for, normalised (`https://graph.microsoft.com` for a bare
/// name); `None` for the OIDC scopes.
pub fn resource(scope: &str) -> Option<String> {
    match split(scope) {
        (None, name) if is_oidc(name) => None,
        (None, _) => Some(GRAPH_RESOURCE.to_string()),
        (Some(resource), _) => Some(normalise(resource)),
    }
}

/// The form in which two scopes are compared: lower case, Microsoft Graph's resource left out
/// (`https://graph.microsoft.com/Files.Read.All` and `files.read.all` are the same permission;
/// `https://graph.microsoft.us/Files.Read.All` is another cloud's, so it keeps its resource).
pub fn canonical(scope: &str) -> String {
    match (resource(scope), split(scope).1) {
        (Some(r), permission) if r != GRAPH_RESOURCE => format!("{r}/{}", permission.to_ascii_lowercase()),
        (_, permission) => permission.to_ascii_lowercase(),
    }
}

/// The scope with its resource spelled out (`User.Read` → `https://graph.microsoft.com/User.Read`),
/// as `/adminconsent` wants it; OIDC scopes and scopes that name a resource stay as they are.
pub fn qualified(scope: &str) -> String {
    match split(scope) {
        (None, name) if !is_oidc(name) => format!("{GRAPH}{name}"),
        _ => scope.to_string(),
    }
}

/// The distinct resources `scopes` name, in the order they first appear (OIDC scopes name none).
pub fn resources(scopes: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in scopes.iter().filter_map(|s| resource(s)) {
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

/// The scopes of one token request: every OIDC scope of `scopes`, and the scopes of the first
/// resource they name, in their order. Entra issues a token for one resource per request.
pub fn for_token_request(scopes: &[String]) -> Vec<String> {
    let first = resources(scopes).into_iter().next();
    scopes
        .iter()
        .filter(|s| match resource(s) {
            None => true,
            Some(r) => Some(&r) == first.as_ref(),
        })
        .cloned()
        .collect()
}

/// What `check-config` says of a connector whose scopes name several resources; `None` when they
/// name at most one.
pub fn mixing_warning(connector: &str, scopes: &[String]) -> Option<String> {
    let resources = resources(scopes);
    let (first, others) = resources.split_first()?;
    if others.is_empty() {
        return None;
    }
    Some(format!(
        "connector {connector}: its scopes name {} resources ({}); sign-in asks for consent to all of them, but Entra issues a token for one resource per request, so the broker's tokens are for {first} only. Register a connector per resource to get tokens for the others",
        resources.len(),
        resources.join(", "),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(scopes: &[&str]) -> Vec<String> {
        scopes.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn resources_of_the_usual_scope_forms() {
        assert_eq!(resource("User.Read").as_deref(), Some("https://graph.microsoft.com"));
        assert_eq!(
            resource("https://graph.microsoft.com/Files.Read.All").as_deref(),
            Some("https://graph.microsoft.com")
        );
        assert_eq!(
            resource("00000003-0000-0000-c000-000000000000/User.Read").as_deref(),
            Some("https://graph.microsoft.com")
        );
        assert_eq!(
            resource("https://graph.microsoft.us/Files.Read").as_deref(),
            Some("https://graph.microsoft.us")
        );
        assert_eq!(
            resource("https://management.core.windows.net//user_impersonation").as_deref(),
            Some("https://management.core.windows.net")
        );
        assert_eq!(resource("api://1234/access_as_user").as_deref(), Some("api://1234"));
        assert_eq!(resource("offline_access"), None);
        assert_eq!(
            split("https://storage.azure.com"),
            (Some("https://storage.azure.com"), "")
        );
        assert_eq!(split("a/b/c"), (Some("a/b"), "c"));
    }

    #[test]
    fn canonical_forms_compare_graph_scopes_in_either_spelling() {
        assert_eq!(
            canonical("https://graph.microsoft.com/Files.Read.All"),
            "files.read.all"
        );
        assert_eq!(canonical("FILES.read.all"), "files.read.all");
        assert_eq!(
            canonical("https://Graph.Microsoft.US/Files.Read.All"),
            "https://graph.microsoft.us/files.read.all"
        );
        assert_eq!(
            canonical("https://storage.azure.com/user_impersonation"),
            "https://storage.azure.com/user_impersonation"
        );
        assert_eq!(qualified("Mail.Read"), "https://graph.microsoft.com/Mail.Read");
        assert_eq!(qualified("openid"), "openid");
        assert_eq!(qualified("api://x/read"), "api://x/read");
        assert_eq!(
            qualified("11111111-2222-3333-4444-555555555555/read"),
            "11111111-2222-3333-4444-555555555555/read"
        );
    }

    #[test]
    fn a_token_request_names_the_first_resource_only() {
        let scopes = v(&[
            "https://storage.azure.com/user_impersonation",
            "Files.Read.All",
            "openid",
            "api://x/read",
            "https://storage.azure.com/other",
            "offline_access",
        ]);
        assert_eq!(
            for_token_request(&scopes),
            v(&[
                "https://storage.azure.com/user_impersonation",
                "openid",
                "https://storage.azure.com/other",
                "offline_access"
            ])
        );
        let graph = v(&["Files.Read.All", "https://graph.microsoft.com/Sites.Read.All", "openid"]);
        assert_eq!(for_token_request(&graph), graph, "one resource in two spellings");
        assert_eq!(for_token_request(&v(&["openid", "profile"])), v(&["openid", "profile"]));
    }

    #[test]
    fn mixing_resources_is_a_warning() {
        assert_eq!(
            mixing_warning("c", &v(&["Files.Read.All", "https://graph.microsoft.com/User.Read"])),
            None
        );
        assert_eq!(mixing_warning("c", &[]), None);
        let w = mixing_warning(
            "c",
            &v(&["Files.Read.All", "https://storage.azure.com/user_impersonation"]),
        )
        .expect("two resources");
        assert!(
            w.starts_with(
                "connector c: its scopes name 2 resources (https://graph.microsoft.com, https://storage.azure.com)"
            ),
            "{w}"
        );
        assert!(w.contains("for https://graph.microsoft.com only"), "{w}");
    }
}
