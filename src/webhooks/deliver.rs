//! Delivery: every broker looks for due events each second (and at once when it stored one);
//! one broker at a time attempts an event, under its lease.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::signature;
use crate::clock::Clock;
use crate::config::{Connectors, WebhooksConfig};
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::store::records::{DeliveryState, DueEvent, OutboxEvent, Records};

/// How often brokers look for due events.
const TICK: Duration = Duration::from_secs(1);
/// Most due events one look takes on.
const BATCH: usize = 100;
/// The longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Most bytes of an endpoint's answer read (and dropped): enough to reuse the connection.
const ANSWER_LIMIT: usize = 64 * 1024;

/// Delivers the outbox's due events.
pub struct Deliverer {
    records: Records,
    connectors: Connectors,
    settings: WebhooksConfig,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    http: reqwest::Client,
    wake: Arc<Notify>,
}

impl Deliverer {
    /// A deliverer of `connectors`' events, woken early by `wake`.
    pub fn new(
        records: Records,
        connectors: Connectors,
        settings: WebhooksConfig,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            // A redirect is not an acknowledgement, and following one could send the signed body
            // somewhere the operator never configured.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("consent-broker-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            records,
            connectors,
            settings,
            clock,
            metrics,
            http,
            wake,
        })
    }

    /// Looks for due events every second, or when woken, until the task is dropped.
    pub async fn run(self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.wake.notified() => {}
            }
            if let Err(e) = self.round().await {
                tracing::warn!(error = %e, "webhook delivery could not read the store; trying again");
            }
        }
    }

    /// Attempts every event due now; returns how many it attempted.
    pub async fn round(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_millis();
        let due = self.records.due_events(now, BATCH).await?;
        let mut attempted = 0;
        for d in &due {
            if self.attempt(d).await? {
                attempted += 1;
            }
        }
        Ok(attempted)
    }

    /// Attempts one event's due deliveries, if no other broker is; true when it did.
    async fn attempt(&self, due: &DueEvent) -> Result<bool, StoreError> {
        let Some((first, _)) = self.records.outbox_event(&due.key).await? else {
            self.records.drop_due(due, self.clock.now_millis(), false).await?;
            return Ok(false);
        };
        let hold = self.settings.timeout * (first.deliveries.len() as u32) + Duration::from_secs(30);
        let Some(lease) = self.records.try_delivery_lease(&due.key, hold).await? else {
            return Ok(false);
        };
        // Re-read under the lease: the broker that held it before may have delivered it.
        let result = match self.records.outbox_event(&due.key).await {
            Ok(Some((mut event, version))) => {
                self.deliver(&mut event).await;
                self.records
                    .settle_event(&due.key, &event, version, &due.member)
                    .await
                    .map(|_| true)
            }
            Ok(None) => self
                .records
                .drop_due(due, self.clock.now_millis(), true)
                .await
                .map(|_| false),
            Err(e) => Err(e),
        };
        if let Err(e) = self.records.release_lease(lease).await {
            tracing::debug!(error = %e, "the delivery lease is left to expire");
        }
        result
    }

    /// Sends the event to each endpoint whose delivery is due, and records how each went.
    async fn deliver(&self, event: &mut OutboxEvent) {
        let connector = self.connectors.get(&event.connector);
        let window_ends = event.window_from_ms + self.settings.retry_window.as_millis() as i64;
        for i in 0..event.deliveries.len() {
            let now = self.clock.now_millis();
            let d = &event.deliveries[i];
            if d.state != DeliveryState::Pending || d.next_at_ms > now {
                continue;
            }
            let endpoint = connector.and_then(|c| c.webhooks.iter().find(|e| e.url.as_str() == d.url));
            let outcome = match endpoint {
                Some(e) => self.post(event, e.url.clone(), &e.secrets).await,
                None => Err("the endpoint is no longer configured".to_string()),
            };
            let d = &mut event.deliveries[i];
            d.attempts += 1;
            match outcome {
                Ok(()) => {
                    d.state = DeliveryState::Delivered;
                    d.last_error = None;
                    self.metrics.webhook_attempt(event.connector.as_str(), true);
                    tracing::info!(event = %event.id, kind = %event.kind, url = %d.url, attempts = d.attempts, "webhook delivered");
                }
                Err(why) => {
                    self.metrics.webhook_attempt(event.connector.as_str(), false);
                    let next = now + backoff(self.settings.first_retry, d.attempts).as_millis() as i64;
                    if endpoint.is_none() || next > window_ends {
                        d.state = DeliveryState::Dead;
                        self.metrics.webhook_dead_letter(event.connector.as_str());
                        tracing::warn!(event = %event.id, kind = %event.kind, url = %d.url, attempts = d.attempts, error = %why, "webhook delivery given up: a dead letter now");
                    } else {
                        d.next_at_ms = next;
                        tracing::warn!(event = %event.id, kind = %event.kind, url = %d.url, attempts = d.attempts, error = %why, retry_in_ms = next - now, "webhook delivery failed; retrying");
                    }
                    d.last_error = Some(why);
                }
            }
        }
    }

    /// One signed POST; `Ok` on a 2xx answer. Errors name a status or a transport failure,
    /// never the body or a secret.
    async fn post(
        &self,
        event: &OutboxEvent,
        url: url::Url,
        secrets: &[crate::config::WebhookSecret],
    ) -> Result<(), String> {
        let timestamp = self.clock.now_unix();
        let answer = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                signature(secrets, &event.id, timestamp, &event.body),
            )
            .body(event.body.clone())
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = answer.status();
        drain(answer).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", status.as_u16()))
        }
    }
}

/// The wait after the `attempts`-th failure: the first retry after `first`, doubling, capped.
fn backoff(first: Duration, attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
    first.saturating_mul(factor).min(MAX_BACKOFF)
}

fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer in time".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        "the request failed".into()
    }
}

async fn drain(mut answer: reqwest::Response) {
    let mut read = 0;
    while read < ANSWER_LIMIT {
        match answer.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_the_first_and_are_capped() {
        let first = Duration::from_secs(5);
        assert_eq!(backoff(first, 1), Duration::from_secs(5));
        assert_eq!(backoff(first, 2), Duration::from_secs(10));
        assert_eq!(backoff(first, 4), Duration::from_secs(40));
        assert_eq!(backoff(first, 30), MAX_BACKOFF);
        assert_eq!(backoff(first, u32::MAX), MAX_BACKOFF);
    }
}
