//! Outcomes derived from the world's state: who is signing in, whether the tenant lets them reach the
//! app, and whether consent is in place or who could give it. Handlers turn these into wire errors;
//! nothing here switches on an AADSTS number.

use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::config::{AppConfig, SimConfig, TenantConfig, UserConfig, UserConsentPolicy};
use crate::errors::{AadError, Surface};
use crate::scopes;

/// The `{tenant}` path segment after lookup.
#[derive(Debug, Clone, Copy)]
pub enum TenantScope<'c> {
    /// A tenant GUID or verified domain.
    Specific(&'c TenantConfig),
    /// `organizations` or `common`: the user's home tenant decides.
    Multi,
}

/// Looks up a path segment; `None` means AADSTS90002. `consumers` (MSA) is not modelled.
pub fn tenant_scope<'c>(config: &'c SimConfig, segment: &str) -> Option<TenantScope<'c>> {
    if segment.eq_ignore_ascii_case("common") || segment.eq_ignore_ascii_case("organizations") {
        return Some(TenantScope::Multi);
    }
    config.tenant(segment).map(TenantScope::Specific)
}

/// Who is signed in when the request has no `login_hint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoHint {
    /// The tenant's `default_user` (`/authorize`).
    DefaultUser,
    /// The tenant's first admin (`/adminconsent`).
    FirstAdmin,
}

/// Why nobody could be signed in.
#[derive(Debug, Clone)]
pub enum UserMiss {
    /// The hinted account is not in the target tenant.
    NotFound {
        /// The `login_hint`.
        hint: String,
        /// Target directory name for the error text.
        directory: String,
        /// The account exists in some other tenant (guest access is not modelled).
        elsewhere: bool,
    },
    /// No hint and no fallback account for a specific tenant.
    NobodyInTenant,
    /// No hint with `common`/`organizations`: nothing identifies a tenant.
    NoTenantInformation,
}

/// Picks the signed-in user: the `login_hint` account, or the fallback for a specific tenant.
pub fn resolve_user<'c>(
    config: &'c SimConfig,
    scope: TenantScope<'c>,
    login_hint: Option<&str>,
    no_hint: NoHint,
) -> Result<(&'c TenantConfig, &'c UserConfig), UserMiss> {
    match (scope, login_hint) {
        (TenantScope::Specific(tenant), Some(hint)) => match tenant.user(hint) {
            Some(user) => Ok((tenant, user)),
            None => Err(UserMiss::NotFound {
                hint: hint.to_string(),
                directory: tenant.directory_name().to_string(),
                elsewhere: config.tenants.iter().any(|t| t.user(hint).is_some()),
            }),
        },
        (TenantScope::Specific(tenant), None) => {
            let fallback = match no_hint {
                NoHint::DefaultUser => tenant.default_user.as_deref().and_then(|upn| tenant.user(upn)),
                NoHint::FirstAdmin => tenant.users.iter().find(|u| u.admin),
            };
            fallback.map(|user| (tenant, user)).ok_or(UserMiss::NobodyInTenant)
        }
        (TenantScope::Multi, Some(hint)) => config
            .tenants
            .iter()
            .find_map(|t| t.user(hint).map(|u| (t, u)))
            .ok_or_else(|| UserMiss::NotFound {
                hint: hint.to_string(),
                directory: "organizations".to_string(),
                elsewhere: false,
            }),
        (TenantScope::Multi, None) => Err(UserMiss::NoTenantInformation),
    }
}

impl UserMiss {
    /// The error for Entra's own page (interactive requests).
    pub fn page_error(&self, app: &AppConfig) -> AadError {
        match self {
            UserMiss::NotFound {
                hint,
                directory,
                elsewhere: true,
            } => AadError::user_from_other_tenant(hint, directory, app.name(), &app.client_id),
            UserMiss::NotFound { hint, directory, .. } => AadError::user_not_found(hint, directory),
            UserMiss::NobodyInTenant => AadError::nobody_to_sign_in(),
            UserMiss::NoTenantInformation => AadError::no_tenant_information(),
        }
    }
}

