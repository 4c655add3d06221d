//! The token service's paths against the memory store, a scripted token endpoint and a manual
//! clock: no process, no HTTP, milliseconds each.
#![allow(
    clippy::result_large_err,
    reason = "the scripted answers are the endpoint's own result type"
)]

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;

use super::*;
use crate::clock::ManualClock;
use crate::entra::ClientCredential;
use crate::entra::client::TokenResponse;
use crate::entra::errors::EntraError;
use crate::store::{MemoryStore, Store, Versioned, Write, WriteOutcome};

pub(crate) const NOW: i64 = 1_900_000_000;
const TENANT: &str = "7d3e5a9f-0000-4000-8000-000000000001";
const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";

type Answer = Result<TokenResponse, TokenError>;

/// A token endpoint that answers from a script, counts calls and can hold answers back.
pub(crate) struct Scripted {
    answers: Mutex<VecDeque<Answer>>,
    presented: Mutex<Vec<String>>,
    gate: tokio::sync::Semaphore,
    entered: tokio::sync::Notify,
}

impl Scripted {
    pub(crate) fn new(answers: Vec<Answer>) -> Arc<Self> {
        Arc::new(Self {
            answers: Mutex::new(answers.into()),
            presented: Mutex::new(Vec::new()),
            gate: tokio::sync::Semaphore::new(tokio::sync::Semaphore::MAX_PERMITS),
            entered: tokio::sync::Notify::new(),
        })
    }

    /// An endpoint whose answers wait for [`Scripted::release`].
    fn held(answers: Vec<Answer>) -> Arc<Self> {
        let s = Self::new(answers);
        s.gate.forget_permits(tokio::sync::Semaphore::MAX_PERMITS);
        s
    }

    fn release(&self) {
        self.gate.add_permits(1_000);
    }

    pub(crate) fn calls(&self) -> usize {
        self.presented.lock().unwrap().len()
    }
}

#[async_trait]
impl TokenEndpoint for Scripted {
    async fn refresh(
        &self,
        _tenant: &str,
        _client: &ClientAuth<'_>,
        refresh_token: &str,
        _scopes: &[String],
    ) -> Result<TokenResponse, TokenError> {
        self.presented.lock().unwrap().push(refresh_token.to_string());
        self.entered.notify_one();
        let _permit = self.gate.acquire().await.expect("gate open");
        self.answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Err(TokenError::Protocol("no scripted answer left".into())))
    }
}

pub(crate) fn issued(access: &str, refresh: Option<&str>, expires_in: i64) -> Answer {
    Ok(TokenResponse {
        access_token: Sensitive::new(access),
        expires_in,
        scope: None,
        refresh_token: refresh.map(Sensitive::new),
        id_token: None,
        token_type: Some("Bearer".into()),
    })
}

pub(crate) fn rejected(error: &str, code: u32) -> Answer {
    Err(TokenError::Rejected(EntraError {
        error: Some(error.into()),
        error_description: Some(format!("AADSTS{code}: scripted.")),
        error_codes: vec![code],
        http_status: Some(400),
        ..Default::default()
    }))
}

pub(crate) fn outage(retry_after: Option<Duration>) -> Answer {
    Err(TokenError::Unavailable {
        retry_after,
        detail: "HTTP 503".into(),
        error: None,
    })
}

/// An invalidation bus that records what it was asked to publish.
#[derive(Default)]
pub(crate) struct Published(Mutex<Vec<String>>);

