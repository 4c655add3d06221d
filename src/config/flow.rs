//! `[flow]`: lifetimes of sign-in state, connect sessions and handoff codes.

use std::time::Duration;

use serde::Deserialize;

use super::Invalid;

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawFlow {
    state_ttl_secs: u64,
    session_ttl_secs: u64,
    handoff_ttl_secs: u64,
    default_min_ttl_secs: u64,
}

impl Default for RawFlow {
    fn default() -> Self {
        Self {
            state_ttl_secs: 600,
            session_ttl_secs: 3_600,
            handoff_ttl_secs: 300,
            default_min_ttl_secs: 300,
        }
    }
}

/// Lifetimes of the flow's short-lived records.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    /// `state` lifetime (sign-in must finish within it).
    pub state_ttl: Duration,
    /// Connect-session lifetime.
    pub session_ttl: Duration,
    /// Handoff-code lifetime (at most 5 minutes per contract).
    pub handoff_ttl: Duration,
    /// `min_ttl` when the caller gives none.
    pub default_min_ttl: Duration,
}

impl RawFlow {
    /// Checks each lifetime against its range.
    pub(super) fn validate(self) -> Result<FlowConfig, Invalid> {
        if self.handoff_ttl_secs == 0 || self.handoff_ttl_secs > 300 {
            return Err(Invalid::new(
                "flow.handoff_ttl_secs",
                "must be between 1 and 300 seconds",
            ));
        }
        if self.state_ttl_secs == 0 || self.state_ttl_secs > 3_600 {
            return Err(Invalid::new(
                "flow.state_ttl_secs",
                "must be between 1 and 3600 seconds",
            ));
        }
        if self.session_ttl_secs == 0 {
            return Err(Invalid::new("flow.session_ttl_secs", "must be at least 1 second"));
        }
        Ok(FlowConfig {
            state_ttl: Duration::from_secs(self.state_ttl_secs),
            session_ttl: Duration::from_secs(self.session_ttl_secs),
            handoff_ttl: Duration::from_secs(self.handoff_ttl_secs),
            default_min_ttl: Duration::from_secs(self.default_min_ttl_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{base, err_of};

    #[test]
    fn lifetimes_are_range_checked() {
        let e = err_of(&base("[flow]\nhandoff_ttl_secs = 600"));
        assert!(e.contains("flow.handoff_ttl_secs"), "{e}");
        let e = err_of(&base("[flow]\nstate_ttl_secs = 0"));
        assert!(e.contains("flow.state_ttl_secs"), "{e}");
        let e = err_of(&base("[flow]\nsession_ttl_secs = 0"));
        assert!(e.contains("flow.session_ttl_secs"), "{e}");
    }
}
