//! Rate limits (GCRA via `governor`): per client IP on browser endpoints, per connector on the
//! API, and on flow starts per (connector, tenant) or, for unauthenticated starts, per client.
//! Limits are per process; the operator divides by the replica count (documented in
//! config/example.toml). IPv6 clients are counted per /64, the block one subscriber gets.

use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{HeaderMap, HeaderName};

use crate::config::{LimitsConfig, RateLimit};
use crate::metrics::{LimitScope, Metrics};

/// A request over a limit: when it may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Which limit refused it.
    pub scope: LimitScope,
    /// `Retry-After` (whole seconds, at least 1).
    pub retry_after: Duration,
}

/// One keyed limiter.
struct Keyed<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    scope: LimitScope,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(limit: RateLimit, scope: LimitScope) -> Option<Self> {
        let per_minute = NonZeroU32::new(limit.per_minute)?;
        let burst = NonZeroU32::new(limit.burst)?;
        Some(Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            scope,
        })
    }

    fn check(&self, key: &K) -> Result<(), Limited> {
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Limited {
                scope: self.scope,
                // Rounded up: retrying at the advertised second must succeed.
                retry_after: Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
                    .max(Duration::from_secs(1)),
            }
        })
    }

    fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// What a flow start is counted against (see `flow::start_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartKey<'a> {
    /// A start from a connect session towards a named tenant.
    Tenant {
        /// The connector.
        connector: &'a str,
        /// The tenant (GUID or domain; compared case-insensitively).
        tenant: &'a str,
    },
    /// A start from a connect session that names no tenant.
    Session(&'a str),
    /// An unauthenticated start (`/v1/authorize`), by its client's address.
    Client(IpAddr),
}

impl StartKey<'_> {
    fn key(self) -> String {
        match self {
            Self::Tenant { connector, tenant } => format!("t:{connector}:{}", tenant.to_ascii_lowercase()),
            Self::Session(id) => format!("s:{id}"),
            Self::Client(ip) => format!("ip:{}", client_block(ip)),
        }
    }
}

/// The address a client is counted as: an IPv6 client by its /64 (one subscriber's block, in
/// which it can pick any address), an IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn client_block(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// The per-connector refresh budget (`[tokens] max_refreshes_per_minute`): how often the token
/// service may ask Entra to refresh for one connector, a minute's worth of which may come at once.
/// Its keys are the configured connectors, so unlike the request limits it needs no sweeping.
pub struct RefreshBudget(Option<Keyed<String>>);

impl RefreshBudget {
    /// A budget of `per_minute` refreshes per connector; `None` is unlimited.
    pub fn new(per_minute: Option<NonZeroU32>) -> Self {
        Self(per_minute.and_then(|n| {
            Keyed::new(
                RateLimit {
                    per_minute: n.get(),
                    burst: n.get(),
                },
                LimitScope::Refresh,
            )
        }))
    }

    /// Counts a refresh at Entra for `connector` against its budget.
    pub fn check(&self, connector: &str, metrics: &Metrics) -> Result<(), Limited> {
        counted(self.0.as_ref().map(|l| l.check(&connector.to_string())), metrics)
    }
}

/// The broker's limiters, built once from `[limits]`.
pub struct Limiters {
    ip: Option<Keyed<IpAddr>>,
    connector: Option<Keyed<String>>,
    start: Option<Keyed<String>>,
    proxy_header: Option<HeaderName>,
}

impl Limiters {
    /// Limiters for `config`; `proxy_header` names where a trusted proxy puts the client IP.
    pub fn new(config: &LimitsConfig, proxy_header: Option<HeaderName>) -> Self {
        Self {
            ip: config.per_ip.and_then(|l| Keyed::new(l, LimitScope::Ip)),
            connector: config.per_connector.and_then(|l| Keyed::new(l, LimitScope::Connector)),
            start: config.per_tenant.and_then(|l| Keyed::new(l, LimitScope::Tenant)),
            proxy_header,
        }
    }

    /// The client's address: from the trusted proxy header when one is configured and the
    /// request carries a valid one (its right-most entry, the one the proxy appended), else the
    /// TCP peer.
    pub fn client_ip(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
        let from_proxy = self.proxy_header.as_ref().and_then(|name| {
            let value = headers.get_all(name).iter().next_back()?.to_str().ok()?;
            let last = value.rsplit(',').next()?.trim();
            last.parse::<IpAddr>()
                .ok()
                .or_else(|| last.parse::<SocketAddr>().ok().map(|a| a.ip()))
        });
        from_proxy.or(peer.map(|p| p.ip()))
    }

    /// Counts a browser request from `ip` (by its block: see [`client_block`]).
    pub fn check_ip(&self, ip: IpAddr, metrics: &Metrics) -> Result<(), Limited> {
        counted(self.ip.as_ref().map(|l| l.check(&client_block(ip))), metrics)
    }

    /// Counts an API request by `connector`.
    pub fn check_connector(&self, connector: &str, metrics: &Metrics) -> Result<(), Limited> {
        counted(
            self.connector.as_ref().map(|l| l.check(&connector.to_string())),
            metrics,
        )
    }

    /// Counts a flow start against `key`.
    pub fn check_start(&self, key: StartKey<'_>, metrics: &Metrics) -> Result<(), Limited> {
        counted(self.start.as_ref().map(|l| l.check(&key.key())), metrics)
    }

