//! Prometheus metrics on `prometheus-client`, held in [`crate::app::App`] (an explicit registry,
//! no process-global recorder, so tests in one binary never share counts) and rendered by
//! `GET /metrics` in the OpenMetrics text format.
//!
//! Every label comes from a bounded set (connector ids from config, error categories, token
//! outcomes, AADSTS codes from the table or `other`/`none`, route templates, store operation
//! names, tenants capped at [`MAX_TENANT_LABELS`]), so a caller cannot grow the series count.
//! Nothing secret is ever a label.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Histogram bucket upper bounds in seconds (store calls are sub-millisecond, refreshes ~100 ms).
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Distinct tenants the pending-approvals gauge labels by name; later ones share `other`.
pub const MAX_TENANT_LABELS: usize = 1_000;

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn histogram() -> Histogram {
    Histogram::new(BUCKETS.iter().copied())
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorLabels {
    connector: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    connector: String,
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    connector: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    scope: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    connector: String,
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

/// One route's request counters (by method and status) and duration histograms (by method).
#[derive(Default)]
struct RouteSeries {
    counts: Vec<(&'static str, u16, Counter)>,
    durations: Vec<(&'static str, Histogram)>,
}

impl RouteSeries {
    fn get(&self, method: &str, status: u16) -> Option<(&Counter, &Histogram)> {
        let count = self.counts.iter().find(|(m, s, _)| *m == method && *s == status)?;
        let duration = self.durations.iter().find(|(m, _)| *m == method)?;
        Some((&count.2, &duration.1))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EntraLabels {
    endpoint: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthorityLabels {
    authority: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CredentialLabels {
    connector: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CredentialErrorLabels {
    connector: String,
    code: String,
}

/// The broker's metrics.
pub struct Metrics {
    registry: Registry,
    families: Vec<FamilyInfo>,
    flows_started: Family<ConnectorLabels, Counter>,
    flows_completed: Family<ConnectorLabels, Counter>,
    flows_failed: Family<FailureLabels, Counter>,
    entra_errors: Family<CodeLabels, Counter>,
    token_requests: Family<OutcomeLabels, Counter>,
    /// The `token_requests` series of each configured connector, in [`OUTCOMES`] order, kept at
    /// hand: counting a token request then allocates nothing.
    token_series: HashMap<String, [Counter; 7]>,
    refresh_duration: Histogram,
    store_duration: HistogramFamily<OpLabels>,
    store_up: Gauge,
    rate_limited: Family<ScopeLabels, Counter>,
    pending_approvals: Family<TenantLabels, Gauge>,
    /// Tenants that have a `pending_approvals` series of their own (the cap's bookkeeping).
    labelled_tenants: Mutex<HashSet<String>>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<RouteLabels>,
    /// The HTTP series of each route seen so far, kept at hand: counting a request then builds no
    /// label strings (routes are templates, methods and statuses bounded sets).
    http_series: std::sync::RwLock<HashMap<String, RouteSeries>>,
    entra_requests: Family<EntraLabels, Counter>,
    entra_retries: Family<EndpointLabels, Counter>,
    circuit_open: Family<AuthorityLabels, Gauge>,
    credential_expiry: Family<CredentialLabels, Gauge>,
    credential_errors: Family<CredentialErrorLabels, Counter>,
    connections_refused: Counter,
    min_ttl_unmet: Family<ConnectorLabels, Counter>,
    refresh_budget_exhausted: Family<ConnectorLabels, Counter>,
    keepalive_due: Family<ConnectorLabels, Counter>,
    keepalive_refreshed: Family<ConnectorLabels, Counter>,
    keepalive_failed: Family<FailureLabels, Counter>,
    webhook_deliveries: Family<OutcomeLabels, Counter>,
    webhook_dead_letters: Family<ConnectorLabels, Counter>,
    consent_verifications: Family<OutcomeLabels, Counter>,
    /// `token_cache_lookups_total{result="hit"}`, kept at hand: the hot path increments it.
    cache_hits: Counter,
    cache_misses: Counter,
    cache_invalidations: Family<CacheInvalidationLabels, Counter>,
    cache_subscribed: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheInvalidationLabels {
    outcome: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// How a token request was answered, as the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOutcome {
    /// The stored token was fresh enough.
    CacheHit,
    /// Refreshed at Entra (by this call or one it waited for).
    Refreshed,
    /// Entra was unavailable; the stored token is still valid.
    StaleButValid,
    /// The grant is gone: a new sign-in is needed (409).
    Reauth,
    /// Neither Entra nor the store could serve a token (503), or the last token was served from
    /// memory while the store was unreachable.
    Unavailable,
    /// No such connection.
    NotFound,
    /// Entra refused for a reason that is not the user's (operator must act).
    Upstream,
}

impl TokenOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::CacheHit => "cache_hit",
            Self::Refreshed => "refreshed",
            Self::StaleButValid => "stale_but_valid",
            Self::Reauth => "reauth",
            Self::Unavailable => "unavailable",
            Self::NotFound => "not_found",
            Self::Upstream => "upstream_error",
        }
    }
}

/// How checking an admin-consent callback with Entra ended, as the `outcome` label of
/// `admin_consent_verifications_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentVerification {
    /// Entra issued the app a token in the tenant: the approval was recorded.
    Verified,
    /// The app has no service principal in the tenant: nobody consented (or not yet).
    NotConfirmed,
    /// Entra was unavailable or throttling: nothing was recorded.
    Unavailable,
    /// Entra refused for another reason (the connector's credential, its registration).
    Failed,
}

impl ConsentVerification {
    fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::NotConfirmed => "not_confirmed",
            Self::Unavailable => "unavailable",
            Self::Failed => "failed",
        }
    }
}

const VERIFICATIONS: [ConsentVerification; 4] = [
    ConsentVerification::Verified,
    ConsentVerification::NotConfirmed,
    ConsentVerification::Unavailable,
    ConsentVerification::Failed,
];

/// Which limit refused a request, as the `scope` label of `rate_limited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    /// Per client IP, on browser endpoints.
    Ip,
    /// Per connector, on the API.
    Connector,
    /// Per tenant, on flow starts.
    Tenant,
    /// Per connector, on refreshes at Entra (`[tokens] max_refreshes_per_minute`).
    Refresh,
}

impl LimitScope {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Connector => "connector",
            Self::Tenant => "tenant",
            Self::Refresh => "refresh",
        }
    }
}

/// How one call to Entra ended, as the `result` label of `entra_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntraResult {
    /// A success answer.
    Ok,
    /// An OAuth error answer that retrying cannot change.
    Rejected,
    /// Unreachable, timed out, a 5xx or a transient AADSTS code.
    Unavailable,
    /// 429.
    Throttled,
    /// Not sent: the authority's circuit breaker is open.
    ShortCircuited,
}

