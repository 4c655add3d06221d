//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one per
//! secret, space-separated.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::WebhookSecret;

/// The `webhook-signature` header value for one attempt.
pub fn signature(secrets: &[WebhookSecret], id: &str, timestamp: i64, body: &str) -> String {
    secrets
        .iter()
        .map(|s| format!("v1,{}", STANDARD.encode(sign(s.bytes(), id, timestamp, body))))
        .collect::<Vec<_>>()
        .join(" ")
}

fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> Vec<u8> {
    // HMAC accepts a key of any length; the config only admits 24-64 bytes.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable_key());
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

#[cold]
fn unreachable_key() -> Hmac<Sha256> {
    // `new_from_slice` fails only for fixed-size-key MACs; HMAC has none. Kept total anyway.
    <Hmac<Sha256> as Mac>::new_from_slice(&[0u8; 32]).expect("a 32-byte HMAC key")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(encoded: &str) -> WebhookSecret {
        crate::config::WebhookSecret::from_whsec(encoded).expect("a valid secret")
    }

    #[test]
    fn matches_the_specifications_example() {
        // The example of the Standard Webhooks specification and its reference libraries.
        let s = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let sig = signature(
            &[s],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn one_signature_per_secret_and_each_covers_id_time_and_body() {
        let a = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let b = secret("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
        let both = signature(&[a.clone(), b], "evt_1", 10, "{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], signature(std::slice::from_ref(&a), "evt_1", 10, "{}"));
        assert_ne!(parts[0], parts[1]);
        let base = signature(std::slice::from_ref(&a), "evt_1", 10, "{}");
        assert_ne!(base, signature(std::slice::from_ref(&a), "evt_2", 10, "{}"));
        assert_ne!(base, signature(std::slice::from_ref(&a), "evt_1", 11, "{}"));
        assert_ne!(base, signature(std::slice::from_ref(&a), "evt_1", 10, "{ }"));
    }
}
