//! The simulated world: tenants, their users and policies, app registrations, and the timing knobs.
//!
//! The same shape is read from a TOML/JSON file at start-up and exchanged as JSON on the control API
//! (`GET`/`PUT /_sim/config`), so every field has a serde default and unknown fields are rejected:
//! a typo in a test fixture should fail loudly rather than silently simulate the wrong tenant.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::assertion::RegisteredCertificate;

/// Upper bound for every configured lifetime: 100 years.
pub const MAX_LIFETIME_SECS: u64 = 100 * 365 * 86_400;

/// Top-level simulator configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// `expires_in` / `ext_expires_in` of issued access tokens.
    pub access_token_lifetime_secs: u64,
    /// Authorization codes older than this fail with AADSTS70008.
    pub code_lifetime_secs: u64,
    /// A refresh token unused for this long fails with AADSTS700082 (Entra: 90 days).
    pub refresh_token_max_inactive_secs: u64,
    /// Entra keeps rotated refresh tokens valid; we model that as a grace period after first use.
    pub refresh_token_rotation_grace_secs: u64,
    /// Token requests per client_id per minute before answering 429; 0 disables throttling.
    pub throttle_token_requests_per_minute: u32,
    /// Delegated permissions that only an admin can grant, in every tenant.
    pub admin_only_permissions: Vec<String>,
    /// The tenants (directories) known to the simulator.
    pub tenants: Vec<TenantConfig>,
    /// Multi-tenant app registrations, usable from every tenant.
    pub apps: Vec<AppConfig>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            access_token_lifetime_secs: 3599,
            code_lifetime_secs: 600,
            refresh_token_max_inactive_secs: 90 * 24 * 3600,
            refresh_token_rotation_grace_secs: 24 * 3600,
            throttle_token_requests_per_minute: 0,
            admin_only_permissions: default_admin_only_permissions(),
            tenants: Vec::new(),
            apps: Vec::new(),
        }
    }
}

/// Microsoft Graph delegated permissions whose "Admin consent required" column says Yes.
fn default_admin_only_permissions() -> Vec<String> {
    [
        "User.Read.All",
        "User.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "Directory.AccessAsUser.All",
        "Group.Read.All",
        "Group.ReadWrite.All",
        "GroupMember.Read.All",
        "GroupMember.ReadWrite.All",
        "Sites.FullControl.All",
        "Application.Read.All",
        "Application.ReadWrite.All",
        "AuditLog.Read.All",
        "Organization.Read.All",
        "Policy.Read.All",
        "Policy.ReadWrite.ConditionalAccess",
        "Reports.Read.All",
        "RoleManagement.Read.Directory",
        "RoleManagement.ReadWrite.Directory",
        "SecurityEvents.Read.All",
        "IdentityRiskyUser.Read.All",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// The tenant's user-consent setting (Enterprise apps → Consent and permissions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserConsentPolicy {
    /// "Allow user consent for apps": any permission that does not need an admin.
    #[default]
    Allowed,
    /// "Allow user consent for apps from verified publishers, for selected permissions".
    LowImpactVerified,
    /// "Do not allow user consent".
    Disabled,
}

/// One Entra tenant (directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Tenant id (GUID); normalised to lower case on load.
    pub id: String,
    /// Verified domains usable in place of the GUID in URLs.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Shown in error texts ("… in the directory 'Contoso'").
    #[serde(default)]
    pub display_name: String,
    /// Who may consent to what.
    #[serde(default)]
    pub user_consent: UserConsentPolicy,
    /// Decides "Need admin approval" (90094, off) vs "Approval required" (90095, on).
    #[serde(default)]
    pub admin_consent_workflow: bool,
    /// Permissions the admin classified as low impact.
    #[serde(default = "default_low_impact")]
    pub low_impact_permissions: Vec<String>,
    /// Client ids whose enterprise app requires user assignment in this tenant.
    #[serde(default)]
    pub assignment_required: Vec<String>,
    /// A Conditional Access policy blocks token issuance (AADSTS53003).
    #[serde(default)]
    pub conditional_access_block: bool,
    /// MFA is required for every sign-in.
    #[serde(default)]
    pub mfa_required: bool,
    /// The user signed in when `/authorize` carries no `login_hint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_user: Option<String>,
    /// Tenant-wide admin consent already given: client_id → scopes.
    #[serde(default)]
    pub admin_grants: BTreeMap<String, Vec<String>>,
    /// Member accounts.
    #[serde(default)]
    pub users: Vec<UserConfig>,
}

