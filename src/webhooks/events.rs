//! The event types, and how the token service raises the two it causes.

use std::sync::Arc;

use async_trait::async_trait;

use super::Outbox;
use crate::entra::Category;
use crate::store::records::{Connection, PendingEvent};

/// The contract's event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A sign-in made a connection (or renewed a returning user's).
    ConnectionCreated,
    /// A refresh or keep-alive found the grant gone.
    ConnectionReauthRequired,
    /// A connection that had failed transiently refreshed again.
    ConnectionRecovered,
    /// The connector deleted a connection.
    ConnectionDeleted,
    /// A user of a tenant hit admin approval (once per tenant until approved).
    ApprovalPending,
    /// The tenant's admin approved the connector.
    ApprovalGranted,
}

impl EventKind {
    /// The wire name (`type`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectionCreated => "connection.created",
            Self::ConnectionReauthRequired => "connection.reauth_required",
            Self::ConnectionRecovered => "connection.recovered",
            Self::ConnectionDeleted => "connection.deleted",
            Self::ApprovalPending => "approval.pending",
            Self::ApprovalGranted => "approval.granted",
        }
    }
}

/// Where a connection that needs a new sign-in sends its user (the flow service in production).
#[async_trait]
pub trait ReconnectLinks: Send + Sync {
    /// The reconnect URL of `conn`, or `None` when none can be made now.
    async fn reconnect_url(&self, conn: &Connection) -> Option<String>;
}

/// The events the token service raises, built before the change they announce is written.
#[async_trait]
pub trait ConnectionEvents: Send + Sync {
    /// `connection.reauth_required` for `conn`, which needs a new sign-in for `category`.
    async fn reauth_required(&self, conn: &Connection, category: Category, aadsts: Option<u32>)
    -> Option<PendingEvent>;
    /// `connection.recovered` for `conn`, which refreshed again after a transient failure.
    fn recovered(&self, conn: &Connection) -> Option<PendingEvent>;
}

/// Events into the outbox, with reconnect links from `links`.
pub struct LifecycleEvents {
    outbox: Arc<Outbox>,
    links: Arc<dyn ReconnectLinks>,
}

impl LifecycleEvents {
    /// Raises events into `outbox`; reconnect URLs come from `links`.
    pub fn new(outbox: Arc<Outbox>, links: Arc<dyn ReconnectLinks>) -> Self {
        Self { outbox, links }
    }
}

#[async_trait]
impl ConnectionEvents for LifecycleEvents {
    async fn reauth_required(
        &self,
        conn: &Connection,
        category: Category,
        aadsts: Option<u32>,
    ) -> Option<PendingEvent> {
        // Only connectors with endpoints pay for a reconnect link.
        if !self.outbox.has_endpoints(&conn.connector) {
            return None;
        }
        let url = self.links.reconnect_url(conn).await;
        self.outbox.reauth_required(conn, category, aadsts, url.as_deref())
    }

    fn recovered(&self, conn: &Connection) -> Option<PendingEvent> {
        self.outbox.recovered(conn)
    }
}

/// No events (unit tests of the token service).
pub struct NoEvents;

#[async_trait]
impl ConnectionEvents for NoEvents {
    async fn reauth_required(&self, _: &Connection, _: Category, _: Option<u32>) -> Option<PendingEvent> {
        None
    }

    fn recovered(&self, _: &Connection) -> Option<PendingEvent> {
        None
    }
}
