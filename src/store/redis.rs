//! Redis backend, for brokers that share state: one server (`redis://`, `rediss://` for TLS)
//! through an auto-reconnecting multiplexed [`ConnectionManager`], a Redis Cluster through
//! [`ClusterClient`] (routes each command to its key's slot, follows MOVED/ASK), or a master
//! found through Redis Sentinel ([`SentinelConn`], which asks the sentinels again after a failure
//! so that a failover is followed without a restart).
//!
//! Layout: each record is one Redis **hash** with the fields `v` (version, a decimal integer) and
//! `d` (the value's bytes), under `{key_prefix}{key}`. A hash rather than one string with a binary
//! header because the scripts can then bump the version with `HINCRBY` and compare it as a string,
//! without packing or parsing bytes in Lua (whose numbers are doubles), and an operator can read a
//! record with `HGETALL`. TTLs are Redis key expiries (`PEXPIRE`): Redis never returns an expired
//! key, so an expired record is invisible at once, exactly as in the other backends.
//!
//! Every operation but one touches exactly one key, so it works unchanged on a cluster. Reads
//! and deletes are single commands (`HMGET`, `DEL`); writes that depend on the current record
//! (put's version bump, insert-if-absent, take, compare-and-swap) are short Lua scripts in
//! `src/store/redis/`, which Redis runs atomically. They are called with `EVALSHA` and loaded
//! automatically when a node does not know them yet (after a restart or failover);
//! [`RedisStore::connect`] loads them up front so that a server refusing scripts fails at start-up
//! rather than on the first sign-in.
//!
//! The exception, `write_with_event` (a record write plus an event record, for a durable outbox),
//! is one script over both keys, so atomic, on one server or a Sentinel master, and on a cluster
//! when both full keys hash to one slot: give them the same hash tag (`conn:{id}` and an event key
//! containing the same `{id}`). On a cluster with the keys in different slots no script may span
//! them, so the write is applied first and the event put after it: a crash or failure in between
//! loses the event (the call returns an error), unless the keys share a hash tag.
//!
//! `scan` (for maintenance jobs) is `SCAN … MATCH {key_prefix}* COUNT limit`; on a cluster it
//! walks the masters one after the other, each named by the lowest slot it serves (the cursor is
//! `<slot>:<SCAN cursor>`), with the command routed to the master of that slot. `export` and
//! `import` (backup and restore) walk the same way; see `redis/scan.rs` and `redis/dump.rs`.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use ::redis::{
    AsyncConnectionConfig, Client, Cmd, ErrorKind, FromRedisValue, RedisError, RedisResult, Script, ScriptInvocation,
    TlsCertificates, TlsMode,
};
use async_trait::async_trait;
use tokio::time::Instant;

use super::{CasOutcome, Store, StoreError, Versioned};
use crate::config::{RedisConfig, SentinelConfig, redact_redis_url};

mod channel;
mod dump;
mod event;
mod scan;

#[cfg(test)]
use scan::{glob_escape, lowest_slot_per_master, parse_cluster_cursor};

use channel::SubscribeVia;
pub use channel::{RedisChannel, Subscription};

/// Upper bound of the wait between two reconnect attempts of the standalone connection, so that a
/// Redis that comes back is used again within about a second.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

/// Longest TTL passed to `PEXPIRE` (about 146 million years); Redis refuses expiries that
/// overflow when added to its clock, and a longer TTL means the same in practice.
const MAX_TTL_MS: i64 = 1 << 62;

/// The scripts, one file each so they can be read (and tested with `redis-cli --eval`) on their own.
/// The names of the ordered indexes (sorted sets) start with this after the key prefix; record
/// keys never do (they start with a record kind such as `conn:`), and `scan` skips them.
const INDEX_PREFIX: &str = "idx:";