fn default_low_impact() -> Vec<String> {
    vec!["User.Read".into(), "offline_access".into()]
}

/// One member account of a tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Sign-in name; matched case-insensitively against `login_hint`.
    pub upn: String,
    /// Object id (GUID); normalised to lower case on load.
    pub oid: String,
    /// Display name (`name` claim).
    #[serde(default)]
    pub name: String,
    /// Can grant tenant-wide admin consent.
    #[serde(default)]
    pub admin: bool,
    /// Account disabled (AADSTS50057).
    #[serde(default)]
    pub disabled: bool,
    /// Client ids this user is assigned to (matters when the app requires assignment).
    #[serde(default)]
    pub assigned_apps: Vec<String>,
    /// On any consent prompt this user presses Cancel.
    #[serde(default)]
    pub declines_consent: bool,
}

/// A (multi-tenant) app registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Application (client) id (GUID); normalised to lower case on load.
    pub client_id: String,
    /// Shown in consent and error texts.
    #[serde(default)]
    pub display_name: String,
    /// Web redirect URIs; `/authorize` requires an exact match.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Publisher verification (matters for `low_impact_verified` user consent).
    #[serde(default)]
    pub verified_publisher: bool,
    /// Client secrets.
    #[serde(default)]
    pub secrets: Vec<AppSecret>,
    /// Certificates uploaded as credentials (Certificates & secrets → Certificates). Client
    /// assertions are checked against the one their thumbprint names.
    #[serde(default)]
    pub certificates: Vec<AppCertificate>,
}

/// A certificate credential: the public certificate, as uploaded to the portal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppCertificate {
    /// The certificate in PEM. Entra takes its validity from the certificate itself, so
    /// expiry is tested with a certificate that expires (or with `POST /_sim/clock`).
    pub pem: String,
}

/// A client secret; `expires_at` is an RFC 3339 string.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSecret {
    /// The secret value clients send.
    pub value: String,
    /// After this instant the secret fails with AADSTS7000222.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<OffsetDateTime>,
}

