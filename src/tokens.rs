//! Serving access tokens: cache hit, refresh (once per connection however many callers ask),
//! or a clear "reauth required" / "try later".
//!
//! Concurrency: callers for one connection queue on that connection's lock; the first refreshes
//! and writes with compare-and-swap, the rest re-read the store after the lock and find the fresh
//! token. The rotated refresh token is durably written before anyone is answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::app::AppState;
use crate::clock::now_unix;
use crate::crypto::Sensitive;
use crate::entra::client::ClientAuth;
use crate::entra::{Category, Classification, TokenError, classify};
use crate::store::{CasOutcome, StoreError, records::*};

/// Per-key async locks that vanish when nobody holds or waits for them.
#[derive(Default)]
pub struct SingleFlight {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl SingleFlight {
    /// Runs `f` while holding the lock for `key`.
    pub async fn run<T>(&self, key: &str, f: impl Future<Output = T>) -> T {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        let out = {
            let _guard = lock.lock().await;
            f.await
        };
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Two references: the map's and ours. Anyone else still waiting keeps it alive.
        if Arc::strong_count(&lock) == 2 {
            map.remove(key);
        }
        out
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
pub async fn access_token(
    state: &AppState,
    connector: &str,
    connection_id: &str,
    min_ttl: Duration,
) -> Result<AccessToken, TokenServiceError> {
    let (conn, seen_version) = load(state, connector, connection_id).await?;
    if let Some(token) = usable(&conn, min_ttl, Served::CacheHit)? {
        return Ok(token);
    }
    state
        .refreshes
        .run(
            connection_id,
            refresh_locked(state, connector, connection_id, min_ttl, seen_version),
        )
        .await
}

async fn load(state: &AppState, connector: &str, id: &str) -> Result<(Connection, u64), TokenServiceError> {
    match state.records.connection(id).await? {
        Some((c, v)) if c.connector == connector => Ok((c, v)),
        _ => Err(TokenServiceError::NotFound),
    }
}

/// The stored token when it is fresh enough; the reauth error when the connection is dead.
fn usable(conn: &Connection, min_ttl: Duration, served: Served) -> Result<Option<AccessToken>, TokenServiceError> {
    if conn.status == ConnectionStatus::ReauthRequired {
        return Err(TokenServiceError::ReauthRequired(conn.reauth.clone().unwrap_or(
            ReauthReason {
                category: Category::ReauthRequired.as_str().into(),
                aadsts: None,
            },
        )));
    }
    let remaining = conn.access_expires_at - now_unix();
    Ok((remaining >= min_ttl.as_secs() as i64).then(|| to_token(conn, served)))
}

fn to_token(conn: &Connection, served: Served) -> AccessToken {
    AccessToken {
        access_token: conn.access_token.clone(),
        expires_at: conn.access_expires_at,
        scope: conn.scopes.join(" "),
        served,
    }
}

async fn refresh_locked(
    state: &AppState,
    connector_id: &str,
    connection_id: &str,
    min_ttl: Duration,
    seen_version: u64,
) -> Result<AccessToken, TokenServiceError> {
    // Re-read under the lock: a caller before us may have refreshed while we waited. Its result
    // is ours too, even if Entra's lifetime is shorter than our min_ttl — asking again would
    // only repeat the same answer, once per waiting caller.
    let (conn, version) = load(state, connector_id, connection_id).await?;
    let refreshed_meanwhile = version != seen_version && conn.access_expires_at > now_unix();
    let wanted = if refreshed_meanwhile { Duration::ZERO } else { min_ttl };
    if let Some(token) = usable(&conn, wanted, Served::Refreshed)? {
        return Ok(token);
    }
    let connector = state.connector(connector_id).ok_or(TokenServiceError::NotFound)?;
    let Some(refresh_token) = conn.refresh_token.clone() else {
        return flip_to_reauth(state, conn, version, Category::ReauthRequired.as_str(), None).await;
    };
    let secret = secrecy::ExposeSecret::expose_secret(&connector.client_secret);
    let result = state
        .entra
        .refresh(
            &conn.tenant_id,
            &ClientAuth {
                client_id: &connector.client_id,
                client_secret: secret,
            },
            refresh_token.expose(),
            &connector.scopes,
        )
        .await;
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
            match state.records.update_connection(&updated, version).await? {
                CasOutcome::Written(_) => {
                    tracing::info!(connection = %connection_id, connector = %connector_id, "access token refreshed");
                    Ok(to_token(&updated, Served::Refreshed))
                }
                // Someone else wrote (another refresher, a delete, a new sign-in): theirs wins.
                CasOutcome::Conflict => {
                    let (latest, _) = load(state, connector_id, connection_id).await?;
                    Ok(to_token(&latest, Served::Refreshed))
                }
            }
        }
        Err(TokenError::Rejected(err)) => {
            let c = classify(&err);
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
        Err(e @ (TokenError::Unavailable { .. } | TokenError::Protocol(_))) => {
            let retry_after = match &e {
                TokenError::Unavailable {
                    retry_after: Some(r), ..
                } => *r,
                _ => state.config.entra.default_retry_after,
            };
            tracing::warn!(connection = %connection_id, connector = %connector_id, error = %e, "refresh failed; Entra unavailable");
            if conn.access_expires_at > now_unix() {
                return Ok(to_token(&conn, Served::StaleButValid));
            }
            Err(TokenServiceError::Unavailable { retry_after })
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
            usable(&latest, Duration::ZERO, Served::Refreshed)?.ok_or(TokenServiceError::ReauthRequired(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

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
}
