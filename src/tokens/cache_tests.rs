//! The token cache: on its own (bounds, identity check, the invalidation ticket) and in the token
//! service (hits without the store, `min_ttl`, invalidation on delete, flip and refresh, off at 0).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::tests::{NOW, Options, issued, refresh_token_of, rejected, rig_with};
use super::*;
use crate::crypto::Sensitive;

const TENANT: &str = "7d3e5a9f-0000-4000-8000-000000000001";

fn identity(scope: &str) -> TokenIdentity {
    TokenIdentity::new(&TENANT.into(), "client", &[scope.to_string()])
}

fn token(access: &str, expires_at: i64) -> AccessToken {
    AccessToken {
        access_token: Arc::new(Sensitive::new(access)),
        expires_at,
        scope: "Files.Read.All".into(),
        served: Served::Refreshed,
        min_ttl_unmet: false,
        issued_for: Some(Arc::new(identity("Files.Read.All"))),
        answer: Arc::default(),
    }
}

fn cache(capacity: usize) -> TokenCache {
    TokenCache::new(capacity, Arc::new(LocalOnly))
}

fn keep(cache: &TokenCache, id: &str, t: &AccessToken) {
    let id = ConnectionId::new(id);
    cache.remember(cache.ticket(&id), &"files".into(), &id, t, NOW);
}

fn hit(cache: &TokenCache, id: &str, min_ttl: u64, expected: &TokenIdentity) -> Option<AccessToken> {
    cache.hit(
        &"files".into(),
        &id.into(),
        Duration::from_secs(min_ttl),
        NOW,
        |issued| issued.same_client_and_scopes(expected),
    )
}

fn with_cache(answers: Vec<Result<crate::entra::client::TokenResponse, TokenError>>) -> super::tests::Rig {
    rig_with(
        super::tests::Scripted::new(answers),
        Options {
            cache: 1_000,
            ..Default::default()
        },
    )
}

#[test]
fn a_hit_needs_the_connector_min_ttl_and_the_identity() {
    let c = cache(100);
    let files = identity("Files.Read.All");
    keep(&c, "c1", &token("at-1", NOW + 600));
    let t = hit(&c, "c1", 300, &files).expect("fresh enough");
    assert_eq!((t.access_token.expose(), t.served), ("at-1", Served::CacheHit));
    assert!(hit(&c, "c1", 601, &files).is_none(), "min_ttl not met");
    assert!(
        hit(&c, "c1", 600, &files).is_some(),
        "exactly min_ttl is enough, as in the store path"
    );
    assert!(hit(&c, "c2", 0, &files).is_none(), "miss");
    assert!(
        hit(&c, "c1", 0, &identity("Mail.Read")).is_none(),
        "the connector's scopes changed"
    );
    assert!(
        c.hit(&"crm".into(), &"c1".into(), Duration::ZERO, NOW, |issued| issued
            .same_client_and_scopes(&files))
            .is_none(),
        "another connector's connection"
    );
    assert!(
        c.hit(&"files".into(), &"c1".into(), Duration::ZERO, NOW, |_| false)
            .is_none(),
        "a connector that is gone"
    );
    keep(&c, "c3", &token("at-3", NOW));
    assert!(hit(&c, "c3", 0, &files).is_none(), "never an expired token");
    keep(
        &c,
        "c4",
        &AccessToken {
            issued_for: None,
            ..token("at-4", NOW + 600)
        },
    );
    assert!(
        hit(&c, "c4", 0, &files).is_none(),
        "no identity, nothing to check: not kept"
    );
    assert!(c.recall(&"files".into(), &"c4".into(), NOW).is_none());
}

#[test]
fn capacity_bounds_it_and_the_soonest_to_expire_makes_room() {
    // 64 shards of 2: at most 128 entries.
    let c = cache(128);
    for i in 0..1_000 {
        keep(&c, &format!("n{i}"), &token("at", NOW + 60 + i));
    }
    assert!(c.len() <= 128, "{}", c.len());
    assert!(c.len() >= 64, "every shard keeps something: {}", c.len());
    assert!(
        hit(&c, "n999", 0, &identity("Files.Read.All")).is_some(),
        "the newest stays"
    );
    assert!(
        hit(&c, "n0", 0, &identity("Files.Read.All")).is_none(),
        "the soonest to expire went"
    );
}

#[test]
fn capacity_zero_never_hits_but_keeps_the_outage_copy() {
    let c = cache(0);
    keep(&c, "c1", &token("at-1", NOW + 600));
    assert!(hit(&c, "c1", 0, &identity("Files.Read.All")).is_none());
    assert_eq!(
        c.recall(&"files".into(), &"c1".into(), NOW).map(|t| t.served),
        Some(Served::FromMemory)
    );
}

