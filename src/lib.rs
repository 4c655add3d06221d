//! consent-broker: an OAuth 2.0 consent-flow broker between connector backends and
//! Microsoft Entra ID. See README.md for the big picture, and docs/api.md and docs/openapi.yaml
//! for the API.

pub mod app;
pub mod approval;
pub mod backup;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod demo;
pub mod entra;
pub mod flow;
pub mod http;
pub mod ids;
pub mod keepalive;
pub mod metrics;
pub mod ratelimit;
pub mod scope;
pub mod server;
pub mod store;
mod tasks;
pub mod telemetry;
pub mod tokens;
pub mod webhooks;

pub use app::{AppState, StartError};
pub use config::Config;
pub use server::Application;