impl Published {
    pub(crate) fn ids(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl InvalidationBus for Published {
    fn publish(&self, connection_id: &ConnectionId) {
        self.0.lock().unwrap().push(connection_id.as_str().to_string());
    }
}

/// A store that can be switched off, like an unreachable Redis.
pub(crate) struct Switchable {
    inner: MemoryStore,
    pub(crate) down: AtomicBool,
    /// Reads so far (the cache's tests count what reaches the store).
    pub(crate) reads: AtomicUsize,
    /// Writes to keys with this prefix fail (one kind of record the store will not take).
    pub(crate) refused_prefix: Mutex<Option<&'static str>>,
}

impl Switchable {
    /// A store that is up.
    pub(crate) fn new() -> Self {
        Self {
            inner: MemoryStore::new(),
            down: AtomicBool::new(false),
            reads: AtomicUsize::new(0),
            refused_prefix: Mutex::new(None),
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::backend("switched off"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for Switchable {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<u64, StoreError> {
        self.check()?;
        if let Some(prefix) = *self.refused_prefix.lock().unwrap()
            && key.starts_with(prefix)
        {
            return Err(StoreError::backend("refused"));
        }
        self.inner.put(key, value, ttl).await
    }
    async fn insert_new(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.insert_new(key, value, ttl).await
    }
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.check()?;
        self.inner.take(key).await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected_version: u64,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<CasOutcome, StoreError> {
        self.check()?;
        self.inner.compare_and_swap(key, expected_version, value, ttl).await
    }
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete(key).await
    }
    async fn write_with_event(
        &self,
        write: Write,
        event_key: &str,
        event_value: Vec<u8>,
        event_ttl: Option<Duration>,
    ) -> Result<WriteOutcome, StoreError> {
        self.check()?;
        self.inner
            .write_with_event(write, event_key, event_value, event_ttl)
            .await
    }
    async fn purge_expired(&self) -> Result<usize, StoreError> {
        self.check()?;
        self.inner.purge_expired().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.check()
    }
    async fn scan(&self, cursor: Option<String>, limit: usize) -> Result<(Vec<String>, Option<String>), StoreError> {
        self.check()?;
        self.inner.scan(cursor, limit).await
    }
    async fn index_add(&self, index: &str, member: &str) -> Result<(), StoreError> {
        self.check()?;
        self.inner.index_add(index, member).await
    }
    async fn index_remove(&self, index: &str, member: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.index_remove(index, member).await
    }
    async fn index_range(&self, index: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        self.check()?;
        self.inner.index_range(index, after, limit).await
    }
    async fn rewrite_in_place(
        &self,
        key: &str,
        expected_version: u64,
        expected_value: &[u8],
        value: Vec<u8>,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.inner
            .rewrite_in_place(key, expected_version, expected_value, value)
            .await
    }
    async fn export(&self, sink: &mut crate::store::ExportSink<'_>) -> Result<(), StoreError> {
        self.check()?;
        self.inner.export(sink).await
    }
    async fn import(&self, entries: Vec<crate::store::Entry>) -> Result<(), StoreError> {
        self.check()?;
        self.inner.import(entries).await
    }
    async fn is_empty(&self) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.is_empty().await
    }
}

fn connector(scopes: &[&str]) -> ConnectorConfig {
    ConnectorConfig {
        id: "files".into(),
        display_name: "Files".into(),
        client_id: CLIENT_ID.into(),
        credential: ClientCredential::Secret {
            secret: "s3cret".to_string().into(),
            expires_at: None,
        },
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        return_urls: Vec::new(),
        api_key_hashes: Vec::new(),
        tenant: "organizations".into(),
        publisher_verified: false,
        publisher: Default::default(),
        webhooks: Vec::new(),
    }
}

/// One token service over a switchable memory store, with its clock and endpoint.
pub(crate) struct Rig {
    pub(crate) service: Arc<TokenService>,
    pub(crate) records: Records,
    pub(crate) store: Arc<Switchable>,
    /// The connection ids the service told other brokers to forget.
    pub(crate) published: Arc<Published>,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) endpoint: Arc<Scripted>,
    pub(crate) metrics: Arc<Metrics>,
}

pub(crate) struct Options {
    pub(crate) floor: Duration,
    pub(crate) budget: Option<NonZeroU32>,
    pub(crate) wait: Duration,
    pub(crate) scopes: Vec<&'static str>,
    /// `[store] token_cache_capacity`; off unless a test is about the cache, so that the other
    /// tests see every store read they script.
    pub(crate) cache: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            floor: Duration::ZERO,
            budget: None,
            wait: Duration::from_millis(300),
            scopes: vec!["Files.Read.All"],
            cache: 0,
        }
    }
}

pub(crate) fn rig(endpoint: Arc<Scripted>) -> Rig {
    rig_with(endpoint, Options::default())
}

pub(crate) fn rig_with(endpoint: Arc<Scripted>, opts: Options) -> Rig {
    let store = Arc::new(Switchable::new());
    let records = Records::new(store.clone());
    let published = Arc::new(Published::default());
    let clock = Arc::new(ManualClock::at(NOW));
    let metrics = Arc::new(Metrics::for_connectors(&["files"], None));
    let connectors = Arc::new(std::collections::HashMap::from([(
        "files".into(),
        connector(&opts.scopes),
    )]));
    let service = Arc::new(TokenService::new(TokenServiceParts {
        records: records.clone(),
        endpoint: endpoint.clone(),
        connectors,
        settings: RefreshSettings {
            lease: Duration::from_secs(30),
            wait: opts.wait,
            renew: true,
            min_refresh_interval: opts.floor,
            default_retry_after: Duration::from_secs(7),
        },
        budget: RefreshBudget::new(opts.budget),
        clock: clock.clone(),
        metrics: metrics.clone(),
        events: Arc::new(crate::webhooks::NoEvents),
        background: tokio_util::task::TaskTracker::new(),
        cache: Arc::new(TokenCache::new(opts.cache, published.clone())),
    }));
    Rig {
        service,
        records,
        store,
        published,
        clock,
        endpoint,
        metrics,
    }
}

impl Rig {
    /// Stores a signed-in connection whose access token lives `lives` more seconds.
    pub(crate) async fn connection(&self, id: &str, lives: i64) -> Connection {
        let conn = Connection {
            id: id.into(),
            connector: "files".into(),
            end_user: None,
            tenant_id: TENANT.into(),
            user: ConnectionUser {
                oid: "oid-1".into(),
                name: None,
                preferred_username: None,
            },
            scopes: vec!["Files.Read.All".into()],
            access_token: Sensitive::new("at-0"),
            access_expires_at: NOW + lives,
            refresh_token: Some(Sensitive::new("rt-0")),
            created_at: NOW - 3600,
            refreshed_at: NOW - 3600,
            status: ConnectionStatus::Active,
            reauth: None,
            return_url: None,
            token_identity: Some(TokenIdentity::new(
                &TENANT.into(),
                CLIENT_ID,
                &["Files.Read.All".to_string()],
            )),
            failing: None,
        };
        self.records.put_connection(&conn).await.unwrap();
        conn
    }