/// A reason the tenant stops this user from getting tokens for this app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The account is disabled.
    UserDisabled,
    /// The app requires assignment and the user is not assigned.
    NotAssigned,
    /// A Conditional Access policy blocks issuance.
    ConditionalAccess,
    /// MFA is required and was not performed.
    MfaRequired,
}

/// Evaluates the tenant's sign-in policies, in the order Entra applies them: account state, app
/// assignment, Conditional Access, then the MFA requirement. `mfa_satisfied` says whether the
/// sign-in (or the grant being refreshed) included MFA, or the user can still do it interactively.
pub fn sign_in_denial(
    tenant: &TenantConfig,
    user: &UserConfig,
    client_id: &str,
    mfa_satisfied: bool,
) -> Option<Denial> {
    if user.disabled {
        Some(Denial::UserDisabled)
    } else if requires_assignment(tenant, client_id) && !user.assigned_apps.iter().any(|a| a == client_id) {
        Some(Denial::NotAssigned)
    } else if tenant.conditional_access_block {
        Some(Denial::ConditionalAccess)
    } else if tenant.mfa_required && !mfa_satisfied {
        Some(Denial::MfaRequired)
    } else {
        None
    }
}

fn requires_assignment(tenant: &TenantConfig, client_id: &str) -> bool {
    tenant.assignment_required.iter().any(|c| c == client_id)
}

impl Denial {
    /// The Entra error for this denial on `surface`.
    pub fn error(self, surface: Surface, tenant: &TenantConfig, user: &UserConfig, app: &AppConfig) -> AadError {
        match self {
            Denial::UserDisabled => AadError::user_disabled(surface),
            Denial::NotAssigned => AadError::not_assigned(surface, &user.upn, app.name(), &app.client_id),
            Denial::ConditionalAccess => AadError::conditional_access_blocked(surface),
            Denial::MfaRequired => AadError::mfa_required(surface, ca_policy_id(&tenant.id)),
        }
    }
}