impl EntraResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Rejected => "rejected",
            Self::Unavailable => "unavailable",
            Self::Throttled => "throttled",
            Self::ShortCircuited => "short_circuited",
        }
    }
}

/// Entra endpoints the broker calls, as the `endpoint` label.
pub const ENDPOINTS: [&str; 3] = ["token", "keys", "metadata"];

const RESULTS: [EntraResult; 5] = [
    EntraResult::Ok,
    EntraResult::Rejected,
    EntraResult::Unavailable,
    EntraResult::Throttled,
    EntraResult::ShortCircuited,
];

/// The `code` label for an AADSTS code: the code when the table knows it, `other` when it does
/// not (an unbounded set would let Entra grow the series count), `none` without a code.
pub fn code_label(code: Option<u32>) -> String {
    match code {
        Some(c) if crate::entra::aadsts::lookup(c).is_some() => c.to_string(),
        Some(_) => "other".to_string(),
        None => "none".to_string(),
    }
}

/// The `method` label: the standard methods by name, anything else `other` (methods are
/// client-chosen strings).
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// What kind of series a family exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<name>_total`.
    Counter,
    /// `<name>`.
    Gauge,
    /// `<name>_bucket`, `<name>_sum`, `<name>_count`.
    Histogram,
}

/// One registered metric family.
#[derive(Debug, Clone)]
pub struct FamilyInfo {
    /// Its name with the `consent_broker_` prefix (without `_total` for counters).
    pub name: String,
    /// Its kind.
    pub kind: Kind,
}