    pub(crate) async fn stored(&self, id: &str) -> Connection {
        self.records.connection(&id.into()).await.unwrap().expect("stored").0
    }

    pub(crate) async fn token(&self, id: &str, min_ttl: u64) -> Result<AccessToken, TokenServiceError> {
        self.service
            .access_token(&"files".into(), &id.into(), Duration::from_secs(min_ttl))
            .await
    }
}

pub(crate) fn refresh_token_of(conn: &Connection) -> &str {
    conn.refresh_token.as_ref().expect("a refresh token").expose()
}

#[tokio::test]
async fn a_fresh_stored_token_is_served_without_calling_entra() {
    let r = rig(Scripted::new(vec![]));
    r.connection("c1", 3600).await;
    let t = r.token("c1", 300).await.unwrap();
    assert_eq!((t.access_token.expose(), t.served), ("at-0", Served::CacheHit));
    assert!(!t.min_ttl_unmet);
    assert_eq!(r.endpoint.calls(), 0);
}

#[tokio::test]
async fn an_expiring_token_is_refreshed_and_the_rotation_stored_before_the_answer() {
    let r = rig(Scripted::new(vec![issued("at-1", Some("rt-1"), 3600)]));
    r.connection("c1", 60).await;
    let t = r.token("c1", 300).await.unwrap();
    assert_eq!((t.access_token.expose(), t.served), ("at-1", Served::Refreshed));
    assert_eq!(t.expires_at, NOW + 3600);
    assert_eq!(*r.endpoint.presented.lock().unwrap(), ["rt-0"]);
    let stored = r.stored("c1").await;
    assert_eq!(refresh_token_of(&stored), "rt-1");
    assert_eq!((stored.refreshed_at, stored.access_expires_at), (NOW, NOW + 3600));
    assert!(r.service.no_refresh_in_flight());
}

#[tokio::test]
async fn an_answer_without_a_refresh_token_keeps_the_stored_one() {
    let r = rig(Scripted::new(vec![issued("at-1", None, 3600)]));
    r.connection("c1", 0).await;
    r.token("c1", 0).await.unwrap();
    assert_eq!(refresh_token_of(&r.stored("c1").await), "rt-0");
}

#[tokio::test]
async fn a_lifetime_shorter_than_min_ttl_is_served_and_flagged() {
    let r = rig(Scripted::new(vec![issued("at-1", Some("rt-1"), 600)]));
    r.connection("c1", 60).await;
    let t = r.token("c1", 3600).await.unwrap();
    assert_eq!(t.access_token.expose(), "at-1");
    assert!(t.min_ttl_unmet, "600 s is less than the 3600 s asked for");
    assert!(
        r.metrics
            .render()
            .contains("token_min_ttl_unmet_total{connector=\"files\"} 1")
    );
}

#[tokio::test]
async fn concurrent_callers_share_one_refresh() {
    let endpoint = Scripted::held(vec![issued("at-1", Some("rt-1"), 3600)]);
    let r = rig(endpoint.clone());
    r.connection("c1", 10).await;
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let service = r.service.clone();
            tokio::spawn(async move {
                service
                    .access_token(&"files".into(), &"c1".into(), Duration::from_secs(300))
                    .await
            })
        })
        .collect();
    endpoint.entered.notified().await;
    endpoint.release();
    for c in callers {
        assert_eq!(c.await.unwrap().unwrap().access_token.expose(), "at-1");
    }
    assert_eq!(endpoint.calls(), 1);
    assert!(r.service.no_refresh_in_flight());
}