#[test]
fn a_load_that_raced_an_invalidation_does_not_put_its_token_back() {
    let c = cache(100);
    let id = ConnectionId::new("c1");
    let ticket = c.ticket(&id);
    // Meanwhile the connection was deleted (here or on another broker).
    c.forget(&id);
    c.remember(ticket, &"files".into(), &id, &token("at-old", NOW + 600), NOW);
    assert!(c.is_empty());
    let ticket = c.ticket(&id);
    c.clear();
    c.remember(ticket, &"files".into(), &id, &token("at-old", NOW + 600), NOW);
    assert!(c.is_empty(), "clearing counts as an invalidation of every entry");
    keep(&c, "c1", &token("at-new", NOW + 600));
    assert_eq!(c.len(), 1, "a load after it is kept");
}

#[test]
fn forget_owned_spares_another_connectors_entry() {
    let c = cache(100);
    keep(&c, "c1", &token("at-1", NOW + 600));
    c.forget_owned(&"crm".into(), &"c1".into());
    assert_eq!(c.len(), 1);
    c.forget_owned(&"files".into(), &"c1".into());
    assert!(c.is_empty());
}

#[tokio::test]
async fn a_warm_token_is_served_without_the_store() {
    let r = with_cache(vec![]);
    r.connection("c1", 600).await;
    assert_eq!(r.token("c1", 0).await.unwrap().served, Served::CacheHit);
    let reads = r.store.reads.load(Ordering::SeqCst);
    r.store.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let t = r.token("c1", 300).await.unwrap();
        assert_eq!((t.access_token.expose(), t.served), ("at-0", Served::CacheHit));
    }
    assert_eq!(r.store.reads.load(Ordering::SeqCst), reads, "no store read");
    assert_eq!(r.endpoint.calls(), 0);
    // A min_ttl the cached token does not meet goes to the store, which is down: the outage copy.
    assert_eq!(r.token("c1", 900).await.unwrap().served, Served::FromMemory);
}

#[tokio::test]
async fn without_the_cache_every_call_reads_the_store() {
    let r = rig_with(super::tests::Scripted::new(vec![]), Options::default());
    r.connection("c1", 600).await;
    let before = r.store.reads.load(Ordering::SeqCst);
    for _ in 0..3 {
        r.token("c1", 0).await.unwrap();
    }
    assert_eq!(r.store.reads.load(Ordering::SeqCst), before + 3);
}

#[tokio::test]
async fn a_min_ttl_the_cached_token_cannot_meet_refreshes_and_the_new_token_is_cached() {
    let r = with_cache(vec![issued("at-1", Some("rt-1"), 3600)]);
    r.connection("c1", 600).await;
    r.token("c1", 0).await.unwrap();
    let t = r.token("c1", 900).await.unwrap();
    assert_eq!((t.access_token.expose(), t.served), ("at-1", Served::Refreshed));
    assert_eq!(r.published.ids(), ["c1"], "a refresh tells the other brokers");
    // The refresh invalidated the old copy; the next load caches the new token.
    assert_eq!(r.token("c1", 900).await.unwrap().access_token.expose(), "at-1");
    r.store.down.store(true, Ordering::SeqCst);
    let t = r.token("c1", 900).await.unwrap();
    assert_eq!((t.access_token.expose(), t.served), ("at-1", Served::CacheHit));
}

#[tokio::test]
async fn a_refresh_token_is_never_cached() {
    let r = with_cache(vec![issued("at-1", Some("rt-1"), 3600)]);
    r.connection("c1", 600).await;
    r.connection("c2", 0).await;
    r.token("c1", 0).await.unwrap();
    r.token("c2", 0).await.unwrap();
    r.token("c2", 0).await.unwrap();
    assert_eq!(refresh_token_of(&r.stored("c2").await), "rt-1");
    let mut kept = r.service.cache.kept_secrets();
    kept.sort();
    assert_eq!(kept, ["at-0", "at-1"], "access tokens only");
}

#[tokio::test]
async fn a_deleted_connection_is_not_served_from_the_cache() {
    let r = with_cache(vec![]);
    r.connection("c1", 600).await;
    r.token("c1", 0).await.unwrap();
    r.records.delete_connection(&r.stored("c1").await).await.unwrap();
    r.service.deleted(&"c1".into());
    assert_eq!(r.published.ids(), ["c1"]);
    assert!(matches!(r.token("c1", 0).await, Err(TokenServiceError::NotFound)));
    r.store.down.store(true, Ordering::SeqCst);
    assert!(
        matches!(r.token("c1", 0).await, Err(TokenServiceError::Store(_))),
        "nor from the outage copy"
    );
}

