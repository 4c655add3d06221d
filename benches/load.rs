//! The load benchmark (`scripts/bench`; README "Performance"): the token endpoint under a real
//! load generator, against an HTTP server's ceiling measured in the same run.
//!
//! One run, all on loopback, release build:
//! - a ceiling server (this binary again, `--serve-ceiling`: axum answering a token-sized JSON
//!   body on the token path, nothing else), and entra-sim;
//! - for each store (embedded; Redis with the token cache; Redis without it) and each size N:
//!   a fresh store seeded with N connections through the broker's own record layer
//!   (`Records::put_connection` over the encrypted store: the bytes a sign-in writes, staged in
//!   memory and imported in batches, see [`seed`]), a broker
//!   process, a few hundred real sign-ins through entra-sim (sign-ins/s), wrk at fixed
//!   concurrency for the maximum rate, then wrk paced at half that rate for latency, the
//!   broker's RSS, and on Redis `used_memory` per stored connection;
//! - `redis-benchmark` GET of a token-sized value, and a stampede: 1,000 callers at once on one
//!   connection whose token is about to expire while entra-sim takes 50 ms more per answer.
//!
//! wrk spreads requests over a working set of [`WORKING_SET`] connections drawn from the N
//! stored, so that every size is measured on the same traffic and the difference is what the
//! store's size costs. Results: `target/bench/load.json` and `target/bench/load.md`, with the
//! ratios the targets are stated in. Nothing is asserted about speed.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it runs the same steps tiny and in
//! debug mode, as a smoke test that fails when a step breaks.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use consent_broker::config::Config;
use consent_broker::ids::ConnectionId;
use consent_broker::store::records::{
    Connection, ConnectionStatus, ConnectionUser, Records, TokenIdentity, keepalive_member,
};
use serde_json::{Value, json};

use common::broker::{BrokerOptions, BrokerProcess, KEY_A, Reserved, TEST_ENCRYPTION_KEY, client, config_toml};
use common::flows::handoff_code_in;
use common::redis::RedisServer;
use common::sim::{CONTOSO_TID, Sim, standard_config};

/// Connections wrk spreads its requests over.
const WORKING_SET: usize = 10_000;

/// Length of a seeded access token (Entra's Graph tokens are 1.5-2.5 KB).
const TOKEN_LEN: usize = 1_600;

/// Length of a seeded refresh token (Entra's are opaque, about 1-1.5 KB).
const REFRESH_TOKEN_LEN: usize = 1_200;

/// Bytes in a MiB: RSS is reported, and its 128 MiB target compared, in binary units (as the
/// 4 KiB per connection on Redis is).
const MIB: f64 = (1u64 << 20) as f64;

/// What one run does.
struct Plan {
    sizes: Vec<usize>,
    seconds: u64,
    sign_ins: usize,
    stampede: usize,
    out: PathBuf,
}