    /// Drops the state of keys that are back to a full burst (the keyed maps would otherwise
    /// grow with every address ever seen).
    pub fn forget_idle(&self) {
        if let Some(l) = &self.ip {
            l.forget_idle();
        }
        if let Some(l) = &self.connector {
            l.forget_idle();
        }
        if let Some(l) = &self.start {
            l.forget_idle();
        }
    }
}

fn counted(result: Option<Result<(), Limited>>, metrics: &Metrics) -> Result<(), Limited> {
    match result {
        Some(Err(limited)) => {
            metrics.rate_limited(limited.scope);
            Err(limited)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_minute: u32, burst: u32) -> LimitsConfig {
        let l = Some(RateLimit { per_minute, burst });
        LimitsConfig {
            per_ip: l,
            per_connector: l,
            per_tenant: l,
        }
    }

    #[test]
    fn a_burst_over_the_limit_is_refused_with_a_retry_after_and_counted() {
        let m = Metrics::new();
        let l = Limiters::new(&limits(60, 3), None);
        for _ in 0..3 {
            assert!(l.check_connector("a", &m).is_ok());
        }
        let refused = l.check_connector("a", &m).unwrap_err();
        assert_eq!(refused.scope, LimitScope::Connector);
        assert_eq!(
            refused.retry_after,
            Duration::from_secs(1),
            "one cell per second at 60/min"
        );
        assert!(l.check_connector("b", &m).is_ok(), "other keys are unaffected");
        assert!(
            l.check_start(
                StartKey::Tenant {
                    connector: "files",
                    tenant: "CONTOSO.com"
                },
                &m
            )
            .is_ok()
        );
        assert!(
            m.render()
                .lines()
                .any(|x| x == "consent_broker_rate_limited_total{scope=\"connector\"} 1")
        );
    }

    fn tenant<'a>(connector: &'a str, tenant: &'a str) -> StartKey<'a> {
        StartKey::Tenant { connector, tenant }
    }

    #[test]
    fn tenants_are_case_insensitive() {
        let m = Metrics::new();
        let l = Limiters::new(&limits(1, 1), None);
        assert!(l.check_start(tenant("files", "Contoso.com"), &m).is_ok());
        let refused = l.check_start(tenant("files", "contoso.COM"), &m).unwrap_err();
        assert!(refused.retry_after > Duration::from_secs(50), "{refused:?}");
    }

    #[test]
    fn start_budgets_are_separate_per_connector_session_and_client() {
        let m = Metrics::new();
        let l = Limiters::new(&limits(1, 1), None);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        assert!(l.check_start(StartKey::Client(ip), &m).is_ok());
        assert!(
            l.check_start(StartKey::Client(ip), &m).is_err(),
            "the client used its budget"
        );
        // The flooding client took nothing from anyone else.
        assert!(l.check_start(tenant("files", "contoso.com"), &m).is_ok());
        assert!(
            l.check_start(tenant("mail", "contoso.com"), &m).is_ok(),
            "another connector"
        );
        assert!(l.check_start(StartKey::Session("cs_1"), &m).is_ok());
        assert!(
            l.check_start(StartKey::Session("cs_2"), &m).is_ok(),
            "hint-less sessions do not share"
        );
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let block = |s: &str| client_block(s.parse().unwrap());
        assert_eq!(block("2001:db8:1:2:aaaa::1"), block("2001:db8:1:2:ffff::9"));
        assert_ne!(block("2001:db8:1:2::1"), block("2001:db8:1:3::1"));
        assert_eq!(block("::ffff:198.51.100.4"), block("198.51.100.4"));
        let m = Metrics::new();
        let l = Limiters::new(&limits(1, 1), None);
        assert!(l.check_ip("2001:db8::1".parse().unwrap(), &m).is_ok());
        assert!(
            l.check_ip("2001:db8::ffff:1".parse().unwrap(), &m).is_err(),
            "a new address in the same /64 is the same client"
        );
        assert!(l.check_ip("2001:db8:0:1::1".parse().unwrap(), &m).is_ok());
    }

    #[test]
    fn limits_that_are_off_never_refuse() {
        let m = Metrics::new();
        let l = Limiters::new(&LimitsConfig::default(), None);
        for _ in 0..1_000 {
            assert!(l.check_ip(IpAddr::from([10, 0, 0, 1]), &m).is_ok());
        }
    }

    #[test]
    fn the_client_ip_comes_from_the_trusted_header_only() {
        let peer: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 198.51.100.7".parse().unwrap());
        let untrusting = Limiters::new(&LimitsConfig::default(), None);
        assert_eq!(untrusting.client_ip(&h, Some(peer)), Some(peer.ip()));
        let trusting = Limiters::new(
            &LimitsConfig::default(),
            Some(HeaderName::from_static("x-forwarded-for")),
        );
        assert_eq!(
            trusting.client_ip(&h, Some(peer)),
            Some("198.51.100.7".parse().unwrap()),
            "the right-most entry: the one the proxy appended"
        );
        h.insert("x-forwarded-for", "not an address".parse().unwrap());
        assert_eq!(trusting.client_ip(&h, Some(peer)), Some(peer.ip()));
        h.insert("x-forwarded-for", "[2001:db8::1]:443".parse().unwrap());
        assert_eq!(trusting.client_ip(&h, Some(peer)), Some("2001:db8::1".parse().unwrap()));
    }
}
