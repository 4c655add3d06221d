//! `GET /v1/connections`: newest first, cursor paging that is stable under concurrent inserts and
//! deletes, the filters, and cursors that only work for the connector they were issued to; on the
//! embedded store and on Redis.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use consent_broker::store::records::{Connection, ConnectionStatus, ReauthReason};

use crate::common::broker::{BrokerOptions, KEY_A, KEY_B};
use crate::common::cid;
use crate::common::flows::World;

const OTHER_TENANT: &str = "9b1c2d3e-0000-4000-8000-00000000abcd";

/// `count` more connections of connector A like `template`, three per second of `created_at`
/// (so that ties are broken by id); every fifth in another tenant, every seventh needing a new
/// sign-in, end users alternating `even` / `odd`.
async fn seed(w: &World, template: &Connection, count: usize) -> Vec<Connection> {
    let mut made = Vec::new();
    for i in 0..count {
        let mut c = template.clone();
        c.id = format!("conn_seed_{i:03}").into();
        c.created_at = template.created_at - 1 - (i / 3) as i64;
        c.user.oid = format!("oid-{i}");
        if i % 5 == 0 {
            c.tenant_id = OTHER_TENANT.into();
        }
        if i % 7 == 0 {
            c.status = ConnectionStatus::ReauthRequired;
            c.reauth = Some(ReauthReason {
                category: consent_broker::entra::Category::ReauthRequired,
                aadsts: Some(70008),
            });
        }
        c.end_user = Some(if i % 2 == 0 { "even" } else { "odd" }.into());
        w.broker.state.records.put_connection(&c).await.unwrap();
        made.push(c);
    }
    made
}

async fn list(w: &World, key: &str, query: &str) -> (StatusCode, Value) {
    w.api(Method::GET, &format!("/v1/connections{query}"), Some(key), None)
        .await
}

fn ids(page: &Value) -> Vec<String> {
    page["connections"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|c| c["connection_id"].as_str().unwrap().to_string())
        .collect()
}

/// Every connection of a filtered listing, following cursors.
async fn all(w: &World, filter: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("?limit=100&{filter}&cursor={c}"),
            None => format!("?limit=100&{filter}"),
        };
        let (status, page) = list(w, KEY_A, &q).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        out.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

async fn listing_on(store: String) -> World {
    let w = World::with(
        |_| {},
        BrokerOptions {
            store,
            ..Default::default()
        },
    )
    .await;
    // One connection through a real sign-in, 249 written the way a sign-in writes them.
    let real = w.connect(&w.upn("alice")).await;
    let (template, _) = w.broker.state.records.connection(&cid(&real)).await.unwrap().unwrap();
    let seeded = seed(&w, &template, 249).await;

    // Page 1: the newest 100, newest first.
    let (status, first) = list(&w, KEY_A, "?limit=100").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let page1 = ids(&first);
    assert_eq!(page1.len(), 100);
    assert_eq!(page1[0], real, "the real sign-in is the newest");
    let created: Vec<&str> = first["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["created_at"].as_str().unwrap())
        .collect();
    assert!(created.windows(2).all(|p| p[0] >= p[1]), "newest first: {created:?}");
    let cursor = first["next_cursor"].as_str().expect("more pages").to_string();

    // While the client pages: one connection it has not reached yet is deleted, one is added.
    let doomed = &seeded[200].id.to_string();
    let (status, _) = w
        .api(Method::DELETE, &format!("/v1/connections/{doomed}"), Some(KEY_A), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let mut late = template.clone();
    late.id = "conn_late".into();
    late.user.oid = "oid-late".into();
    late.created_at = template.created_at + 10;
    w.broker.state.records.put_connection(&late).await.unwrap();

    let (status, second) = list(&w, KEY_A, &format!("?limit=100&cursor={cursor}")).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let cursor = second["next_cursor"].as_str().expect("a third page").to_string();
    let (status, third) = list(&w, KEY_A, &format!("?limit=100&cursor={cursor}")).await;
    assert_eq!(status, StatusCode::OK, "{third}");
    assert!(third["next_cursor"].is_null(), "the last page: {third}");

    let seen: Vec<String> = [page1, ids(&second), ids(&third)].concat();
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no connection twice");
    let throughout: HashSet<String> = seeded
        .iter()
        .map(|c| c.id.to_string())
        .chain([real.clone()])
        .filter(|id| id != doomed)
        .collect();
    let seen_set: HashSet<String> = seen.iter().cloned().collect();
    assert!(
        throughout.is_subset(&seen_set),
        "every connection that existed throughout is listed"
    );
    assert!(!seen_set.contains(doomed), "deleted before its page was read");
    assert_eq!(
        all(&w, "").await[0],
        "conn_late",
        "a new listing starts with the newest"
    );

    // Filters, alone and together.
    let reauth = all(&w, "status=reauth_required").await;
    let expected: HashSet<String> = seeded
        .iter()
        .filter(|c| c.status == ConnectionStatus::ReauthRequired && c.id != doomed.as_str())
        .map(|c| c.id.to_string())
        .collect();
    assert_eq!(reauth.iter().cloned().collect::<HashSet<_>>(), expected);
    let other_tenant = all(&w, &format!("tenant_id={OTHER_TENANT}")).await;
    let expected = seeded
        .iter()
        .filter(|c| c.tenant_id == OTHER_TENANT && c.id != doomed.as_str())
        .count();
    assert_eq!(other_tenant.len(), expected);
    let even_active = all(&w, "end_user=even&status=active").await;
    assert!(!even_active.is_empty());
    for id in &even_active {
        let c = seeded
            .iter()
            .find(|c| c.id == id.as_str())
            .expect("a seeded even connection");
        assert_eq!(
            (c.end_user.as_deref(), c.status),
            (Some("even"), ConnectionStatus::Active)
        );
    }

    // Cursors are the issuing connector's; bad queries are clear errors.
    let (status, b_page) = list(&w, KEY_B, &format!("?cursor={cursor}")).await;
    assert_eq!(
        (status, b_page["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_cursor"))
    );
    for bad in ["%25%25%25", "bm9uZQ", "Y3JtCjEyMzpjb25u"] {
        let (status, body) = list(&w, KEY_A, &format!("?cursor={bad}")).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_cursor")),
            "{bad}"
        );
    }
    for (query, code) in [
        ("?limit=0", "invalid_parameter"),
        ("?limit=501", "invalid_parameter"),
        ("?status=gone", "invalid_query"),
        ("?colour=blue", "invalid_query"),
    ] {
        let (status, body) = list(&w, KEY_A, query).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{query}"
        );
    }
    let (status, body) = w.api(Method::GET, "/v1/connections", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, b_list) = list(&w, KEY_B, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        ids(&b_list).is_empty(),
        "another connector sees none of A's connections"
    );
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_newest_first_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    listing_on(format!(
        "backend = \"embedded\"\npath = \"{}\"",
        dir.path().join("list.redb").display()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_newest_first_on_redis() {
    let mut server = crate::common::redis::RedisServer::start();
    let w = listing_on(server.store_section()).await;
    // Redis gone: a clear 503, not an empty list.
    server.stop();
    let (status, body) = list(&w, KEY_A, "").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("store_unavailable")),
        "{body}"
    );
}
