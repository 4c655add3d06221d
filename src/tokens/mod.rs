//! Serving access tokens: cache hit, refresh (once per connection however many callers ask),
//! or a clear "reauth required" / "try later".
//!
//! Concurrency: callers for one connection in this process share one flight ([`SingleFlight`]):
//! whoever arrives while it runs gets its token. The flight takes the connection's refresh lease
//! in the store (`lease:{<id>}`), so that one broker among
//! all that share the store refreshes, renews the lease while Entra answers, and writes with
//! compare-and-swap on the version read under the lease (the fencing token: a refresher that lost
//! its lease never overwrites a newer rotation). Callers on other brokers wait for the lease
//! and re-read the store. The rotated refresh token is durably written before anyone is answered.
//!
//! A token is served only for the identity it was issued for: the connection's tenant and the
//! connector's current client id and scope set ([`TokenIdentity`]).
//!
//! [`TokenService`] holds only what this needs (records, a [`TokenEndpoint`], the connectors, the
//! refresh settings, a [`Clock`], metrics), so its paths are unit-tested against the memory store,
//! a scripted endpoint and a manual clock (`tests.rs`).

mod cache;
#[cfg(test)]
mod cache_tests;
mod endpoint;
mod invalidation;
mod single_flight;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;
use tracing::instrument::WithSubscriber as _;

pub use cache::{InvalidationBus, LocalOnly, TokenCache};
pub use endpoint::TokenEndpoint;
pub use invalidation::{CHANNEL as INVALIDATION_CHANNEL, Invalidations};
pub use single_flight::SingleFlight;

use crate::clock::Clock;
use crate::config::{Config, ConnectorConfig, Connectors};
use crate::crypto::Sensitive;
use crate::entra::client::ClientAuth;
use crate::entra::{Category, Classification, TokenError, classify};
use crate::ids::{ConnectionId, ConnectorId};
use crate::metrics::{Metrics, TokenOutcome};
use crate::ratelimit::RefreshBudget;
use crate::store::{CasOutcome, StoreError, records::*};
use crate::webhooks::ConnectionEvents;

/// How a token request was answered (for logs and, later, metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The cached or stored token was fresh enough.
    CacheHit,
    /// This call (or one it waited for) refreshed it.
    Refreshed,
    /// Entra was unavailable, but the stored token is still valid.
    StaleButValid,
    /// The store was unreachable; this broker's last served token is still valid.
    FromMemory,
}

/// An access token for the API response.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The token (shared: a cache hit hands out the cached one without copying it).
    pub access_token: Arc<Sensitive>,
    /// Unix seconds.
    pub expires_at: i64,
    /// Space-separated scopes.
    pub scope: Arc<str>,
    /// How it was served.
    pub served: Served,
    /// True when it lives less than the caller's `min_ttl` (the best there is for now).
    pub min_ttl_unmet: bool,
    /// The identity the token was issued for, which a cache hit is checked against.
    pub issued_for: Option<Arc<TokenIdentity>>,
    /// The API's answer for this token, once rendered; shared by every cache hit of it.
    pub answer: Arc<RenderedAnswer>,
}

/// The API's JSON answer for one token, rendered on its first call and handed out by reference
/// after (rendering escapes 1-2 KB of token text on every call otherwise). It holds the token, so
/// its bytes are wiped when the last copy goes, and it never prints them.
#[derive(Default)]
pub struct RenderedAnswer(std::sync::OnceLock<bytes::Bytes>);

impl RenderedAnswer {
    /// The rendered answer, rendering it with `render` on the first call.
    pub fn get_or_render<E>(&self, render: impl FnOnce() -> Result<Vec<u8>, E>) -> Result<bytes::Bytes, E> {
        if let Some(rendered) = self.0.get() {
            return Ok(rendered.clone());
        }
        let rendered = bytes::Bytes::from_owner(Wiped(render()?));
        // Two first calls at once render twice; both answers are the same bytes.
        Ok(self.0.get_or_init(|| rendered).clone())
    }
}

impl std::fmt::Debug for RenderedAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RenderedAnswer([redacted])")
    }
}

/// Bytes that are zeroed when dropped.
struct Wiped(Vec<u8>);

