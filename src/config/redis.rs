//! The Redis backend's `[store]` keys: one server, a Cluster's seed nodes or Redis Sentinel, and
//! how to reach them. URLs never appear in messages or `Debug`: they may carry a password.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::store::RawStore;

/// How the broker reaches Redis. `Debug` never shows the URLs: they may carry a password.
#[derive(Clone)]
pub struct RedisConfig {
    /// The server's URL (standalone), or the seed nodes' URLs (cluster); `redis://` or `rediss://`
    /// (TLS), possibly with credentials.
    pub urls: Vec<String>,
    /// True for Redis Cluster (`cluster_urls`), false for one server (`url`) or Sentinel.
    pub cluster: bool,
    /// Set for Redis Sentinel (`sentinel_urls`): then `urls` are the sentinels' URLs.
    pub sentinel: Option<SentinelConfig>,
    /// Prepended to every key, so several applications can share one Redis.
    pub key_prefix: String,
    /// Limit for each attempt to open a connection to a Redis node.
    pub connect_timeout: Duration,
    /// Limit for one store operation, from sending it to having its answer (reconnects included).
    pub response_timeout: Duration,
    /// PEM certificates trusted for `rediss://` instead of the system's roots.
    pub tls_ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field(
                "urls",
                &self.urls.iter().map(|u| redact_redis_url(u)).collect::<Vec<_>>(),
            )
            .field("cluster", &self.cluster)
            .field("sentinel", &self.sentinel)
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

/// Redis Sentinel: which master to ask the sentinels for, and how to log in to it. `Debug` never
/// shows the password.
#[derive(Clone)]
pub struct SentinelConfig {
    /// The name the sentinels monitor the master under (`sentinel_master`).
    pub master: String,
    /// The ACL user on the master and replicas (`sentinel_master_username`).
    pub username: Option<String>,
    /// The data nodes' password, read from the variable `sentinel_master_password_env` names.
    pub password: Option<String>,
    /// Replicas that must confirm each write (`WAIT`) before it counts as done; 0 for none.
    pub wait_replicas: u32,
}

impl std::fmt::Debug for SentinelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelConfig")
            .field("master", &self.master)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("wait_replicas", &self.wait_replicas)
            .finish()
    }
}

/// A Redis URL fit for logs: scheme, host and port only (credentials, database and options dropped).
pub fn redact_redis_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(url) => {
            let host = url.host_str().unwrap_or("?");
            match url.port() {
                Some(port) => format!("{}://{host}:{port}", url.scheme()),
                None => format!("{}://{host}", url.scheme()),
            }
        }
        Err(_) => "<unparsable redis url>".into(),
    }
}