struct Scripts {
    put: Script,
    insert_new: Script,
    take: Script,
    compare_and_swap: Script,
    rewrite: Script,
    write_with_event: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            put: Script::new(include_str!("redis/put.lua")),
            insert_new: Script::new(include_str!("redis/insert_new.lua")),
            take: Script::new(include_str!("redis/take.lua")),
            compare_and_swap: Script::new(include_str!("redis/compare_and_swap.lua")),
            rewrite: Script::new(include_str!("redis/rewrite.lua")),
            write_with_event: Script::new(include_str!("redis/write_with_event.lua")),
        }
    }

    fn all(&self) -> [&Script; 6] {
        [
            &self.put,
            &self.insert_new,
            &self.take,
            &self.compare_and_swap,
            &self.rewrite,
            &self.write_with_event,
        ]
    }
}

/// One server or a cluster; both are cheap to clone (clones share one multiplexed connection per
/// node), so every operation works on its own clone.
#[derive(Clone)]
enum Conn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelConn>),
}

/// The master of a Sentinel-monitored group. [`ConnectionManager`] cannot be used: it reconnects
/// to the address it started with, which after a failover is a dead or demoted server. Instead the
/// connection to the current master is kept until a command on it fails in a way that suggests the
/// master is gone or no longer master (I/O error, timeout, `READONLY`…); the next command then asks
/// the sentinels for the master again. The failing command itself is not retried: its effect is
/// unknown, and the caller gets an error (never "not found").
pub(crate) struct SentinelConn {
    /// Also serialises lookups, so a burst of failing commands makes one lookup, not one each.
    sentinel: tokio::sync::Mutex<SentinelClient>,
    /// The connection in use and its generation, so a late failure on a replaced connection does
    /// not throw away its fresh successor.
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: Mutex<u64>,
    config: AsyncConnectionConfig,
    /// Replicas that must acknowledge each write (`WAIT`); 0 for none.
    wait_replicas: u32,
}

impl SentinelConn {
    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The connection to the master, asking the sentinels when there is none.
    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let mut sentinel = self.sentinel.lock().await;
        // Another task may have connected while this one waited for the lock.
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let client = sentinel.async_get_client().await?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        let generation = {
            let mut g = self.generation.lock().unwrap_or_else(|e| e.into_inner());
            *g += 1;
            *g
        };
        tracing::info!(
            master = %client.get_connection_info().addr(),
            "connected to the Redis master named by the sentinels"
        );
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((generation, conn.clone()));
        Ok((generation, conn))
    }

    /// A client for the master the sentinels name now (for a connection of its own).
    async fn master_client(&self) -> RedisResult<Client> {
        self.sentinel.lock().await.async_get_client().await
    }

    fn forget(&self, generation: u64) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            *current = None;
        }
    }

    /// Runs `op` on the master until `deadline`, dropping the connection when the failure means
    /// the master may have changed. The deadline is the caller's (see [`RedisStore::bounded`]), so
    /// that a master that stopped answering is forgotten before the caller gives up. After a
    /// `write`, `WAIT`s for `wait_replicas` replicas on the same connection (WAIT covers the
    /// writes sent on the connection it is sent on): an error unless enough confirm in time. A write
    /// so refused may still be on the master, like any write whose answer was lost.
    async fn run<T, F, Fut>(&self, deadline: Instant, write: bool, op: F) -> RedisResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let (generation, conn) = self.connection().await?;
        let n = if write { self.wait_replicas } else { 0 };
        let attempt = async {
            let value = op(conn.clone()).await?;
            if n > 0 {
                // Half the time left, so that a WAIT that runs out still answers (with the count)
                // before the deadline; WAIT with 0 ms would block forever.
                let left = deadline.saturating_duration_since(Instant::now()) / 2;
                let ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1);
                let acked: u32 = ::redis::cmd("WAIT")
                    .arg(n)
                    .arg(ms)
                    .query_async(&mut conn.clone())
                    .await?;
                if acked < n {
                    // Not an I/O error: too few replicas says nothing about the master having changed.
                    return Err(RedisError::from((
                        ErrorKind::Client,
                        "write not confirmed by enough replicas",
                        format!("{acked} of {n} (store.sentinel_wait_replicas) within {ms} ms"),
                    )));
                }
            }
            Ok(value)
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if master_may_have_changed(&e) {
                    self.forget(generation);
                }
                Err(e)
            }
            Err(_) => {
                self.forget(generation);
                Err(RedisError::from((ErrorKind::Io, "no answer from the master in time")))
            }
        }
    }
}

