//! The application: shared state built once from config, and the server that runs it.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use axum_server::accept::DefaultAcceptor;

use crate::clock::SystemClock;
use crate::config::{Config, ConnectorConfig, StoreConfig};
use crate::entra::EntraClient;
use crate::entra::id_token::KeyCache;
use crate::flow::{EntraSignIn, FlowService, FlowServiceParts, FlowSettings};
use crate::http::conn_limit::ConnectionLimit;
use crate::metrics::Metrics;
use crate::ratelimit::Limiters;
use crate::ratelimit::RefreshBudget;
use crate::store::{
    EmbeddedStore, EncryptedStore, MemoryStore, RedisStore, Store, StoreError, TimedStore, records::Records,
};
use crate::tokens::{RefreshSettings, TokenService, TokenServiceParts};

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    /// The HTTP client could not be built (TLS roots).
    #[error("cannot build the Entra HTTP client: {0}")]
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
    pub connectors: Arc<HashMap<String, ConnectorConfig>>,
    /// Typed store access.
    pub records: Records,
    /// Entra HTTP client.
    pub entra: EntraClient,
    /// Runs sign-ins: connect sessions, starts, the callback and the handoff.
    pub flow: Arc<FlowService>,
    /// Serves and refreshes access tokens.
    pub tokens: Arc<TokenService>,
    /// Prometheus metrics (`GET /metrics`), built once with the state.
    pub metrics: Arc<Metrics>,
    /// Rate limiters (`[limits]`), shared with the flow service for its start limit.
    pub limits: Arc<Limiters>,
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
        let store = open_store(&config).await?;
        Self::with_store(config, store)
    }

    /// Builds the state over a given store (no encryption layer is added; a timing layer for
    /// the store-latency metric is), and warns about connector credentials that expire soon
    /// (exporting every known expiry as a metric).
    pub fn with_store(config: Config, store: Arc<dyn Store>) -> Result<Self, StartError> {
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
            crate::entra::credential::log_expiry(&connector.id, credential, now);
            if let Some(at) = credential.expires_at() {
                metrics.credential_expires_at(&connector.id, credential.kind(), at.unix_timestamp());
            }
        }
        let connectors: Arc<HashMap<_, _>> =
            Arc::new(config.connectors.iter().map(|c| (c.id.clone(), c.clone())).collect());
        let records = Records::new(store);
        let background = tokio_util::task::TaskTracker::new();
        let tokens = Arc::new(TokenService::new(TokenServiceParts {
            records: records.clone(),
            endpoint: Arc::new(entra.clone()),
            connectors: connectors.clone(),
            settings: RefreshSettings::from_config(&config),
            budget: RefreshBudget::new(config.tokens.max_refreshes_per_minute),
            clock: Arc::new(SystemClock),
            metrics: metrics.clone(),
            background: background.clone(),
        }));
        let limits = Arc::new(Limiters::new(&config.limits, config.trusted_proxy_header.clone()));
        let flow = Arc::new(FlowService::new(FlowServiceParts {
            records: records.clone(),
            entra: Arc::new(EntraSignIn::new(entra.clone(), keys)),
            connectors: connectors.clone(),
            settings: FlowSettings::from_config(&config),
            limits: limits.clone(),
            clock: Arc::new(SystemClock),
            metrics: metrics.clone(),
            background: background.clone(),
        }));
        Ok(Self(Arc::new(App {
            records,
            entra,
            connectors,
            flow,
            tokens,
            metrics,
            background,
            limits,
            config,
        })))
    }

    /// A connector by id.
    pub fn connector(&self, id: &str) -> Option<&ConnectorConfig> {
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
    let backend: Arc<dyn Store> = match &config.store {
        StoreConfig::Memory { .. } => Arc::new(MemoryStore::new()),
        StoreConfig::Embedded { path, .. } => Arc::new(EmbeddedStore::open(path)?),
        StoreConfig::Redis { redis, .. } => Arc::new(RedisStore::connect(redis).await?),
    };
    Ok(match &config.encryption {
        Some(keys) => {
            tracing::info!(primary = %keys.primary_id(), keys = keys.ids().count(), "store values are encrypted at rest");
            Arc::new(EncryptedStore::new(backend, keys.clone()))
        }
        None => {
            tracing::warn!("store values are NOT encrypted at rest (memory store without [encryption] keys)");
            backend
        }
    })
}

/// Connections the separate metrics listener serves at once (scrapers are few).
const METRICS_MAX_CONNECTIONS: usize = 64;

/// A bound, ready-to-run broker.
pub struct Application {
    state: AppState,
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    /// The separate `/metrics` listener, when `server.metrics_listen` is set.
    metrics_listener: Option<std::net::TcpListener>,
}