impl Plan {
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let full = args.iter().any(|a| a == "--bench");
        let million = args.iter().any(|a| a == "--million") || std::env::var_os("BENCH_MILLION").is_some();
        let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        if !full {
            return Self {
                sizes: vec![50],
                seconds: 1,
                sign_ins: 3,
                stampede: 20,
                out: out.join("smoke"),
            };
        }
        Self {
            sizes: if million { vec![10_000, 1_000_000] } else { vec![10_000] },
            seconds: std::env::var("BENCH_SECONDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(10),
            sign_ins: 200,
            stampede: 1_000,
            out,
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve-ceiling") {
        serve_ceiling(args[i + 1].parse().expect("port"));
        return;
    }
    let plan = Plan::from_args();
    for tool in ["wrk", "redis-server", "redis-benchmark"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            panic!(
                "the load benchmark needs {tool}; scripts/bench (or scripts/test) installs it (Debian packages wrk, redis-server, redis-tools)"
            );
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(plan));
}

/// The ceiling: the smallest server answering what the broker answers, on two worker threads.
fn serve_ceiling(port: u16) {
    let body = Arc::new(
        serde_json::to_vec(&json!({
            "access_token": random_token(TOKEN_LEN),
            "token_type": "Bearer",
            "expires_at": "2026-12-01T20:00:00Z",
            "scope": "https://graph.microsoft.com/Files.Read.All https://graph.microsoft.com/Sites.Read.All",
            "min_ttl_unmet": false,
        }))
        .expect("json"),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let app = axum::Router::new().route(
            "/v1/connections/{id}/token",
            axum::routing::get(move || {
                let body = body.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        (*body).clone(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        axum::serve(listener, app).await.expect("serve");
    });
}

/// One wrk run's summary (the JSON line `token.lua` prints).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
struct WrkRun {
    requests: u64,
    duration_us: u64,
    socket_errors: u64,
    status_errors: u64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
}

impl WrkRun {
    fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us as f64 / 1e6)
    }
}

/// wrk with `connections` connections for `seconds` against `base`'s token path over `ids`;
/// `pace_ms` > 0 paces each connection to one request per that many milliseconds.
fn wrk(base: &str, ids: &Path, connections: usize, seconds: u64, pace_ms: u64) -> WrkRun {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/load/token.lua");
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--timeout",
            "5s",
            "-s",
        ])
        .arg(&script)
        .arg(base)
        .env("BENCH_IDS", ids)
        .env("BENCH_API_KEY", KEY_A)
        .env("BENCH_DELAY_MS", pace_ms.to_string())
        .output()
        .expect("run wrk");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wrk failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("wrk summary line");
    let run: WrkRun = serde_json::from_str(line).expect("wrk summary");
    assert_eq!(run.status_errors, 0, "every answer is a 2xx: {stdout}");
    run
}

/// The maximum rate, then latency at half of it.
struct Measured {
    max: WrkRun,
    half: WrkRun,
    /// The server's CPU time (user and system, all threads) per request during the maximum run,
    /// microseconds: less noisy than requests/s, which the load generator's share of the same
    /// cores moves too.
    cpu_us_per_request: f64,
}

/// `server`: the pid of the process answering at `base`.
fn measure(base: &str, ids: &Path, seconds: u64, server: u32) -> Measured {
    // A short warm-up, so that the measured run starts with warm caches and connections.
    wrk(base, ids, 64, 1, 0);
    let cpu_before = cpu_seconds(server);
    let max = wrk(base, ids, 64, seconds, 0);
    let cpu_us_per_request = (cpu_seconds(server) - cpu_before) * 1e6 / max.requests.max(1) as f64;
    // Each connection paced to 100 requests/s: half the maximum needs rate/200 connections.
    let connections = ((max.rps() / 2.0) / 100.0).round().clamp(2.0, 512.0) as usize;
    let half = wrk(base, ids, connections, seconds, 10);
    Measured {
        max,
        half,
        cpu_us_per_request,
    }
}

/// CPU time a process has used so far, user and system, seconds (`/proc/<pid>/stat`, in the
/// kernel's USER_HZ ticks, 100 a second on Linux); 0 when it cannot be read.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces, inside parentheses): utime and
    // stime are the 14th and 15th fields of the line, the 12th and 13th after the name.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

/// `len` random base64url characters (the alphabet has 64, so each byte maps evenly).
fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("OS random");
    bytes.iter().map(|b| ALPHABET[usize::from(b % 64)] as char).collect()
}

/// `k` of `items` drawn at random (a partial Fisher-Yates shuffle).
fn sample_of(items: &[String], k: usize) -> Vec<String> {
    let mut items = items.to_vec();
    let k = k.min(items.len());
    for i in 0..k {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).expect("OS random");
        let j = i + (u64::from_le_bytes(r) % (items.len() - i) as u64) as usize;
        items.swap(i, j);
    }
    items.truncate(k);
    items
}

/// Connections staged in memory per batch before they are imported into the store.
const SEED_BATCH: usize = 50_000;

