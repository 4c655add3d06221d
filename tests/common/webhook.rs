//! A loopback webhook receiver: records every delivery, answers what the test scripts (204 by
//! default), and checks each signature with its own HMAC code (not the broker's).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::task::JoinHandle;

/// The receiver's signing secret (24 random-looking bytes).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// A second secret, for rotation tests.
pub const OTHER_SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// How long a delivery scripted as 0 waits before answering.
pub const HANG: Duration = Duration::from_secs(4);

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: String,
    /// `webhook-signature`.
    pub signature: String,
    /// The raw body.
    pub body: String,
    /// What the receiver answered.
    pub answered: u16,
}

impl Delivery {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    /// The event type.
    pub fn kind(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_string()
    }

    /// Whether one of the signatures is the HMAC of `secret` over id, timestamp and body.
    pub fn signed_with(&self, secret: &str) -> bool {
        let key = STANDARD
            .decode(secret.strip_prefix("whsec_").expect("whsec_"))
            .expect("base64");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("key");
        mac.update(format!("{}.{}.{}", self.id, self.timestamp, self.body).as_bytes());
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        self.signature.split(' ').any(|s| s == expected)
    }
}

#[derive(Default)]
struct Inner {
    deliveries: Vec<Delivery>,
    script: VecDeque<u16>,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    /// `http://127.0.0.1:PORT/hook`
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    task: JoinHandle<()>,
}

impl Receiver {
    /// Starts on an ephemeral loopback port.
    pub async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let state = inner.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let state = state.clone();
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    let answered = {
                        let mut inner = state.lock().unwrap();
                        let answered = inner.script.pop_front().unwrap_or(204);
                        inner.deliveries.push(Delivery {
                            id: header("webhook-id"),
                            timestamp: header("webhook-timestamp"),
                            signature: header("webhook-signature"),
                            body,
                            answered,
                        });
                        answered
                    };
                    // 0 scripts a receiver that does not answer in time.
                    if answered == 0 {
                        tokio::time::sleep(HANG).await;
                    }
                    StatusCode::from_u16(answered).unwrap_or(StatusCode::NO_CONTENT)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, inner, task }
    }

    /// The next answers, in order (then 204 again); 0 answers only after [`HANG`].
    pub fn answer_next(&self, statuses: &[u16]) {
        self.inner.lock().unwrap().script.extend(statuses);
    }

    /// Forgets the scripted answers not given yet (204 from now on).
    pub fn clear_script(&self) {
        self.inner.lock().unwrap().script.clear();
    }

    /// Everything received so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.lock().unwrap().deliveries.clone()
    }

    /// Acknowledged deliveries (2xx) of events of type `kind`.
    pub fn acknowledged(&self, kind: &str) -> Vec<Delivery> {
        self.deliveries()
            .into_iter()
            .filter(|d| (200..300).contains(&d.answered) && d.kind() == kind)
            .collect()
    }

    /// Waits until `n` acknowledged deliveries of `kind` arrived; panics after `secs`.
    pub async fn wait_for(&self, kind: &str, n: usize, secs: u64) -> Vec<Delivery> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.acknowledged(kind);
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} {kind} events after {secs} s; received: {:?}",
                got.len(),
                self.deliveries()
                    .iter()
                    .map(|d| (d.kind(), d.answered))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `configure` hook giving connector `files` the endpoint `url` signed with `secrets`, and
/// retries starting after 1 s within `window_secs`.
pub fn endpoints(urls: Vec<String>, secrets: &'static [&'static str], window_secs: u64) -> super::broker::Configure {
    Arc::new(move |config: &mut consent_broker::Config| {
        let files = config
            .connectors
            .iter_mut()
            .find(|c| c.id == "files")
            .expect("connector files");
        files.webhooks = urls
            .iter()
            .map(|u| consent_broker::config::WebhookEndpoint {
                url: url::Url::parse(u).expect("url"),
                secrets: secrets
                    .iter()
                    .map(|s| consent_broker::config::WebhookSecret::from_whsec(s).expect("secret"))
                    .collect(),
            })
            .collect();
        config.webhooks.first_retry = Duration::from_secs(1);
        config.webhooks.retry_window = Duration::from_secs(window_secs);
    })
}