impl Application {
    /// Opens the store and binds `config.listen`.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let addr = config.listen;
        let listener = std::net::TcpListener::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
        Self::with_listener(AppState::build(config).await?, listener)
    }

    /// Runs on an already bound listener (tests bind port 0 first to learn the URL).
    /// Binds `server.metrics_listen` here too, if set.
    pub fn with_listener(state: AppState, listener: std::net::TcpListener) -> Result<Self, StartError> {
        let local_addr = listener.local_addr().map_err(StartError::Serve)?;
        listener.set_nonblocking(true).map_err(StartError::Serve)?;
        let metrics_listener = match state.config.metrics_listen {
            Some(addr) => {
                let l = std::net::TcpListener::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
                l.set_nonblocking(true).map_err(StartError::Serve)?;
                Some(l)
            }
            None => None,
        };
        Ok(Self {
            state,
            listener,
            local_addr,
            metrics_listener,
        })
    }

    /// The bound address of the separate metrics listener, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The shared state (tests inspect the store through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish within the grace period.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
        let Self {
            state,
            listener,
            metrics_listener,
            ..
        } = self;
        let grace = state.config.shutdown_grace;
        let purge = tokio::spawn(purge_loop(state.clone()));
        let probe = tokio::spawn(probe_store(state.clone()));
        let router = crate::http::router(state.clone());
        let handle = axum_server::Handle::new();
        let metrics_server = match metrics_listener {
            Some(l) => {
                // Internal, but bounded like the public listener: a stuck scraper holds nothing.
                let limits = &state.config.http;
                let metrics = state.metrics.clone();
                let mut server = axum_server::from_tcp(l)
                    .map_err(StartError::Serve)?
                    .handle(handle.clone())
                    .first_request_timeout(limits.header_read_timeout);
                server
                    .http_builder()
                    .http1()
                    .header_read_timeout(Some(limits.header_read_timeout));
                let server = server
                    .acceptor(ConnectionLimit::new(
                        DefaultAcceptor::new(),
                        METRICS_MAX_CONNECTIONS,
                        move || metrics.connection_refused(),
                    ))
                    .serve(crate::http::metrics_router(state.clone()).into_make_service());
                Some(tokio::spawn(server))
            }
            None => None,
        };
        let on_signal = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            on_signal.graceful_shutdown(Some(grace));
        });
        let limits = state.config.http.clone();
        let metrics = state.metrics.clone();
        let conn_limit = ConnectionLimit::new(DefaultAcceptor::new(), limits.max_connections, move || {
            metrics.connection_refused();
        });
        // A client gets `header_read_timeout` for its first request (which also bounds hyper's
        // protocol detection, untimed on its own) and for the headers of every later one.
        let mut server = axum_server::from_tcp(listener)
            .map_err(StartError::Serve)?
            .handle(handle)
            .first_request_timeout(limits.header_read_timeout);
        server
            .http_builder()
            .http1()
            .header_read_timeout(Some(limits.header_read_timeout));
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let served = match state.config.tls.clone() {
            Some(tls) => {
                let rustls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert_file, &tls.key_file)
                    .await
                    .map_err(StartError::Tls)?;
                let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(rustls)
                    .handshake_timeout(limits.header_read_timeout)
                    .acceptor(conn_limit);
                server.acceptor(acceptor).serve(service).await
            }
            None => server.acceptor(conn_limit).serve(service).await,
        };
        // Refreshes and code exchanges whose callers are gone still finish and write.
        state.background.close();
        if tokio::time::timeout(grace, state.background.wait()).await.is_err() {
            tracing::warn!(
                left = state.background.len(),
                "shutdown grace ran out with refreshes or sign-ins still running"
            );
        }
        purge.abort();
        probe.abort();
        let _ = purge.await;
        let _ = probe.await;
        if let Some(m) = metrics_server {
            // The shared handle has already told it to stop; a scrape in flight may finish.
            let _ = m.await;
        }
        served.map_err(StartError::Serve)
    }
}

/// Removes expired flows, sessions and codes on an interval, idle rate-limiter keys, and settled
/// pages from the pending-approvals gauge.
async fn purge_loop(state: AppState) {
    let every = match &state.config.store {
        StoreConfig::Memory { purge_interval }
        | StoreConfig::Embedded { purge_interval, .. }
        | StoreConfig::Redis { purge_interval, .. } => *purge_interval,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.limits.forget_idle();
        crate::approval::settle_pending(&state).await;
        match state.records.store().purge_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "purged expired records"),
            Err(e) => tracing::warn!(error = %e, "purging expired records failed"),
        }
    }
}

/// How often the store is pinged for the `store_up` gauge.
const STORE_PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps `consent_broker_store_up` current, so "store down" alerts need no request traffic.
async fn probe_store(state: AppState) {
    let mut tick = tokio::time::interval(STORE_PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_up = true;
    loop {
        tick.tick().await;
        let up = state.records.store().ping().await.is_ok();
        state.metrics.store_up(up);
        if up != was_up {
            if up {
                tracing::info!("the store answers again");
            } else {
                tracing::warn!("the store does not answer its health check");
            }
            was_up = up;
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
