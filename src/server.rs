//! The server: the public listener (plain or TLS) and the optional metrics listener, with
//! their timeouts and connection caps, and graceful shutdown that waits for background work.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum_server::accept::DefaultAcceptor;
use tracing::instrument::WithSubscriber as _;

use crate::app::{AppState, StartError};
use crate::config::Config;
use crate::http::conn_limit::ConnectionLimit;

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
        let purge = tokio::spawn(crate::tasks::purge_loop(state.clone()).with_current_subscriber());
        let probe = tokio::spawn(crate::tasks::probe_store(state.clone()).with_current_subscriber());
        let backfill = tokio::spawn(crate::tasks::list_unlisted_connections(state.clone()).with_current_subscriber());
        let keepalive = tokio::spawn(
            crate::keepalive::KeepAlive::new(
                state.records.clone(),
                state.tokens.clone(),
                state.config.keepalive.clone(),
                std::sync::Arc::new(crate::clock::SystemClock),
                state.metrics.clone(),
            )
            .run()
            .with_current_subscriber(),
        );
        let deliverer = crate::webhooks::Deliverer::new(
            state.records.clone(),
            state.connectors.clone(),
            state.config.webhooks.clone(),
            std::sync::Arc::new(crate::clock::SystemClock),
            state.metrics.clone(),
            state.outbox.wake(),
        )?;
        let webhooks = tokio::spawn(deliverer.run().with_current_subscriber());
        let invalidations = state.invalidations.clone().map(|inv| {
            let (cache, metrics) = (state.token_cache.clone(), state.metrics.clone());
            tokio::spawn(async move { inv.run(cache, metrics).await }.with_current_subscriber())
        });
        let router = in_current_dispatcher(crate::http::router(state.clone()));
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
                    .serve(in_current_dispatcher(crate::http::metrics_router(state.clone())).into_make_service());
                Some(tokio::spawn(server.with_current_subscriber()))
            }
            None => None,
        };
        let on_signal = handle.clone();
        tokio::spawn(
            async move {
                shutdown.await;
                on_signal.graceful_shutdown(Some(grace));
            }
            .with_current_subscriber(),
        );
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
        backfill.abort();
        // Its refreshes run on `background`, which was waited for above.
        keepalive.abort();
        // An attempt cut off here is not recorded; the event stays due and is sent again
        // (delivery is at least once), by this broker after a restart or by another one.
        webhooks.abort();
        // Invalidations still queued are lost with this broker's cache; the other brokers were
        // told of every one already published.
        if let Some(task) = &invalidations {
            task.abort();
        }
        // Awaited, not only aborted: each holds the store, and a restart on the same embedded
        // file needs it closed.
        let _ = purge.await;
        let _ = probe.await;
        let _ = backfill.await;
        let _ = keepalive.await;
        let _ = webhooks.await;
        if let Some(task) = invalidations {
            let _ = task.await;
        }
        if let Some(m) = metrics_server {
            // The shared handle has already told it to stop; a scrape in flight may finish.
            let _ = m.await;
        }
        served.map_err(StartError::Serve)
    }
}

/// Serves every request of `router` in the `tracing` dispatcher current now.
///
/// axum-server runs each connection on a task of its own, and a new task starts in the global
/// dispatcher, not in the one its spawner ran in. The broker alone in its process has only the
/// global one, so this changes nothing there; but where a subscriber is scoped to one broker (the
/// tests run many in one process, each capturing its own log lines) the requests' lines would
/// otherwise escape it. The broker's own tasks carry the dispatcher on for the same reason.
/// Only test builds (`test-support`) add the layer: it costs every request a boxed future and a
/// dispatcher swap per poll, for nothing in a broker that runs alone.
#[cfg(feature = "test-support")]
fn in_current_dispatcher(router: Router) -> Router {
    let dispatch = tracing::dispatcher::get_default(tracing::Dispatch::clone);
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            next.run(request).with_subscriber(dispatch.clone())
        },
    ))
}

/// Release builds serve in the global dispatcher, the only one there is.
#[cfg(not(feature = "test-support"))]
fn in_current_dispatcher(router: Router) -> Router {
    router
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