/// Writes `n` connections of connector "files" in Contoso exactly as a sign-in writes them
/// (`Records::put_connection` over the encrypted store: the record, the user lookup key and the
/// index entries, sealed with the broker's keys; tokens valid for six hours, so that nothing
/// refreshes during the benchmark), files each for keep-alive under its idle time and leaves the
/// listing marker, as a running broker would have (so neither keep-alive's first round nor the
/// listing backfill reads every connection during the measurement); returns their ids.
///
/// Each batch is written into an encrypted memory store first and then moved, bytes unchanged,
/// into the real one with `Store::import` (what `restore` uses): one write per record would take
/// half an hour for a million connections on the embedded store, whose every commit is flushed.
async fn seed(config: &Config, n: usize) -> (Vec<String>, Duration) {
    use consent_broker::config::StoreConfig;
    use consent_broker::store::{EncryptedStore, MemoryStore, Store};
    // A page cache large enough for the batches (this process only seeds; the broker opens the
    // file afterwards with its configured cache).
    let mut config = config.clone();
    if let StoreConfig::Embedded { cache_bytes, .. } = &mut config.store {
        *cache_bytes = 1 << 30;
    }
    let target = consent_broker::app::open_store(&config).await.expect("open the store");
    let keys = config.encryption.clone().expect("the bench config has encryption keys");
    let connector = config
        .connectors
        .iter()
        .find(|c| c.id.as_str() == "files")
        .expect("connector");
    let identity = TokenIdentity::new(&CONTOSO_TID.into(), &connector.client_id, &connector.scopes);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let started = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for first in (0..n).step_by(SEED_BATCH) {
        let count = SEED_BATCH.min(n - first);
        let staged = Arc::new(MemoryStore::new());
        let records = Records::new(Arc::new(EncryptedStore::new(staged.clone(), keys.clone())));
        let workers = 8;
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..workers {
            let (records, identity) = (records.clone(), identity.clone());
            tasks.spawn(async move {
                let mut ids = Vec::new();
                for i in (first + w..first + count).step_by(workers) {
                    let c = bench_connection(i, now, &identity);
                    records.put_connection(&c).await.expect("stage a connection");
                    ids.push(c.id.as_str().to_string());
                }
                ids
            });
        }
        while let Some(part) = tasks.join_next().await {
            ids.extend(part.expect("staging task"));
        }
        if first == 0 {
            // The listing marker a first start leaves, found by scanning this batch in memory:
            // `put_connection` lists every connection already, and a broker's own scan over a
            // million records writes two index entries per connection, one commit each.
            records
                .list_unlisted_connections()
                .await
                .expect("leave the listing marker");
        }
        // A sign-in (and the listing backfill) files a connection as due for keep-alive at once
        // (under its `refreshed_at`, `now` here), and the broker's next look files it under its
        // idle time later: that look, done here (without keep-alive's per-connection jitter), or
        // the broker's first round would read and re-file every seeded connection during the
        // measurement.
        let idle = config.keepalive.idle_after.as_secs() as i64;
        for id in &ids[first..] {
            let id = ConnectionId::new(id.as_str());
            records
                .reschedule_keepalive(&keepalive_member(now, id.as_str()), &id, now + idle)
                .await
                .expect("file the connection for keep-alive");
        }
        let mut entries = Vec::new();
        staged
            .export(&mut |e| {
                entries.push(e);
                Ok(())
            })
            .await
            .expect("export the staged batch");
        target.import(entries).await.expect("import the batch");
    }
    (ids, started.elapsed())
}

/// The `i`th seeded connection, as a sign-in of a Contoso user makes it.
fn bench_connection(i: usize, now: i64, identity: &TokenIdentity) -> Connection {
    Connection {
        id: ConnectionId::generate(),
        connector: "files".into(),
        end_user: Some(format!("bench-user-{i}")),
        tenant_id: CONTOSO_TID.into(),
        user: ConnectionUser {
            oid: uuid::Uuid::new_v4().to_string(),
            name: Some(format!("Bench User {i}")),
            preferred_username: Some(format!("bench-{i}@contoso.onmicrosoft.com")),
        },
        scopes: vec![
            "https://graph.microsoft.com/Files.Read.All".into(),
            "https://graph.microsoft.com/Sites.Read.All".into(),
        ],
        access_token: consent_broker::crypto::Sensitive::new(random_token(TOKEN_LEN)),
        access_expires_at: now + 6 * 3600,
        refresh_token: Some(consent_broker::crypto::Sensitive::new(random_token(REFRESH_TOKEN_LEN))),
        created_at: now,
        refreshed_at: now,
        status: ConnectionStatus::Active,
        reauth: None,
        return_url: None,
        token_identity: Some(identity.clone()),
        failing: None,
    }
}

