//! Entra's redirect parameters and return URLs are attacker-controlled: parsing must never panic,
//! and a return URL accepted against the allow-list must keep its registered origin and path.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(params) = consent_broker::flow::CallbackParams::parse(&text)
        && let Some(err) = params.error
    {
        let _ = consent_broker::entra::classify(&err);
    }
    let allowed = [url::Url::parse("https://app.example.com/oauth/done").expect("static URL")];
    if let Some(u) = consent_broker::flow::return_url::check(&allowed, &text) {
        assert_eq!(u.host_str(), Some("app.example.com"));
        assert_eq!(u.path(), "/oauth/done");
    }
});
