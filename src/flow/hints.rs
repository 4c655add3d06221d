//! Checks of the optional start parameters a connect session or `/v1/authorize` carries.

use url::Url;

use super::{FlowError, return_url};
use crate::config::{ConnectorConfig, is_tenant_segment};

pub(super) fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), FlowError> {
    if value.is_empty() {
        return Err(FlowError::InvalidParameter {
            field,
            message: "must not be empty",
        });
    }
    if value.len() > max {
        return Err(FlowError::InvalidParameter {
            field,
            message: "is too long",
        });
    }
    if value.chars().any(char::is_control) {
        return Err(FlowError::InvalidParameter {
            field,
            message: "must not contain control characters",
        });
    }
    Ok(())
}

/// Validated optional start parameters shared by both starts.
pub(super) struct Hints {
    pub return_url: Option<Url>,
    pub state: Option<String>,
    pub tenant: Option<String>,
    pub login_hint: Option<String>,
    /// The approval page a "continue" came from (see `Flow::approval_page`).
    pub approval_page: Option<crate::ids::FlowId>,
}

pub(super) fn validate_hints(
    connector: &ConnectorConfig,
    return_url: Option<&str>,
    state: Option<&str>,
    tenant: Option<&str>,
    login_hint: Option<&str>,
) -> Result<Hints, FlowError> {
    let return_url = match return_url {
        Some(raw) => {
            if Url::parse(raw).is_ok_and(|u| return_url::carries_reserved(&u)) {
                return Err(FlowError::InvalidParameter {
                    field: "return_url",
                    message: "must not carry handoff, state, error or aadsts in its query (the broker adds them)",
                });
            }
            Some(return_url::check(&connector.return_urls, raw).ok_or(FlowError::ReturnUrlNotAllowed)?)
        }
        None => None,
    };
    if let Some(s) = state {
        check_text("state", s, 512)?;
    }
    if let Some(t) = tenant
        && !is_tenant_segment(t)
    {
        return Err(FlowError::InvalidParameter {
            field: "tenant",
            message: "must be a tenant GUID or domain",
        });
    }
    if let Some(h) = login_hint {
        check_text("login_hint", h, 256)?;
        if h.contains(char::is_whitespace) {
            return Err(FlowError::InvalidParameter {
                field: "login_hint",
                message: "must be a single sign-in name",
            });
        }
    }
    Ok(Hints {
        return_url,
        state: state.map(str::to_string),
        tenant: tenant.map(str::to_ascii_lowercase),
        login_hint: login_hint.map(str::to_string),
        approval_page: None,
    })
}