/// Signs `upn` in through connector "files" the way a browser does (out-of-band: the code page),
/// and redeems the code; returns the connection id.
async fn sign_in(broker: &str, sim: &str, upn: &str) -> String {
    let http = client();
    let session: Value = http
        .post(format!("{broker}/v1/connect-sessions"))
        .bearer_auth(KEY_A)
        .json(&json!({"connector": "files", "end_user": upn, "login_hint": upn}))
        .send()
        .await
        .expect("session")
        .json()
        .await
        .expect("session body");
    let mut next = url::Url::parse(session["connect_url"].as_str().expect("connect_url")).expect("url");
    let body = loop {
        let r = http.get(next.clone()).send().await.expect("follow");
        match r.headers().get("location").and_then(|l| l.to_str().ok()) {
            Some(l) if r.status().is_redirection() => {
                next = next.join(l).expect("location");
                assert!(
                    next.as_str().starts_with(broker) || next.as_str().starts_with(sim),
                    "left the loop: {next}"
                );
            }
            _ => break r.text().await.expect("page"),
        }
    };
    let code = handoff_code_in(&body).unwrap_or_else(|| panic!("no code on the page for {upn}"));
    let redeemed: Value = http
        .post(format!("{broker}/v1/handoff/redeem"))
        .bearer_auth(KEY_A)
        .json(&json!({"code": code}))
        .send()
        .await
        .expect("redeem")
        .json()
        .await
        .expect("redeem body");
    redeemed["connection_id"].as_str().expect("connection_id").to_string()
}

/// `count` sign-ins of distinct users, 8 at a time; returns sign-ins per second and one id.
async fn sign_ins(broker: &str, sim: &str, count: usize, first_user: usize) -> (f64, String) {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..8 {
        let (broker, sim, next) = (broker.to_string(), sim.to_string(), next.clone());
        tasks.spawn(async move {
            let mut last = None;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return last;
                }
                last = Some(sign_in(&broker, &sim, &bench_upn(first_user + i)).await);
            }
        });
    }
    let mut id = None;
    while let Some(r) = tasks.join_next().await {
        id = id.or(r.expect("sign-in task"));
    }
    (count as f64 / started.elapsed().as_secs_f64(), id.expect("a sign-in"))
}

fn bench_upn(i: usize) -> String {
    format!("bench-signin-{i}@contoso.onmicrosoft.com")
}

/// The simulator world: the standard tenants plus enough Contoso users for every sign-in.
fn sim_config(callbacks: &[String], users: usize) -> Value {
    let mut config = standard_config(&callbacks.iter().map(String::as_str).collect::<Vec<_>>());
    let contoso = config["tenants"]
        .as_array_mut()
        .expect("tenants")
        .iter_mut()
        .find(|t| t["id"] == CONTOSO_TID)
        .expect("contoso");
    let list = contoso["users"].as_array_mut().expect("users");
    for i in 0..users {
        list.push(
            json!({"upn": bench_upn(i), "oid": uuid::Uuid::new_v4().to_string(), "name": format!("Sign-in {i}")}),
        );
    }
    config
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn used_memory(redis: &RedisServer) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(&mut redis.raw()).expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

/// `redis-benchmark` GET of a token-sized value: requests per second.
fn redis_benchmark(redis: &RedisServer, requests: usize) -> f64 {
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &redis.port().to_string(),
            "-t",
            "set,get",
            "-d",
            "1700",
        ])
        .args(["-c", "64", "-r", "10000", "-n", &requests.to_string(), "--csv"])
        .output()
        .expect("run redis-benchmark");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("\"GET\""))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|v| v.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("redis-benchmark: {text}"))
}

/// Which store a broker runs on.
#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Embedded,
    Redis { cache: bool },
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Redis { cache: true } => "redis",
            Self::Redis { cache: false } => "redis, no token cache",
        }
    }
}