impl FamilyInfo {
    /// The names its samples carry (what a PromQL query may refer to).
    pub fn sample_names(&self) -> Vec<String> {
        match self.kind {
            Kind::Counter => vec![format!("{}_total", self.name)],
            Kind::Gauge => vec![self.name.clone()],
            Kind::Histogram => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|suffix| format!("{}{suffix}", self.name))
                .collect(),
        }
    }
}

const PREFIX: &str = "consent_broker";

/// Registers metrics and remembers what it registered.
struct Builder {
    registry: Registry,
    families: Vec<FamilyInfo>,
}

impl Builder {
    fn add<M>(&mut self, name: &str, help: &str, kind: Kind, metric: M) -> M
    where
        M: prometheus_client::registry::Metric + Clone,
    {
        // prometheus-client ends every HELP text with a period itself.
        self.registry.register(name, help.trim_end_matches('.'), metric.clone());
        self.families.push(FamilyInfo {
            name: format!("{PREFIX}_{name}"),
            kind,
        });
        metric
    }

    fn counters<L: Labels>(&mut self, name: &str, help: &str) -> Family<L, Counter> {
        self.add(name, help, Kind::Counter, Family::default())
    }

    fn gauges<L: Labels>(&mut self, name: &str, help: &str) -> Family<L, Gauge> {
        self.add(name, help, Kind::Gauge, Family::default())
    }

    fn histograms<L: Labels>(&mut self, name: &str, help: &str) -> HistogramFamily<L> {
        let family = HistogramFamily::new_with_constructor(histogram as fn() -> Histogram);
        self.add(name, help, Kind::Histogram, family)
    }
}

/// What a label set must be to key a family.
trait Labels: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static {}
impl<T: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static> Labels for T {}

/// Token outcomes, for pre-creating their series.
const OUTCOMES: [TokenOutcome; 7] = [
    TokenOutcome::CacheHit,
    TokenOutcome::Refreshed,
    TokenOutcome::StaleButValid,
    TokenOutcome::Reauth,
    TokenOutcome::Unavailable,
    TokenOutcome::NotFound,
    TokenOutcome::Upstream,
];

impl Metrics {
    /// All metrics registered, at zero, with no connector-specific series.
    pub fn new() -> Self {
        Self::for_connectors(&[], None)
    }

