//! Webhooks to connector backends: lifecycle events raised where connections and approvals
//! change, kept in a durable outbox in the store, and delivered (signed as the Standard Webhooks
//! specification says) at least once, by one broker per event.
//!
//! [`Outbox`] builds events; the code that makes a change writes the event in the same store
//! operation ([`crate::store::records::Records::apply`]); [`Deliverer`] (on every broker) takes
//! due events under a lease, POSTs them to each endpoint of the connector, retries with
//! exponential backoff within `[webhooks] retry_window_secs`, then keeps a dead letter.

mod deliver;
mod events;
mod sign;

pub use deliver::Deliverer;
pub use events::{ConnectionEvents, EventKind, LifecycleEvents, NoEvents, ReconnectLinks};
pub use sign::signature;

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Notify;

use crate::clock::{Clock, rfc3339};
use crate::config::Connectors;
use crate::crypto::random_id;
use crate::entra::Category;
use crate::ids::{ConnectorId, TenantId};
use crate::store::records::{Approval, Connection, ConnectionUser, Delivery, DeliveryState, OutboxEvent, PendingEvent};

/// Builds the events of connectors that have endpoints; `None` for the others, which keep none.
pub struct Outbox {
    connectors: Connectors,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
}

#[derive(Serialize)]
struct Body<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: String,
    data: T,
}

#[derive(Serialize)]
struct Created<'a> {
    connection_id: &'a str,
    connector: &'a str,
    tenant_id: &'a str,
    end_user: Option<&'a str>,
    state: Option<&'a str>,
    user: &'a ConnectionUser,
}

#[derive(Serialize)]
struct ReauthRequired<'a> {
    connection_id: &'a str,
    connector: &'a str,
    tenant_id: &'a str,
    end_user: Option<&'a str>,
    category: Category,
    aadsts: Option<u32>,
    reconnect_url: Option<&'a str>,
}

#[derive(Serialize)]
struct ConnectionOnly<'a> {
    connection_id: &'a str,
    connector: &'a str,
    tenant_id: &'a str,
}

#[derive(Serialize)]
struct ApprovalPending<'a> {
    connector: &'a str,
    tenant_id: Option<&'a str>,
    tenant_domain: Option<&'a str>,
    approval_url: &'a str,
    category: Category,
    aadsts: Option<u32>,
}

#[derive(Serialize)]
struct ApprovalGranted<'a> {
    connector: &'a str,
    tenant_id: &'a str,
    scopes: &'a [String],
}

impl Outbox {
    /// Events for `connectors`, stamped by `clock`.
    pub fn new(connectors: Connectors, clock: Arc<dyn Clock>) -> Self {
        Self {
            connectors,
            clock,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Woken when an event is stored (the deliverer waits on it between ticks).
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Whether `connector` has endpoints (without them no event is kept).
    pub fn has_endpoints(&self, connector: &ConnectorId) -> bool {
        self.connectors.get(connector).is_some_and(|c| !c.webhooks.is_empty())
    }

    /// The event `kind` carrying `data`, to be written with the record tagged `tag` (a
    /// connection's id) or on its own.
    fn event(
        &self,
        connector: &ConnectorId,
        tag: Option<&str>,
        kind: EventKind,
        data: impl Serialize,
    ) -> Option<PendingEvent> {
        let endpoints = &self.connectors.get(connector)?.webhooks;
        if endpoints.is_empty() {
            return None;
        }
        let now_ms = self.clock.now_millis();
        let body = Body {
            kind: kind.as_str(),
            timestamp: rfc3339(now_ms / 1000),
            data,
        };
        // Serialising these plain structs cannot fail; an empty body would still be delivered.
        let body = serde_json::to_string(&body).unwrap_or_default();
        let id = random_id("evt");
        let event = OutboxEvent {
            id: id.clone(),
            connector: connector.clone(),
            kind: kind.as_str().to_string(),
            body,
            created_at_ms: now_ms,
            window_from_ms: now_ms,
            deliveries: endpoints
                .iter()
                .map(|e| Delivery {
                    url: e.url.to_string(),
                    state: DeliveryState::Pending,
                    attempts: 0,
                    next_at_ms: now_ms,
                    last_error: None,
                })
                .collect(),
        };
        Some(PendingEvent::new(tag.unwrap_or(&id), event, self.wake.clone()))
    }

    /// `connection.created`: a sign-in made `conn` (new, or a returning user's renewed), with the
    /// `state` its connector passed.
    pub fn connection_created(&self, conn: &Connection, state: Option<&str>) -> Option<PendingEvent> {
        self.event(
            &conn.connector,
            Some(conn.id.as_str()),
            EventKind::ConnectionCreated,
            Created {
                connection_id: conn.id.as_str(),
                connector: conn.connector.as_str(),
                tenant_id: conn.tenant_id.as_str(),
                end_user: conn.end_user.as_deref(),
                state,
                user: &conn.user,
            },
        )
    }

    /// `connection.reauth_required`: `conn`'s grant is gone for `category`.
    pub fn reauth_required(
        &self,
        conn: &Connection,
        category: Category,
        aadsts: Option<u32>,
        reconnect_url: Option<&str>,
    ) -> Option<PendingEvent> {
        self.event(
            &conn.connector,
            Some(conn.id.as_str()),
            EventKind::ConnectionReauthRequired,
            ReauthRequired {
                connection_id: conn.id.as_str(),
                connector: conn.connector.as_str(),
                tenant_id: conn.tenant_id.as_str(),
                end_user: conn.end_user.as_deref(),
                category,
                aadsts,
                reconnect_url,
            },
        )
    }

    /// `connection.recovered`: `conn`, which had failed transiently, refreshed again.
    pub fn recovered(&self, conn: &Connection) -> Option<PendingEvent> {
        self.connection_only(conn, EventKind::ConnectionRecovered)
    }

    /// `connection.deleted`: the connector deleted `conn`.
    pub fn deleted(&self, conn: &Connection) -> Option<PendingEvent> {
        self.connection_only(conn, EventKind::ConnectionDeleted)
    }

    fn connection_only(&self, conn: &Connection, kind: EventKind) -> Option<PendingEvent> {
        self.event(
            &conn.connector,
            Some(conn.id.as_str()),
            kind,
            ConnectionOnly {
                connection_id: conn.id.as_str(),
                connector: conn.connector.as_str(),
                tenant_id: conn.tenant_id.as_str(),
            },
        )
    }

    /// `approval.pending`: a user of `approval`'s tenant hit admin approval; the page is at
    /// `approval_url`.
    pub fn approval_pending(&self, approval: &Approval, approval_url: &str) -> Option<PendingEvent> {
        let domain = approval
            .tenant_label
            .as_deref()
            .filter(|l| uuid::Uuid::parse_str(l).is_err());
        self.event(
            &approval.connector,
            None,
            EventKind::ApprovalPending,
            ApprovalPending {
                connector: approval.connector.as_str(),
                tenant_id: approval.tenant_id.as_ref().map(TenantId::as_str),
                tenant_domain: domain,
                approval_url,
                category: approval.category,
                aadsts: approval.aadsts,
            },
        )
    }

    /// `approval.granted`: the admin of `tenant_id` approved `connector` for `scopes`.
    pub fn approval_granted(
        &self,
        connector: &ConnectorId,
        tenant_id: &TenantId,
        scopes: &[String],
    ) -> Option<PendingEvent> {
        self.event(
            connector,
            None,
            EventKind::ApprovalGranted,
            ApprovalGranted {
                connector: connector.as_str(),
                tenant_id: tenant_id.as_str(),
                scopes,
            },
        )
    }
}