/// The results of one store at one size.
#[derive(serde::Serialize)]
struct StoreResult {
    store: &'static str,
    connections: usize,
    seeded_per_second: f64,
    max: WrkRun,
    max_rps: f64,
    half: WrkRun,
    /// The broker's CPU time per token call at the maximum rate, microseconds.
    cpu_us_per_request: f64,
    sign_ins_per_second: f64,
    broker_rss_bytes: u64,
    redis_bytes_per_connection: Option<f64>,
    /// Size of one sealed connection record (Redis only).
    record_bytes: Option<u64>,
    /// Token requests answered from the broker's token cache, over the whole run.
    cache_hit_ratio: f64,
}

/// The stampede's results.
#[derive(serde::Serialize)]
struct Stampede {
    callers: usize,
    refreshes: u64,
    entra_extra_latency_ms: u64,
    last_caller_ms: f64,
}

async fn one_store(
    backend: Backend,
    n: usize,
    plan: &Plan,
    sim: &Sim,
    reserved: Reserved,
    first_user: usize,
) -> StoreResult {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = matches!(backend, Backend::Redis { .. }).then(RedisServer::start);
    let store = match (&redis, backend) {
        (Some(r), Backend::Redis { cache }) => format!(
            "backend = \"redis\"\nurl = \"{}\"\ntoken_cache_capacity = {}",
            r.url(),
            if cache { 100_000 } else { 0 }
        ),
        _ => format!(
            "backend = \"embedded\"\npath = \"{}\"",
            dir.path().join("store.redb").display()
        ),
    };
    // Records compressed before sealing (`[encryption] compress`), as a broker that need not be
    // read by older releases runs.
    let key_file = dir.path().join("bench-encryption-key");
    std::fs::write(&key_file, TEST_ENCRYPTION_KEY).expect("key file");
    let encryption = format!(
        "compress = true\n[[encryption.keys]]\nid = \"test\"\nfile = \"{}\"",
        key_file.display()
    );
    let opts = || BrokerOptions {
        store: store.clone(),
        limits: "ip_per_minute = 0\nconnector_per_minute = 0\ntenant_flow_starts_per_minute = 0".into(),
        tokens: String::new(),
        encryption: Some(encryption.clone()),
        ..Default::default()
    };
    let url = reserved.url.clone();
    // Freed for the broker process, which binds it itself.
    drop(reserved);
    let toml = config_toml(&url, sim.base_url(), opts(), dir.path());
    let config = Config::from_toml_str(&toml, "bench.toml").expect("bench config");
    let before = redis.as_ref().map(used_memory);
    let (ids, took) = seed(&config, n).await;
    drop(config);
    let redis_per_conn = redis
        .as_ref()
        .zip(before)
        .map(|(r, b)| (used_memory(r).saturating_sub(b)) as f64 / n as f64);
    // The sealed record alone (tokens, user, identity; encrypted), to tell it from Redis's own
    // per-key costs and the lookup and listing entries.
    let record_bytes = redis.as_ref().map(|r| {
        let len: u64 = redis::cmd("HSTRLEN")
            .arg(format!("cb:conn:{{{}}}", ids[0]))
            .arg("d")
            .query(&mut r.raw())
            .expect("HSTRLEN");
        len
    });
    let working = sample_of(&ids, WORKING_SET);
    let ids_file = dir.path().join("ids.txt");
    std::fs::write(&ids_file, working.iter().map(|s| format!("{s}\n")).collect::<String>()).expect("ids");

    let broker = start_broker(&url, sim, opts(), dir.path()).await;
    let (sign_ins_per_second, _) = sign_ins(&broker.url, sim.base_url(), plan.sign_ins, first_user).await;
    let m = measure(&broker.url, &ids_file, plan.seconds, broker.pid());
    let metrics = client()
        .get(format!("{}/metrics", broker.url))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics");
    let lookups = |result: &str| {
        common::scrape::sample(
            &metrics,
            "consent_broker_token_cache_lookups_total",
            &format!("result=\"{result}\""),
        )
    };
    let (hits, misses) = (lookups("hit"), lookups("miss"));
    let result = StoreResult {
        cache_hit_ratio: if hits + misses > 0.0 {
            hits / (hits + misses)
        } else {
            0.0
        },
        store: backend.name(),
        connections: n,
        seeded_per_second: n as f64 / took.as_secs_f64(),
        max_rps: m.max.rps(),
        max: m.max,
        half: m.half,
        cpu_us_per_request: m.cpu_us_per_request,
        sign_ins_per_second,
        broker_rss_bytes: rss(broker.pid()),
        redis_bytes_per_connection: redis_per_conn,
        record_bytes,
    };
    eprintln!(
        "load: {} at {n}: {:.0} req/s, p99 {:.2} ms at half rate, {:.1} sign-ins/s, {:.1}% cache hits",
        result.store,
        result.max_rps,
        result.half.p99_us as f64 / 1000.0,
        result.sign_ins_per_second,
        result.cache_hit_ratio * 100.0
    );
    result
}

