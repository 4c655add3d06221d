//! One integration-test binary: the real broker against the real `entra-sim`, over HTTP.

#[path = "../common/mod.rs"]
mod common;

mod approval;
mod approval_states;
mod backup;
mod binding;
mod browser;
mod certificate;
mod chaos;
mod cli;
mod demo;
mod deploy;
mod docs;
mod encryption;
mod error_pages;
mod explain;
mod happy;
mod hardening;
mod keepalive;
mod lifecycle;
mod limits;
mod listing;
mod logs;
mod metrics;
mod openapi;
mod pages_browser;
mod record_formats;
mod redis_store;
mod refresh_guard;
mod resilience;
mod resources;
mod security;
mod shared_refresh;
mod sim_wire;
mod token_cache;
mod webhooks;