    /// All metrics registered; the series of every connector in `connectors` and of every limit
    /// and Entra endpoint exist at zero from the start, so `rate()` and alerts see the first
    /// event. `authority` gets a closed circuit.
    pub fn for_connectors(connectors: &[&str], authority: Option<&str>) -> Self {
        let mut b = Builder {
            registry: Registry::with_prefix(PREFIX),
            families: Vec::new(),
        };
        let build_info: Family<VersionLabels, Gauge> = b.gauges("build_info", "The broker's version.");
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        let lookups: Family<ResultLabels, Counter> = b.counters(
            "token_cache_lookups",
            "Token requests looked up in this broker's token cache, by result (hit: answered from memory).",
        );
        let cache_hits = lookups.get_or_create(&ResultLabels { result: "hit" }).clone();
        let cache_misses = lookups.get_or_create(&ResultLabels { result: "miss" }).clone();
        let token_requests: Family<OutcomeLabels, Counter> =
            b.counters("token_requests", "Token requests, by outcome.");
        let m = Self {
            flows_started: b.counters("flows_started", "Sign-in flows started."),
            flows_completed: b.counters("flows_completed", "Sign-in flows that ended in a connection."),
            flows_failed: b.counters("flows_failed", "Sign-in flows that ended in an error, by category."),
            entra_errors: b.counters(
                "entra_errors",
                "Errors Entra returned to sign-in callbacks and refreshes, by AADSTS code (other: not in the table; none: no code).",
            ),
            token_series: connectors
                .iter()
                .map(|c| {
                    let series = OUTCOMES.map(|o| {
                        token_requests
                            .get_or_create(&OutcomeLabels {
                                connector: c.to_string(),
                                outcome: o.as_str(),
                            })
                            .clone()
                    });
                    (c.to_string(), series)
                })
                .collect(),
            token_requests,
            refresh_duration: b.add(
                "refresh_duration_seconds",
                "Duration of refreshes at Entra (retries included).",
                Kind::Histogram,
                histogram(),
            ),
            store_duration: b.histograms("store_duration_seconds", "Duration of store operations, by operation."),
            store_up: b.add(
                "store_up",
                "1 when the last store health check answered, 0 when it failed.",
                Kind::Gauge,
                Gauge::default(),
            ),
            rate_limited: b.counters("rate_limited", "Requests refused by rate limiting, by limit."),
            pending_approvals: b.gauges(
                "pending_approvals",
                "Approval pages opened by this process whose tenant has not approved since, by connector and tenant.",
            ),
            labelled_tenants: Mutex::default(),
            http_requests: b.counters("http_requests", "HTTP requests answered, by route and status."),
            http_duration: b.histograms("http_request_duration_seconds", "Time to answer HTTP requests, by route."),
            http_series: std::sync::RwLock::default(),
            entra_requests: b.counters(
                "entra_requests",
                "Calls to Entra, by endpoint and result (each retry counts).",
            ),
            entra_retries: b.counters("entra_retries", "Calls to Entra that were retries of a failed call."),
            circuit_open: b.gauges(
                "entra_circuit_open",
                "1 while the circuit breaker for an Entra authority is open (calls fail fast).",
            ),
            credential_expiry: b.gauges(
                "credential_expiry_timestamp_seconds",
                "When a connector's client secret or certificate expires (Unix seconds), where known.",
            ),
            credential_errors: b.counters(
                "credential_errors",
                "Token calls Entra refused because of the connector's own credential, by AADSTS code.",
            ),
            connections_refused: b.add(
                "http_connections_refused",
                "Connections closed at accept because server.max_connections were open.",
                Kind::Counter,
                Counter::default(),
            ),
            min_ttl_unmet: b.counters(
                "token_min_ttl_unmet",
                "Tokens served that live less than the caller's min_ttl (refresh floor, budget or Entra's lifetime).",
            ),
            refresh_budget_exhausted: b.counters(
                "refresh_budget_exhausted",
                "Refreshes not sent to Entra because the connector used up [tokens] max_refreshes_per_minute.",
            ),
            keepalive_due: b.counters(
                "keepalive_due",
                "Idle connections keep-alive found due for a refresh ([keepalive] idle_after_secs).",
            ),
            keepalive_refreshed: b.counters(
                "keepalive_refreshed",
                "Idle connections keep-alive refreshed (or found refreshed by another broker).",
            ),
            keepalive_failed: b.counters(
                "keepalive_failed",
                "Keep-alive refreshes that failed, by category (transient ones are tried again later).",
            ),
            webhook_deliveries: b.counters(
                "webhook_deliveries",
                "Webhook delivery attempts, by outcome (delivered: a 2xx answer; failed: anything else, retried).",
            ),
            webhook_dead_letters: b.counters(
                "webhook_dead_letters",
                "Webhook deliveries given up after [webhooks] retry_window_secs (re-send them with the dead-letters API).",
            ),
            consent_verifications: b.counters(
                "admin_consent_verifications",
                "Admin-consent callbacks checked with Entra before recording the approval, by outcome.",
            ),
            cache_hits,
            cache_misses,
            cache_invalidations: b.counters(
                "token_cache_invalidations",
                "Connection ids this broker published for the other brokers' token caches to drop, by outcome (lost: Redis did not take them in time).",
            ),
            cache_subscribed: b.add(
                "token_cache_subscribed",
                "1 while the token cache serves hits; on Redis, while this broker receives the other brokers' invalidations (0: every request goes to the store).",
                Kind::Gauge,
                Gauge::default(),
            ),
            // Last: moved out once every family above is registered.
            registry: b.registry,
            families: b.families,
        };
        m.store_up.set(1);
        for outcome in ["published", "lost"] {
            let _ = m
                .cache_invalidations
                .get_or_create(&CacheInvalidationLabels { outcome });
        }
        for connector in connectors {
            let connector = connector.to_string();
            let _ = m.flows_started.get_or_create(&ConnectorLabels {
                connector: connector.clone(),
            });
            let _ = m.flows_completed.get_or_create(&ConnectorLabels {
                connector: connector.clone(),
            });
            let _ = m.min_ttl_unmet.get_or_create(&ConnectorLabels {
                connector: connector.clone(),
            });
            let _ = m.refresh_budget_exhausted.get_or_create(&ConnectorLabels {
                connector: connector.clone(),
            });
            let _ = m.webhook_dead_letters.get_or_create(&ConnectorLabels {
                connector: connector.clone(),
            });
            for outcome in ["delivered", "failed"] {
                let _ = m.webhook_deliveries.get_or_create(&OutcomeLabels {
                    connector: connector.clone(),
                    outcome,
                });
            }
            for outcome in VERIFICATIONS {
                let _ = m.consent_verifications.get_or_create(&OutcomeLabels {
                    connector: connector.clone(),
                    outcome: outcome.as_str(),
                });
            }
        }
        for scope in [
            LimitScope::Ip,
            LimitScope::Connector,
            LimitScope::Tenant,
            LimitScope::Refresh,
        ] {
            let _ = m.rate_limited.get_or_create(&ScopeLabels { scope: scope.as_str() });
        }
        for endpoint in ENDPOINTS {
            let _ = m.entra_retries.get_or_create(&EndpointLabels { endpoint });
            for result in RESULTS {
                let _ = m.entra_requests.get_or_create(&EntraLabels {
                    endpoint,
                    result: result.as_str(),
                });
            }
        }
        if let Some(authority) = authority {
            m.circuit_open(authority, false);
        }
        m
    }