/// A broker process; `BENCH_BROKER_LOG` (a log filter, e.g. `warn`) replaces its default
/// level, to measure what the access log costs.
async fn start_broker(url: &str, sim: &Sim, opts: BrokerOptions, dir: &Path) -> BrokerProcess {
    let log = std::env::var("BENCH_BROKER_LOG").ok();
    let env: Vec<(&str, &str)> = log.iter().map(|l| ("RUST_LOG", l.as_str())).collect();
    BrokerProcess::start_with_env(url, sim.base_url(), opts, dir, &env).await
}

/// 1,000 callers at once on one connection about to expire, entra-sim 50 ms slower: how many
/// refreshes reach Entra, and when the last caller is answered.
async fn stampede(plan: &Plan, sim: &Sim, reserved: Reserved, first_user: usize) -> Stampede {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = || BrokerOptions {
        store: format!("backend = \"redis\"\nurl = \"{}\"", redis.url()),
        limits: "ip_per_minute = 0\nconnector_per_minute = 0\ntenant_flow_starts_per_minute = 0".into(),
        tokens: String::new(),
        ..Default::default()
    };
    let url = reserved.url.clone();
    drop(reserved);
    let broker = start_broker(&url, sim, opts(), dir.path()).await;
    let id = sign_in(&broker.url, sim.base_url(), &bench_upn(first_user)).await;
    // Make its token about to expire, through the record layer as a refresh would write it.
    let toml = config_toml(&url, sim.base_url(), opts(), dir.path());
    let config = Config::from_toml_str(&toml, "bench.toml").expect("config");
    let records = Records::new(consent_broker::app::open_store(&config).await.expect("store"));
    let (mut conn, _) = records
        .connection(&ConnectionId::new(&id))
        .await
        .expect("read")
        .expect("connection");
    // Refreshed an hour ago, so the refresh floor (`[tokens] min_refresh_interval_secs`) allows
    // a refresh now.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    conn.access_expires_at = now + 30;
    conn.refreshed_at = now - 3_600;
    records.put_connection(&conn).await.expect("write");

    let extra = 50;
    sim.fault(json!({"endpoint": "token", "kind": "latency", "latency_ms": extra, "count": 1}))
        .await;
    let grants = sim.token_grants("refresh_token").await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.stampede)
        .build()
        .expect("client");
    // The callers' connections are open before they call, as a connector backend's HTTP client
    // keeps them: 1,000 requests at once first, which leaves 1,000 idle connections in the pool.
    // (Opening 1,000 TCP connections within the stampede added about 50 ms on the 2-core dev
    // machine, which is the load generator's and the kernel's time, not the broker's.)
    let mut warm = tokio::task::JoinSet::new();
    for _ in 0..plan.stampede {
        let (http, url) = (http.clone(), format!("{}/healthz", broker.url));
        warm.spawn(async move { http.get(url).send().await.expect("healthz").bytes().await });
    }
    while let Some(r) = warm.join_next().await {
        r.expect("warm-up").expect("healthz body");
    }
    let url = format!("{}/v1/connections/{id}/token?min_ttl=60", broker.url);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..plan.stampede {
        let (http, url) = (http.clone(), url.clone());
        tasks.spawn(async move {
            let r = http.get(url).bearer_auth(KEY_A).send().await.expect("token");
            assert!(r.status().is_success(), "{}", r.status());
            r.bytes().await.expect("body");
            Instant::now()
        });
    }
    let mut last = started;
    while let Some(at) = tasks.join_next().await {
        last = last.max(at.expect("caller"));
    }
    Stampede {
        callers: plan.stampede,
        refreshes: sim.token_grants("refresh_token").await - grants,
        entra_extra_latency_ms: extra,
        last_caller_ms: (last - started).as_secs_f64() * 1000.0,
    }
}

