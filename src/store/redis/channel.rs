//! A pub/sub channel beside the store's keys (`{key_prefix}<name>`), through which brokers
//! sharing one Redis tell each other things no key records, such as "forget your cached token of
//! this connection".
//!
//! Published through the store's own connection (`PUBLISH` is one command; on a cluster any node
//! broadcasts it to all). Subscribed on a connection of its own, since a subscribed connection can
//! do nothing else: to the server (standalone), to the master the sentinels name (after a failover
//! the old master either died, which ends the subscription, or became a replica, which still
//! receives every message through replication), or to one seed node after the other (cluster;
//! classic pub/sub reaches every node). A subscription is pinged every few seconds, so that a
//! half-open TCP connection ends it too instead of silently delivering nothing.

use std::time::Duration;

use ::redis::aio::{PubSubSink, PubSubStream};
use ::redis::{Client, RedisResult};
use futures_util::StreamExt as _;

use super::{Conn, RedisStore, SentinelConn, failed};
use crate::store::StoreError;
use std::sync::Arc;

/// How often a quiet subscription is pinged, and how long the answer may take.
const PING_EVERY: Duration = Duration::from_secs(5);

/// Where a subscription connects.
#[derive(Clone)]
pub(super) enum SubscribeVia {
    /// The one server.
    Server(Box<Client>),
    /// Each seed node in turn.
    Seeds(Vec<Client>),
    /// The master the sentinels name now.
    Sentinel(Arc<SentinelConn>),
}

/// One named channel of the broker's Redis (see the module documentation).
#[derive(Clone)]
pub struct RedisChannel {
    name: String,
    conn: Conn,
    via: SubscribeVia,
    timeout: Duration,
    secrets: Vec<String>,
}

impl std::fmt::Debug for RedisChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisChannel")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The channel `{key_prefix}{name}` of this store's Redis.
    pub fn channel(&self, name: &str) -> RedisChannel {
        RedisChannel {
            name: self.key(name),
            conn: self.conn.clone(),
            via: self.subscribe_via.clone(),
            timeout: self.timeout,
            secrets: self.secrets.clone(),
        }
    }
}

impl RedisChannel {
    /// The channel's full name (key prefix included).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends `message` to every current subscriber (within the store's response timeout).
    pub async fn publish(&self, message: &str) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("PUBLISH");
        cmd.arg(&self.name).arg(message);
        let conn = self.conn.clone();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let sent = tokio::time::timeout(self.timeout, async move {
            match conn {
                Conn::Standalone(mut c) => cmd.query_async::<i64>(&mut c).await,
                Conn::Cluster(mut c) => cmd.query_async::<i64>(&mut c).await,
                Conn::Sentinel(s) => {
                    s.run(
                        deadline,
                        false,
                        |mut c| async move { cmd.query_async::<i64>(&mut c).await },
                    )
                    .await
                }
            }
        })
        .await;
        match sent {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(failed("redis PUBLISH failed", &e, &self.secrets)),
            Err(elapsed) => Err(StoreError::backend_from(
                format!("redis PUBLISH: no answer within {} ms", self.timeout.as_millis()),
                elapsed,
            )),
        }
    }

    /// Subscribes on a connection of its own; `attempt` picks the seed node on a cluster (each
    /// retry tries the next one).
    pub async fn subscribe(&self, attempt: usize) -> Result<Subscription, StoreError> {
        let subscribed = tokio::time::timeout(self.timeout * 2, async {
            let client = match &self.via {
                SubscribeVia::Server(c) => (**c).clone(),
                SubscribeVia::Seeds(seeds) => match seeds.get(attempt % seeds.len().max(1)) {
                    Some(c) => c.clone(),
                    None => return Err(::redis::RedisError::from((::redis::ErrorKind::Io, "no seed nodes"))),
                },
                SubscribeVia::Sentinel(s) => s.master_client().await?,
            };
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&self.name).await?;
            RedisResult::Ok(pubsub.split())
        })
        .await;
        match subscribed {
            Ok(Ok((sink, stream))) => Ok(Subscription {
                sink,
                stream,
                timeout: self.timeout,
            }),
            Ok(Err(e)) => Err(failed(
                format_args!("cannot subscribe to {}", self.name),
                &e,
                &self.secrets,
            )),
            Err(elapsed) => Err(StoreError::backend_from(
                format!("cannot subscribe to {}: no answer in time", self.name),
                elapsed,
            )),
        }
    }
}

/// A live subscription to one channel.
pub struct Subscription {
    sink: PubSubSink,
    stream: PubSubStream,
    timeout: Duration,
}

impl Subscription {
    /// The next message (its payload as text), or `None` once the subscription is lost: the
    /// connection closed, or a ping went unanswered.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            tokio::select! {
                msg = self.stream.next() => {
                    let msg = msg?;
                    match msg.get_payload::<String>() {
                        Ok(text) => return Some(text),
                        // Not written by a broker (not UTF-8): nothing to act on.
                        Err(_) => continue,
                    }
                }
                () = tokio::time::sleep(PING_EVERY) => {
                    // Any answer will do: a subscribed connection answers PING with a
                    // ["pong", ""] message, not the plain "PONG" of other connections.
                    match tokio::time::timeout(self.timeout, self.sink.ping::<::redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) | Err(_) => return None,
                    }
                }
            }
        }
    }
}