    /// Every registered family (what dashboards and alerts may query).
    pub fn families(&self) -> &[FamilyInfo] {
        &self.families
    }

    /// A flow was started for `connector` (redirected to Entra).
    pub fn flow_started(&self, connector: &str) {
        self.flows_started
            .get_or_create(&ConnectorLabels {
                connector: connector.to_string(),
            })
            .inc();
    }

    /// A flow's callback ended in a connection.
    pub fn flow_completed(&self, connector: &str) {
        self.flows_completed
            .get_or_create(&ConnectorLabels {
                connector: connector.to_string(),
            })
            .inc();
    }

    /// A flow's callback ended in an error of `category`.
    pub fn flow_failed(&self, connector: &str, category: &str) {
        self.flows_failed
            .get_or_create(&FailureLabels {
                connector: connector.to_string(),
                category: category.to_string(),
            })
            .inc();
    }

    /// Entra returned an error carrying `code` (or none).
    pub fn entra_error(&self, code: Option<u32>) {
        self.entra_errors
            .get_or_create(&CodeLabels { code: code_label(code) })
            .inc();
    }

    /// A token request for `connector` ended in `outcome`.
    pub fn token_request(&self, connector: &str, outcome: TokenOutcome) {
        match self.token_series.get(connector) {
            Some(series) => {
                if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
                    series[i].inc();
                }
            }
            None => {
                self.token_requests
                    .get_or_create(&OutcomeLabels {
                        connector: connector.to_string(),
                        outcome: outcome.as_str(),
                    })
                    .inc();
            }
        }
    }

    /// One refresh at Entra took `d`.
    pub fn refresh_duration(&self, d: Duration) {
        self.refresh_duration.observe(d.as_secs_f64());
    }

    /// One store operation `op` took `d`.
    pub fn store_duration(&self, op: &'static str, d: Duration) {
        self.store_duration
            .get_or_create(&OpLabels { op })
            .observe(d.as_secs_f64());
    }

    /// A token request was answered from the token cache (`true`) or went to the store.
    pub fn cache_lookup(&self, hit: bool) {
        if hit {
            self.cache_hits.inc();
        } else {
            self.cache_misses.inc();
        }
    }

    /// `n` connection ids were published for the other brokers' caches.
    pub fn cache_invalidations_published(&self, n: usize) {
        self.cache_invalidation("published", n);
    }

    /// `n` connection ids could not be published (Redis did not take them in time).
    pub fn cache_invalidations_lost(&self, n: usize) {
        self.cache_invalidation("lost", n);
    }

    fn cache_invalidation(&self, outcome: &'static str, n: usize) {
        self.cache_invalidations
            .get_or_create(&CacheInvalidationLabels { outcome })
            .inc_by(n as u64);
    }

    /// Whether this broker receives the other brokers' invalidations now.
    pub fn cache_subscribed(&self, subscribed: bool) {
        self.cache_subscribed.set(i64::from(subscribed));
    }

    /// The store's health check answered (`true`) or failed.
    pub fn store_up(&self, up: bool) {
        self.store_up.set(i64::from(up));
    }

    /// A token was served that lives less than the caller asked for.
    pub fn min_ttl_unmet(&self, connector: &str) {
        self.min_ttl_unmet
            .get_or_create(&ConnectorLabels {
                connector: connector.to_string(),
            })
            .inc();
    }

    /// A refresh was not sent to Entra: the connector's refresh budget is used up.
    pub fn refresh_budget_exhausted(&self, connector: &str) {
        self.refresh_budget_exhausted
            .get_or_create(&ConnectorLabels {
                connector: connector.to_string(),
            })
            .inc();
    }

    /// Keep-alive found one of `connector`'s connections idle and due.
    pub fn keepalive_due(&self, connector: &str) {
        self.keepalive_due
            .get_or_create(&ConnectorLabels {
                connector: connector.to_string(),
            })
            .inc();
    }

    /// Keep-alive refreshed one of `connector`'s connections.
    pub fn keepalive_refreshed(&self, connector: &str) {
        self.keepalive_refreshed
            .get_or_create(&ConnectorLabels {
                connector: connector.to_string(),
            })
            .inc();
    }

    /// A keep-alive refresh of one of `connector`'s connections failed with `category`.
    pub fn keepalive_failed(&self, connector: &str, category: &str) {
        self.keepalive_failed
            .get_or_create(&FailureLabels {
                connector: connector.to_string(),
                category: category.to_string(),
            })
            .inc();
    }

    /// A webhook delivery attempt for `connector` was acknowledged (`delivered`) or not.
    pub fn webhook_attempt(&self, connector: &str, delivered: bool) {
        self.webhook_deliveries
            .get_or_create(&OutcomeLabels {
                connector: connector.to_string(),
                outcome: if delivered { "delivered" } else { "failed" },
            })
            .inc();
    }

    /// A webhook delivery for `connector` became a dead letter.
    pub fn webhook_dead_letter(&self, connector: &str) {
        self.webhook_dead_letters
            .get_or_create(&ConnectorLabels {
                connector: connector.to_string(),
            })
            .inc();
    }

    /// A connection was closed at accept: `server.max_connections` were open.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// A request was refused by the `scope` limit.
    pub fn rate_limited(&self, scope: LimitScope) {
        self.rate_limited
            .get_or_create(&ScopeLabels { scope: scope.as_str() })
            .inc();
    }

    /// The tenant label for `tenant`: itself while fewer than [`MAX_TENANT_LABELS`] tenants have
    /// one, `other` after that.
    pub fn tenant_label(&self, tenant: &str) -> String {
        let Ok(mut seen) = self.labelled_tenants.lock() else {
            return "other".to_string();
        };
        if seen.contains(tenant) {
            return tenant.to_string();
        }
        if seen.len() < MAX_TENANT_LABELS {
            seen.insert(tenant.to_string());
            return tenant.to_string();
        }
        "other".to_string()
    }

    /// Moves the pending-approvals series of `connector` under `tenant_label` by `delta`; the
    /// series goes once nothing is pending under it (see `approval::PendingApprovals`).
    pub fn pending_approvals_by(&self, connector: &str, tenant_label: &str, delta: i64) {
        let labels = TenantLabels {
            connector: connector.to_string(),
            tenant: tenant_label.to_string(),
        };
        let left = self.pending_approvals.get_or_create(&labels).inc_by(delta) + delta;
        if left <= 0 {
            self.pending_approvals.remove(&labels);
        }
    }

    /// An admin-consent callback for `connector` was checked with Entra and ended in `outcome`.
    pub fn admin_consent_verified(&self, connector: &str, outcome: ConsentVerification) {
        self.consent_verifications
            .get_or_create(&OutcomeLabels {
                connector: connector.to_string(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// An HTTP request matched `route` (the route template, or `unmatched`) and was answered
    /// with `status` after `d`.
    pub fn http_request(&self, method: &'static str, route: &str, status: u16, d: Duration) {
        {
            let series = self.http_series.read().unwrap_or_else(|p| p.into_inner());
            if let Some((count, duration)) = series.get(route).and_then(|r| r.get(method, status)) {
                count.inc();
                duration.observe(d.as_secs_f64());
                return;
            }
        }
        // The first request of this route, method and status: made through the families once.
        let count = self
            .http_requests
            .get_or_create(&HttpLabels {
                method,
                route: route.to_string(),
                status,
            })
            .clone();
        let duration = self
            .http_duration
            .get_or_create(&RouteLabels {
                method,
                route: route.to_string(),
            })
            .clone();
        count.inc();
        duration.observe(d.as_secs_f64());
        let mut series = self.http_series.write().unwrap_or_else(|p| p.into_inner());
        let r = series.entry(route.to_string()).or_default();
        if !r.counts.iter().any(|(m, s, _)| *m == method && *s == status) {
            r.counts.push((method, status, count));
        }
        if !r.durations.iter().any(|(m, _)| *m == method) {
            r.durations.push((method, duration));
        }
    }

    /// One call to Entra's `endpoint` (`token`, `keys`, `metadata`) ended in `result`.
    pub fn entra_request(&self, endpoint: &'static str, result: EntraResult) {
        self.entra_requests
            .get_or_create(&EntraLabels {
                endpoint,
                result: result.as_str(),
            })
            .inc();
    }

    /// A failed call to `endpoint` is being retried.
    pub fn entra_retry(&self, endpoint: &'static str) {
        self.entra_retries.get_or_create(&EndpointLabels { endpoint }).inc();
    }

    /// The circuit breaker for `authority` opened (`true`) or closed.
    pub fn circuit_open(&self, authority: &str, open: bool) {
        self.circuit_open
            .get_or_create(&AuthorityLabels {
                authority: authority.to_string(),
            })
            .set(i64::from(open));
    }

    /// `connector`'s credential of `kind` (`secret` or `certificate`) expires at `unix_secs`.
    pub fn credential_expires_at(&self, connector: &str, kind: &'static str, unix_secs: i64) {
        self.credential_expiry
            .get_or_create(&CredentialLabels {
                connector: connector.to_string(),
                kind,
            })
            .set(unix_secs);
    }

    /// Entra refused `connector`'s own credential with `code`.
    pub fn credential_error(&self, connector: &str, code: Option<u32>) {
        self.credential_errors
            .get_or_create(&CredentialErrorLabels {
                connector: connector.to_string(),
                code: code_label(code),
            })
            .inc();
    }

    /// The exposition text (OpenMetrics; [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Writing to a String cannot fail; if the encoder ever does, say so rather than
            // serve a truncated scrape that looks valid.
            tracing::error!(error = %e, "encoding metrics failed");
            return "# EOF\n".to_string();
        }
        out
    }
}

#[cfg(test)]
mod tests;
