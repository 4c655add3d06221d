//! The classifier must never panic on anything a user can paste.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let explained = consent_broker::entra::explain::explain(&text);
    let _ = consent_broker::entra::explain::render_text(&explained);
});
