//! Helpers shared by the integration tests: real processes, started and cleaned up per test.
#![allow(dead_code)]
pub mod broker;
pub mod browser;
pub mod certs;
pub mod flows;
pub mod redis;
pub mod scrape;
pub mod sim;
