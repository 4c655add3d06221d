//! Rate limits (GCRA via `governor`): per client IP on browser endpoints, per connector on the
//! API, per tenant on flow starts. Limits are per process; the operator divides by the replica
//! count (documented in config/example.toml).

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

/// The broker's limiters, built once from `[limits]`.
pub struct Limiters {
    ip: Option<Keyed<IpAddr>>,
    connector: Option<Keyed<String>>,
    tenant: Option<Keyed<String>>,
    proxy_header: Option<HeaderName>,
}

impl Limiters {
    /// Limiters for `config`; `proxy_header` names where a trusted proxy puts the client IP.
    pub fn new(config: &LimitsConfig, proxy_header: Option<HeaderName>) -> Self {
        Self {
            ip: config.per_ip.and_then(|l| Keyed::new(l, LimitScope::Ip)),
            connector: config.per_connector.and_then(|l| Keyed::new(l, LimitScope::Connector)),
            tenant: config.per_tenant.and_then(|l| Keyed::new(l, LimitScope::Tenant)),
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

    /// Counts a browser request from `ip`.
    pub fn check_ip(&self, ip: IpAddr, metrics: &Metrics) -> Result<(), Limited> {
        counted(self.ip.as_ref().map(|l| l.check(&ip)), metrics)
    }

    /// Counts an API request by `connector`.
    pub fn check_connector(&self, connector: &str, metrics: &Metrics) -> Result<(), Limited> {
        counted(
            self.connector.as_ref().map(|l| l.check(&connector.to_string())),
            metrics,
        )
    }

    /// Counts a flow start towards `tenant` (case-insensitive: domains and GUIDs).
    pub fn check_tenant(&self, tenant: &str, metrics: &Metrics) -> Result<(), Limited> {
        counted(
            self.tenant.as_ref().map(|l| l.check(&tenant.to_ascii_lowercase())),
            metrics,
        )
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
        if let Some(l) = &self.tenant {
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
        assert!(l.check_tenant("CONTOSO.com", &m).is_ok());
        assert!(
            m.render()
                .lines()
                .any(|x| x == "consent_broker_rate_limited_total{scope=\"connector\"} 1")
        );
    }

    #[test]
    fn tenants_are_case_insensitive() {
        let m = Metrics::new();
        let l = Limiters::new(&limits(1, 1), None);
        assert!(l.check_tenant("Contoso.com", &m).is_ok());
        let refused = l.check_tenant("contoso.COM", &m).unwrap_err();
        assert!(refused.retry_after > Duration::from_secs(50), "{refused:?}");
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