/// Validates the `[store]` keys of the Redis backend; errors name the key. URLs never appear in
/// messages: they may carry a password.
pub(super) fn redis_config(raw: RawStore) -> Result<RedisConfig, (&'static str, String)> {
    let modes = [
        raw.url.is_some(),
        !raw.cluster_urls.is_empty(),
        !raw.sentinel_urls.is_empty(),
    ];
    if modes.iter().filter(|m| **m).count() > 1 {
        let key = if raw.url.is_some() {
            "store.url"
        } else {
            "store.cluster_urls"
        };
        return Err((
            key,
            "set only one of url (one server), cluster_urls (Redis Cluster) and sentinel_urls (Redis Sentinel)".into(),
        ));
    }
    if raw.sentinel_urls.is_empty() {
        for (key, set) in [
            ("store.sentinel_master", raw.sentinel_master.is_some()),
            ("store.sentinel_master_username", raw.sentinel_master_username.is_some()),
            (
                "store.sentinel_master_password_env",
                raw.sentinel_master_password_env.is_some(),
            ),
            ("store.sentinel_wait_replicas", raw.sentinel_wait_replicas != 0),
        ] {
            if set {
                return Err((key, "only used with sentinel_urls (Redis Sentinel)".into()));
            }
        }
    }
    let (urls, cluster, key, sentinel) = if let Some(url) = raw.url {
        (vec![url], false, "store.url", None)
    } else if !raw.cluster_urls.is_empty() {
        (raw.cluster_urls, true, "store.cluster_urls", None)
    } else if !raw.sentinel_urls.is_empty() {
        let sentinel = sentinel_config(
            raw.sentinel_master,
            raw.sentinel_master_username,
            raw.sentinel_master_password_env,
            raw.sentinel_wait_replicas,
        )?;
        (raw.sentinel_urls, false, "store.sentinel_urls", Some(sentinel))
    } else {
        return Err((
            "store.url",
            "missing: set url (one server), cluster_urls (Redis Cluster seed nodes) or sentinel_urls (Redis Sentinel)"
                .into(),
        ));
    };
    let mut schemes = HashSet::new();
    for url in &urls {
        schemes.insert(check_redis_url(url, cluster).map_err(|m| (key, m))?);
        if sentinel.is_some() && !Url::parse(url).is_ok_and(|u| u.path().trim_start_matches('/').is_empty()) {
            // A sentinel has no databases; a number here would be silently ignored.
            return Err((key, "a sentinel URL takes no database number".into()));
        }
    }
    if sentinel.is_some() {
        // The client logs in to every sentinel with one set of credentials.
        let logins: HashSet<_> = urls
            .iter()
            .filter_map(|u| Url::parse(u).ok())
            .map(|u| (u.username().to_string(), u.password().map(str::to_string)))
            .collect();
        if logins.len() > 1 {
            return Err((
                key,
                "every sentinel URL must carry the same user and password (or none)".into(),
            ));
        }
    }
    if schemes.len() > 1 {
        return Err((
            key,
            "mixes redis:// and rediss://; use one scheme for every node".into(),
        ));
    }
    if raw.key_prefix.len() > 64
        || !raw
            .key_prefix
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '{' && c != '}')
    {
        // Braces would become a Redis Cluster hash tag and pin every key to one slot.
        return Err((
            "store.key_prefix",
            "must be at most 64 printable ASCII characters without spaces, { or }".into(),
        ));
    }
    for (key, ms) in [
        ("store.connect_timeout_ms", raw.connect_timeout_ms),
        ("store.response_timeout_ms", raw.response_timeout_ms),
    ] {
        if ms == 0 || ms > 60_000 {
            return Err((key, "must be between 1 and 60000 milliseconds".into()));
        }
    }
    if let Some(ca) = &raw.tls_ca_file {
        if !schemes.contains("rediss") {
            return Err(("store.tls_ca_file", "only used with rediss:// URLs".into()));
        }
        if !ca.is_file() {
            return Err(("store.tls_ca_file", format!("file {} not found", ca.display())));
        }
    }
    Ok(RedisConfig {
        urls,
        cluster,
        sentinel,
        key_prefix: raw.key_prefix,
        connect_timeout: Duration::from_millis(raw.connect_timeout_ms),
        response_timeout: Duration::from_millis(raw.response_timeout_ms),
        tls_ca_file: raw.tls_ca_file,
    })
}

/// The Sentinel keys besides the URLs. The data nodes' password comes from an environment variable
/// so that it stays out of the file; the sentinels' own password, if any, is in their URLs.
fn sentinel_config(
    master: Option<String>,
    username: Option<String>,
    password_env: Option<String>,
    wait_replicas: u32,
) -> Result<SentinelConfig, (&'static str, String)> {
    let master = master.ok_or((
        "store.sentinel_master",
        "missing: name the master the sentinels monitor (their `sentinel monitor <name> …`)".to_string(),
    ))?;
    if master.is_empty() || !master.chars().all(|c| c.is_ascii_graphic()) {
        return Err((
            "store.sentinel_master",
            "must be a non-empty name of printable ASCII characters without spaces".into(),
        ));
    }
    if username.as_deref().is_some_and(str::is_empty) {
        return Err(("store.sentinel_master_username", "must not be empty".into()));
    }
    let password = match password_env {
        None => None,
        // figment reads every BROKER_* variable as a config override.
        Some(var) if var.to_ascii_uppercase().starts_with("BROKER_") => {
            return Err((
                "store.sentinel_master_password_env",
                format!("{var} starts with BROKER_, which is reserved for config overrides; use another name"),
            ));
        }
        Some(var) => match std::env::var(&var) {
            Ok(pw) if !pw.is_empty() => Some(pw),
            Ok(_) => return Err(("store.sentinel_master_password_env", format!("{var} is empty"))),
            Err(_) => return Err(("store.sentinel_master_password_env", format!("{var} is not set"))),
        },
    };
    if wait_replicas > 16 {
        return Err(("store.sentinel_wait_replicas", "must be between 0 and 16".into()));
    }
    Ok(SentinelConfig {
        master,
        username,
        password,
        wait_replicas,
    })
}

/// Checks one Redis URL and returns its scheme. Messages never echo the URL.
fn check_redis_url(raw: &str, cluster: bool) -> Result<&'static str, String> {
    let url = Url::parse(raw)
        .map_err(|_| "not a valid URL (expected redis://host:port or rediss://host:port)".to_string())?;
    let scheme = match url.scheme() {
        "redis" => "redis",
        "rediss" => "rediss",
        _ => return Err("must start with redis:// or rediss:// (TLS)".into()),
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    if url.fragment().is_some() {
        // redis-rs reads `#insecure` as "skip certificate checks"; never accept that silently.
        return Err("must not carry a #fragment (certificate checks cannot be turned off)".into());
    }
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u16>().is_err() {
        return Err("the path must be empty or a database number".into());
    }
    if cluster && !db.is_empty() && db != "0" {
        return Err("Redis Cluster has only database 0".into());
    }
    if ::redis::IntoConnectionInfo::into_connection_info(raw).is_err() {
        return Err("not accepted by the Redis client (check the host, port and options)".into());
    }
    Ok(scheme)
}