async fn run(plan: Plan) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    std::fs::create_dir_all(&plan.out).expect("output directory");
    // `BENCH_STORES=embedded,redis` measures only those (names as in load.md; "redis-nocache" for
    // Redis without the cache), e.g. to profile one.
    let only = std::env::var("BENCH_STORES").ok();
    let backends: Vec<Backend> = [
        Backend::Embedded,
        Backend::Redis { cache: true },
        Backend::Redis { cache: false },
    ]
    .into_iter()
    .filter(|b| {
        only.as_deref().is_none_or(|list| {
            list.split(',').any(|name| {
                let name = name.trim();
                name == b.name() || (name == "redis-nocache" && *b == Backend::Redis { cache: false })
            })
        })
    })
    .collect();
    let runs = plan.sizes.len() * backends.len() + 1;
    let reserved: Vec<Reserved> = (0..runs).map(|_| Reserved::new()).collect();
    let callbacks: Vec<String> = reserved.iter().map(Reserved::callback).collect();
    let sim = Sim::start(sim_config(&callbacks, plan.sign_ins * runs + 1)).await;

    let ceiling_port = Reserved::new()
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .expect("port");
    let mut ceiling = Command::new(std::env::current_exe().expect("own path"))
        .args(["--serve-ceiling", &ceiling_port.to_string()])
        .spawn()
        .expect("start the ceiling server");
    let ceiling_url = format!("http://127.0.0.1:{ceiling_port}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", ceiling_port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids_file = plan.out.join("ceiling-ids.txt");
    std::fs::write(&ids_file, "conn_ceiling\n").expect("ids");
    let ceiling_run = measure(&ceiling_url, &ids_file, plan.seconds, ceiling.id());
    let _ = ceiling.kill();
    let _ = ceiling.wait();
    eprintln!(
        "load: ceiling {:.0} req/s, {:.1} µs of CPU per request",
        ceiling_run.max.rps(),
        ceiling_run.cpu_us_per_request
    );

    let raw_redis = {
        let r = RedisServer::start();
        redis_benchmark(&r, if plan.seconds > 1 { 400_000 } else { 20_000 })
    };
    eprintln!("load: redis-benchmark GET {raw_redis:.0} req/s");

    let mut reserved = reserved.into_iter();
    let mut results = Vec::new();
    let mut user = 0;
    for &n in &plan.sizes {
        for &backend in &backends {
            results.push(one_store(backend, n, &plan, &sim, reserved.next().expect("port"), user).await);
            user += plan.sign_ins;
        }
    }
    let stampede = stampede(&plan, &sim, reserved.next().expect("port"), user).await;
    eprintln!(
        "load: stampede {} refresh(es), last caller {:.1} ms",
        stampede.refreshes, stampede.last_caller_ms
    );
    assert_eq!(stampede.refreshes, 1, "a stampede refreshes exactly once");

    let report = json!({
        "ceiling": {
            "max": ceiling_run.max,
            "max_rps": ceiling_run.max.rps(),
            "half": ceiling_run.half,
            "cpu_us_per_request": ceiling_run.cpu_us_per_request,
        },
        "redis_benchmark_get_rps": raw_redis,
        "stores": results,
        "stampede": stampede,
        "machine": {"cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
    });
    std::fs::write(
        plan.out.join("load.json"),
        serde_json::to_string_pretty(&report).expect("json"),
    )
    .expect("write load.json");
    let md = markdown(&ceiling_run, raw_redis, &results, &stampede);
    std::fs::write(plan.out.join("load.md"), &md).expect("write load.md");
    println!("{md}");
}

/// `load.md`: every number with the target it is compared to.
fn markdown(ceiling_run: &Measured, raw_redis: f64, results: &[StoreResult], stampede: &Stampede) -> String {
    let ceiling = ceiling_run.max.rps();
    let ceiling_cpu = ceiling_run.cpu_us_per_request;
    let mut md = String::from("# Load benchmark\n\n");
    let _ = writeln!(
        md,
        "Ceiling (axum, token-sized JSON): **{ceiling:.0} req/s**, {ceiling_cpu:.1} µs of CPU per request; `redis-benchmark` GET of a token-sized value: **{raw_redis:.0} req/s**.\n"
    );
    md.push_str("| store | stored | req/s | × ceiling | × redis GET | CPU µs/req (× ceiling) | p50 / p99 / p99.9 at half rate (ms) | cache hits | sign-ins/s | broker RSS (MiB) | Redis B/conn |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n");
    for r in results {
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.1} ({:.2}) | {:.2} / {:.2} / {:.2} | {:.0}% | {:.1} | {:.0} | {} |",
            r.store,
            r.connections,
            r.max_rps,
            r.max_rps / ceiling,
            r.max_rps / raw_redis,
            r.cpu_us_per_request,
            r.cpu_us_per_request / ceiling_cpu.max(f64::MIN_POSITIVE),
            r.half.p50_us as f64 / 1000.0,
            r.half.p99_us as f64 / 1000.0,
            r.half.p999_us as f64 / 1000.0,
            r.cache_hit_ratio * 100.0,
            r.sign_ins_per_second,
            r.broker_rss_bytes as f64 / MIB,
            r.redis_bytes_per_connection.map_or("-".into(), |b| format!("{b:.0}")),
        );
    }
    let _ = writeln!(
        md,
        "\nStampede: {} callers on open keep-alive connections, **{} refresh(es)** at Entra, last caller answered after **{:.1} ms** (entra-sim +{} ms).\n",
        stampede.callers, stampede.refreshes, stampede.last_caller_ms, stampede.entra_extra_latency_ms
    );
    md.push_str("## Targets\n\n");
    let mut check = |what: String, ok: bool| {
        let _ = writeln!(md, "- {} {what}", if ok { "met:" } else { "**missed:**" });
    };
    for r in results {
        match r.store {
            "redis, no token cache" => check(
                format!(
                    "{} at {}: {:.2}x redis GET (target 0.35x)",
                    r.store,
                    r.connections,
                    r.max_rps / raw_redis
                ),
                r.max_rps / raw_redis >= 0.35,
            ),
            _ => {
                check(
                    format!(
                        "{} at {}: {:.2}x the ceiling (target 0.75x)",
                        r.store,
                        r.connections,
                        r.max_rps / ceiling
                    ),
                    r.max_rps / ceiling >= 0.75,
                );
                check(
                    format!(
                        "{} at {}: p99 {:.2} ms at half rate (target < 5 ms)",
                        r.store,
                        r.connections,
                        r.half.p99_us as f64 / 1000.0
                    ),
                    r.half.p99_us < 5_000,
                );
            }
        }
        check(
            format!(
                "{} at {}: broker RSS {:.0} MiB (target < 128 MiB)",
                r.store,
                r.connections,
                r.broker_rss_bytes as f64 / MIB
            ),
            r.broker_rss_bytes < 128 << 20,
        );
        if let Some(b) = r.redis_bytes_per_connection {
            check(
                format!(
                    "{} at {}: Redis {b:.0} bytes per connection, of which the sealed record {} (target < 4 KB)",
                    r.store,
                    r.connections,
                    r.record_bytes.unwrap_or(0)
                ),
                b < 4096.0,
            );
        }
    }
    for r in results.iter().filter(|r| r.connections > 10_000) {
        if let Some(base) = results.iter().find(|b| b.store == r.store && b.connections == 10_000) {
            check(
                format!(
                    "{} at {}: {:.2}x its rate at 10,000 (target within 10%)",
                    r.store,
                    r.connections,
                    r.max_rps / base.max_rps
                ),
                r.max_rps / base.max_rps >= 0.9,
            );
        }
    }
    check(
        format!("stampede: {} refresh(es) (target exactly 1)", stampede.refreshes),
        stampede.refreshes == 1,
    );
    check(
        format!(
            "stampede: last caller after {:.1} ms (target within {} ms + 50 ms)",
            stampede.last_caller_ms, stampede.entra_extra_latency_ms
        ),
        stampede.last_caller_ms <= (stampede.entra_extra_latency_ms + 50) as f64,
    );
    md
}
