//! The token hot path against a baseline measured in the same run, over loopback HTTP to a real
//! broker (memory store, encrypted at rest) signed in through the real entra-sim:
//!
//! - baseline: `GET /healthz` (routing, request id, access log, HTTP metrics);
//! - `GET /v1/connections/{id}/token` answered from the store: API key check, connector rate
//!   limit, store read and decryption, identity check, outcome metrics;
//! - the same with 32 callers at once.
//!
//! `cargo bench --bench token_path` prints per-request medians and their ratio to the baseline;
//! nothing is asserted (machines are noisy, ratios are what to compare between commits). Under
//! `cargo test --all-targets` it runs a few iterations as a smoke test.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::broker::{BrokerOptions, KEY_A};
use common::flows::World;

/// Median per-request time of `rounds` rounds of `n` sequential requests to `url`.
async fn sequential(http: &reqwest::Client, url: &str, key: Option<&str>, n: u32, rounds: usize) -> Duration {
    let mut per_request = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..n {
            let mut req = http.get(url);
            if let Some(k) = key {
                req = req.bearer_auth(k);
            }
            let r = req.send().await.expect("request");
            assert!(r.status().is_success(), "{url}: {}", r.status());
            r.bytes().await.expect("body");
        }
        per_request.push(start.elapsed() / n);
    }
    per_request.sort();
    per_request[rounds / 2]
}

/// Median per-request time (wall clock / requests) of `rounds` rounds of `callers` concurrent
/// callers making `n` requests each.
async fn concurrent(http: &reqwest::Client, url: &str, callers: u32, n: u32, rounds: usize) -> Duration {
    let mut per_request = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let (http, url) = (http.clone(), url.to_string());
                tokio::spawn(async move {
                    for _ in 0..n {
                        let r = http.get(&url).bearer_auth(KEY_A).send().await.expect("request");
                        assert!(r.status().is_success(), "{}", r.status());
                        r.bytes().await.expect("body");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("caller");
        }
        per_request.push(start.elapsed() / (callers * n));
    }
    per_request.sort();
    per_request[rounds / 2]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (n, rounds) = if full { (2_000, 7) } else { (5, 1) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // The limiter stays on (its cost is part of the path) with room for the whole run.
        let opts = BrokerOptions {
            limits: "connector_per_minute = 100000000\nconnector_burst = 1000000".into(),
            ..Default::default()
        };
        let w = World::with(|_| {}, opts).await;
        let conn = w.connect(&w.upn("alice")).await;
        let http = reqwest::Client::new();
        let healthz = format!("{}/healthz", w.broker.url);
        let token = format!("{}/v1/connections/{conn}/token", w.broker.url);

        // Warm up connections, caches and the allocator.
        sequential(&http, &healthz, None, n.min(200), 1).await;
        sequential(&http, &token, Some(KEY_A), n.min(200), 1).await;

        let base = sequential(&http, &healthz, None, n, rounds).await;
        let hit = sequential(&http, &token, Some(KEY_A), n, rounds).await;
        let parallel = concurrent(&http, &token, 32, (n / 32).max(1), rounds).await;
        let ratio = |d: Duration| d.as_secs_f64() / base.as_secs_f64();
        println!("token_path ({} requests x {rounds} rounds, medians per request)", n);
        println!("  GET /healthz (baseline)          {base:>10.2?}  1.00x");
        println!("  GET token, from the store        {hit:>10.2?}  {:.2}x", ratio(hit));
        println!(
            "  GET token, 32 callers at once    {parallel:>10.2?}  {:.2}x (wall clock / requests)",
            ratio(parallel)
        );
    });
}