impl SimConfig {
    /// Reads a config file; the format follows the extension (`.toml` or `.json`).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
        let config: SimConfig = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => toml::from_str(&text).with_context(|| format!("parsing TOML config {}", path.display()))?,
            Some("json") => {
                serde_json::from_str(&text).with_context(|| format!("parsing JSON config {}", path.display()))?
            }
            _ => bail!("config file {} must end in .toml or .json", path.display()),
        };
        config.validated()
    }

    /// Checks cross-references and normalises every GUID to lower-case hyphenated form, so lookups can
    /// compare strings directly.
    pub fn validated(mut self) -> anyhow::Result<Self> {
        // Bounded so that "issued at + lifetime" always stays within the representable time range.
        for (name, value) in [
            ("access_token_lifetime_secs", self.access_token_lifetime_secs),
            ("code_lifetime_secs", self.code_lifetime_secs),
            ("refresh_token_max_inactive_secs", self.refresh_token_max_inactive_secs),
            (
                "refresh_token_rotation_grace_secs",
                self.refresh_token_rotation_grace_secs,
            ),
        ] {
            if value > MAX_LIFETIME_SECS {
                bail!("{name} must be at most {MAX_LIFETIME_SECS} (100 years)");
            }
        }
        let mut client_ids = HashSet::new();
        for app in &mut self.apps {
            app.client_id = normalise_guid(&app.client_id, "apps[].client_id")?;
            if !client_ids.insert(app.client_id.clone()) {
                bail!("duplicate app client_id {}", app.client_id);
            }
            for (i, cert) in app.certificates.iter().enumerate() {
                RegisteredCertificate::parse(&cert.pem)
                    .with_context(|| format!("app {}: certificates[{i}]", app.client_id))?;
            }
        }
        let mut tenant_ids = HashSet::new();
        let mut domains = HashSet::new();
        for tenant in &mut self.tenants {
            tenant.id = normalise_guid(&tenant.id, "tenants[].id")?;
            if !tenant_ids.insert(tenant.id.clone()) {
                bail!("duplicate tenant id {}", tenant.id);
            }
            for domain in &mut tenant.domains {
                *domain = domain.to_ascii_lowercase();
                if !domains.insert(domain.clone()) {
                    bail!("domain {domain} is claimed by two tenants");
                }
            }
            for client in &mut tenant.assignment_required {
                *client = normalise_guid(client, "tenants[].assignment_required[]")?;
            }
            tenant.admin_grants = std::mem::take(&mut tenant.admin_grants)
                .into_iter()
                .map(|(client, scopes)| Ok((normalise_guid(&client, "tenants[].admin_grants key")?, scopes)))
                .collect::<anyhow::Result<_>>()?;
            let mut upns = HashSet::new();
            for user in &mut tenant.users {
                user.oid = normalise_guid(&user.oid, "tenants[].users[].oid")?;
                if !upns.insert(user.upn.to_ascii_lowercase()) {
                    bail!("duplicate upn {} in tenant {}", user.upn, tenant.id);
                }
                for client in &mut user.assigned_apps {
                    *client = normalise_guid(client, "tenants[].users[].assigned_apps[]")?;
                }
            }
            if let Some(default_user) = &tenant.default_user
                && !upns.contains(&default_user.to_ascii_lowercase())
            {
                bail!(
                    "tenant {}: default_user {default_user} is not one of its users",
                    tenant.id
                );
            }
        }
        Ok(self)
    }

    /// Finds a tenant by GUID or verified domain (case-insensitive).
    pub fn tenant(&self, id_or_domain: &str) -> Option<&TenantConfig> {
        let wanted = id_or_domain.to_ascii_lowercase();
        self.tenants
            .iter()
            .find(|t| t.id == wanted || t.domains.contains(&wanted))
    }

    /// Finds a tenant by GUID or verified domain, mutably.
    pub fn tenant_mut(&mut self, id_or_domain: &str) -> Option<&mut TenantConfig> {
        let wanted = id_or_domain.to_ascii_lowercase();
        self.tenants
            .iter_mut()
            .find(|t| t.id == wanted || t.domains.contains(&wanted))
    }

    /// Finds an app registration by client id (case-insensitive GUID).
    pub fn app(&self, client_id: &str) -> Option<&AppConfig> {
        let wanted = client_id.to_ascii_lowercase();
        self.apps.iter().find(|a| a.client_id == wanted)
    }
}

impl TenantConfig {
    /// Finds a member by UPN, case-insensitively.
    pub fn user(&self, upn: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.upn.eq_ignore_ascii_case(upn))
    }

    /// Finds a member by object id.
    pub fn user_by_oid(&self, oid: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.oid == oid)
    }

    /// The name used in "directory '…'" error texts.
    pub fn directory_name(&self) -> &str {
        if self.display_name.is_empty() {
            &self.id
        } else {
            &self.display_name
        }
    }

    /// Applies a partial update (`PATCH /_sim/tenants/{id}`): top-level fields present in `patch`
    /// replace the current ones. Going through JSON keeps this in step with the struct automatically.
    pub fn patched(&self, patch: &serde_json::Value) -> Result<TenantConfig, String> {
        let serde_json::Value::Object(changes) = patch else {
            return Err("the patch must be a JSON object".into());
        };
        let mut current = serde_json::to_value(self).map_err(|e| e.to_string())?;
        if let serde_json::Value::Object(fields) = &mut current {
            for (key, value) in changes {
                fields.insert(key.clone(), value.clone());
            }
        }
        serde_json::from_value(current).map_err(|e| e.to_string())
    }
}

impl AppConfig {
    /// The name used in error texts.
    pub fn name(&self) -> &str {
        if self.display_name.is_empty() {
            &self.client_id
        } else {
            &self.display_name
        }
    }
}

fn normalise_guid(raw: &str, field: &str) -> anyhow::Result<String> {
    Uuid::parse_str(raw)
        .map(|id| id.hyphenated().to_string())
        .with_context(|| format!("{field}: '{raw}' is not a GUID"))
}
