//! Prometheus metrics, held in [`crate::app::App`] (no process-global recorder) and rendered in
//! the text exposition format by `GET /metrics`.
//!
//! Every label comes from a bounded set (connector ids from config, error categories, token
//! outcomes, AADSTS codes from the table or `other`/`none`, store operation names), so a caller
//! cannot grow the series count. Nothing secret is ever a label.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Histogram bucket upper bounds in seconds (store calls are sub-millisecond, refreshes ~100 ms).
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Label values, in the order of the metric's label names.
type Labels = Vec<String>;

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// The broker's metrics.
pub struct Metrics {
    flows_started: Mutex<BTreeMap<Labels, u64>>,
    flows_completed: Mutex<BTreeMap<Labels, u64>>,
    flows_failed: Mutex<BTreeMap<Labels, u64>>,
    entra_errors: Mutex<BTreeMap<Labels, u64>>,
    token_requests: Mutex<BTreeMap<Labels, u64>>,
    refresh_duration: Mutex<BTreeMap<Labels, Histogram>>,
    store_duration: Mutex<BTreeMap<Labels, Histogram>>,
    rate_limited: AtomicU64,
    pending_approvals: AtomicI64,
    /// Approval pages opened and not yet approved, per (connector, tenant), so that a tenant's
    /// approval takes exactly its own pages off the gauge.
    pending_by_tenant: Mutex<HashMap<(String, String), i64>>,
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

/// The `code` label for an AADSTS code: the code when the table knows it, `other` when it does
/// not (an unbounded set would let Entra grow the series count), `none` without a code.
pub fn code_label(code: Option<u32>) -> String {
    match code {
        Some(c) if crate::entra::aadsts::lookup(c).is_some() => c.to_string(),
        Some(_) => "other".to_string(),
        None => "none".to_string(),
    }
}

fn inc(map: &Mutex<BTreeMap<Labels, u64>>, labels: &[&str]) {
    if let Ok(mut m) = map.lock() {
        *m.entry(labels.iter().map(|s| s.to_string()).collect()).or_default() += 1;
    }
}

fn observe(map: &Mutex<BTreeMap<Labels, Histogram>>, labels: &[&str], d: Duration) {
    let secs = d.as_secs_f64();
    if let Ok(mut m) = map.lock() {
        let h = m.entry(labels.iter().map(|s| s.to_string()).collect()).or_default();
        if h.counts.is_empty() {
            h.counts = vec![0; BUCKETS.len()];
        }
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }
}

/// Escapes a label value for the exposition format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn label_set(names: &[&str], values: &[String], extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    if let Some((n, v)) = extra {
        parts.push(format!("{n}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn render_counter(out: &mut String, name: &str, help: &str, names: &[&str], map: &Mutex<BTreeMap<Labels, u64>>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    if let Ok(m) = map.lock() {
        for (values, n) in m.iter() {
            let _ = writeln!(out, "{name}{} {n}", label_set(names, values, None));
        }
    }
}

fn render_histogram(
    out: &mut String,
    name: &str,
    help: &str,
    names: &[&str],
    map: &Mutex<BTreeMap<Labels, Histogram>>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    if let Ok(m) = map.lock() {
        for (values, h) in m.iter() {
            for (le, n) in BUCKETS.iter().zip(&h.counts) {
                let le = le.to_string();
                let _ = writeln!(out, "{name}_bucket{} {n}", label_set(names, values, Some(("le", &le))));
            }
            let _ = writeln!(
                out,
                "{name}_bucket{} {}",
                label_set(names, values, Some(("le", "+Inf"))),
                h.count
            );
            let _ = writeln!(out, "{name}_sum{} {}", label_set(names, values, None), h.sum);
            let _ = writeln!(out, "{name}_count{} {}", label_set(names, values, None), h.count);
        }
    }
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Self {
        Self {
            flows_started: Mutex::default(),
            flows_completed: Mutex::default(),
            flows_failed: Mutex::default(),
            entra_errors: Mutex::default(),
            token_requests: Mutex::default(),
            refresh_duration: Mutex::default(),
            store_duration: Mutex::default(),
            rate_limited: AtomicU64::new(0),
            pending_approvals: AtomicI64::new(0),
            pending_by_tenant: Mutex::default(),
        }
    }

    /// A flow was started for `connector` (redirected to Entra).
    pub fn flow_started(&self, connector: &str) {
        inc(&self.flows_started, &[connector]);
    }

    /// A flow's callback ended in a connection.
    pub fn flow_completed(&self, connector: &str) {
        inc(&self.flows_completed, &[connector]);
    }

    /// A flow's callback ended in an error of `category`.
    pub fn flow_failed(&self, connector: &str, category: &str) {
        inc(&self.flows_failed, &[connector, category]);
    }

    /// Entra returned an error carrying `code` (or none).
    pub fn entra_error(&self, code: Option<u32>) {
        inc(&self.entra_errors, &[&code_label(code)]);
    }

    /// A token request for `connector` ended in `outcome`.
    pub fn token_request(&self, connector: &str, outcome: TokenOutcome) {
        inc(&self.token_requests, &[connector, outcome.as_str()]);
    }

    /// One refresh call to Entra took `d`.
    pub fn refresh_duration(&self, d: Duration) {
        observe(&self.refresh_duration, &[], d);
    }

    /// One store operation `op` took `d`.
    pub fn store_duration(&self, op: &str, d: Duration) {
        observe(&self.store_duration, &[op], d);
    }

    /// A request was refused for rate limiting (none are yet: the counter is registered so
    /// dashboards and alerts can be built before limits exist).
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// An approval page was opened for `connector` in `tenant`.
    pub fn approval_opened(&self, connector: &str, tenant: &str) {
        if let Ok(mut m) = self.pending_by_tenant.lock() {
            *m.entry((connector.to_string(), tenant.to_string())).or_default() += 1;
            self.pending_approvals.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `tenant` approved `connector`: its open pages are no longer pending.
    pub fn tenant_approved(&self, connector: &str, tenant: &str) {
        if let Ok(mut m) = self.pending_by_tenant.lock()
            && let Some(n) = m.remove(&(connector.to_string(), tenant.to_string()))
        {
            self.pending_approvals.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP consent_broker_build_info The broker's version.\n# TYPE consent_broker_build_info gauge\nconsent_broker_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        render_counter(
            &mut out,
            "consent_broker_flows_started_total",
            "Sign-in flows started.",
            &["connector"],
            &self.flows_started,
        );
        render_counter(
            &mut out,
            "consent_broker_flows_completed_total",
            "Sign-in flows that ended in a connection.",
            &["connector"],
            &self.flows_completed,
        );
        render_counter(
            &mut out,
            "consent_broker_flows_failed_total",
            "Sign-in flows that ended in an error, by category.",
            &["connector", "category"],
            &self.flows_failed,
        );
        render_counter(
            &mut out,
            "consent_broker_entra_errors_total",
            "Errors Entra returned to sign-in callbacks and refreshes, by AADSTS code (other: not in the table; none: no code).",
            &["code"],
            &self.entra_errors,
        );
        render_counter(
            &mut out,
            "consent_broker_token_requests_total",
            "Token requests, by outcome.",
            &["connector", "outcome"],
            &self.token_requests,
        );
        render_histogram(
            &mut out,
            "consent_broker_refresh_duration_seconds",
            "Duration of refresh-token calls to Entra.",
            &[],
            &self.refresh_duration,
        );
        render_histogram(
            &mut out,
            "consent_broker_store_duration_seconds",
            "Duration of store operations, by operation.",
            &["op"],
            &self.store_duration,
        );
        let _ = writeln!(
            out,
            "# HELP consent_broker_rate_limited_total Requests refused by rate limiting.\n# TYPE consent_broker_rate_limited_total counter\nconsent_broker_rate_limited_total {}",
            self.rate_limited.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP consent_broker_pending_approvals Approval pages opened by this process whose tenant has not approved since.\n# TYPE consent_broker_pending_approvals gauge\nconsent_broker_pending_approvals {}",
            self.pending_approvals.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_fold_into_a_bounded_label_set() {
        assert_eq!(code_label(Some(90094)), "90094");
        assert_eq!(code_label(Some(65004)), "65004");
        assert_eq!(code_label(Some(4_000_000_001)), "other");
        assert_eq!(code_label(None), "none");
    }

    #[test]
    fn pending_approvals_drop_when_the_tenant_approves() {
        let m = Metrics::new();
        m.approval_opened("c", "t1");
        m.approval_opened("c", "t1");
        m.approval_opened("c", "t2");
        m.tenant_approved("c", "t1");
        m.tenant_approved("c", "t9");
        assert!(m.render().contains("\nconsent_broker_pending_approvals 1\n"));
    }
}
