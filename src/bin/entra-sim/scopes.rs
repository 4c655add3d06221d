//! Scope strings: splitting OIDC scopes from resource permissions and comparing permissions the way
//! Entra does (case-insensitively, with unprefixed names meaning Microsoft Graph).
//!
//! Internally resource scopes are kept in "short" form: the `https://graph.microsoft.com/` prefix is
//! removed, other resources keep their full URI. The token response reports scopes in short form (as
//! Entra does for Graph: `"scope": "User.Read openid profile"`); `/adminconsent` reports them fully
//! qualified, as in Microsoft's documented example (`scope=https://graph.microsoft.com/Mail.Send …`).

/// Microsoft Graph's resource URI prefix; scopes without a resource default to it.
const GRAPH_PREFIX: &str = "https://graph.microsoft.com/";

/// Microsoft Graph's application id, the resource named in MFA error texts.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// A parsed `scope` parameter: OIDC flags plus resource permissions in short form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    /// Resource permissions (short form, de-duplicated case-insensitively, request order).
    pub resource: Vec<String>,
    /// `openid` requested: an ID token is issued.
    pub openid: bool,
    /// `profile` requested: `name`, `oid`, `preferred_username` claims.
    pub profile: bool,
    /// `email` requested: `email` claim.
    pub email: bool,
    /// `offline_access` requested: a refresh token is issued.
    pub offline_access: bool,
}

impl Scopes {
    /// Splits a space-separated `scope` value.
    pub fn parse(raw: &str) -> Self {
        let mut scopes = Scopes::default();
        for item in raw.split_whitespace() {
            match item.to_ascii_lowercase().as_str() {
                "openid" => scopes.openid = true,
                "profile" => scopes.profile = true,
                "email" => scopes.email = true,
                "offline_access" => scopes.offline_access = true,
                _ => {
                    let short = short_form(item);
                    if !contains(&scopes.resource, &short) {
                        scopes.resource.push(short);
                    }
                }
            }
        }
        scopes
    }

    /// The same OIDC scopes with other resource permissions.
    pub fn with_resources(mut self, resource: Vec<String>) -> Self {
        self.resource = resource;
        self
    }

    /// The distinct resources of the permissions, in order (Graph's as its URI).
    pub fn resources(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.resource.iter().map(|s| resource_of(s)) {
            if !out.contains(&r) {
                out.push(r);
            }
        }
        out
    }

    /// The same scopes with only the permissions of the first resource: what a token request
    /// that names no scope gets, since a token is for one resource.
    pub fn of_first_resource(mut self) -> Self {
        if let Some(first) = self.resources().into_iter().next() {
            self.resource.retain(|s| resource_of(s) == first);
        }
        self
    }

    /// The token response's `scope` value: resource permissions (short form), then OIDC scopes.
    pub fn response_string(&self) -> String {
        let oidc = [
            (self.openid, "openid"),
            (self.profile, "profile"),
            (self.email, "email"),
            (self.offline_access, "offline_access"),
        ];
        self.resource
            .iter()
            .map(String::as_str)
            .chain(oidc.iter().filter(|(on, _)| *on).map(|(_, name)| *name))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Removes the Graph prefix (case-insensitively); other resources keep their URI.
pub fn short_form(scope: &str) -> String {
    match scope.get(..GRAPH_PREFIX.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(GRAPH_PREFIX) => scope[GRAPH_PREFIX.len()..].to_string(),
        _ => scope.to_string(),
    }
}

/// The resource a permission (short form) belongs to: what precedes its last `/`, lower case and
/// without trailing slashes; Graph's URI (also for its application id) when it names none.
pub fn resource_of(scope: &str) -> String {
    let short = short_form(scope);
    let graph = GRAPH_PREFIX.trim_end_matches('/');
    match short.rsplit_once('/') {
        Some((resource, _)) => {
            let r = resource.trim_end_matches('/').to_ascii_lowercase();
            if r == GRAPH_APP_ID || r == graph {
                graph.to_string()
            } else {
                r
            }
        }
        None => graph.to_string(),
    }
}

/// Adds the Graph prefix to scopes that name no resource.
pub fn qualified_form(scope: &str) -> String {
    let short = short_form(scope);
    if short.contains("://") || short.contains('/') {
        short
    } else {
        format!("{GRAPH_PREFIX}{short}")
    }
}

/// Case-insensitive membership on short forms.
pub fn contains(set: &[String], scope: &str) -> bool {
    let wanted = short_form(scope);
    set.iter().any(|s| short_form(s).eq_ignore_ascii_case(&wanted))
}

/// The members of `requested` not covered by any of the `granted` sets.
pub fn missing(requested: &[String], granted: &[&[String]]) -> Vec<String> {
    requested
        .iter()
        .filter(|scope| !granted.iter().any(|set| contains(set, scope)))
        .cloned()
        .collect()
}

/// Adds `scopes` to `set`, skipping ones already present.
pub fn merge_into(set: &mut Vec<String>, scopes: &[String]) {
    for scope in scopes {
        if !contains(set, scope) {
            set.push(short_form(scope));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_splits_oidc_and_normalises_graph() {
        let s = Scopes::parse(
            "openid https://graph.microsoft.com/Files.Read.All offline_access files.read.all Sites.Read.All",
        );
        assert!(s.openid && s.offline_access && !s.profile);
        assert_eq!(s.resource, vec!["Files.Read.All", "Sites.Read.All"]);
        assert_eq!(
            s.response_string(),
            "Files.Read.All Sites.Read.All openid offline_access"
        );
    }

    #[test]
    fn resources_group_permissions_one_token_each() {
        let s = Scopes::parse(
            "https://storage.azure.com/user_impersonation openid Files.Read.All api://x/read https://STORAGE.azure.com/other",
        );
        assert_eq!(
            s.resources(),
            vec!["https://storage.azure.com", "https://graph.microsoft.com", "api://x"]
        );
        let first = s.clone().of_first_resource();
        assert_eq!(
            first.resource,
            vec![
                "https://storage.azure.com/user_impersonation",
                "https://STORAGE.azure.com/other"
            ]
        );
        assert!(first.openid);
        assert_eq!(
            resource_of("00000003-0000-0000-c000-000000000000/User.Read"),
            "https://graph.microsoft.com"
        );
        assert_eq!(
            Scopes::parse("User.Read https://graph.microsoft.com/Mail.Read")
                .resources()
                .len(),
            1
        );
    }

    #[test]
    fn missing_is_case_insensitive() {
        let granted = vec!["files.read.all".to_string()];
        let requested = vec!["Files.Read.All".to_string(), "Mail.Read".to_string()];
        assert_eq!(missing(&requested, &[&granted]), vec!["Mail.Read"]);
        assert_eq!(qualified_form("Mail.Read"), "https://graph.microsoft.com/Mail.Read");
        assert_eq!(qualified_form("api://x/read"), "api://x/read");
    }
}
