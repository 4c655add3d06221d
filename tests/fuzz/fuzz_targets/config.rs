//! Any config text loads or fails with an error naming the file; it never panics.
//! The body (and its invariants) lives in `src/lib.rs`, shared with the corpus test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    consent_broker_fuzz::config(data);
});
