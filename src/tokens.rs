//! Serving access tokens: cache hit, refresh (once per connection however many callers ask),
//! or a clear "reauth required" / "try later".
//!
//! Concurrency: callers for one connection queue on that connection's in-process lock; the first
//! takes the connection's refresh lease in the store (`lease:{<id>}`), so that one broker among
//! all that share the store refreshes, renews the lease while Entra answers, and writes with
//! compare-and-swap on the version read under the lease (the fencing token: a refresher that lost
//! its lease never overwrites a newer rotation). Everyone else re-reads the store and finds the
//! fresh token. The rotated refresh token is durably written before anyone is answered.
//!
//! A token is served only for the identity it was issued for: the connection's tenant and the
//! connector's current client id and scope set ([`TokenIdentity`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::Instrument as _;

use crate::app::AppState;
use crate::clock::now_unix;
use crate::crypto::Sensitive;
use crate::entra::client::ClientAuth;
use crate::entra::{Category, Classification, TokenError, classify};
use crate::metrics::TokenOutcome;
use crate::store::{CasOutcome, StoreError, records::*};

/// Per-key async locks that vanish when nobody holds or waits for them.
#[derive(Default)]
pub struct SingleFlight {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Removes a key's lock from the map once nobody else holds or waits for it.
struct Cleanup<'a> {
    flight: &'a SingleFlight,
    key: &'a str,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let mut map = self.flight.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Three references: the map's, ours, and the one `run` locks (dropped after us, so
        // still counted). Anyone else still waiting keeps it alive.
        if Arc::strong_count(&self.lock) == 3 {
            map.remove(self.key);
        }
    }
}

impl SingleFlight {
    /// Runs `f` while holding the lock for `key`. The key's entry goes when its last user is done,
    /// also when a user is cancelled while waiting or running.
    pub async fn run<T>(&self, key: &str, f: impl Future<Output = T>) -> T {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        let _cleanup = Cleanup {
            flight: self,
            key,
            lock: lock.clone(),
        };
        let _guard = lock.lock().await;
        f.await
    }

    /// How many keys have a lock right now (for tests).
    pub fn len(&self) -> usize {
        self.locks.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when no lock is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a token request was answered (for logs and, later, metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The stored token was fresh enough.
    CacheHit,
    /// This call (or one it waited for) refreshed it.
    Refreshed,
    /// Entra was unavailable, but the stored token is still valid.
    StaleButValid,
    /// The store was unreachable; this broker's last served token is still valid.
    FromMemory,
}

/// Most connections whose last served token [`ServedTokens`] keeps; past it, the entry that
/// expires first makes room.
const SERVED_TOKENS_CAPACITY: usize = 10_000;

/// The last access token this broker served per connection (never a refresh token), kept in
/// memory only to keep answering while the store is unreachable; an entry is useless once its
/// token expires.
#[derive(Default)]
pub struct ServedTokens {
    entries: Mutex<HashMap<String, (String, AccessToken)>>,
}

impl ServedTokens {
    /// Remembers a token served for a connector's connection.
    fn remember(&self, connector: &str, connection_id: &str, token: &AccessToken) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SERVED_TOKENS_CAPACITY && !map.contains_key(connection_id) {
            let now = now_unix();
            map.retain(|_, (_, t)| t.expires_at > now);
            if map.len() >= SERVED_TOKENS_CAPACITY
                && let Some(first) = map
                    .iter()
                    .min_by_key(|(_, (_, t))| t.expires_at)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&first);
            }
        }
        map.insert(connection_id.to_string(), (connector.to_string(), token.clone()));
    }

    /// The remembered token of a connector's connection, while it is still valid.
    fn recall(&self, connector: &str, connection_id: &str) -> Option<AccessToken> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(connection_id) {
            Some((owner, t)) if owner == connector && t.expires_at > now_unix() => Some(AccessToken {
                served: Served::FromMemory,
                ..t.clone()
            }),
            _ => None,
        }
    }

    /// Forgets a connection (it needs a new sign-in, or is gone).
    fn forget(&self, connection_id: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(connection_id);
    }

    /// Forgets a connection's token if `connector` owns it (DELETE).
    pub fn forget_owned(&self, connector: &str, connection_id: &str) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(connection_id).is_some_and(|(owner, _)| owner == connector) {
            map.remove(connection_id);
        }
    }

    /// How many connections have a remembered token (for tests).
    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when no token is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An access token for the API response.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The token.
    pub access_token: Sensitive,
    /// Unix seconds.
    pub expires_at: i64,
    /// Space-separated scopes.
    pub scope: String,
    /// How it was served.
    pub served: Served,
    /// True when it lives less than the caller's `min_ttl` (the best there is for now).
    pub min_ttl_unmet: bool,
}

