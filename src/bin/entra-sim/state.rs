//! Shared simulator state: the configured world plus everything Entra would remember between requests
//! (codes, refresh tokens, user consent grants, service principals, session revocations, throttle
//! windows, the clock).
//!
//! One mutex guards the world. Critical sections are short and never span an `.await`; RSA signing
//! happens outside the lock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use time::{Duration, OffsetDateTime};

use crate::config::SimConfig;
use crate::faults::Faults;
use crate::keys::Keys;
use crate::scopes::{self, Scopes};
use crate::stats::{Endpoint, Stats};

/// Everything the handlers share.
pub struct SimState {
    /// `http://127.0.0.1:PORT`, the simulated authority host.
    pub base_url: String,
    /// Signing keys.
    pub keys: Keys,
    world: Mutex<World>,
    faults: Mutex<Faults>,
    stats: Mutex<Stats>,
}

/// A poisoned lock only means another request panicked mid-update; the data is still the best we have.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SimState {
    /// Builds the state for a validated config.
    pub fn new(base_url: String, config: SimConfig, keys: Keys) -> Self {
        Self {
            base_url,
            keys,
            world: Mutex::new(World::new(config)),
            faults: Mutex::new(Faults::default()),
            stats: Mutex::new(Stats::default()),
        }
    }

    /// Locks the world.
    pub fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    /// Locks the fault list.
    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    /// Locks the counters.
    pub fn stats(&self) -> MutexGuard<'_, Stats> {
        lock(&self.stats)
    }

    /// Counts a request to `endpoint`.
    pub fn count(&self, endpoint: Endpoint) {
        self.stats().request(endpoint);
    }

    /// The simulator's current time (real time plus the advanced offset).
    pub fn now(&self) -> OffsetDateTime {
        self.world().now()
    }

    /// `{base}/{tid}/v2.0`.
    pub fn issuer(&self, tenant_id: &str) -> String {
        format!("{}/{tenant_id}/v2.0", self.base_url)
    }
}

/// A user, identified the way Entra does: (tenant id, object id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserKey {
    /// Home tenant id.
    pub tenant_id: String,
    /// Object id.
    pub oid: String,
}

/// PKCE transformation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PkceMethod {
    /// `BASE64URL(SHA256(verifier)) == challenge`.
    S256,
    /// `verifier == challenge`.
    Plain,
}

/// The PKCE challenge recorded with a code.
#[derive(Debug, Clone)]
pub struct Pkce {
    /// `code_challenge`.
    pub challenge: String,
    /// `code_challenge_method` (plain when omitted, per RFC 7636).
    pub method: PkceMethod,
}

impl Pkce {
    /// Checks a `code_verifier` against the challenge.
    pub fn verify(&self, verifier: &str) -> bool {
        match self.method {
            PkceMethod::Plain => verifier == self.challenge,
            PkceMethod::S256 => URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == self.challenge,
        }
    }
}

/// What an authorization code is bound to.
#[derive(Debug, Clone)]
pub struct AuthCode {
    /// The client that asked for it.
    pub client_id: String,
    /// The exact redirect URI used on `/authorize`.
    pub redirect_uri: String,
    /// PKCE challenge, if one was sent.
    pub pkce: Option<Pkce>,
    /// Echoed as the ID token's `nonce`.
    pub nonce: Option<String>,
    /// Requested scopes (all consented by the time the code was issued).
    pub scopes: Scopes,
    /// The signed-in user.
    pub user: UserKey,
    /// Issue time (simulator clock).
    pub issued_at: OffsetDateTime,
    /// Whether the user completed MFA during this sign-in.
    pub mfa: bool,
    /// Codes are single-use.
    pub redeemed: bool,
}

/// What a refresh token is bound to.
#[derive(Debug, Clone)]
pub struct RefreshToken {
    /// The client it was issued to.
    pub client_id: String,
    /// The user.
    pub user: UserKey,
    /// Scopes of the grant it came from.
    pub scopes: Scopes,
    /// Issue time (simulator clock); inactivity is measured from here since every use mints a new RT.
    pub issued_at: OffsetDateTime,
    /// Whether the original sign-in included MFA.
    pub mfa: bool,
    /// First time it was redeemed (and so replaced by a newer RT).
    pub rotated_at: Option<OffsetDateTime>,
}