/// Whether a failed command suggests the connection no longer leads to a working master: the
/// server is gone or silent, or it answered as a replica or as out of service.
fn master_may_have_changed(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
}

/// The client that asks the sentinels for the master. The sentinels' own credentials and TLS
/// come from their URLs (the configuration checks that all URLs carry the same credentials); the
/// master's from `sentinel` and, for TLS, the sentinels' scheme and the CA file.
fn sentinel_client(
    urls: &[String],
    sentinel: &SentinelConfig,
    certs: Option<TlsCertificates>,
) -> RedisResult<SentinelClient> {
    let mut addrs = Vec::new();
    let mut login = None;
    let mut tls = false;
    for url in urls {
        // Built as a client so that the CA certificate is attached to `rediss://` addresses.
        let client = match &certs {
            Some(certs) => Client::build_with_tls(url.as_str(), certs.clone())?,
            None => Client::open(url.as_str())?,
        };
        let info = client.get_connection_info();
        tls |= matches!(info.addr(), ::redis::ConnectionAddr::TcpTls { .. });
        addrs.push(info.addr().clone());
        let settings = info.redis_settings();
        login = login.or_else(|| {
            settings
                .password()
                .map(|pw| (settings.username().map(str::to_string), pw.to_string()))
        });
    }
    let mut builder = SentinelClientBuilder::new(addrs, &sentinel.master, SentinelServerType::Master)?;
    if let Some((username, password)) = login {
        if let Some(username) = username {
            builder = builder.set_client_to_sentinel_username(username);
        }
        builder = builder.set_client_to_sentinel_password(password);
    }
    if tls {
        builder = builder.set_client_to_redis_tls_mode(TlsMode::Secure);
        if let Some(certs) = certs {
            builder = builder.set_client_to_redis_certificates(certs);
        }
    }
    if let Some(username) = &sentinel.username {
        builder = builder.set_client_to_redis_username(username);
    }
    if let Some(password) = &sentinel.password {
        builder = builder.set_client_to_redis_password(password);
    }
    builder.build()
}