impl AsRef<[u8]> for Wiped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Wiped {
    fn drop(&mut self) {
        secrecy::zeroize::Zeroize::zeroize(&mut self.0);
    }
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

/// Categories after which only a new interactive sign-in helps; the others are answered as
/// Entra's refusal (502) and leave the connection as it is.
fn needs_new_sign_in(category: Category) -> bool {
    match category {
        Category::ReauthRequired
        | Category::ConsentRequired
        | Category::AdminApprovalRequired
        | Category::InteractionRequired
        | Category::ConditionalAccess
        | Category::NotAssigned
        | Category::UserDeclined
        | Category::TenantMisconfigured => true,
        Category::AppMisconfigured
        | Category::ClientCredentialInvalid
        | Category::Transient
        | Category::InvalidRequest
        | Category::Unknown => false,
    }
}

/// The refresh settings the token service reads from the config.
#[derive(Debug, Clone)]
pub struct RefreshSettings {
    /// Lifetime of a connection's refresh lease (`[refresh] lease_secs`).
    pub lease: Duration,
    /// How long a caller waits for another broker's refresh (`[refresh] wait_ms`).
    pub wait: Duration,
    /// Whether a held lease is renewed while Entra answers.
    pub renew: bool,
    /// No refresh sooner than this after the last one (`[tokens] min_refresh_interval_secs`).
    pub min_refresh_interval: Duration,
    /// `Retry-After` when Entra sent none.
    pub default_retry_after: Duration,
}

impl RefreshSettings {
    /// The settings of a validated config.
    pub fn from_config(config: &Config) -> Self {
        Self {
            lease: config.refresh.lease,
            wait: config.refresh.wait,
            renew: config.refresh.renew,
            min_refresh_interval: config.tokens.min_refresh_interval,
            default_retry_after: config.entra.default_retry_after,
        }
    }
}

/// Serves access tokens for stored connections, refreshing them through a [`TokenEndpoint`].
pub struct TokenService {
    records: Records,
    endpoint: Arc<dyn TokenEndpoint>,
    connectors: Connectors,
    settings: RefreshSettings,
    budget: RefreshBudget,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    events: Arc<dyn ConnectionEvents>,
    refreshes: SingleFlight<AccessToken>,
    cache: Arc<TokenCache>,
    /// Each connector's client id and scopes as a [`TokenIdentity`] holds them (normalised once,
    /// not per request); the tenant is left empty.
    issued_to: HashMap<ConnectorId, TokenIdentity>,
    background: tokio_util::task::TaskTracker,
}

/// What a [`TokenService`] is built from.
pub struct TokenServiceParts {
    /// Typed store access.
    pub records: Records,
    /// Entra's token endpoint (or a scripted one in tests).
    pub endpoint: Arc<dyn TokenEndpoint>,
    /// Connectors by id.
    pub connectors: Connectors,
    /// Lease, wait and floor settings.
    pub settings: RefreshSettings,
    /// Refreshes per minute allowed per connector (`[tokens] max_refreshes_per_minute`).
    pub budget: RefreshBudget,
    /// The time source for expiries.
    pub clock: Arc<dyn Clock>,
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// The lifecycle events refreshes raise (`connection.reauth_required`, `connection.recovered`).
    pub events: Arc<dyn ConnectionEvents>,
    /// Where refreshes run, so shutdown can wait for them.
    pub background: tokio_util::task::TaskTracker,
    /// The in-process token cache (shared with whatever delivers other brokers' invalidations).
    pub cache: Arc<TokenCache>,
}

impl TokenService {
    /// Builds the service.
    pub fn new(parts: TokenServiceParts) -> Self {
        let issued_to = parts
            .connectors
            .values()
            .map(|c| (c.id.clone(), TokenIdentity::new(&"".into(), &c.client_id, &c.scopes)))
            .collect();
        Self {
            issued_to,
            records: parts.records,
            endpoint: parts.endpoint,
            connectors: parts.connectors,
            settings: parts.settings,
            budget: parts.budget,
            clock: parts.clock,
            metrics: parts.metrics,
            events: parts.events,
            refreshes: SingleFlight::default(),
            cache: parts.cache,
            background: parts.background,
        }
    }