/// Prefixes that make codes and refresh tokens look like Entra's (`1.AXoA…`, `0.AXoA…`).
const CODE_PREFIX: &str = "1.AXoA";
const REFRESH_TOKEN_PREFIX: &str = "0.AXoA";

/// Prune expired codes/RTs every this many issued ones, so long benchmarks don't grow without bound.
const PRUNE_EVERY: u32 = 1024;

/// The mutable world.
pub struct World {
    /// The current configuration, including admin grants made through the control API.
    pub config: SimConfig,
    clock_offset: Duration,
    codes: HashMap<String, AuthCode>,
    refresh_tokens: HashMap<String, RefreshToken>,
    user_grants: HashMap<(UserKey, String), Vec<String>>,
    /// (tenant id, client id) pairs where the app has an enterprise application. Entra creates one
    /// on the first consent or sign-in in a tenant and keeps it when grants are withdrawn.
    service_principals: HashSet<(String, String)>,
    revoked_at: HashMap<UserKey, OffsetDateTime>,
    token_windows: HashMap<String, VecDeque<OffsetDateTime>>,
    issued_since_prune: u32,
}

impl World {
    fn new(config: SimConfig) -> Self {
        Self {
            config,
            clock_offset: Duration::ZERO,
            codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            user_grants: HashMap::new(),
            service_principals: HashSet::new(),
            revoked_at: HashMap::new(),
            token_windows: HashMap::new(),
            issued_since_prune: 0,
        }
    }

