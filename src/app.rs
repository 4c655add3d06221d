//! The application state: built once from config, shared by every handler (`State<AppState>`).
//! The listeners live in `server.rs`, the background loops in `tasks.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use crate::approval::{ApprovalService, ApprovalServiceParts, ApprovalSettings, PendingApprovals};
use crate::clock::SystemClock;
use crate::config::{Config, ConnectorConfig, Connectors, StoreConfig};
use crate::entra::EntraClient;
use crate::entra::id_token::KeyCache;
use crate::flow::{EntraSignIn, FlowService, FlowServiceParts, FlowSettings};
use crate::http::api_keys::ApiKeys;
use crate::metrics::Metrics;
use crate::ratelimit::Limiters;
use crate::ratelimit::RefreshBudget;
use crate::store::{
    EmbeddedStore, EncryptedStore, MemoryStore, RedisChannel, RedisStore, Store, StoreError, TimedStore,
    records::Records,
};
use crate::tokens::{
    INVALIDATION_CHANNEL, InvalidationBus, Invalidations, LocalOnly, RefreshSettings, TokenCache, TokenService,
    TokenServiceParts,
};
use crate::webhooks::{LifecycleEvents, Outbox};

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    /// The HTTP client could not be built (TLS roots).
    #[error("cannot build an HTTP client (Entra, webhooks): {0}")]
    HttpClient(#[from] reqwest::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("cannot load the TLS certificate or key: {0}")]
    Tls(std::io::Error),
    /// The server failed while running.
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// Everything request handlers share.
pub struct App {
    /// The validated configuration.
    pub config: Config,
    /// Connectors by id.
    pub connectors: Connectors,
    /// The connector of each API key (by the key's digest).
    pub api_keys: ApiKeys,
    /// Typed store access.
    pub records: Records,
    /// Entra HTTP client.
    pub entra: EntraClient,
    /// Runs sign-ins: connect sessions, starts, the callback and the handoff.
    pub flow: Arc<FlowService>,
    /// Serves and refreshes access tokens.
    pub tokens: Arc<TokenService>,
    /// Builds webhook events (and wakes the deliverer when one is stored).
    pub outbox: Arc<Outbox>,
    /// Prometheus metrics (`GET /metrics`), built once with the state.
    pub metrics: Arc<Metrics>,
    /// Approval pages and the admin-consent round trip.
    pub approval: Arc<ApprovalService>,
    /// Rate limiters (`[limits]`), shared with the flow service for its start limit.
    pub limits: Arc<Limiters>,
    /// The in-process token cache (the token service serves from it; sign-ins invalidate it).
    pub token_cache: Arc<TokenCache>,
    /// Cross-broker invalidation of the token cache, on a Redis store (run by the server).
    pub invalidations: Option<Arc<Invalidations>>,
    /// Work that outlives the request that started it (refreshes, code exchanges): shutdown
    /// waits for it, within the grace period, so a SIGTERM does not drop a rotated refresh token.
    pub background: tokio_util::task::TaskTracker,
}

/// The handle handlers receive (`State<AppState>`).
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl AppState {
    /// Builds the state: opens the store (connecting to Redis is why this is async), builds the
    /// Entra client.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let (store, channel) = open_backend(&config).await?;
        Self::with_store_and_channel(config, store, channel)
    }

    /// Builds the state over a given store (no encryption layer is added; a timing layer for
    /// the store-latency metric is), and warns about connector credentials that expire soon
    /// (exporting every known expiry as a metric).
    pub fn with_store(config: Config, store: Arc<dyn Store>) -> Result<Self, StartError> {
        Self::with_store_and_channel(config, store, None)
    }

    /// [`AppState::with_store`], with the Redis channel through which brokers sharing the store
    /// invalidate each other's token caches (none: this broker is the store's only user).
    pub fn with_store_and_channel(
        config: Config,
        store: Arc<dyn Store>,
        channel: Option<RedisChannel>,
    ) -> Result<Self, StartError> {
        let ids: Vec<&str> = config.connectors.iter().map(|c| c.id.as_str()).collect();
        let metrics = Arc::new(Metrics::for_connectors(&ids, Some(config.entra.authority.as_str())));
        let store: Arc<dyn Store> = Arc::new(TimedStore::new(store, metrics.clone()));
        let entra = EntraClient::new(&config.entra, metrics.clone())?;
        let keys = KeyCache::new(
            entra.clone(),
            config.entra.jwks_cache_ttl,
            config.entra.jwks_min_refetch_interval,
        );
        let now = time::OffsetDateTime::now_utc();
        for connector in &config.connectors {
            let credential = &connector.credential;
            crate::entra::credential::log_expiry(connector.id.as_str(), credential, now);
            if let Some(at) = credential.expires_at() {
                metrics.credential_expires_at(connector.id.as_str(), credential.kind(), at.unix_timestamp());
            }
        }
        let connectors: Arc<HashMap<_, _>> =
            Arc::new(config.connectors.iter().map(|c| (c.id.clone(), c.clone())).collect());
        let records = Records::new(store);
        let background = tokio_util::task::TaskTracker::new();
        let outbox = Arc::new(Outbox::new(connectors.clone(), Arc::new(SystemClock)));
        let limits = Arc::new(Limiters::new(&config.limits, config.trusted_proxy_header.clone()));
        let pending_approvals = Arc::new(PendingApprovals::new(metrics.clone()));
        let (bus, invalidations) = match channel {
            Some(channel) => {
                let (bus, invalidations) = Invalidations::new(channel);
                (bus, Some(Arc::new(invalidations)))
            }
            None => (Arc::new(LocalOnly) as Arc<dyn InvalidationBus>, None),
        };
        let token_cache = Arc::new(TokenCache::new(config.refresh.token_cache_capacity, bus));
        if invalidations.is_some() {
            // No hits until the other brokers' invalidations are received.
            token_cache.pause();
        }
        metrics.cache_subscribed(token_cache.is_listening() && token_cache.serves_hits());
        let flow = Arc::new(FlowService::new(FlowServiceParts {
            pending_approvals: pending_approvals.clone(),
            records: records.clone(),
            entra: Arc::new(EntraSignIn::new(entra.clone(), keys)),
            connectors: connectors.clone(),
            settings: FlowSettings::from_config(&config),
            limits: limits.clone(),
            clock: Arc::new(SystemClock),
            metrics: metrics.clone(),
            outbox: outbox.clone(),
            background: background.clone(),
            tokens: token_cache.clone(),
        }));
        let tokens = Arc::new(TokenService::new(TokenServiceParts {
            records: records.clone(),
            endpoint: Arc::new(entra.clone()),
            connectors: connectors.clone(),
            settings: RefreshSettings::from_config(&config),
            budget: RefreshBudget::new(config.tokens.max_refreshes_per_minute),
            clock: Arc::new(SystemClock),
            metrics: metrics.clone(),
            events: Arc::new(LifecycleEvents::new(outbox.clone(), flow.clone())),
            background: background.clone(),
            cache: token_cache.clone(),
        }));
        let approval = Arc::new(ApprovalService::new(ApprovalServiceParts {
            records: records.clone(),
            entra: Arc::new(entra.clone()),
            connectors: connectors.clone(),
            pending: pending_approvals.clone(),
            clock: Arc::new(SystemClock),
            metrics: metrics.clone(),
            outbox: outbox.clone(),
            settings: ApprovalSettings::from_config(&config),
        }));
        Ok(Self(Arc::new(App {
            api_keys: ApiKeys::new(&config.connectors),
            records,
            entra,
            connectors,
            flow,
            approval,
            tokens,
            outbox,
            metrics,
            background,
            limits,
            token_cache,
            invalidations,
            config,
        })))
    }

    /// A connector by id.
    pub fn connector<Q>(&self, id: &Q) -> Option<&ConnectorConfig>
    where
        Q: std::hash::Hash + Eq + ?Sized,
        crate::ids::ConnectorId: std::borrow::Borrow<Q>,
    {
        self.connectors.get(id)
    }

    /// `{public_url}{path}`.
    pub fn public(&self, path: &str) -> String {
        format!("{}{path}", self.config.public_url.as_str().trim_end_matches('/'))
    }

    /// True when browsers reach the broker over https: the binding cookie is then `Secure` and
    /// `__Host-`-prefixed.
    pub fn secure_cookies(&self) -> bool {
        self.config.public_url.scheme() == "https"
    }

    /// The broker's OAuth redirect URI.
    pub fn redirect_uri(&self) -> String {
        self.public("/v1/callback")
    }
}

