//! Return-URL allow-list matching and the redirect built from an accepted URL.
//! The body (and its invariants) lives in `src/lib.rs`, shared with the corpus test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    consent_broker_fuzz::return_url(data);
});
