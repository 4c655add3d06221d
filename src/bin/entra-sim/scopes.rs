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
    fn missing_is_case_insensitive() {
        let granted = vec!["files.read.all".to_string()];
        let requested = vec!["Files.Read.All".to_string(), "Mail.Read".to_string()];
        assert_eq!(missing(&requested, &[&granted]), vec!["Mail.Read"]);
        assert_eq!(qualified_form("Mail.Read"), "https://graph.microsoft.com/Mail.Read");
        assert_eq!(qualified_form("api://x/read"), "api://x/read");
    }
}
