//! `[store]`: which backend keeps the records, how often expired ones are purged, and the refresh
//! lease that brokers sharing a store use. The Redis backend's keys are checked in `redis.rs`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Invalid;
use super::redis::{RedisConfig, redis_config};
use super::values::choice;

/// `[store] backend`, spelled as serde renames the variants; messages list them in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub(super) enum Backend {
    /// One redb file.
    Embedded,
    /// Lost on exit.
    Memory,
    /// Redis, shared by several brokers.
    Redis,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStore {
    #[serde(deserialize_with = "choice")]
    backend: Backend,
    path: PathBuf,
    cache_mb: u64,
    purge_interval_secs: u64,
    // The Redis backend's keys; rejected with any other backend so a stray one is noticed.
    pub(super) url: Option<String>,
    pub(super) cluster_urls: Vec<String>,
    pub(super) sentinel_urls: Vec<String>,
    pub(super) sentinel_master: Option<String>,
    pub(super) sentinel_master_username: Option<String>,
    pub(super) sentinel_master_password_env: Option<String>,
    pub(super) sentinel_wait_replicas: u32,
    pub(super) key_prefix: String,
    pub(super) connect_timeout_ms: u64,
    pub(super) response_timeout_ms: u64,
    pub(super) tls_ca_file: Option<PathBuf>,
    // The refresh lease, for every backend.
    refresh_lease_ms: u64,
    refresh_wait_ms: u64,
    refresh_lease_renew: bool,
    // The in-process token cache, for every backend.
    token_cache_capacity: usize,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            backend: Backend::Embedded,
            path: PathBuf::from("data/consent-broker.redb"),
            cache_mb: DEFAULT_EMBEDDED_CACHE_MB,
            purge_interval_secs: 60,
            url: None,
            cluster_urls: Vec::new(),
            sentinel_urls: Vec::new(),
            sentinel_master: None,
            sentinel_master_username: None,
            sentinel_master_password_env: None,
            sentinel_wait_replicas: 0,
            key_prefix: "cb:".into(),
            connect_timeout_ms: 1_000,
            response_timeout_ms: 500,
            tls_ca_file: None,
            refresh_lease_ms: 10_000,
            refresh_wait_ms: 15_000,
            refresh_lease_renew: true,
            token_cache_capacity: 100_000,
        }
    }
}

/// The store backend.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// In-process, lost on exit (tests).
    Memory {
        /// How often expired records are purged.
        purge_interval: Duration,
    },
    /// Single-file ACID store (redb).
    Embedded {
        /// Database file.
        path: PathBuf,
        /// Most memory the file's page cache may take, bytes (`[store] cache_mb`).
        cache_bytes: usize,
        /// How often expired records are purged.
        purge_interval: Duration,
    },
    /// Redis, standalone or Cluster, shared by any number of brokers.
    Redis {
        /// Where and how to connect.
        redis: RedisConfig,
        /// How often the purge task runs (a no-op here: Redis expires keys itself).
        purge_interval: Duration,
    },
}

/// The per-connection refresh lease (`[store] refresh_*`), which makes one broker among all that
/// share the store call Entra for a connection while the others wait for its result.
#[derive(Debug, Clone)]
pub struct RefreshConfig {
    /// How long a lease lives unless its holder renews it (it renews every third of this while
    /// its Entra call runs, so a crashed holder blocks the others for at most this long).
    pub lease: Duration,
    /// How long a caller waits for another broker's refresh before answering 503.
    pub wait: Duration,
    /// Whether the holder renews its lease; `false` only for tests and diagnosis (a slow refresh
    /// then loses its lease, which fencing must make harmless).
    pub renew: bool,
    /// Access tokens each broker keeps decrypted in memory (`[store] token_cache_capacity`); 0
    /// turns the cache off (every token call reads the store).
    pub token_cache_capacity: usize,
}

/// `[store] cache_mb` unless set: enough for the pages a busy broker reads while its token cache
/// answers most calls, whatever the file's size (redb's own default is 1 GiB). The load benchmark
/// at a million connections served as many token calls and sign-ins with 32 as with 64, in
/// 31 MiB less memory.
pub const DEFAULT_EMBEDDED_CACHE_MB: u64 = 32;

/// Most tokens `[store] token_cache_capacity` may ask for (about 4 KB each: 40 GB).
const MAX_TOKEN_CACHE_CAPACITY: usize = 10_000_000;