#[cfg(test)]
// figment's Jail closures return its (large) error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{ONE_KEY, TEST_KEY, base, err_of};
    use super::super::{Config, StoreConfig};
    use super::redact_redis_url;

    #[test]
    fn redis_store_config() {
        let store = |body: &str| format!("{}{ONE_KEY}", base("").replace("backend = \"memory\"", body));
        figment::Jail::expect_with(|jail| {
            jail.set_env("CB_TEST_KEY", TEST_KEY);
            let cfg = Config::from_toml_str(
                &store("backend = \"redis\"\nurl = \"redis://:pw@127.0.0.1:6379/2\""),
                "t.toml",
            )
            .expect("standalone");
            let StoreConfig::Redis { redis, .. } = cfg.store else {
                panic!("not redis: {:?}", cfg.store);
            };
            assert!(!redis.cluster);
            assert_eq!(redis.key_prefix, "cb:");
            assert_eq!(redis.connect_timeout, Duration::from_millis(1_000));
            assert_eq!(redis.response_timeout, Duration::from_millis(500));
            let shown = format!("{redis:?}");
            assert!(!shown.contains("pw"), "{shown}");
            assert!(shown.contains("redis://127.0.0.1:6379"), "{shown}");

            let cfg = Config::from_toml_str(
                &store(
                    "backend = \"redis\"\ncluster_urls = [\"rediss://a.example:7000\", \"rediss://b.example:7001\"]\nkey_prefix = \"\"\nconnect_timeout_ms = 250\nresponse_timeout_ms = 100",
                ),
                "t.toml",
            )
            .expect("cluster");
            let StoreConfig::Redis { redis, .. } = cfg.store else {
                panic!("not redis");
            };
            assert!(redis.cluster);
            assert_eq!(redis.urls.len(), 2);
            assert_eq!(redis.key_prefix, "");
            assert_eq!(redis.response_timeout, Duration::from_millis(100));
            assert!(redis.sentinel.is_none());

            jail.set_env("CB_TEST_REDIS_PW", "data-n0de-pw");
            let cfg = Config::from_toml_str(
                &store(
                    "backend = \"redis\"\nsentinel_urls = [\"rediss://:sent-pw@s1.example:26379\", \"rediss://:sent-pw@s2.example:26379\"]\nsentinel_master = \"mymaster\"\nsentinel_master_username = \"broker\"\nsentinel_master_password_env = \"CB_TEST_REDIS_PW\"\nsentinel_wait_replicas = 1",
                ),
                "t.toml",
            )
            .expect("sentinel");
            let StoreConfig::Redis { redis, .. } = cfg.store else {
                panic!("not redis");
            };
            assert!(!redis.cluster);
            assert_eq!(redis.urls.len(), 2);
            let sentinel = redis.sentinel.as_ref().expect("sentinel mode");
            assert_eq!(sentinel.master, "mymaster");
            assert_eq!(sentinel.username.as_deref(), Some("broker"));
            assert_eq!(sentinel.password.as_deref(), Some("data-n0de-pw"));
            assert_eq!(sentinel.wait_replicas, 1);
            let shown = format!("{redis:?}");
            assert!(!shown.contains("data-n0de-pw") && !shown.contains("sent-pw"), "{shown}");
            Ok(())
        });

        for (body, key, words) in [
            ("backend = \"redis\"", "store.url", "missing"),
            (
                "backend = \"redis\"\nurl = \"redis://h:1\"\ncluster_urls = [\"redis://h:2\"]",
                "store.url",
                "only one of",
            ),
            (
                "backend = \"redis\"\ncluster_urls = [\"redis://h:1\"]\nsentinel_urls = [\"redis://h:2\"]\nsentinel_master = \"m\"",
                "store.cluster_urls",
                "only one of",
            ),
            (
                "backend = \"redis\"\nsentinel_urls = [\"redis://h:26379\"]",
                "store.sentinel_master",
                "missing",
            ),
            (
                "backend = \"redis\"\nsentinel_urls = [\"redis://h:26379\"]\nsentinel_master = \"my master\"",
                "store.sentinel_master",
                "spaces",
            ),
            (
                "backend = \"redis\"\nsentinel_urls = [\"redis://:secret@h:26379/1\"]\nsentinel_master = \"m\"",
                "store.sentinel_urls",
                "database",
            ),
            (
                "backend = \"redis\"\nsentinel_urls = [\"redis://:secret@h:1\", \"redis://:other@h:2\"]\nsentinel_master = \"m\"",
                "store.sentinel_urls",
                "same user and password",
            ),
            (
                "backend = \"redis\"\nsentinel_urls = [\"redis://h:1\", \"rediss://h:2\"]\nsentinel_master = \"m\"",
                "store.sentinel_urls",
                "mixes",
            ),
            (
                "backend = \"redis\"\nsentinel_urls = [\"redis://h:1\"]\nsentinel_master = \"m\"\nsentinel_master_password_env = \"CB_TEST_REDIS_PW_ABSENT\"",
                "store.sentinel_master_password_env",
                "CB_TEST_REDIS_PW_ABSENT is not set",
            ),
            (
                "backend = \"redis\"\nsentinel_urls = [\"redis://h:1\"]\nsentinel_master = \"m\"\nsentinel_master_password_env = \"BROKER_REDIS_PW\"",
                "store.sentinel_master_password_env",
                "reserved",
            ),
            (
                "backend = \"redis\"\nsentinel_urls = [\"redis://h:1\"]\nsentinel_master = \"m\"\nsentinel_wait_replicas = 17",
                "store.sentinel_wait_replicas",
                "between",
            ),
            (
                "backend = \"redis\"\nurl = \"redis://h:1\"\nsentinel_master = \"m\"",
                "store.sentinel_master",
                "only used with sentinel_urls",
            ),
            (
                "backend = \"redis\"\nurl = \"redis://h:1\"\nsentinel_wait_replicas = 1",
                "store.sentinel_wait_replicas",
                "only used with sentinel_urls",
            ),
            (
                "backend = \"embedded\"\nsentinel_urls = [\"redis://:secret@h:1\"]",
                "store.sentinel_urls",
                "only used",
            ),
            (
                "backend = \"redis\"\nurl = \"http://:secret@h:1\"",
                "store.url",
                "redis://",
            ),
            (
                "backend = \"redis\"\nurl = \"rediss://:secret@h:1/#insecure\"",
                "store.url",
                "fragment",
            ),
            (
                "backend = \"redis\"\nurl = \"redis://:secret@h:1/x\"",
                "store.url",
                "database",
            ),
            (
                "backend = \"redis\"\ncluster_urls = [\"redis://:secret@h:1/3\"]",
                "store.cluster_urls",
                "database 0",
            ),
            (
                "backend = \"redis\"\ncluster_urls = [\"redis://h:1\", \"rediss://h:2\"]",
                "store.cluster_urls",
                "mixes",
            ),
            (
                "backend = \"redis\"\nurl = \"redis://h:1\"\nkey_prefix = \"{cb}:\"",
                "store.key_prefix",
                "{",
            ),
            (
                "backend = \"redis\"\nurl = \"redis://h:1\"\nkey_prefix = \"c b\"",
                "store.key_prefix",
                "spaces",
            ),
            (
                "backend = \"redis\"\nurl = \"redis://h:1\"\nconnect_timeout_ms = 0",
                "store.connect_timeout_ms",
                "between",
            ),
            (
                "backend = \"redis\"\nurl = \"redis://h:1\"\nresponse_timeout_ms = 600000",
                "store.response_timeout_ms",
                "between",
            ),
            (
                "backend = \"redis\"\nurl = \"redis://h:1\"\ntls_ca_file = \"/nonexistent.pem\"",
                "store.tls_ca_file",
                "rediss",
            ),
            (
                "backend = \"redis\"\nurl = \"rediss://h:1\"\ntls_ca_file = \"/nonexistent.pem\"",
                "store.tls_ca_file",
                "not found",
            ),
            (
                "backend = \"embedded\"\nurl = \"redis://:secret@h:1\"",
                "store.url",
                "only used",
            ),
            ("backend = \"redis2\"", "store.backend", "\"redis\""),
        ] {
            let e = err_of(&store(body));
            assert!(e.starts_with(&format!("t.toml: {key}: ")), "{body}: {e}");
            assert!(e.contains(words), "{body}: {e}");
            assert!(!e.contains("secret"), "a Redis URL's password leaked: {e}");
        }
    }

    #[test]
    fn redis_urls_are_redacted_for_logs() {
        assert_eq!(
            redact_redis_url("rediss://user:pw@cache.example:6380/1?x=y"),
            "rediss://cache.example:6380"
        );
        assert_eq!(redact_redis_url("redis://:pw@h"), "redis://h");
        assert_eq!(redact_redis_url("nope"), "<unparsable redis url>");
    }
}
