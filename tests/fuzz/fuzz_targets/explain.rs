//! The classifier must never panic on anything a user can paste (POST /v1/explain).
//! The body (and its invariants) lives in `src/lib.rs`, shared with the corpus test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    consent_broker_fuzz::explain(data);
});