/// A stable id for the tenant's (simulated) MFA Conditional Access policy, used in claims challenges.
fn ca_policy_id(tenant_id: &str) -> Uuid {
    let digest = Sha256::digest(format!("mfa-policy:{tenant_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// What happens at `/authorize` about consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentOutcome {
    /// Everything requested is already granted.
    Covered,
    /// The user is shown a consent prompt for these permissions and may accept it.
    UserMayConsent(Vec<String>),
    /// The user ends on "Need admin approval" / "Approval required".
    NeedsAdmin,
}

/// Decides the consent step for `missing` permissions (requested minus existing grants).
///
/// Admins may always consent (for themselves only, at `/authorize`). Others may when the tenant's
/// user-consent setting allows every missing permission: `allowed` → none is admin-only;
/// `low_impact_verified` → additionally the app is publisher-verified and every permission is
/// classified low impact; `disabled` → never. Apps requiring assignment always need an admin.
pub fn consent_outcome(
    config: &SimConfig,
    tenant: &TenantConfig,
    user: &UserConfig,
    app: &AppConfig,
    missing: Vec<String>,
) -> ConsentOutcome {
    if missing.is_empty() {
        return ConsentOutcome::Covered;
    }
    if user.admin || user_may_self_consent(config, tenant, app, &missing) {
        ConsentOutcome::UserMayConsent(missing)
    } else {
        ConsentOutcome::NeedsAdmin
    }
}

fn user_may_self_consent(config: &SimConfig, tenant: &TenantConfig, app: &AppConfig, missing: &[String]) -> bool {
    if requires_assignment(tenant, &app.client_id) {
        return false;
    }
    let none_admin_only = missing
        .iter()
        .all(|s| !scopes::contains(&config.admin_only_permissions, s));
    match tenant.user_consent {
        UserConsentPolicy::Allowed => none_admin_only,
        UserConsentPolicy::LowImpactVerified => {
            none_admin_only
                && app.verified_publisher
                && missing
                    .iter()
                    .all(|s| scopes::contains(&tenant.low_impact_permissions, s))
        }
        UserConsentPolicy::Disabled => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> (SimConfig, TenantConfig, UserConfig, AppConfig) {
        let config = SimConfig::default();
        let tenant: TenantConfig = serde_json::from_value(serde_json::json!({
            "id": "3f2c5d1e-8a4b-4c7d-9e0f-1a2b3c4d5e6f",
            "low_impact_permissions": ["User.Read"],
        }))
        .unwrap();
        let user: UserConfig =
            serde_json::from_value(serde_json::json!({"upn": "a@x", "oid": "0a1b2c3d-1111-4a1b-8c1d-000000000001"}))
                .unwrap();
        let app: AppConfig = serde_json::from_value(
            serde_json::json!({"client_id": "a1b2c3d4-0001-4e5f-8a9b-0c1d2e3f4a5b", "verified_publisher": true}),
        )
        .unwrap();
        (config, tenant, user, app)
    }

    fn outcome(world: &(SimConfig, TenantConfig, UserConfig, AppConfig), scope: &str) -> ConsentOutcome {
        let (config, tenant, user, app) = world;
        consent_outcome(config, tenant, user, app, vec![scope.to_string()])
    }

    fn may_consent(outcome: ConsentOutcome) -> bool {
        matches!(outcome, ConsentOutcome::UserMayConsent(_))
    }

    #[test]
    fn user_consent_follows_the_tenant_setting() {
        let mut w = world();
        assert!(may_consent(outcome(&w, "Files.Read.All")));
        assert_eq!(outcome(&w, "Directory.Read.All"), ConsentOutcome::NeedsAdmin);

        w.1.user_consent = UserConsentPolicy::LowImpactVerified;
        assert!(may_consent(outcome(&w, "User.Read")));
        assert_eq!(outcome(&w, "Files.Read.All"), ConsentOutcome::NeedsAdmin);
        w.3.verified_publisher = false;
        assert_eq!(outcome(&w, "User.Read"), ConsentOutcome::NeedsAdmin);

        w.1.user_consent = UserConsentPolicy::Disabled;
        assert_eq!(outcome(&w, "User.Read"), ConsentOutcome::NeedsAdmin);
        assert_eq!(
            consent_outcome(&w.0, &w.1, &w.2, &w.3, Vec::new()),
            ConsentOutcome::Covered
        );
    }

    #[test]
    fn admins_may_consent_and_assignment_forces_admin_consent() {
        let mut w = world();
        let client_id = w.3.client_id.clone();
        w.1.assignment_required.push(client_id.clone());
        w.2.assigned_apps.push(client_id);
        assert_eq!(outcome(&w, "Files.Read.All"), ConsentOutcome::NeedsAdmin);
        w.2.admin = true;
        assert!(may_consent(outcome(&w, "Directory.Read.All")));
    }

    #[test]
    fn denials_are_checked_in_entra_order() {
        let (_, mut tenant, mut user, app) = world();
        let client = app.client_id.as_str();
        assert_eq!(sign_in_denial(&tenant, &user, client, false), None);
        tenant.mfa_required = true;
        assert_eq!(sign_in_denial(&tenant, &user, client, false), Some(Denial::MfaRequired));
        assert_eq!(sign_in_denial(&tenant, &user, client, true), None);
        tenant.conditional_access_block = true;
        assert_eq!(
            sign_in_denial(&tenant, &user, client, true),
            Some(Denial::ConditionalAccess)
        );
        tenant.assignment_required.push(app.client_id.clone());
        assert_eq!(sign_in_denial(&tenant, &user, client, true), Some(Denial::NotAssigned));
        user.disabled = true;
        assert_eq!(sign_in_denial(&tenant, &user, client, true), Some(Denial::UserDisabled));
    }
}
