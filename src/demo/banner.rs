//! What the demo prints once it is up (and again on Enter): where things are, who entra-sim signs
//! in, the two connect links with their session ids, and copy-paste `curl` lines.

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// A connect session the demo made, from the broker's answer.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Session {
    /// `cs_…`, for polling.
    pub session_id: String,
    /// The link to open.
    pub connect_url: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// The parts of the simulator's config the banner describes; read from the config the demo
/// writes, so the banner names exactly who entra-sim signs in.
#[derive(Debug, Deserialize)]
struct SimConfig {
    tenants: Vec<SimTenant>,
}

#[derive(Debug, Deserialize)]
struct SimTenant {
    display_name: String,
    user_consent: String,
    default_user: Option<String>,
    users: Vec<SimUser>,
}

#[derive(Debug, Deserialize)]
struct SimUser {
    upn: String,
    name: String,
    admin: bool,
}

/// Everything the banner shows.
pub(super) struct Banner<'a> {
    /// The data directory.
    pub data_dir: &'a Path,
    /// Whether it is removed when the demo stops.
    pub temporary: bool,
    /// The broker's base URL.
    pub broker_url: &'a str,
    /// The simulator's base URL.
    pub sim_url: &'a str,
    /// The demo connector's API key.
    pub api_key: &'a str,
    /// The simulator's config as written.
    pub sim_config: &'a serde_json::Value,
    /// How long a connect session lives.
    pub session_ttl: Duration,
    /// The session in the tenant where users may consent.
    pub works: &'a Session,
    /// The session in the tenant that needs admin approval.
    pub needs_approval: &'a Session,
    /// The tenant id to start more sessions in.
    pub tenant: &'a str,
    /// The connector's id.
    pub connector: &'a str,
}

