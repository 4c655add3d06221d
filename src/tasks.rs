//! The broker's background loops: purging expired records and probing the store.

use crate::app::AppState;
use crate::config::StoreConfig;

/// Removes expired flows, sessions and codes on an interval, idle rate-limiter keys, and settled
/// pages from the pending-approvals gauge.
pub(crate) async fn purge_loop(state: AppState) {
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
        state.approval.settle_pending().await;
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
pub(crate) async fn probe_store(state: AppState) {
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

/// Lists the connections an older broker wrote without a list entry (once per store; see
/// `Records::list_unlisted_connections`). Until it is done they are missing from
/// `GET /v1/connections`, nothing else.
pub(crate) async fn list_unlisted_connections(state: AppState) {
    match state.records.list_unlisted_connections().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(listed = n, "connections written by an older broker are now listed"),
        Err(e) => tracing::warn!(error = %e, "listing older connections failed; the next start tries again"),
    }
}