impl RawStore {
    /// The backend with its keys, and the refresh lease every backend uses.
    pub(super) fn validate(self) -> Result<(StoreConfig, RefreshConfig), Invalid> {
        let purge_interval = Duration::from_secs(self.purge_interval_secs.max(1));
        for (key, ms) in [
            ("store.refresh_lease_ms", self.refresh_lease_ms),
            ("store.refresh_wait_ms", self.refresh_wait_ms),
        ] {
            if ms == 0 || ms > 600_000 {
                return Err(Invalid::new(key, "must be between 1 and 600000 milliseconds"));
            }
        }
        if self.token_cache_capacity > MAX_TOKEN_CACHE_CAPACITY {
            return Err(Invalid::new(
                "store.token_cache_capacity",
                "must be between 0 (off) and 10000000",
            ));
        }
        let refresh = RefreshConfig {
            lease: Duration::from_millis(self.refresh_lease_ms),
            wait: Duration::from_millis(self.refresh_wait_ms),
            renew: self.refresh_lease_renew,
            token_cache_capacity: self.token_cache_capacity,
        };
        let cache_mb = self.cache_mb;
        if !(1..=65_536).contains(&cache_mb) {
            return Err(Invalid::new("store.cache_mb", "must be between 1 and 65536 (MiB)"));
        }
        if self.backend != Backend::Redis {
            if self.url.is_some() {
                return Err(Invalid::new("store.url", "only used with backend = \"redis\""));
            }
            if !self.cluster_urls.is_empty() {
                return Err(Invalid::new("store.cluster_urls", "only used with backend = \"redis\""));
            }
            if !self.sentinel_urls.is_empty() {
                return Err(Invalid::new(
                    "store.sentinel_urls",
                    "only used with backend = \"redis\"",
                ));
            }
        }
        let store = match self.backend {
            Backend::Memory => StoreConfig::Memory { purge_interval },
            Backend::Embedded => StoreConfig::Embedded {
                path: self.path,
                cache_bytes: usize::try_from(cache_mb << 20).unwrap_or(usize::MAX),
                purge_interval,
            },
            Backend::Redis => StoreConfig::Redis {
                redis: redis_config(self).map_err(|(key, m)| Invalid::new(key, m))?,
                purge_interval,
            },
        };
        Ok((store, refresh))
    }
}

#[cfg(test)]
// figment's Jail closures return its (large) error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::super::Config;
    use super::super::testing::{base, err_of};

    #[test]
    fn backend_is_one_of_its_spellings() {
        let with = |backend: &str| base("").replace("backend = \"memory\"", &format!("backend = {backend}"));
        assert_eq!(
            err_of(&with("\"Memory\"")),
            "t.toml: store.backend: unknown backend \"Memory\"; expected \"embedded\", \"memory\" or \"redis\""
        );
        // figment would pass a number to an enum as a variant's index.
        let e = err_of(&with("1"));
        assert!(e.contains("expected a string") && e.contains("store.backend"), "{e}");
        figment::Jail::expect_with(|jail| {
            jail.create_file("b.toml", &base(""))?;
            jail.set_env("BROKER_STORE__BACKEND", "redis2");
            let e = Config::load(Path::new("b.toml"))
                .expect_err("unknown backend")
                .to_string();
            assert_eq!(
                e,
                "b.toml: store.backend: unknown backend \"redis2\"; expected \"embedded\", \"memory\" or \"redis\" (from the environment variable BROKER_STORE__BACKEND)"
            );
            Ok(())
        });
    }

    #[test]
    fn refresh_lease_settings() {
        figment::Jail::expect_with(|_| {
            let cfg = Config::from_toml_str(&base(""), "t.toml").expect("defaults");
            assert_eq!(cfg.refresh.lease, Duration::from_secs(10));
            assert_eq!(cfg.refresh.wait, Duration::from_secs(15));
            assert!(cfg.refresh.renew);
            let cfg = Config::from_toml_str(
                &base("refresh_lease_ms = 300\nrefresh_wait_ms = 2000\nrefresh_lease_renew = false"),
                "t.toml",
            )
            .expect("set");
            assert_eq!(cfg.refresh.lease, Duration::from_millis(300));
            assert_eq!(cfg.refresh.wait, Duration::from_secs(2));
            assert!(!cfg.refresh.renew);
            Ok(())
        });
        let e = err_of(&base("refresh_lease_ms = 0"));
        assert!(e.contains("store.refresh_lease_ms"), "{e}");
        let e = err_of(&base("refresh_wait_ms = 600001"));
        assert!(e.contains("store.refresh_wait_ms"), "{e}");
    }

    #[test]
    fn token_cache_capacity_defaults_is_settable_and_bounded() {
        figment::Jail::expect_with(|_| {
            let cfg = Config::from_toml_str(&base(""), "t.toml").expect("defaults");
            assert_eq!(cfg.refresh.token_cache_capacity, 100_000);
            let cfg = Config::from_toml_str(&base("token_cache_capacity = 0"), "t.toml").expect("off");
            assert_eq!(cfg.refresh.token_cache_capacity, 0);
            Ok(())
        });
        let e = err_of(&base("token_cache_capacity = 10000001"));
        assert!(e.contains("store.token_cache_capacity"), "{e}");
        let e = err_of(&base("token_cache_capacity = -1"));
        assert!(e.contains("store.token_cache_capacity"), "{e}");
    }

    #[test]
    fn embedded_cache_defaults_is_settable_and_bounded() {
        let embedded = |extra: &str| {
            base(extra).replace("backend = \"memory\"", "backend = \"embedded\"") + super::super::testing::ONE_KEY
        };
        let cache_of = |cfg: Config| match cfg.store {
            super::StoreConfig::Embedded { cache_bytes, .. } => cache_bytes,
            other => panic!("not embedded: {other:?}"),
        };
        figment::Jail::expect_with(|jail| {
            jail.set_env("CB_TEST_SECRET_PRESENT", "s3cret");
            jail.set_env("CB_TEST_KEY", super::super::testing::TEST_KEY);
            let cfg = Config::from_toml_str(&embedded(""), "t.toml").expect("defaults");
            assert_eq!(cache_of(cfg), 32 << 20);
            let cfg = Config::from_toml_str(&embedded("cache_mb = 8"), "t.toml").expect("set");
            assert_eq!(cache_of(cfg), 8 << 20);
            Ok(())
        });
        for bad in ["cache_mb = 0", "cache_mb = 65537", "cache_mb = -1"] {
            let e = err_of(&embedded(bad));
            assert!(e.contains("store.cache_mb"), "{bad}: {e}");
        }
    }
}