#[tokio::test]
async fn a_flip_to_reauth_invalidates_the_cached_token() {
    let r = with_cache(vec![rejected("invalid_grant", 50173)]);
    r.connection("c1", 600).await;
    r.token("c1", 0).await.unwrap();
    assert!(matches!(
        r.token("c1", 900).await,
        Err(TokenServiceError::ReauthRequired(_))
    ));
    assert_eq!(r.published.ids(), ["c1"], "the other brokers are told");
    assert!(
        matches!(r.token("c1", 0).await, Err(TokenServiceError::ReauthRequired(_))),
        "the still-valid token is not served from the cache"
    );
    r.store.down.store(true, Ordering::SeqCst);
    assert!(matches!(r.token("c1", 0).await, Err(TokenServiceError::Store(_))));
}

#[tokio::test]
async fn a_token_no_longer_fresh_enough_is_read_again_from_the_store() {
    let r = with_cache(vec![]);
    r.connection("c1", 600).await;
    r.token("c1", 300).await.unwrap();
    let reads = r.store.reads.load(Ordering::SeqCst);
    // Past its refresh point for this caller: the store decides (here, the floor is off and
    // Entra has no answer, so the still-valid stored token is served stale).
    r.clock.advance(Duration::from_secs(400));
    let t = r.token("c1", 300).await.unwrap();
    assert_ne!(t.served, Served::CacheHit);
    assert!(r.store.reads.load(Ordering::SeqCst) > reads);
}

#[test]
fn after_a_resume_nothing_kept_before_is_a_hit_but_it_stays_the_outage_copy() {
    let c = cache(100);
    let files = identity("Files.Read.All");
    keep(&c, "c1", &token("at-1", NOW + 600));
    let ticket_before = c.ticket(&ConnectionId::new("c2"));
    c.pause();
    assert!(hit(&c, "c1", 0, &files).is_none(), "no hits while paused");
    c.resume();
    assert!(hit(&c, "c1", 0, &files).is_none(), "kept before the resume: not a hit");
    let kept = c
        .recall(&"files".into(), &"c1".into(), NOW)
        .expect("still the outage copy");
    assert_eq!(kept.access_token.expose(), "at-1");
    // A load that began before the resume is kept only as an outage copy too.
    c.remember(
        ticket_before,
        &"files".into(),
        &ConnectionId::new("c2"),
        &token("at-2", NOW + 600),
        NOW,
    );
    assert!(hit(&c, "c2", 0, &files).is_none());
    assert!(c.recall(&"files".into(), &"c2".into(), NOW).is_some());
    // Loaded again after the resume: a hit.
    keep(&c, "c1", &token("at-3", NOW + 600));
    assert_eq!(hit(&c, "c1", 0, &files).unwrap().access_token.expose(), "at-3");
}

#[test]
fn hits_of_one_token_share_its_rendered_answer_and_a_new_token_renders_its_own() {
    let c = cache(100);
    let files = identity("Files.Read.All");
    let renders = std::cell::Cell::new(0);
    let render = |t: &AccessToken| {
        t.answer
            .get_or_render(|| {
                renders.set(renders.get() + 1);
                Ok::<_, ()>(format!("{{\"access_token\":\"{}\"}}", t.access_token.expose()).into_bytes())
            })
            .unwrap()
    };
    keep(&c, "c1", &token("at-1", NOW + 600));
    let first = render(&hit(&c, "c1", 0, &files).unwrap());
    let second = render(&hit(&c, "c1", 0, &files).unwrap());
    assert_eq!(renders.get(), 1, "rendered once for both hits");
    assert_eq!(first.as_ptr(), second.as_ptr(), "the same bytes, not a copy");
    assert_eq!(&first[..], br#"{"access_token":"at-1"}"#);

    // A refresh keeps a new token, which renders its own answer.
    keep(&c, "c1", &token("at-2", NOW + 900));
    let third = render(&hit(&c, "c1", 0, &files).unwrap());
    assert_eq!(renders.get(), 2);
    assert_eq!(&third[..], br#"{"access_token":"at-2"}"#);
    assert_eq!(
        &first[..],
        br#"{"access_token":"at-1"}"#,
        "answers already out stay whole"
    );
    assert_eq!(
        format!("{:?}", hit(&c, "c1", 0, &files).unwrap())
            .matches("at-2")
            .count(),
        0,
        "neither the token nor its rendered answer prints"
    );
}