/// Opens the configured backend, wrapped in the encryption layer when `[encryption]` has keys
/// (always, except for a memory store configured without): what the broker and `rotate-keys` use.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    Ok(open_backend(config).await?.0)
}

/// [`open_store`], and on Redis the channel of the token cache's invalidations.
async fn open_backend(config: &Config) -> Result<(Arc<dyn Store>, Option<RedisChannel>), StartError> {
    let (backend, channel): (Arc<dyn Store>, _) = match &config.store {
        StoreConfig::Memory { .. } => (Arc::new(MemoryStore::new()), None),
        StoreConfig::Embedded { path, cache_bytes, .. } => {
            (Arc::new(EmbeddedStore::open_with_cache(path, *cache_bytes)?), None)
        }
        StoreConfig::Redis { redis, .. } => {
            let store = RedisStore::connect(redis).await?;
            let channel = store.channel(INVALIDATION_CHANNEL);
            (Arc::new(store), Some(channel))
        }
    };
    let store: Arc<dyn Store> = match &config.encryption {
        Some(keys) => {
            tracing::info!(primary = %keys.primary_id(), keys = keys.ids().count(), compress = keys.compresses(), "store values are encrypted at rest");
            Arc::new(EncryptedStore::new(backend, keys.clone()))
        }
        None => {
            tracing::warn!("store values are NOT encrypted at rest (memory store without [encryption] keys)");
            backend
        }
    };
    Ok((store, channel))
}
