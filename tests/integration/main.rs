//! One integration-test binary: the real broker against the real `entra-sim`, over HTTP.

#[path = "../common/mod.rs"]
mod common;

mod sim_wire;