/// Why no token could be served.
#[derive(Debug, thiserror::Error)]
pub enum TokenServiceError {
    /// No such connection for this connector.
    #[error("connection not found")]
    NotFound,
    /// The grant is gone; the user must sign in again.
    #[error("the connection needs a new sign-in ({})", .0.category)]
    ReauthRequired(ReauthReason),
    /// Entra is unavailable or throttling and the stored token has expired.
    #[error("Entra is unavailable")]
    Unavailable {
        /// When to retry.
        retry_after: Duration,
    },
    /// Another broker holds the connection's refresh and did not finish within the wait, and
    /// the stored token has expired: retry shortly.
    #[error("another broker is refreshing the connection")]
    RefreshInProgress {
        /// When to retry.
        retry_after: Duration,
    },
    /// Entra refused for a reason that is not the user's (broker credential, app registration).
    #[error("Entra refused the refresh: {}", .0.category)]
    Upstream(Box<Classification>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Categories after which only a new interactive sign-in helps.
fn needs_new_sign_in(category: Category) -> bool {
    matches!(
        category,
        Category::ReauthRequired
            | Category::ConsentRequired
            | Category::AdminApprovalRequired
            | Category::InteractionRequired
            | Category::ConditionalAccess
            | Category::NotAssigned
            | Category::UserDeclined
            | Category::TenantMisconfigured
    )
}

/// Returns an access token for `connection_id` that lives at least `min_ttl` (refreshing if needed).
///
/// When the store is unreachable, the token this broker last served for the connection is
/// served while it is still valid (whatever `min_ttl` asks: it is the best there is); without
/// one, the store error stands (503). A store error never changes a connection.
pub async fn access_token(
    state: &AppState,
    connector: &str,
    connection_id: &str,
    min_ttl: Duration,
) -> Result<AccessToken, TokenServiceError> {
    let mut result = answer(state, connector, connection_id, min_ttl).await;
    if let Ok(token) = &mut result {
        token.min_ttl_unmet = token.expires_at - now_unix() < min_ttl.as_secs() as i64;
        if token.min_ttl_unmet && state.connector(connector).is_some() {
            state.metrics.min_ttl_unmet(connector);
        }
    }
    let outcome = match &result {
        Ok(t) => match t.served {
            Served::CacheHit => TokenOutcome::CacheHit,
            Served::Refreshed => TokenOutcome::Refreshed,
            Served::StaleButValid => TokenOutcome::StaleButValid,
            Served::FromMemory => TokenOutcome::Unavailable,
        },
        Err(TokenServiceError::NotFound) => TokenOutcome::NotFound,
        Err(TokenServiceError::ReauthRequired(_)) => TokenOutcome::Reauth,
        Err(
            TokenServiceError::Unavailable { .. }
            | TokenServiceError::RefreshInProgress { .. }
            | TokenServiceError::Store(_),
        ) => TokenOutcome::Unavailable,
        Err(TokenServiceError::Upstream(_)) => TokenOutcome::Upstream,
    };
    // An unknown connector id is a caller's typo, not a bounded label: it is not counted.
    if state.connector(connector).is_some() {
        state.metrics.token_request(connector, outcome);
    }
    result
}

async fn answer(
    state: &AppState,
    connector: &str,
    connection_id: &str,
    min_ttl: Duration,
) -> Result<AccessToken, TokenServiceError> {
    match serve(state, connector, connection_id, min_ttl).await {
        Ok(token) => {
            state.served.remember(connector, connection_id, &token);
            Ok(token)
        }
        Err(TokenServiceError::Store(e)) => match state.served.recall(connector, connection_id) {
            Some(token) => {
                tracing::warn!(connection = %connection_id, connector = %connector, error = %e, "store unreachable; serving the last token served from memory");
                Ok(token)
            }
            None => Err(TokenServiceError::Store(e)),
        },
        Err(e) => {
            if matches!(e, TokenServiceError::NotFound | TokenServiceError::ReauthRequired(_)) {
                state.served.forget(connection_id);
            }
            Err(e)
        }
    }
}

async fn serve(
    state: &AppState,
    connector: &str,
    connection_id: &str,
    min_ttl: Duration,
) -> Result<AccessToken, TokenServiceError> {
    let (conn, seen_version) = load(state, connector, connection_id).await?;
    let identity = expected_identity(state, connector, &conn)?;
    if let Some(token) = usable(&conn, &identity, min_ttl, Served::CacheHit)? {
        return Ok(token);
    }
    if let Some(token) = within_floor(state, &conn, &identity)? {
        return Ok(token);
    }
    // On its own task: a caller that hangs up, or a request timeout, drops this future, and a
    // refresh dropped between Entra's answer and the write of the rotated refresh token would
    // lose the only copy of it.
    let refresh = {
        let state = state.clone();
        let (connector, id) = (connector.to_string(), connection_id.to_string());
        // In the request's span, so its lines keep the request id.
        state.background.clone().spawn(
            async move {
                state
                    .refreshes
                    .run(&id, refresh_leased(&state, &connector, &id, min_ttl, seen_version))
                    .await
            }
            .in_current_span(),
        )
    };
    refresh.await.unwrap_or_else(|e| {
        tracing::error!(connection = %connection_id, error = %e, "the refresh task failed");
        Err(TokenServiceError::Unavailable {
            retry_after: WAIT_RETRY_AFTER,
        })
    })
}

async fn load(state: &AppState, connector: &str, id: &str) -> Result<(Connection, u64), TokenServiceError> {
    match state.records.connection(id).await? {
        Some((c, v)) if c.connector == connector => Ok((c, v)),
        _ => Err(TokenServiceError::NotFound),
    }
}

/// What the connection's tokens must have been issued for to be served now: its tenant and the
/// connector's current client id and scopes.
fn expected_identity(state: &AppState, connector: &str, conn: &Connection) -> Result<TokenIdentity, TokenServiceError> {
    let connector = state.connector(connector).ok_or(TokenServiceError::NotFound)?;
    Ok(TokenIdentity::new(
        &conn.tenant_id,
        &connector.client_id,
        &connector.scopes,
    ))
}

/// The stored token when it is fresh enough and was issued for `identity`; the reauth error when
/// the connection is dead.
fn usable(
    conn: &Connection,
    identity: &TokenIdentity,
    min_ttl: Duration,
    served: Served,
) -> Result<Option<AccessToken>, TokenServiceError> {
    if conn.status == ConnectionStatus::ReauthRequired {
        return Err(TokenServiceError::ReauthRequired(conn.reauth.clone().unwrap_or(
            ReauthReason {
                category: Category::ReauthRequired.as_str().into(),
                aadsts: None,
            },
        )));
    }
    if conn.token_identity.as_ref() != Some(identity) {
        return Ok(None);
    }
    let remaining = conn.access_expires_at - now_unix();
    // Never an expired token, even when any remaining lifetime will do.
    Ok((remaining > 0 && remaining >= min_ttl.as_secs() as i64).then(|| to_token(conn, served)))
}

/// The stored token, still valid and issued for `identity`, of a connection refreshed (or signed
/// in) less than `[tokens] min_refresh_interval_secs` ago: Entra would answer a new refresh with
/// a token of the same lifetime, so a `min_ttl` it cannot meet must not make the broker ask it
/// again and again (AADSTS50196 and throttling would then hit every user of the app).
fn within_floor(
    state: &AppState,
    conn: &Connection,
    identity: &TokenIdentity,
) -> Result<Option<AccessToken>, TokenServiceError> {
    let floor = state.config.tokens.min_refresh_interval;
    if floor.is_zero() || now_unix() >= conn.refreshed_at.saturating_add(floor.as_secs() as i64) {
        return Ok(None);
    }
    usable(conn, identity, Duration::ZERO, Served::CacheHit)
}

fn to_token(conn: &Connection, served: Served) -> AccessToken {
    AccessToken {
        access_token: conn.access_token.clone(),
        expires_at: conn.access_expires_at,
        scope: conn.scopes.join(" "),
        served,
        min_ttl_unmet: false,
    }
}

/// First wait between two looks at a connection whose lease another broker holds.
const WAIT_FIRST: Duration = Duration::from_millis(25);
/// Longest wait between two looks.
const WAIT_MAX: Duration = Duration::from_millis(250);
/// `Retry-After` when another broker's refresh did not finish within the wait.
const WAIT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Refreshes under the connection's lease in the store, so that one broker among all that share
/// the store calls Entra; the others poll the connection (25 ms doubling to 250 ms) until it
/// changes or the lease is free, for at most `refresh.wait`, and never call Entra without it.
async fn refresh_leased(
    state: &AppState,
    connector_id: &str,
    connection_id: &str,
    min_ttl: Duration,
    seen_version: u64,
) -> Result<AccessToken, TokenServiceError> {
    let refresh = &state.config.refresh;
    let deadline = tokio::time::Instant::now() + refresh.wait;
    let mut pause = WAIT_FIRST;
    loop {
        // Re-read first: a caller before us (here or on another broker) may have refreshed
        // while we waited. Its result is ours too, even if Entra's lifetime is shorter than our
        // min_ttl — asking again would only repeat the same answer, once per waiting caller.
        let (conn, version) = load(state, connector_id, connection_id).await?;
        if let Some(token) = refreshed_meanwhile(state, connector_id, &conn, version, min_ttl, seen_version)? {
            return Ok(token);
        }
        if let Some(mut lease) = state.records.try_lease(connection_id, refresh.lease).await? {
            let out = {
                let work = refresh_locked(state, connector_id, connection_id, min_ttl, seen_version);
                let renew = keep_lease(state, &mut lease, connection_id);
                tokio::select! {
                    out = work => out,
                    never = renew => match never {},
                }
            };
            if let Err(e) = state.records.release_lease(lease).await {
                // It expires by itself; the others wait at most until then.
                tracing::warn!(connection = %connection_id, error = %e, "releasing the refresh lease failed");
            }
            return out;
        }
        if tokio::time::Instant::now() + pause > deadline {
            break;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(WAIT_MAX);
    }
    tracing::warn!(connection = %connection_id, connector = %connector_id, "another broker's refresh did not finish in time");
    let (conn, _) = load(state, connector_id, connection_id).await?;
    let identity = expected_identity(state, connector_id, &conn)?;
    match usable(&conn, &identity, Duration::ZERO, Served::StaleButValid)? {
        Some(token) => Ok(token),
        None => Err(TokenServiceError::RefreshInProgress {
            retry_after: WAIT_RETRY_AFTER,
        }),
    }
}

/// The stored token when it is fresh enough, or when the connection was written since
/// `seen_version` (someone refreshed it) and its token is still valid.
fn refreshed_meanwhile(
    state: &AppState,
    connector_id: &str,
    conn: &Connection,
    version: u64,
    min_ttl: Duration,
    seen_version: u64,
) -> Result<Option<AccessToken>, TokenServiceError> {
    let identity = expected_identity(state, connector_id, conn)?;
    let written_since = version != seen_version && conn.access_expires_at > now_unix();
    let wanted = if written_since { Duration::ZERO } else { min_ttl };
    usable(conn, &identity, wanted, Served::Refreshed)
}

/// Renews a held lease every third of its lifetime while the refresh runs; never returns (the
/// refresh finishing ends it). When renewal fails the lease may be lost: the refresh goes on,
/// and the compare-and-swap of its result decides whether it may be written.
async fn keep_lease(state: &AppState, lease: &mut Lease, connection_id: &str) -> std::convert::Infallible {
    let refresh = &state.config.refresh;
    if refresh.renew {
        loop {
            tokio::time::sleep(refresh.lease / 3).await;
            match state.records.renew_lease(lease, refresh.lease).await {
                Ok(true) => continue,
                Ok(false) => {
                    tracing::warn!(connection = %connection_id, "the refresh lease was lost; a newer refresh by another broker will win")
                }
                Err(e) => tracing::warn!(connection = %connection_id, error = %e, "renewing the refresh lease failed"),
            }
            break;
        }
    }
    std::future::pending().await
}

async fn refresh_locked(
    state: &AppState,
    connector_id: &str,
    connection_id: &str,
    min_ttl: Duration,
    seen_version: u64,
) -> Result<AccessToken, TokenServiceError> {
    // Re-read under the lease: whoever held it before us may have refreshed. The version read
    // here fences our write: it happens only if nobody wrote the connection since.
    let (conn, version) = load(state, connector_id, connection_id).await?;
    let identity = expected_identity(state, connector_id, &conn)?;
    if let Some(token) = refreshed_meanwhile(state, connector_id, &conn, version, min_ttl, seen_version)? {
        return Ok(token);
    }
    let connector = state.connector(connector_id).ok_or(TokenServiceError::NotFound)?;
    let Some(refresh_token) = conn.refresh_token.clone() else {
        return flip_to_reauth(state, conn, version, Category::ReauthRequired.as_str(), None).await;
    };
    if let Some(issued) = &conn.token_identity
        && (issued.client_id != identity.client_id || issued.tenant_id != identity.tenant_id)
    {
        // The refresh token belongs to another application or tenant: only a new sign-in helps.
        tracing::warn!(connection = %connection_id, connector = %connector_id, "the connector's client id changed since the sign-in");
        return flip_to_reauth(state, conn, version, Category::ReauthRequired.as_str(), None).await;
    }
    // The connector's refresh budget, last before Entra: past it, the stored token while it is
    // valid, else 503; Entra never sees the burst.
    if let Err(limited) = state.limits.check_refresh(connector_id, &state.metrics) {
        tracing::warn!(connection = %connection_id, connector = %connector_id, "refresh budget of the connector used up; not calling Entra");
        state.metrics.refresh_budget_exhausted(connector_id);
        return usable(&conn, &identity, Duration::ZERO, Served::StaleButValid)?.ok_or(
            TokenServiceError::Unavailable {
                retry_after: limited.retry_after,
            },
        );
    }
    let started = std::time::Instant::now();
    let result = state
        .entra
        .refresh(
            &conn.tenant_id,
            &ClientAuth {
                client_id: &connector.client_id,
                credential: &connector.credential,
            },
            refresh_token.expose(),
            &connector.scopes,
        )
        .await;
    state.metrics.refresh_duration(started.elapsed());
    match result {
        Ok(resp) => {
            let now = now_unix();
            let mut updated = conn.clone();
            updated.access_token = resp.access_token;
            updated.access_expires_at = now + resp.expires_in.max(0);
            if let Some(rt) = resp.refresh_token {
                updated.refresh_token = Some(rt);
            }
            if let Some(scope) = resp.scope.filter(|s| !s.trim().is_empty()) {
                updated.scopes = scope.split_whitespace().map(str::to_string).collect();
            }
            updated.refreshed_at = now;
            updated.token_identity = Some(identity);
            match write_rotated(state, &updated, version).await? {
                CasOutcome::Written(_) => {
                    // Where tests/integration/chaos.rs kills the broker: written, nobody answered.
                    fail::fail_point!("tokens::rotated_written");
                    tracing::info!(connection = %connection_id, connector = %connector_id, "access token refreshed");
                    Ok(to_token(&updated, Served::Refreshed))
                }
                // Someone else wrote (another refresher, perhaps after our lease was lost; a
                // delete; a new sign-in): theirs wins, ours is never written over it (fencing).
                CasOutcome::Conflict => {
                    tracing::info!(connection = %connection_id, connector = %connector_id, "refresh result discarded: the connection was written meanwhile");
                    let (latest, _) = load(state, connector_id, connection_id).await?;
                    usable(
                        &latest,
                        &expected_identity(state, connector_id, &latest)?,
                        Duration::ZERO,
                        Served::Refreshed,
                    )?
                    .ok_or(TokenServiceError::Unavailable {
                        retry_after: WAIT_RETRY_AFTER,
                    })
                }
            }
        }
        Err(TokenError::Rejected(err)) => {
            let c = classify(&err);
            state.metrics.entra_error(c.primary_code());
            if c.category == crate::entra::Category::ClientCredentialInvalid {
                state.metrics.credential_error(connector_id, c.primary_code());
            }
            tracing::warn!(
                connection = %connection_id,
                connector = %connector_id,
                category = %c.category,
                aadsts = ?c.aadsts,
                trace_id = c.trace_id.as_deref().unwrap_or(""),
                correlation_id = c.correlation_id.as_deref().unwrap_or(""),
                "refresh refused by Entra"
            );
            if needs_new_sign_in(c.category) {
                flip_to_reauth(state, conn, version, c.category.as_str(), c.primary_code()).await
            } else {
                Err(TokenServiceError::Upstream(Box::new(c)))
            }
        }
        Err(e @ TokenError::Credential(_)) => {
            tracing::error!(connection = %connection_id, connector = %connector_id, error = %e, "refresh not attempted");
            Err(TokenServiceError::Upstream(Box::new(
                crate::entra::Classification::local_credential_failure(),
            )))
        }
        Err(e @ (TokenError::Unavailable { .. } | TokenError::Protocol(_))) => {
            let retry_after = match &e {
                TokenError::Unavailable {
                    retry_after: Some(r), ..
                } => *r,
                _ => state.config.entra.default_retry_after,
            };
            let (trace_id, correlation_id) = e.entra_ids();
            tracing::warn!(connection = %connection_id, connector = %connector_id, error = %e, trace_id, correlation_id, "refresh failed; Entra unavailable");
            match usable(&conn, &identity, Duration::ZERO, Served::StaleButValid)? {
                Some(token) => Ok(token),
                None => Err(TokenServiceError::Unavailable { retry_after }),
            }
        }
    }
}

/// How long a refresh keeps trying to write its result while the store does not answer.
const WRITE_RETRY_FOR: Duration = Duration::from_secs(15);

/// Writes a refreshed connection with compare-and-swap, retrying while the store does not
/// answer: until this write lands, the rotated refresh token Entra just issued exists only here.
/// A retry after a write that did land but whose answer was lost sees a conflict, and the caller
/// then reads the record back, which is this write.
async fn write_rotated(state: &AppState, conn: &Connection, version: u64) -> Result<CasOutcome, StoreError> {
    let deadline = tokio::time::Instant::now() + WRITE_RETRY_FOR;
    let mut pause = Duration::from_millis(100);
    loop {
        match state.records.update_connection(conn, version).await {
            Err(e) if tokio::time::Instant::now() + pause < deadline => {
                tracing::warn!(connection = %conn.id, error = %e, "writing the refreshed connection failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            other => {
                if let Err(e) = &other {
                    tracing::error!(connection = %conn.id, error = %e, "could not write the refreshed connection; its rotated refresh token is lost");
                }
                return other;
            }
        }
    }
}

async fn flip_to_reauth(
    state: &AppState,
    mut conn: Connection,
    version: u64,
    category: &str,
    aadsts: Option<u32>,
) -> Result<AccessToken, TokenServiceError> {
    let reason = ReauthReason {
        category: category.to_string(),
        aadsts,
    };
    conn.status = ConnectionStatus::ReauthRequired;
    conn.reauth = Some(reason.clone());
    match state.records.update_connection(&conn, version).await? {
        CasOutcome::Written(_) => Err(TokenServiceError::ReauthRequired(reason)),
        // A concurrent sign-in or refresh replaced the record; answer from what is there now.
        CasOutcome::Conflict => {
            let (latest, _) = load(state, &conn.connector, &conn.id).await?;
            let identity = expected_identity(state, &conn.connector, &latest)?;
            usable(&latest, &identity, Duration::ZERO, Served::Refreshed)?
                .ok_or(TokenServiceError::ReauthRequired(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn served_tokens_are_bounded_valid_and_per_connector() {
        let cache = ServedTokens::default();
        let token = |expires_at: i64| AccessToken {
            access_token: Sensitive::new("at"),
            expires_at,
            scope: String::new(),
            served: Served::CacheHit,
            min_ttl_unmet: false,
        };
        let now = now_unix();
        cache.remember("files", "c1", &token(now + 60));
        assert_eq!(cache.recall("files", "c1").map(|t| t.served), Some(Served::FromMemory));
        assert!(cache.recall("crm", "c1").is_none(), "only for its connector");
        cache.remember("files", "c2", &token(now - 1));
        assert!(cache.recall("files", "c2").is_none(), "never an expired token");
        cache.forget("c1");
        assert!(cache.recall("files", "c1").is_none());

        for i in 0..SERVED_TOKENS_CAPACITY + 10 {
            cache.remember("files", &format!("n{i}"), &token(now + 60 + i as i64));
        }
        assert_eq!(cache.len(), SERVED_TOKENS_CAPACITY, "bounded");
        assert!(cache.recall("files", "n0").is_none(), "the soonest to expire made room");
        assert!(
            cache
                .recall("files", &format!("n{}", SERVED_TOKENS_CAPACITY + 9))
                .is_some()
        );
    }

    #[tokio::test]
    async fn single_flight_serialises_and_cleans_up() {
        let sf = Arc::new(SingleFlight::default());
        let running = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (sf, running, max) = (sf.clone(), running.clone(), max.clone());
            tasks.push(tokio::spawn(async move {
                sf.run("k", async {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(max.load(Ordering::SeqCst), 1);
        assert!(sf.is_empty());
    }

    #[tokio::test]
    async fn single_flight_cleans_up_after_cancelled_holders_and_waiters() {
        let sf = Arc::new(SingleFlight::default());
        let holder = {
            let sf = sf.clone();
            tokio::spawn(async move { sf.run("k", std::future::pending::<()>()).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let waiter = {
            let sf = sf.clone();
            tokio::spawn(async move { sf.run("k", async {}).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(sf.len(), 1);
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(sf.len(), 1, "the holder still has it");
        holder.abort();
        let _ = holder.await;
        assert!(sf.is_empty(), "a cancelled holder leaves no key behind");
        sf.run("k", async {}).await;
        assert!(sf.is_empty());
    }
}
