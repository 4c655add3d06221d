//! Cross-broker invalidation of the token cache over Redis pub/sub: every broker sharing a Redis
//! store publishes the connection ids its cache must drop (deleted, flipped, refreshed, signed in
//! again) on the channel `{key_prefix}token-invalidations`, and forgets the ids the others publish.
//!
//! Publishing never blocks the request that invalidates: ids go into a queue that one task drains,
//! several per message (one id per line), retrying for a few seconds while Redis is unreachable.
//! Receiving: while not subscribed a broker serves no cache hits, and after every (re)subscription
//! nothing it kept before is a hit, because what was published in between is unknown (see
//! [`TokenCache::pause`] and [`TokenCache::resume`]). So a missed message costs hit rate, never a stale answer; the window in
//! which another broker may still serve a token this one just invalidated is the time a message
//! takes to cross Redis (milliseconds), and after a lost connection at most the subscription's ping
//! interval and timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{InvalidationBus, TokenCache};
use crate::ids::ConnectionId;
use crate::metrics::Metrics;
use crate::store::RedisChannel;

/// The channel's name after the key prefix.
pub const CHANNEL: &str = "token-invalidations";

/// Most ids one message carries.
const IDS_PER_MESSAGE: usize = 256;

/// How long a message is retried while Redis does not take it; the subscribers will have lost
/// their subscription too by then, and serve nothing kept from before when they are back.
const PUBLISH_RETRY_FOR: Duration = Duration::from_secs(10);

/// Longest wait between two subscription attempts.
const RESUBSCRIBE_MAX_DELAY: Duration = Duration::from_secs(1);

/// The [`InvalidationBus`] of a Redis store: queues ids for [`Invalidations::run`] to publish.
pub struct RedisBus {
    queue: mpsc::UnboundedSender<ConnectionId>,
}

impl InvalidationBus for RedisBus {
    fn publish(&self, connection_id: &ConnectionId) {
        // Only fails once the broker is shutting down, when nobody serves from this cache.
        let _ = self.queue.send(connection_id.clone());
    }
}

/// Both ends of the cross-broker invalidation of one broker: the queue [`RedisBus`] fills, and
/// the channel it is published on and received from.
pub struct Invalidations {
    channel: RedisChannel,
    queued: Mutex<Option<mpsc::UnboundedReceiver<ConnectionId>>>,
}

impl Invalidations {
    /// The bus to build the cache with, and what [`Invalidations::run`] needs. The cache built
    /// with the bus must then be [paused](TokenCache::pause) until `run` has subscribed.
    pub fn new(channel: RedisChannel) -> (Arc<dyn InvalidationBus>, Self) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Arc::new(RedisBus { queue: tx }),
            Self {
                channel,
                queued: Mutex::new(Some(rx)),
            },
        )
    }

    /// Publishes queued ids and applies received ones to `cache`, until the task is aborted.
    /// Runs once per broker (a second call returns at once).
    pub async fn run(&self, cache: Arc<TokenCache>, metrics: Arc<Metrics>) {
        let Some(queue) = self.queued.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        tokio::join!(
            publish_loop(&self.channel, queue, metrics.clone()),
            subscribe_loop(&self.channel, &cache, &metrics)
        );
    }
}

/// Drains the queue into messages of up to [`IDS_PER_MESSAGE`] ids.
async fn publish_loop(channel: &RedisChannel, mut queue: mpsc::UnboundedReceiver<ConnectionId>, metrics: Arc<Metrics>) {
    let mut batch = Vec::with_capacity(IDS_PER_MESSAGE);
    while queue.recv_many(&mut batch, IDS_PER_MESSAGE).await > 0 {
        let message = batch.iter().map(ConnectionId::as_str).collect::<Vec<_>>().join("\n");
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(50);
        loop {
            match channel.publish(&message).await {
                Ok(()) => {
                    metrics.cache_invalidations_published(batch.len());
                    break;
                }
                Err(e) if started.elapsed() < PUBLISH_RETRY_FOR => {
                    tracing::debug!(error = %e, "token cache invalidation not published yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(e) => {
                    metrics.cache_invalidations_lost(batch.len());
                    tracing::error!(ids = batch.len(), channel = %channel.name(), error = %e, "token cache invalidations could not be published; other brokers forget them when their subscription comes back");
                    break;
                }
            }
        }
        batch.clear();
    }
}

/// Subscribes, forgets what others publish, and pauses the cache while not subscribed.
async fn subscribe_loop(channel: &RedisChannel, cache: &TokenCache, metrics: &Metrics) {
    let mut attempt = 0usize;
    let mut delay = Duration::from_millis(50);
    let mut was_lost = false;
    loop {
        match channel.subscribe(attempt).await {
            Ok(mut subscription) => {
                cache.resume();
                metrics.cache_subscribed(true);
                if was_lost {
                    tracing::info!(channel = %channel.name(), "token cache invalidations received again; cache hits resumed");
                }
                delay = Duration::from_millis(50);
                while let Some(message) = subscription.next().await {
                    for id in message.lines().filter(|l| !l.is_empty()) {
                        cache.forget(&ConnectionId::from(id));
                    }
                }
                cache.pause();
                metrics.cache_subscribed(false);
                was_lost = true;
                attempt = attempt.wrapping_add(1);
                tracing::warn!(channel = %channel.name(), "lost the token cache invalidation subscription; serving from the store until it is back");
            }
            Err(e) => {
                // Said once per outage; the store's own errors say the rest.
                if !was_lost {
                    tracing::warn!(channel = %channel.name(), error = %e, "cannot subscribe to token cache invalidations; serving from the store until it works");
                    was_lost = true;
                }
                attempt = attempt.wrapping_add(1);
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RESUBSCRIBE_MAX_DELAY);
    }
}