#[tokio::test]
async fn a_caller_that_leaves_mid_refresh_does_not_cancel_the_write() {
    let endpoint = Scripted::held(vec![issued("at-1", Some("rt-1"), 3600)]);
    let r = rig(endpoint.clone());
    r.connection("c1", 0).await;
    let caller = {
        let service = r.service.clone();
        tokio::spawn(async move {
            service
                .access_token(&"files".into(), &"c1".into(), Duration::ZERO)
                .await
        })
    };
    endpoint.entered.notified().await;
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    endpoint.release();
    r.service.background.close();
    r.service.background.wait().await;
    assert_eq!(refresh_token_of(&r.stored("c1").await), "rt-1");
}

#[tokio::test]
async fn another_brokers_lease_makes_callers_wait_and_never_call_entra() {
    let r = rig(Scripted::new(vec![]));
    r.connection("c1", 30).await;
    let lease = r
        .records
        .try_lease(&"c1".into(), Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    // Still valid: served stale once the wait is over.
    let t = r.token("c1", 300).await.unwrap();
    assert_eq!(t.served, Served::StaleButValid);
    // Expired: told to retry shortly.
    r.clock.advance(Duration::from_secs(60));
    match r.token("c1", 0).await {
        Err(TokenServiceError::RefreshInProgress { retry_after }) => assert_eq!(retry_after, WAIT_RETRY_AFTER),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.endpoint.calls(), 0);
    r.records.release_lease(lease).await.unwrap();
}

#[tokio::test]
async fn a_write_meanwhile_wins_over_the_refresh_result() {
    let endpoint = Scripted::held(vec![issued("at-mine", Some("rt-mine"), 3600)]);
    let r = rig(endpoint.clone());
    r.connection("c1", 0).await;
    let caller = {
        let service = r.service.clone();
        tokio::spawn(async move {
            service
                .access_token(&"files".into(), &"c1".into(), Duration::ZERO)
                .await
        })
    };
    endpoint.entered.notified().await;
    // A sign-in (or a refresher that took over a lost lease) writes while Entra answers us.
    let (mut theirs, version) = r.records.connection(&"c1".into()).await.unwrap().unwrap();
    theirs.access_token = Sensitive::new("at-theirs");
    theirs.access_expires_at = NOW + 3600;
    theirs.refresh_token = Some(Sensitive::new("rt-theirs"));
    assert!(matches!(
        r.records.update_connection(&theirs, version).await.unwrap(),
        CasOutcome::Written(_)
    ));
    endpoint.release();
    let t = caller.await.unwrap().unwrap();
    assert_eq!(t.access_token.expose(), "at-theirs", "theirs is served");
    assert_eq!(
        refresh_token_of(&r.stored("c1").await),
        "rt-theirs",
        "ours is never written over it"
    );
}

#[tokio::test]
async fn a_revoked_grant_flips_the_connection_once_and_for_all() {
    let r = rig(Scripted::new(vec![rejected("invalid_grant", 50173)]));
    r.connection("c1", 0).await;
    let reason = match r.token("c1", 0).await {
        Err(TokenServiceError::ReauthRequired(reason)) => reason,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (reason.category, reason.aadsts),
        (Category::ReauthRequired, Some(50173))
    );
    let stored = r.stored("c1").await;
    assert_eq!(stored.status, ConnectionStatus::ReauthRequired);
    assert_eq!(refresh_token_of(&stored), "rt-0", "nothing else is changed");
    assert!(matches!(
        r.token("c1", 0).await,
        Err(TokenServiceError::ReauthRequired(_))
    ));
    assert_eq!(r.endpoint.calls(), 1, "a dead connection is not refreshed again");
}

#[tokio::test]
async fn a_broker_side_refusal_is_upstream_and_leaves_the_connection_active() {
    let r = rig(Scripted::new(vec![rejected("invalid_client", 7000215)]));
    r.connection("c1", 0).await;
    match r.token("c1", 0).await {
        Err(TokenServiceError::Upstream(c)) => assert_eq!(c.category, Category::ClientCredentialInvalid),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.stored("c1").await.status, ConnectionStatus::Active);
}

#[tokio::test]
async fn an_outage_serves_the_valid_token_else_retry_after() {
    let r = rig(Scripted::new(vec![
        outage(None),
        outage(Some(Duration::from_secs(42))),
        outage(None),
    ]));
    r.connection("c1", 120).await;
    assert_eq!(r.token("c1", 300).await.unwrap().served, Served::StaleButValid);
    r.clock.advance(Duration::from_secs(200));
    match r.token("c1", 0).await {
        Err(TokenServiceError::Unavailable { retry_after }) => assert_eq!(retry_after, Duration::from_secs(42)),
        other => panic!("{other:?}"),
    }
    match r.token("c1", 0).await {
        Err(TokenServiceError::Unavailable { retry_after }) => {
            assert_eq!(retry_after, Duration::from_secs(7), "the configured default")
        }
        other => panic!("{other:?}"),
    }
    let stored = r.stored("c1").await;
    assert_eq!(
        (stored.status, refresh_token_of(&stored)),
        (ConnectionStatus::Active, "rt-0")
    );
}

#[tokio::test]
async fn a_store_outage_serves_this_brokers_last_token_while_valid() {
    let r = rig(Scripted::new(vec![]));
    r.connection("c1", 600).await;
    r.connection("c2", 600).await;
    r.token("c1", 0).await.unwrap();
    r.store.down.store(true, Ordering::SeqCst);
    assert_eq!(r.token("c1", 0).await.unwrap().served, Served::FromMemory);
    assert!(
        matches!(r.token("c2", 0).await, Err(TokenServiceError::Store(_))),
        "never served here, so nothing to fall back on"
    );
    r.clock.advance(Duration::from_secs(601));
    assert!(
        matches!(r.token("c1", 0).await, Err(TokenServiceError::Store(_))),
        "never an expired token"
    );
    r.store.down.store(false, Ordering::SeqCst);
    assert!(
        r.records.connection(&"c2".into()).await.unwrap().is_some(),
        "nothing was deleted"
    );
}

#[tokio::test]
async fn a_forgotten_connection_is_not_served_from_memory() {
    let r = rig(Scripted::new(vec![]));
    r.connection("c1", 600).await;
    r.token("c1", 0).await.unwrap();
    r.service.forget_owned(&"files".into(), &"c1".into());
    r.store.down.store(true, Ordering::SeqCst);
    assert!(matches!(r.token("c1", 0).await, Err(TokenServiceError::Store(_))));
}

#[tokio::test]
async fn the_refresh_floor_holds_until_it_passes() {
    let r = rig_with(
        Scripted::new(vec![
            issued("at-1", Some("rt-1"), 600),
            issued("at-2", Some("rt-2"), 600),
        ]),
        Options {
            floor: Duration::from_secs(60),
            ..Default::default()
        },
    );
    r.connection("c1", 0).await;
    assert_eq!(r.token("c1", 3600).await.unwrap().access_token.expose(), "at-1");
    // Just refreshed: a min_ttl Entra cannot meet does not make the broker ask again.
    let t = r.token("c1", 3600).await.unwrap();
    assert_eq!((t.access_token.expose(), t.min_ttl_unmet), ("at-1", true));
    assert_eq!(r.endpoint.calls(), 1);
    r.clock.advance(Duration::from_secs(61));
    assert_eq!(r.token("c1", 3600).await.unwrap().access_token.expose(), "at-2");
    assert_eq!(r.endpoint.calls(), 2);
}

#[tokio::test]
async fn a_used_up_refresh_budget_never_reaches_entra() {
    let r = rig_with(
        Scripted::new(vec![issued("at-1", Some("rt-1"), 60)]),
        Options {
            budget: NonZeroU32::new(1),
            ..Default::default()
        },
    );
    r.connection("c1", 0).await;
    r.connection("c2", 30).await;
    r.token("c1", 0).await.unwrap();
    assert_eq!(r.token("c2", 300).await.unwrap().served, Served::StaleButValid);
    r.clock.advance(Duration::from_secs(31));
    assert!(matches!(
        r.token("c2", 0).await,
        Err(TokenServiceError::Unavailable { .. })
    ));
    assert_eq!(r.endpoint.calls(), 1);
    assert!(
        r.metrics
            .render()
            .contains("refresh_budget_exhausted_total{connector=\"files\"} 2")
    );
}

#[tokio::test]
async fn changed_scopes_refresh_and_a_changed_client_id_needs_a_sign_in() {
    let r = rig_with(
        Scripted::new(vec![issued("at-1", Some("rt-1"), 3600)]),
        Options {
            scopes: vec!["Files.Read.All", "Sites.Read.All"],
            ..Default::default()
        },
    );
    r.connection("c1", 3600).await;
    let t = r.token("c1", 0).await.unwrap();
    assert_eq!(
        t.access_token.expose(),
        "at-1",
        "a token for other scopes is never served"
    );

    let mut conn = r.connection("c2", 3600).await;
    conn.token_identity = Some(TokenIdentity::new(&TENANT.into(), "another-client", &conn.scopes));
    r.records.put_connection(&conn).await.unwrap();
    assert!(matches!(
        r.token("c2", 0).await,
        Err(TokenServiceError::ReauthRequired(_))
    ));
    assert_eq!(r.endpoint.calls(), 1, "no refresh with another app's token");
}

#[tokio::test]
async fn another_connectors_or_a_missing_connection_is_not_found() {
    let r = rig(Scripted::new(vec![]));
    r.connection("c1", 3600).await;
    assert!(matches!(
        r.service
            .access_token(&"crm".into(), &"c1".into(), Duration::ZERO)
            .await,
        Err(TokenServiceError::NotFound)
    ));
    assert!(matches!(r.token("nope", 0).await, Err(TokenServiceError::NotFound)));
    let rendered = r.metrics.render();
    assert!(
        !rendered.contains("connector=\"crm\""),
        "an unknown connector is no label"
    );
}

#[tokio::test]
async fn outcomes_are_counted_per_connector() {
    let r = rig(Scripted::new(vec![issued("at-1", Some("rt-1"), 3600)]));
    r.connection("c1", 0).await;
    for _ in 0..3 {
        r.token("c1", 0).await.unwrap();
    }
    let rendered = r.metrics.render();
    assert!(rendered.contains("outcome=\"refreshed\"} 1"), "{rendered}");
    assert!(rendered.contains("outcome=\"cache_hit\"} 2"), "{rendered}");
}
