//! The approval pages this broker opened and that are still waiting for their tenant's admin,
//! behind the `pending_approvals` gauge: bounded, and settled by the tenant's approval (through
//! any broker) or by the pages' expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::metrics::Metrics;

/// Most (connector, tenant) pairs whose open approval pages are tracked one by one.
pub const MAX_PENDING_TENANTS: usize = 10_000;
/// Where the pages of tenants past [`MAX_PENDING_TENANTS`] are counted.
const OVERFLOW_TENANT: &str = "other";

/// The open approval pages of one (connector, tenant).
#[derive(Debug)]
struct Pages {
    /// Its tenant label (the tenant, or `other` past a cap).
    label: String,
    /// Pages opened.
    count: i64,
    /// When the newest was opened (Unix ms).
    newest_ms: i64,
}

/// Open approval pages per (connector, tenant).
pub struct PendingApprovals {
    metrics: Arc<Metrics>,
    pages: Mutex<HashMap<(String, String), Pages>>,
}

impl PendingApprovals {
    /// Nothing pending yet; counts go to `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            pages: Mutex::default(),
        }
    }

    fn pages(&self) -> MutexGuard<'_, HashMap<(String, String), Pages>> {
        // Plain counters: valid whatever a panicking holder left behind.
        self.pages.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An approval page was opened for `connector` in `tenant` at `opened_ms` (Unix ms).
    pub fn opened(&self, connector: &str, tenant: &str, opened_ms: i64) {
        let mut pages = self.pages();
        // Tenants come from sign-in attempts anyone can start: past the cap, new ones are kept
        // together under `other`, which no approval settles, so they leave when they expire.
        let key = (connector.to_string(), tenant.to_string());
        let key = if pages.len() >= MAX_PENDING_TENANTS && !pages.contains_key(&key) {
            (connector.to_string(), OVERFLOW_TENANT.to_string())
        } else {
            key
        };
        let label = if key.1 == OVERFLOW_TENANT {
            OVERFLOW_TENANT.to_string()
        } else {
            self.metrics.tenant_label(tenant)
        };
        let entry = pages.entry(key).or_insert_with(|| Pages {
            label,
            count: 0,
            newest_ms: opened_ms,
        });
        entry.count += 1;
        entry.newest_ms = entry.newest_ms.max(opened_ms);
        self.metrics.pending_approvals_by(connector, &entry.label, 1);
    }

    /// `tenant` approved `connector` (or its pages expired): its open pages are no longer pending.
    pub fn settled(&self, connector: &str, tenant: &str) {
        let Some(p) = self.pages().remove(&(connector.to_string(), tenant.to_string())) else {
            return;
        };
        // Under `other` other tenants' pages may remain; the series goes when none do.
        self.metrics.pending_approvals_by(connector, &p.label, -p.count);
    }

    /// Every (connector, tenant) with open pages, and when its newest page was opened (Unix ms):
    /// what `approval::settle_pending` checks against the store.
    pub fn open(&self) -> Vec<(String, String, i64)> {
        self.pages()
            .iter()
            .map(|((c, t), p)| (c.clone(), t.clone(), p.newest_ms))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MAX_TENANT_LABELS;

    fn pending() -> (PendingApprovals, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        (PendingApprovals::new(metrics.clone()), metrics)
    }

    fn has_line(m: &Metrics, line: &str) -> bool {
        m.render().lines().any(|l| l == line)
    }

    fn gauge(m: &Metrics, tenant: &str) -> i64 {
        let prefix = format!("consent_broker_pending_approvals{{connector=\"c\",tenant=\"{tenant}\"}} ");
        m.render()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(|v| v.parse().unwrap()))
            .unwrap_or(0)
    }

    #[test]
    fn pending_approvals_drop_when_the_tenant_approves() {
        let (p, m) = pending();
        p.opened("c", "t1", 1);
        p.opened("c", "t1", 5);
        p.opened("c", "t2", 3);
        let mut open = p.open();
        open.sort();
        assert_eq!(
            open,
            [("c".into(), "t1".into(), 5), ("c".into(), "t2".into(), 3)],
            "the newest page per tenant"
        );
        p.settled("c", "t1");
        p.settled("c", "t9");
        assert!(has_line(
            &m,
            "consent_broker_pending_approvals{connector=\"c\",tenant=\"t2\"} 1"
        ));
        assert!(!m.render().contains("tenant=\"t1\""));
    }

    #[test]
    fn pending_tenants_are_capped_and_the_overflow_settles_by_expiry() {
        let (p, m) = pending();
        for i in 0..MAX_PENDING_TENANTS + 50 {
            p.opened("c", &format!("t{i}.example"), 1);
        }
        let pages = p.open();
        assert_eq!(
            pages.len(),
            MAX_PENDING_TENANTS + 1,
            "the cap, plus one entry for the rest"
        );
        assert!(pages.iter().any(|(c, t, _)| c == "c" && t == OVERFLOW_TENANT));
        // Settling the overflow (its pages expired) takes exactly its pages off the gauge.
        let before = gauge(&m, "other");
        p.settled("c", OVERFLOW_TENANT);
        assert_eq!(before - gauge(&m, "other"), 50);
    }

    #[test]
    fn tenant_labels_are_capped() {
        let (p, m) = pending();
        for i in 0..MAX_TENANT_LABELS + 5 {
            p.opened("c", &format!("t{i}"), 1);
        }
        assert!(has_line(
            &m,
            "consent_broker_pending_approvals{connector=\"c\",tenant=\"other\"} 5"
        ));
        // A tenant that already has its series keeps it.
        p.opened("c", "t0", 1);
        assert!(has_line(
            &m,
            "consent_broker_pending_approvals{connector=\"c\",tenant=\"t0\"} 2"
        ));
        // Approving a tenant counted under `other` takes exactly its pages off that series.
        let last = format!("t{}", MAX_TENANT_LABELS + 4);
        p.opened("c", &last, 1);
        p.settled("c", &last);
        assert!(has_line(
            &m,
            "consent_broker_pending_approvals{connector=\"c\",tenant=\"other\"} 4"
        ));
        for i in MAX_TENANT_LABELS..MAX_TENANT_LABELS + 4 {
            p.settled("c", &format!("t{i}"));
        }
        assert!(!m.render().contains("tenant=\"other\""), "the emptied series goes");
    }
}