/// A Redis-backed [`Store`].
pub struct RedisStore {
    conn: Conn,
    prefix: String,
    /// Bound on one whole operation (including waiting for a reconnect); see `bounded`.
    timeout: Duration,
    scripts: Scripts,
    /// Passwords from the configured URLs, scrubbed from every error message.
    secrets: Vec<String>,
    /// Where a channel subscription connects (see [`RedisChannel`]).
    subscribe_via: SubscribeVia,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field(
                "mode",
                &match self.conn {
                    Conn::Standalone(_) => "standalone",
                    Conn::Cluster(_) => "cluster",
                    Conn::Sentinel(_) => "sentinel",
                },
            )
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The passwords (as written and percent-decoded) of the URLs, for [`scrub`].
fn passwords(urls: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for url in urls.iter().filter_map(|u| url::Url::parse(u).ok()) {
        if let Some(pw) = url.password().filter(|p| !p.is_empty()) {
            let decoded = url::form_urlencoded::parse(format!("p={pw}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned());
            out.push(pw.to_string());
            out.extend(decoded.filter(|d| !d.is_empty() && d != pw));
        }
    }
    out
}

/// `message` with every secret replaced: the client's errors should never contain the password,
/// but a log line is no place to find out that one did.
fn scrub(message: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(message.to_string(), |m, s| m.replace(s.as_str(), "[redacted]"))
}

/// A Redis client error with every configured password scrubbed from its text: the source of a
/// [`StoreError::Backend`] from Redis. The client's error itself is not kept, because its text
/// (and its own sources') may hold a URL with credentials, and whoever prints a source chain
/// should not have to know that.
#[derive(Debug)]
pub struct RedisFailure {
    kind: ErrorKind,
    text: String,
}

impl RedisFailure {
    fn new(e: &RedisError, secrets: &[String]) -> Self {
        Self {
            kind: e.kind(),
            text: scrub(&e.to_string(), secrets),
        }
    }

    /// The client's classification (I/O, authentication, a refused command, ...).
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl std::fmt::Display for RedisFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for RedisFailure {}

/// `context: <the scrubbed client error>`, with that error as the source.
fn failed(context: impl std::fmt::Display, e: &RedisError, secrets: &[String]) -> StoreError {
    let failure = RedisFailure::new(e, secrets);
    StoreError::backend_from(format!("{context}: {failure}"), failure)
}

/// A TTL as the scripts take it: milliseconds, or -1 for "no expiry". A zero TTL is kept as 0
/// (`PEXPIRE 0` deletes the key), matching the other backends, where it expires at once.
fn ttl_arg(ttl: Option<Duration>) -> i64 {
    match ttl {
        None => -1,
        Some(d) => i64::try_from(d.as_millis()).unwrap_or(MAX_TTL_MS).min(MAX_TTL_MS),
    }
}

impl RedisStore {
    /// Connects as configured, loads the scripts and checks the server answers. Fails (naming the
    /// servers without credentials) when Redis cannot be reached, refuses the credentials or the
    /// TLS certificate, or refuses scripts.
    pub async fn connect(config: &RedisConfig) -> Result<Self, StoreError> {
        let mut secrets = passwords(&config.urls);
        secrets.extend(config.sentinel.as_ref().and_then(|s| s.password.clone()));
        let servers = config
            .urls
            .iter()
            .map(|u| redact_redis_url(u))
            .collect::<Vec<_>>()
            .join(", ");
        let fail = |e: ::redis::RedisError| failed(format_args!("cannot connect to Redis at {servers}"), &e, &secrets);
        let certs = match &config.tls_ca_file {
            Some(path) => Some(TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(path).map_err(|e| {
                    StoreError::backend_from(format!("cannot read the Redis CA file {}: {e}", path.display()), e)
                })?),
            }),
            None => None,
        };

        let (conn, subscribe_via) = if let Some(sentinel) = &config.sentinel {
            let client = sentinel_client(&config.urls, sentinel, certs).map_err(fail)?;
            let conn = SentinelConn {
                sentinel: tokio::sync::Mutex::new(client),
                current: Mutex::new(None),
                generation: Mutex::new(0),
                config: AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout))
                    .set_response_timeout(Some(config.response_timeout)),
                wait_replicas: sentinel.wait_replicas,
            };
            // Bounded like every operation: an unreachable group fails start-up promptly.
            match tokio::time::timeout(config.connect_timeout + config.response_timeout, conn.connection()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(fail(e)),
                Err(elapsed) => {
                    return Err(StoreError::backend_from(
                        format!(
                            "cannot connect to Redis at {servers}: no master {:?} found in time",
                            sentinel.master
                        ),
                        elapsed,
                    ));
                }
            }
            let conn = Arc::new(conn);
            (Conn::Sentinel(conn.clone()), SubscribeVia::Sentinel(conn))
        } else if config.cluster {
            // Both timeouts set explicitly: the cluster builder has no response timeout by
            // default, and the overall request timeout (retries and redirects included) follows
            // the response timeout.
            let mut builder = ClusterClient::builder(config.urls.iter().map(String::as_str))
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.response_timeout);
            let seeds = config
                .urls
                .iter()
                .map(|url| match &certs {
                    Some(certs) => Client::build_with_tls(url.as_str(), certs.clone()),
                    None => Client::open(url.as_str()),
                })
                .collect::<RedisResult<Vec<_>>>()
                .map_err(fail)?;
            if let Some(certs) = certs {
                builder = builder.certs(certs);
            }
            let client = builder.build().map_err(fail)?;
            (
                Conn::Cluster(client.get_async_connection().await.map_err(fail)?),
                SubscribeVia::Seeds(seeds),
            )
        } else {
            let url = config
                .urls
                .first()
                .ok_or_else(|| StoreError::backend("no Redis URL configured"))?;
            let client = match certs {
                Some(certs) => Client::build_with_tls(url.as_str(), certs),
                None => Client::open(url.as_str()),
            }
            .map_err(fail)?;
            let manager = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.response_timeout))
                .set_max_delay(RECONNECT_MAX_DELAY);
            (
                Conn::Standalone(client.get_connection_manager_with_config(manager).await.map_err(fail)?),
                SubscribeVia::Server(Box::new(client)),
            )
        };

        let store = Self {
            conn,
            prefix: config.key_prefix.clone(),
            timeout: config.response_timeout,
            scripts: Scripts::new(),
            secrets,
            subscribe_via,
        };
        for script in store.scripts.all() {
            let conn = store.conn.clone();
            let deadline = store.deadline();
            store
                .bounded("SCRIPT LOAD", async move {
                    match conn {
                        Conn::Standalone(mut c) => script.prepare_invoke().load_async(&mut c).await,
                        Conn::Cluster(mut c) => script.prepare_invoke().load_async(&mut c).await,
                        Conn::Sentinel(s) => {
                            s.run(deadline, false, |mut c| async move {
                                script.prepare_invoke().load_async(&mut c).await
                            })
                            .await
                        }
                    }
                })
                .await?;
        }
        store.ping().await?;
        tracing::info!(
            servers = %servers,
            mode = match store.conn {
                Conn::Standalone(_) => "standalone",
                Conn::Cluster(_) => "cluster",
                Conn::Sentinel(_) => "sentinel",
            },
            "connected to the Redis store"
        );
        Ok(store)
    }

    /// When an operation started now must be done by; see `bounded`.
    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Where an ordered index lives: beside the records, under a name `scan` leaves out.
    fn index_key(&self, index: &str) -> String {
        format!("{}{INDEX_PREFIX}{index}", self.prefix)
    }

    /// Runs one operation within the response timeout. The client's own timeouts bound each
    /// command; this also bounds the wait for a reconnect in progress (the reconnect itself goes
    /// on in the background), so a Redis outage turns into a prompt error, never a hung request.
    async fn bounded<T>(&self, op: &str, fut: impl Future<Output = RedisResult<T>>) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(failed(format_args!("redis {op} failed"), &e, &self.secrets)),
            Err(elapsed) => Err(StoreError::backend_from(
                format!("redis {op}: no answer within {} ms", self.timeout.as_millis()),
                elapsed,
            )),
        }
    }

    /// One command; `write` says whether it changes data (then, on Sentinel, it waits for
    /// replicas as configured).
    async fn command<T: FromRedisValue + Send>(&self, op: &str, cmd: Cmd, write: bool) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        // Taken before `bounded` starts its timer, so the sentinel path times out first and can
        // drop a silent master's connection.
        let deadline = self.deadline();
        self.bounded(op, async move {
            match conn {
                Conn::Standalone(mut c) => cmd.query_async(&mut c).await,
                Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
                Conn::Sentinel(s) => {
                    s.run(deadline, write, |mut c| async move { cmd.query_async(&mut c).await })
                        .await
                }
            }
        })
        .await
    }

    /// One script; every script may write, so on Sentinel it waits for replicas as configured.
    async fn script<T: FromRedisValue + Send>(&self, op: &str, call: ScriptInvocation<'_>) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        let deadline = self.deadline();
        self.bounded(op, async move {
            match conn {
                Conn::Standalone(mut c) => call.invoke_async(&mut c).await,
                Conn::Cluster(mut c) => call.invoke_async(&mut c).await,
                Conn::Sentinel(s) => {
                    s.run(deadline, true, |mut c| async move { call.invoke_async(&mut c).await })
                        .await
                }
            }
        })
        .await
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let key = self.key(key);
        let mut cmd = ::redis::cmd("HMGET");
        cmd.arg(&key).arg("v").arg("d");
        let (version, value): (Option<Vec<u8>>, Option<Vec<u8>>) = self.command("HMGET", cmd, false).await?;
        let corrupt = |message: &str| StoreError::Corrupt {
            key: key.clone(),
            message: message.into(),
        };
        match (version, value) {
            (None, None) => Ok(None),
            (Some(version), Some(value)) => {
                let version = std::str::from_utf8(&version)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|v| *v >= 1)
                    .ok_or_else(|| corrupt("the version field is not a positive integer"))?;
                Ok(Some(Versioned { value, version }))
            }
            _ => Err(corrupt("the record lacks its version or its value")),
        }
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<u64, StoreError> {
        let mut call = self.scripts.put.key(self.key(key));
        call.arg(value).arg(ttl_arg(ttl));
        self.script("put", call).await
    }

    async fn insert_new(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<bool, StoreError> {
        let mut call = self.scripts.insert_new.key(self.key(key));
        call.arg(value).arg(ttl_arg(ttl));
        let written: i64 = self.script("insert_new", call).await?;
        Ok(written == 1)
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let call = self.scripts.take.key(self.key(key));
        self.script("take", call).await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected_version: u64,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<CasOutcome, StoreError> {
        let mut call = self.scripts.compare_and_swap.key(self.key(key));
        call.arg(expected_version.to_string()).arg(value).arg(ttl_arg(ttl));
        let version: u64 = self.script("compare_and_swap", call).await?;
        Ok(match version {
            0 => CasOutcome::Conflict,
            v => CasOutcome::Written(v),
        })
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        // Redis does not count an expired key as deleted, matching "true when a live one existed".
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(self.key(key));
        let removed: i64 = self.command("DEL", cmd, true).await?;
        Ok(removed > 0)
    }

    /// See the module documentation: one script, atomic unless the keys are in two cluster slots.
    async fn write_with_event(
        &self,
        write: super::Write,
        event_key: &str,
        event_value: Vec<u8>,
        event_ttl: Option<Duration>,
    ) -> Result<super::WriteOutcome, StoreError> {
        self.write_and_event(write, event_key, event_value, event_ttl).await
    }

    /// Always 0: Redis removes expired keys itself (on access, and by its background expiry
    /// cycle), so there is nothing to sweep, and scanning the keyspace from here would only cost.
    async fn purge_expired(&self) -> Result<usize, StoreError> {
        Ok(0)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // On a cluster, PING goes to every node: ready means every slot's master answers.
        self.command::<()>("PING", ::redis::cmd("PING"), false).await
    }

    async fn scan(&self, cursor: Option<String>, limit: usize) -> Result<(Vec<String>, Option<String>), StoreError> {
        let (names, next) = self.scan_names(cursor, limit.max(1)).await?;
        Ok((self.unprefixed(names), next))
    }

    /// See the module documentation of `dump`: key by key, each record read atomically.
    async fn export(&self, sink: &mut super::ExportSink<'_>) -> Result<(), StoreError> {
        self.export_keys(sink).await
    }

    async fn import(&self, entries: Vec<super::Entry>) -> Result<(), StoreError> {
        self.import_entries(entries).await
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        self.no_names().await
    }

    /// A sorted set `{key_prefix}idx:{index}` whose members all have score 0, so that Redis
    /// orders them by their bytes (`ZRANGEBYLEX`); one key, so one cluster slot.
    async fn index_add(&self, index: &str, member: &str) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("ZADD");
        cmd.arg(self.index_key(index)).arg(0).arg(member);
        self.command::<i64>("ZADD", cmd, true).await.map(|_| ())
    }

    async fn index_remove(&self, index: &str, member: &str) -> Result<bool, StoreError> {
        let mut cmd = ::redis::cmd("ZREM");
        cmd.arg(self.index_key(index)).arg(member);
        let removed: i64 = self.command("ZREM", cmd, true).await?;
        Ok(removed > 0)
    }

    async fn index_range(&self, index: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut cmd = ::redis::cmd("ZRANGEBYLEX");
        let from = match after {
            Some(a) => format!("({a}"),
            None => "-".to_string(),
        };
        cmd.arg(self.index_key(index))
            .arg(from)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit.max(1));
        self.command("ZRANGEBYLEX", cmd, false).await
    }

    async fn rewrite_in_place(
        &self,
        key: &str,
        expected_version: u64,
        expected_value: &[u8],
        value: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let mut call = self.scripts.rewrite.key(self.key(key));
        call.arg(expected_version.to_string()).arg(expected_value).arg(value);
        let written: i64 = self.script("rewrite", call).await?;
        Ok(written == 1)
    }
}

#[cfg(test)]
mod tests;
