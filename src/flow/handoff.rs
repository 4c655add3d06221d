//! Handoff codes: issued when a flow completes, redeemed once by the connector's backend.

use std::time::Duration;

use super::{FlowError, FlowService};
use crate::crypto::random_token;
use crate::ids::{ConnectionId, ConnectorId};
use crate::store::records::{Connection, Flow, Handoff};

/// What `POST /v1/handoff/redeem` returns.
pub struct Redeemed {
    /// The connection.
    pub connection: Connection,
    /// The connector's state.
    pub state: Option<String>,
}

impl FlowService {
    /// Redeems a handoff code for the calling connector (single use).
    pub async fn redeem_handoff(&self, caller: &ConnectorId, code: &str) -> Result<Option<Redeemed>, FlowError> {
        if code.is_empty() || code.len() > 128 {
            return Ok(None);
        }
        let Some(handoff) = self.records.take_handoff(caller, code).await? else {
            return Ok(None);
        };
        match self.records.connection(&handoff.connection_id).await? {
            Some((connection, _)) if connection.connector == *caller => Ok(Some(Redeemed {
                connection,
                state: handoff.state,
            })),
            _ => Ok(None),
        }
    }

    /// Stores a new handoff code for the connection a flow made; returns the code.
    pub(super) async fn issue_handoff(
        &self,
        flow: &Flow,
        connection_id: &ConnectionId,
        ttl: Duration,
    ) -> Result<String, FlowError> {
        let code = random_token();
        self.records
            .put_handoff(
                &flow.connector,
                &code,
                &Handoff {
                    connection_id: connection_id.clone(),
                    state: flow.connector_state.clone(),
                },
                ttl,
            )
            .await?;
        Ok(code)
    }
}
