//! Entra's redirect parameters are attacker-controlled: parsing follows the contract exactly.
//! The body (and its invariants) lives in `src/lib.rs`, shared with the corpus test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    consent_broker_fuzz::callback_params(data);
});