/// "1 hour", "10 minutes", "90 seconds".
fn span(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = if s.is_multiple_of(3_600) {
        (s / 3_600, "hour")
    } else if s.is_multiple_of(60) {
        (s / 60, "minute")
    } else {
        (s, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn consent_rule(setting: &str) -> String {
    match setting {
        "allowed" => "users may consent".into(),
        "disabled" => "only an administrator may consent".into(),
        other => format!("user consent: {other}"),
    }
}

/// One line per tenant: who signs in on a connect link, and the administrator who signs in on
/// the approval page's administrator link (entra-sim's admin consent takes the tenant's first
/// admin when the request names nobody, and the broker's admin link names nobody).
fn users(config: &serde_json::Value) -> String {
    let Ok(config) = SimConfig::deserialize(config) else {
        return "  (the simulator's config could not be read)\n".into();
    };
    let mut out = String::new();
    for tenant in &config.tenants {
        let user = |upn: &str| tenant.users.iter().find(|u| u.upn.eq_ignore_ascii_case(upn));
        let _ = write!(
            out,
            "  {} ({}): ",
            tenant.display_name,
            consent_rule(&tenant.user_consent)
        );
        match tenant.default_user.as_deref().and_then(user) {
            Some(u) => {
                let _ = write!(out, "{} <{}> is signed in", u.name, u.upn);
            }
            None => out.push_str("nobody is signed in without a login_hint"),
        }
        if let Some(admin) = tenant.users.iter().find(|u| u.admin) {
            let _ = write!(
                out,
                ";\n    administrator {} <{}> is signed in on the approval page's administrator link",
                admin.name, admin.upn
            );
        }
        out.push_str(".\n");
    }
    out
}

impl Banner<'_> {
    /// The banner's text, ending with how to see it again.
    pub(super) fn render(&self) -> String {
        let Self {
            broker_url: broker,
            api_key: key,
            works,
            needs_approval: approval,
            ..
        } = self;
        let auth = format!("-H 'Authorization: Bearer {key}'");
        let json = "-H 'Content-Type: application/json'";
        let data = if self.temporary {
            "removed when the demo stops"
        } else {
            "kept when the demo stops"
        };
        format!(
            r#"
consent-broker demo is running.
  broker:     {broker}
  entra-sim:  {sim}   (stands in for login.microsoftonline.com)
  data:       {dir}   ({data})
  API key of connector "{connector}": {key}

entra-sim shows no sign-in form; it signs these accounts in by itself:
{users}
A connect link works until its session completes or expires ({ttl} after it was created);
after that it shows an error page, and step 5 makes a new one.

1. A sign-in that works. Session {works_id} (expires {works_exp}). Open:
   {works_url}
   It ends on a "copy this code" page. Put the code in place of PASTE-THE-CODE-HERE and run
   this line; it answers with the connection id:
   curl -s -X POST {broker}/v1/handoff/redeem {auth} {json} -d '{{"code":"PASTE-THE-CODE-HERE"}}'

2. A tenant that needs admin approval. Session {approval_id} (expires {approval_exp}). Open:
   {approval_url}
   It ends on the approval page; its administrator part approves for the organization.

3. Follow a session (its status, and its connection_id once completed):
   curl -s {broker}/v1/connect-sessions/{works_id} {auth}

4. Fetch a fresh access token for the connection from step 1:
   curl -s {broker}/v1/connections/<connection_id>/token {auth}

5. Start another sign-in (answers with a new session id and connect link):
   curl -s -X POST {broker}/v1/connect-sessions {auth} {json} -d '{{"connector":"{connector}","end_user":"me","tenant":"{tenant}"}}'

Ctrl-C stops the demo. Press Enter to print this again.
"#,
            sim = self.sim_url,
            dir = self.data_dir.display(),
            connector = self.connector,
            users = users(self.sim_config),
            ttl = span(self.session_ttl),
            works_id = works.session_id,
            works_exp = works.expires_at,
            works_url = works.connect_url,
            approval_id = approval.session_id,
            approval_exp = approval.expires_at,
            approval_url = approval.connect_url,
            tenant = self.tenant,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> Session {
        Session {
            session_id: id.into(),
            connect_url: format!("http://b/v1/connect/{id}-token"),
            expires_at: "2026-12-01T20:00:00Z".into(),
        }
    }

    #[test]
    fn names_the_simulators_users_and_the_sessions() {
        let config = serde_json::json!({"tenants": [
            {"display_name": "Contoso", "user_consent": "allowed", "default_user": "ALICE@c.example",
             "users": [{"upn": "alice@c.example", "name": "Alice", "admin": false}]},
            {"display_name": "Fabrikam", "user_consent": "disabled", "default_user": "frank@f.example",
             "users": [{"upn": "frank@f.example", "name": "Frank", "admin": false},
                       {"upn": "fiona@f.example", "name": "Fiona", "admin": true}]},
            {"display_name": "Empty", "user_consent": "admins_only", "users": []}
        ]});
        let (works, approval) = (session("cs_one"), session("cs_two"));
        let text = Banner {
            data_dir: Path::new("/tmp/d"),
            temporary: true,
            broker_url: "http://b",
            sim_url: "http://s",
            api_key: "cbk_k",
            sim_config: &config,
            session_ttl: Duration::from_secs(600),
            works: &works,
            needs_approval: &approval,
            tenant: "t",
            connector: "c",
        }
        .render();
        assert!(
            text.contains("Contoso (users may consent): Alice <alice@c.example> is signed in."),
            "{text}"
        );
        assert!(
            text.contains("Fabrikam (only an administrator may consent): Frank <frank@f.example>"),
            "{text}"
        );
        assert!(text.contains("administrator Fiona <fiona@f.example>"), "{text}");
        assert!(text.contains("Empty (user consent: admins_only): nobody"), "{text}");
        assert!(text.contains("(10 minutes after it was created)"), "{text}");
        assert!(text.contains("curl -s http://b/v1/connect-sessions/cs_one -H 'Authorization: Bearer cbk_k'"));
        assert!(text.contains("Session cs_two (expires 2026-12-01T20:00:00Z)"), "{text}");
        assert!(text.contains("removed when the demo stops"), "{text}");
        assert_eq!(text.matches("/v1/handoff/redeem").count(), 1, "{text}");
        assert!(text.trim_end().ends_with("Press Enter to print this again."), "{text}");
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(Duration::from_secs(3_600)), "1 hour");
        assert_eq!(span(Duration::from_secs(7_200)), "2 hours");
        assert_eq!(span(Duration::from_secs(60)), "1 minute");
        assert_eq!(span(Duration::from_secs(90)), "90 seconds");
    }
}
