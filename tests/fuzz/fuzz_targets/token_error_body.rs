//! Any status, Retry-After and body from the token endpoint maps to tokens or an error.
//! The body (and its invariants) lives in `src/lib.rs`, shared with the corpus test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    consent_broker_fuzz::token_error_body(data);
});