    /// The simulator's notion of now.
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.clock_offset
    }

    /// Moves the simulator clock forward. The total offset is capped at 1000 years so that times
    /// plus configured lifetimes stay representable.
    pub fn advance_clock(&mut self, secs: u64) -> Result<(), String> {
        let max_offset = Duration::days(1000 * 365);
        let offset = i64::try_from(secs)
            .ok()
            .and_then(|secs| self.clock_offset.checked_add(Duration::seconds(secs)))
            .filter(|offset| *offset <= max_offset)
            .ok_or_else(|| "the simulator clock can move at most 1000 years ahead".to_string())?;
        self.clock_offset = offset;
        Ok(())
    }

    /// Stores a code and returns its opaque value.
    pub fn issue_code(&mut self, code: AuthCode) -> String {
        self.maybe_prune();
        // A sign-in that gets this far is the app in use in the user's tenant.
        self.add_service_principal(&code.user.tenant_id, &code.client_id);
        let value = format!("{CODE_PREFIX}{}", random_b64(256));
        self.codes.insert(value.clone(), code);
        value
    }

    /// Looks up a code.
    pub fn code_mut(&mut self, value: &str) -> Option<&mut AuthCode> {
        self.codes.get_mut(value)
    }

    /// Stores a refresh token and returns its opaque value.
    pub fn issue_refresh_token(&mut self, token: RefreshToken) -> String {
        self.maybe_prune();
        let value = format!("{REFRESH_TOKEN_PREFIX}{}", random_b64(192));
        self.refresh_tokens.insert(value.clone(), token);
        value
    }

    /// Looks up a refresh token.
    pub fn refresh_token_mut(&mut self, value: &str) -> Option<&mut RefreshToken> {
        self.refresh_tokens.get_mut(value)
    }

    /// Whether `value` has the shape of a refresh token we could have issued.
    pub fn looks_like_refresh_token(value: &str) -> bool {
        value.len() > REFRESH_TOKEN_PREFIX.len() + 16
            && value.starts_with(REFRESH_TOKEN_PREFIX)
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }

    /// The scopes `user` consented to for `client_id` themselves.
    pub fn user_grant(&self, user: &UserKey, client_id: &str) -> &[String] {
        self.user_grants
            .get(&(user.clone(), client_id.to_string()))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Records (adds to) the user's own consent for `client_id`.
    pub fn grant_to_user(&mut self, user: &UserKey, client_id: &str, granted: &[String]) {
        let entry = self
            .user_grants
            .entry((user.clone(), client_id.to_string()))
            .or_default();
        scopes::merge_into(entry, granted);
        self.add_service_principal(&user.tenant_id, client_id);
    }

    /// Records that `client_id` has a service principal in the tenant (consent or sign-in there).
    pub fn add_service_principal(&mut self, tenant_id: &str, client_id: &str) {
        self.service_principals
            .insert((tenant_id.to_string(), client_id.to_string()));
    }

    /// Whether `client_id` has a service principal in the tenant: someone consented or signed in
    /// there, or the tenant holds an admin grant for it (configured or set through `/_sim`).
    pub fn has_service_principal(&self, tenant_id: &str, client_id: &str) -> bool {
        self.service_principals
            .contains(&(tenant_id.to_string(), client_id.to_string()))
            || self
                .config
                .tenant(tenant_id)
                .is_some_and(|t| t.admin_grants.contains_key(client_id))
    }

    /// The requested permissions that neither the tenant's admin grant nor the user's grant covers.
    pub fn missing_consent(&self, user: &UserKey, client_id: &str, requested: &[String]) -> Vec<String> {
        let admin: &[String] = self
            .config
            .tenant(&user.tenant_id)
            .and_then(|t| t.admin_grants.get(client_id))
            .map(Vec::as_slice)
            .unwrap_or_default();
        scopes::missing(requested, &[admin, self.user_grant(user, client_id)])
    }

    /// Withdraws the tenant-wide grant and every user grant for `client_id` in the tenant.
    pub fn withdraw_grants(&mut self, tenant_id: &str, client_id: &str) {
        if let Some(tenant) = self.config.tenant_mut(tenant_id) {
            tenant.admin_grants.remove(client_id);
        }
        self.user_grants
            .retain(|(user, client), _| !(user.tenant_id == tenant_id && client == client_id));
    }

    /// Revokes the sign-in sessions of every account with this UPN; returns how many matched.
    pub fn revoke_sessions(&mut self, upn: &str) -> usize {
        let now = self.now();
        let users: Vec<UserKey> = self
            .config
            .tenants
            .iter()
            .flat_map(|t| {
                t.users
                    .iter()
                    .filter(|u| u.upn.eq_ignore_ascii_case(upn))
                    .map(|u| UserKey {
                        tenant_id: t.id.clone(),
                        oid: u.oid.clone(),
                    })
            })
            .collect();
        for user in &users {
            self.revoked_at.insert(user.clone(), now);
        }
        users.len()
    }

    /// When the user's sessions were last revoked (tokens issued at or before it are invalid).
    pub fn revoked_at(&self, user: &UserKey) -> Option<OffsetDateTime> {
        self.revoked_at.get(user).copied()
    }

    /// Sliding one-minute window per client_id. Returns `Err(retry_after_secs)` when the client is over
    /// `throttle_token_requests_per_minute`; rejected requests don't count, so a client that backs off
    /// recovers.
    pub fn admit_token_request(&mut self, client_id: &str) -> Result<(), u64> {
        let limit = self.config.throttle_token_requests_per_minute;
        if limit == 0 {
            return Ok(());
        }
        let now = self.now();
        let window = self.token_windows.entry(client_id.to_string()).or_default();
        while window.front().is_some_and(|t| *t + Duration::minutes(1) <= now) {
            window.pop_front();
        }
        if window.len() >= limit as usize {
            let oldest = window.front().copied().unwrap_or(now);
            let wait = (oldest + Duration::minutes(1) - now).whole_seconds();
            return Err(u64::try_from(wait).unwrap_or(0).max(1));
        }
        window.push_back(now);
        Ok(())
    }

    fn maybe_prune(&mut self) {
        self.issued_since_prune += 1;
        if self.issued_since_prune < PRUNE_EVERY {
            return;
        }
        self.issued_since_prune = 0;
        let now = self.now();
        // Keep entries a day past their expiry so late use still gets the precise "expired" error.
        let slack = Duration::days(1);
        let code_life = secs(self.config.code_lifetime_secs);
        let rt_life = secs(self.config.refresh_token_max_inactive_secs);
        let grace = secs(self.config.refresh_token_rotation_grace_secs);
        self.codes.retain(|_, c| c.issued_at + code_life + slack > now);
        self.refresh_tokens.retain(|_, rt| {
            rt.issued_at + rt_life + slack > now && rt.rotated_at.is_none_or(|at| at + grace + slack > now)
        });
    }
}

/// Seconds as a `time::Duration` (configured lifetimes are bounded by validation).
pub fn secs(value: u64) -> Duration {
    Duration::seconds(i64::try_from(value).unwrap_or(i64::MAX / 2))
}

/// `len` random bytes, base64url without padding.
pub fn random_b64(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    // The OS RNG failing is not recoverable and has nothing to do with request input.
    getrandom::fill(&mut bytes).expect("operating system random number generator failed");
    URL_SAFE_NO_PAD.encode(bytes)
}