    /// True when no caller holds or waits for a connection's in-process refresh lock (tests
    /// check nothing is left behind).
    pub fn no_refresh_in_flight(&self) -> bool {
        self.refreshes.is_empty()
    }

    /// Forgets this broker's memory copy of a connector's connection (DELETE, before the store
    /// is asked, so that an outage cannot keep it served).
    pub fn forget_owned(&self, connector: &ConnectorId, connection_id: &ConnectionId) {
        self.cache.forget_owned(connector, connection_id);
    }

    /// Forgets a deleted connection's token here and on every broker sharing the store (after
    /// the delete: a load that raced it never puts the token back, see [`TokenCache`]).
    pub fn deleted(&self, connection_id: &ConnectionId) {
        self.cache.invalidate(connection_id);
    }

    fn now(&self) -> i64 {
        self.clock.now_unix()
    }

    fn connector(&self, id: &ConnectorId) -> Option<&ConnectorConfig> {
        self.connectors.get(id)
    }

    /// Returns an access token for `connection_id` that lives at least `min_ttl` (refreshing if
    /// needed).
    ///
    /// When the store is unreachable, the token this broker last served for the connection is
    /// served while it is still valid (whatever `min_ttl` asks: it is the best there is); without
    /// one, the store error stands (503). A store error never changes a connection.
    pub async fn access_token(
        self: &Arc<Self>,
        connector: &ConnectorId,
        connection_id: &ConnectionId,
        min_ttl: Duration,
    ) -> Result<AccessToken, TokenServiceError> {
        let mut result = self.answer(connector, connection_id, min_ttl).await;
        let known = self.connector(connector).is_some();
        if let Ok(token) = &mut result {
            token.min_ttl_unmet = token.expires_at - self.now() < min_ttl.as_secs() as i64;
            if token.min_ttl_unmet && known {
                self.metrics.min_ttl_unmet(connector.as_str());
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
        if known {
            self.metrics.token_request(connector.as_str(), outcome);
        }
        result
    }

    async fn answer(
        self: &Arc<Self>,
        connector: &ConnectorId,
        connection_id: &ConnectionId,
        min_ttl: Duration,
    ) -> Result<AccessToken, TokenServiceError> {
        // A warm token never touches the store.
        // The identity a hit needs is its own tenant's with the connector's current client id and
        // scopes, so only those two are compared (precomputed per connector).
        let hit = self.cache.hit(connector, connection_id, min_ttl, self.now(), |issued| {
            self.issued_to
                .get(connector)
                .is_some_and(|current| issued.same_client_and_scopes(current))
        });
        if self.cache.serves_hits() {
            self.metrics.cache_lookup(hit.is_some());
        }
        if let Some(token) = hit {
            return Ok(token);
        }
        let ticket = self.cache.ticket(connection_id);
        match self.serve(connector, connection_id, min_ttl).await {
            Ok(token) => {
                self.cache
                    .remember(ticket, connector, connection_id, &token, self.now());
                Ok(token)
            }
            Err(TokenServiceError::Store(e)) => match self.cache.recall(connector, connection_id, self.now()) {
                Some(token) => {
                    tracing::warn!(connection = %connection_id, connector = %connector, error = %e, "store unreachable; serving the last token served from memory");
                    Ok(token)
                }
                None => Err(TokenServiceError::Store(e)),
            },
            Err(e) => {
                // The remembered token must not outlive a connection that is gone or needs a new
                // sign-in; after the other errors the connection is as it was.
                let gone = match &e {
                    TokenServiceError::NotFound | TokenServiceError::ReauthRequired(_) => true,
                    TokenServiceError::Unavailable { .. }
                    | TokenServiceError::RefreshInProgress { .. }
                    | TokenServiceError::Upstream(_)
                    | TokenServiceError::Store(_) => false,
                };
                if gone {
                    self.cache.forget(connection_id);
                }
                Err(e)
            }
        }
    }

    async fn serve(
        self: &Arc<Self>,
        connector: &ConnectorId,
        connection_id: &ConnectionId,
        min_ttl: Duration,
    ) -> Result<AccessToken, TokenServiceError> {
        let (conn, seen_version) = self.load(connector, connection_id).await?;
        let identity = self.expected_identity(connector, &conn)?;
        if let Some(token) = self.usable(&conn, &identity, min_ttl, Served::CacheHit)? {
            return Ok(token);
        }
        if let Some(token) = self.within_floor(&conn, &identity)? {
            return Ok(token);
        }
        self.refresh_detached(connector, connection_id, min_ttl, seen_version)
            .await
    }

    /// Refreshes an idle connection for keep-alive, whatever its access token's lifetime, unless
    /// it was written since `seen_version` (another broker, or a caller, refreshed it): the same
    /// lease, fencing and refresh budget as a caller's refresh, on its own task.
    pub async fn keep_alive(
        self: &Arc<Self>,
        connector: &ConnectorId,
        connection_id: &ConnectionId,
        seen_version: u64,
    ) -> Result<AccessToken, TokenServiceError> {
        self.refresh_detached(connector, connection_id, KEEPALIVE_MIN_TTL, seen_version)
            .await
    }

    /// The leased refresh, behind this process's per-connection lock, on a task of its own: a
    /// caller that hangs up, or a request timeout, drops the future that awaits it, and a refresh
    /// dropped between Entra's answer and the write of the rotated refresh token would lose the
    /// only copy of it.
    async fn refresh_detached(
        self: &Arc<Self>,
        connector: &ConnectorId,
        connection_id: &ConnectionId,
        min_ttl: Duration,
        seen_version: u64,
    ) -> Result<AccessToken, TokenServiceError> {
        let this = self.clone();
        let (connector, id) = (connector.clone(), connection_id.clone());
        // In the caller's span, so its lines keep the request id, and its dispatcher (see
        // `server::in_current_dispatcher`).
        let refresh = self.background.spawn(
            async move {
                // Keyed by connector too: a flight's token is shared only with callers of the
                // connector that owns it (another connector's caller gets its own "not found").
                let key = format!("{connector}\n{id}");
                this.refreshes
                    .run(&key, this.refresh_leased(&connector, &id, min_ttl, seen_version))
                    .await
            }
            .in_current_span()
            .with_current_subscriber(),
        );
        refresh.await.unwrap_or_else(|e| {
            tracing::error!(connection = %connection_id, error = %e, "the refresh task failed");
            Err(TokenServiceError::Unavailable {
                retry_after: WAIT_RETRY_AFTER,
            })
        })
    }

    async fn load(&self, connector: &ConnectorId, id: &ConnectionId) -> Result<(Connection, u64), TokenServiceError> {
        match self.records.connection(id).await? {
            Some((c, v)) if c.connector == *connector => Ok((c, v)),
            _ => Err(TokenServiceError::NotFound),
        }
    }

    /// What the connection's tokens must have been issued for to be served now: its tenant and
    /// the connector's current client id and scopes.
    fn expected_identity(
        &self,
        connector: &ConnectorId,
        conn: &Connection,
    ) -> Result<TokenIdentity, TokenServiceError> {
        let current = self.issued_to.get(connector).ok_or(TokenServiceError::NotFound)?;
        Ok(current.for_tenant(&conn.tenant_id))
    }

    /// The stored token when it is fresh enough and was issued for `identity`; the reauth error
    /// when the connection is dead.
    fn usable(
        &self,
        conn: &Connection,
        identity: &TokenIdentity,
        min_ttl: Duration,
        served: Served,
    ) -> Result<Option<AccessToken>, TokenServiceError> {
        if conn.status == ConnectionStatus::ReauthRequired {
            return Err(TokenServiceError::ReauthRequired(conn.reauth.clone().unwrap_or(
                ReauthReason {
                    category: Category::ReauthRequired,
                    aadsts: None,
                },
            )));
        }
        if conn.token_identity.as_ref() != Some(identity) {
            return Ok(None);
        }
        let remaining = conn.access_expires_at - self.now();
        // Never an expired token, even when any remaining lifetime will do.
        Ok((remaining > 0 && remaining >= min_ttl.as_secs() as i64).then(|| to_token(conn, served)))
    }

    /// The stored token, still valid and issued for `identity`, of a connection refreshed (or
    /// signed in) less than `[tokens] min_refresh_interval_secs` ago: Entra would answer a new
    /// refresh with a token of the same lifetime, so a `min_ttl` it cannot meet must not make the
    /// broker ask it again and again (AADSTS50196 and throttling would then hit every user of the
    /// app).
    fn within_floor(
        &self,
        conn: &Connection,
        identity: &TokenIdentity,
    ) -> Result<Option<AccessToken>, TokenServiceError> {
        let floor = self.settings.min_refresh_interval;
        if floor.is_zero() || self.now() >= conn.refreshed_at.saturating_add(floor.as_secs() as i64) {
            return Ok(None);
        }
        self.usable(conn, identity, Duration::ZERO, Served::CacheHit)
    }

    /// Refreshes under the connection's lease in the store, so that one broker among all that
    /// share the store calls Entra; the others poll the connection (25 ms doubling to 250 ms)
    /// until it changes or the lease is free, for at most `refresh.wait`, and never call Entra
    /// without it.
    async fn refresh_leased(
        &self,
        connector_id: &ConnectorId,
        connection_id: &ConnectionId,
        min_ttl: Duration,
        seen_version: u64,
    ) -> Result<AccessToken, TokenServiceError> {
        let deadline = tokio::time::Instant::now() + self.settings.wait;
        let mut pause = WAIT_FIRST;
        loop {
            // Re-read first: a caller before us (here or on another broker) may have refreshed
            // while we waited. Its result is ours too, even if Entra's lifetime is shorter than
            // our min_ttl — asking again would only repeat the same answer, once per waiting
            // caller.
            let (conn, version) = self.load(connector_id, connection_id).await?;
            if let Some(token) = self.refreshed_meanwhile(connector_id, &conn, version, min_ttl, seen_version)? {
                return Ok(token);
            }
            if let Some(mut lease) = self.records.try_lease(connection_id, self.settings.lease).await? {
                let out = {
                    let work = self.refresh_locked(connector_id, connection_id, min_ttl, seen_version);
                    let renew = self.keep_lease(&mut lease, connection_id);
                    tokio::select! {
                        out = work => out,
                        never = renew => match never {},
                    }
                };
                if let Err(e) = self.records.release_lease(lease).await {
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
        let (conn, _) = self.load(connector_id, connection_id).await?;
        let identity = self.expected_identity(connector_id, &conn)?;
        match self.usable(&conn, &identity, Duration::ZERO, Served::StaleButValid)? {
            Some(token) => Ok(token),
            None => Err(TokenServiceError::RefreshInProgress {
                retry_after: WAIT_RETRY_AFTER,
            }),
        }
    }

    /// The stored token when it is fresh enough, or when the connection was written since
    /// `seen_version` (someone refreshed it) and its token is still valid.
    fn refreshed_meanwhile(
        &self,
        connector_id: &ConnectorId,
        conn: &Connection,
        version: u64,
        min_ttl: Duration,
        seen_version: u64,
    ) -> Result<Option<AccessToken>, TokenServiceError> {
        let identity = self.expected_identity(connector_id, conn)?;
        let written_since = version != seen_version && conn.access_expires_at > self.now();
        let wanted = if written_since { Duration::ZERO } else { min_ttl };
        self.usable(conn, &identity, wanted, Served::Refreshed)
    }

    /// Renews a held lease every third of its lifetime while the refresh runs; never returns (the
    /// refresh finishing ends it). When renewal fails the lease may be lost: the refresh goes on,
    /// and the compare-and-swap of its result decides whether it may be written.
    async fn keep_lease(&self, lease: &mut Lease, connection_id: &ConnectionId) -> std::convert::Infallible {
        if self.settings.renew {
            loop {
                tokio::time::sleep(self.settings.lease / 3).await;
                match self.records.renew_lease(lease, self.settings.lease).await {
                    Ok(true) => continue,
                    Ok(false) => {
                        tracing::warn!(connection = %connection_id, "the refresh lease was lost; a newer refresh by another broker will win")
                    }
                    Err(e) => {
                        tracing::warn!(connection = %connection_id, error = %e, "renewing the refresh lease failed")
                    }
                }
                break;
            }
        }
        std::future::pending().await
    }

    async fn refresh_locked(
        &self,
        connector_id: &ConnectorId,
        connection_id: &ConnectionId,
        min_ttl: Duration,
        seen_version: u64,
    ) -> Result<AccessToken, TokenServiceError> {
        // Re-read under the lease: whoever held it before us may have refreshed. The version read
        // here fences our write: it happens only if nobody wrote the connection since.
        let (conn, version) = self.load(connector_id, connection_id).await?;
        let identity = self.expected_identity(connector_id, &conn)?;
        if let Some(token) = self.refreshed_meanwhile(connector_id, &conn, version, min_ttl, seen_version)? {
            return Ok(token);
        }
        let connector = self.connector(connector_id).ok_or(TokenServiceError::NotFound)?;
        let Some(refresh_token) = conn.refresh_token.clone() else {
            return self.flip_to_reauth(conn, version, Category::ReauthRequired, None).await;
        };
        if let Some(issued) = &conn.token_identity
            && (issued.client_id != identity.client_id || issued.tenant_id != identity.tenant_id)
        {
            // The refresh token belongs to another application or tenant: only a new sign-in helps.
            tracing::warn!(connection = %connection_id, connector = %connector_id, "the connector's client id changed since the sign-in");
            return self.flip_to_reauth(conn, version, Category::ReauthRequired, None).await;
        }
        // The connector's refresh budget, last before Entra: past it, the stored token while it is
        // valid, else 503; Entra never sees the burst.
        if let Err(limited) = self.budget.check(connector_id.as_str(), &self.metrics) {
            tracing::warn!(connection = %connection_id, connector = %connector_id, "refresh budget of the connector used up; not calling Entra");
            self.metrics.refresh_budget_exhausted(connector_id.as_str());
            return self
                .usable(&conn, &identity, Duration::ZERO, Served::StaleButValid)?
                .ok_or(TokenServiceError::Unavailable {
                    retry_after: limited.retry_after,
                });
        }
        let started = std::time::Instant::now();
        let result = self
            .endpoint
            .refresh(
                conn.tenant_id.as_str(),
                &ClientAuth {
                    client_id: &connector.client_id,
                    credential: &connector.credential,
                },
                refresh_token.expose(),
                // One resource per token request, the one the sign-in's token was for.
                &crate::scope::for_token_request(&connector.scopes),
            )
            .await;
        self.metrics.refresh_duration(started.elapsed());
        match result {
            Ok(resp) => {
                let now = self.now();
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
                let recovered = updated.failing.take().and_then(|_| self.events.recovered(&updated));
                match self.write_rotated(&updated, version, recovered.as_ref()).await? {
                    CasOutcome::Written(_) => {
                        // The other brokers' copies are the old token; ours comes back with the
                        // next load.
                        self.cache.invalidate(connection_id);
                        // Where tests/integration/chaos.rs kills the broker: written, nobody answered.
                        fail::fail_point!("tokens::rotated_written");
                        tracing::info!(connection = %connection_id, connector = %connector_id, "access token refreshed");
                        Ok(to_token(&updated, Served::Refreshed))
                    }
                    // Someone else wrote (another refresher, perhaps after our lease was lost; a
                    // delete; a new sign-in): theirs wins, ours is never written over it (fencing).
                    CasOutcome::Conflict => {
                        tracing::info!(connection = %connection_id, connector = %connector_id, "refresh result discarded: the connection was written meanwhile");
                        let (latest, _) = self.load(connector_id, connection_id).await?;
                        self.usable(
                            &latest,
                            &self.expected_identity(connector_id, &latest)?,
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
                self.metrics.entra_error(c.primary_code());
                if c.category == Category::ClientCredentialInvalid {
                    self.metrics.credential_error(connector_id.as_str(), c.primary_code());
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
                    self.flip_to_reauth(conn, version, c.category, c.primary_code()).await
                } else {
                    Err(TokenServiceError::Upstream(Box::new(c)))
                }
            }
            Err(e @ TokenError::Credential(_)) => {
                tracing::error!(connection = %connection_id, connector = %connector_id, error = %e, "refresh not attempted");
                Err(TokenServiceError::Upstream(Box::new(
                    Classification::local_credential_failure(),
                )))
            }
            Err(e @ (TokenError::Unavailable { .. } | TokenError::Protocol(_))) => {
                let retry_after = match &e {
                    TokenError::Unavailable {
                        retry_after: Some(r), ..
                    } => *r,
                    _ => self.settings.default_retry_after,
                };
                let (trace_id, correlation_id) = e.entra_ids();
                tracing::warn!(connection = %connection_id, connector = %connector_id, error = %e, trace_id, correlation_id, "refresh failed; Entra unavailable");
                self.note_transient_failure(&conn, version).await;
                match self.usable(&conn, &identity, Duration::ZERO, Served::StaleButValid)? {
                    Some(token) => Ok(token),
                    None => Err(TokenServiceError::Unavailable { retry_after }),
                }
            }
        }
    }

    /// Writes a refreshed connection with compare-and-swap, retrying while the store does not
    /// answer: until this write lands, the rotated refresh token Entra just issued exists only
    /// here. A retry after a write that did land but whose answer was lost sees a conflict, and
    /// the caller then reads the record back, which is this write.
    async fn write_rotated(
        &self,
        conn: &Connection,
        version: u64,
        event: Option<&PendingEvent>,
    ) -> Result<CasOutcome, StoreError> {
        let deadline = tokio::time::Instant::now() + WRITE_RETRY_FOR;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.records.update_connection_with(conn, version, event).await {
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

    /// Records, once per run of failures, that refreshes of `conn` fail for a passing reason, so
    /// that its next successful refresh raises `connection.recovered`. Best effort: a conflict
    /// means someone wrote the connection meanwhile, and an unreachable store is why it failed.
    async fn note_transient_failure(&self, conn: &Connection, version: u64) {
        if conn.failing.is_some() || !self.events_wanted(conn) {
            return;
        }
        let mut failing = conn.clone();
        failing.failing = Some(TransientFailure {
            since: self.now(),
            category: Category::Transient,
        });
        if let Err(e) = self.records.update_connection(&failing, version).await {
            tracing::debug!(connection = %conn.id, error = %e, "the transient failure was not recorded");
        }
    }

    /// Whether `conn`'s connector keeps lifecycle events (else nothing about failures is written).
    fn events_wanted(&self, conn: &Connection) -> bool {
        self.connector(&conn.connector).is_some_and(|c| !c.webhooks.is_empty())
    }

    async fn flip_to_reauth(
        &self,
        mut conn: Connection,
        version: u64,
        category: Category,
        aadsts: Option<u32>,
    ) -> Result<AccessToken, TokenServiceError> {
        let reason = ReauthReason { category, aadsts };
        conn.status = ConnectionStatus::ReauthRequired;
        conn.reauth = Some(reason.clone());
        conn.failing = None;
        let event = self.events.reauth_required(&conn, category, aadsts).await;
        match self
            .records
            .update_connection_with(&conn, version, event.as_ref())
            .await?
        {
            CasOutcome::Written(_) => {
                self.cache.invalidate(&conn.id);
                Err(TokenServiceError::ReauthRequired(reason))
            }
            // A concurrent sign-in or refresh replaced the record; answer from what is there now.
            CasOutcome::Conflict => {
                let (latest, _) = self.load(&conn.connector, &conn.id).await?;
                let identity = self.expected_identity(&conn.connector, &latest)?;
                self.usable(&latest, &identity, Duration::ZERO, Served::Refreshed)?
                    .ok_or(TokenServiceError::ReauthRequired(reason))
            }
        }
    }
}

fn to_token(conn: &Connection, served: Served) -> AccessToken {
    AccessToken {
        access_token: Arc::new(conn.access_token.clone()),
        expires_at: conn.access_expires_at,
        scope: conn.scopes.join(" ").into(),
        served,
        min_ttl_unmet: false,
        issued_for: conn.token_identity.clone().map(Arc::new),
        answer: Arc::default(),
    }
}

/// First wait between two looks at a connection whose lease another broker holds.
const WAIT_FIRST: Duration = Duration::from_millis(25);
/// Longest wait between two looks.
const WAIT_MAX: Duration = Duration::from_millis(250);
/// `Retry-After` when another broker's refresh did not finish within the wait.
const WAIT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The `min_ttl` of a keep-alive refresh: longer than any access token lives, so the stored one
/// never counts as fresh enough.
const KEEPALIVE_MIN_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a refresh keeps trying to write its result while the store does not answer.
const WRITE_RETRY_FOR: Duration = Duration::from_secs(15);
