//! Helpers shared by the integration tests: real processes, started and cleaned up per test.
#![allow(dead_code)]
pub mod broker;
pub mod browser;
pub mod certs;
pub mod flows;
pub mod redis;
pub mod scrape;
pub mod sim;
pub mod webhook;

/// A connection id from the text an API answer carried, for the store's typed lookups.
pub fn cid(id: &str) -> consent_broker::ids::ConnectionId {
    consent_broker::ids::ConnectionId::new(id)
}
