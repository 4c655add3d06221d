//! A test world (simulator + broker) and helpers that drive flows the way a browser would.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::broker::{Broker, BrokerOptions, KEY_A, Reserved, client};
use super::sim::{Sim, standard_config};

/// The simulator and a broker wired to it.
pub struct World {
    /// The simulator.
    pub sim: Sim,
    /// The broker.
    pub broker: Broker,
    /// Non-redirecting client.
    pub http: reqwest::Client,
    /// The simulator's configuration (to look up users).
    pub sim_config: Value,
}

/// The end of a followed redirect chain.
pub struct Landing {
    /// Status of the last response.
    pub status: StatusCode,
    /// Its `Location`, when it redirected off the broker and simulator.
    pub location: Option<url::Url>,
    /// Its body.
    pub body: String,
    /// Its `Retry-After`.
    pub retry_after: Option<String>,
}

impl World {
    /// The standard world with a memory store.
    pub async fn new() -> World {
        Self::with(|_| {}, BrokerOptions::default()).await
    }

    /// A world whose simulator config is adjusted by `tweak`.
    pub async fn with(tweak: impl FnOnce(&mut Value), opts: BrokerOptions) -> World {
        let reserved = Reserved::new();
        let admin_callback = format!("{}/v1/admin-consent/callback", reserved.url);
        let mut config = standard_config(&[&reserved.callback(), &admin_callback]);
        tweak(&mut config);
        let sim = Sim::start(config.clone()).await;
        let broker = Broker::start(reserved, sim.base_url(), opts).await;
        World {
            sim,
            broker,
            http: client(),
            sim_config: config,
        }
    }

    /// One API call: method, path, API key, JSON body → (status, JSON body or Null).
    pub async fn api(&self, method: Method, path: &str, key: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.broker.url));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("broker answers");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a connect session for connector A; returns the 201 body.
    pub async fn session(&self, body: Value) -> Value {
        let (status, body) = self
            .api(Method::POST, "/v1/connect-sessions", Some(KEY_A), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "create session: {body}");
        body
    }

    fn ours(&self, url: &url::Url) -> bool {
        url.as_str().starts_with(&self.broker.url) || url.as_str().starts_with(self.sim.base_url())
    }

    /// GETs `url` and follows redirects while they stay on the broker or the simulator.
    pub async fn follow(&self, url: &str) -> Landing {
        let mut next = url::Url::parse(url).expect("absolute url");
        for _ in 0..10 {
            let resp = self.http.get(next.clone()).send().await.expect("GET");
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(|l| next.join(l).expect("valid Location"));
            let body = resp.text().await.unwrap_or_default();
            match location {
                Some(loc) if status.is_redirection() && self.ours(&loc) => next = loc,
                location => {
                    return Landing {
                        status,
                        location,
                        body,
                        retry_after,
                    };
                }
            }
        }
        panic!("redirect loop from {url}");
    }

    /// GETs `url` once and returns its `Location` (asserting a redirect).
    pub async fn redirect_of(&self, url: &str) -> url::Url {
        let resp = self.http.get(url).send().await.expect("GET");
        assert!(
            resp.status().is_redirection(),
            "expected a redirect from {url}, got {}",
            resp.status()
        );
        let loc = resp.headers()["location"].to_str().expect("ascii");
        url::Url::parse(url).expect("url").join(loc).expect("location")
    }

    /// Out-of-band sign-in of `login_hint` through connector A; returns the handoff code.
    pub async fn sign_in_oob(&self, login_hint: &str) -> String {
        let s = self
            .session(json!({"connector": "files", "end_user": "u-1", "login_hint": login_hint}))
            .await;
        let landing = self.follow(s["connect_url"].as_str().expect("connect_url")).await;
        assert_eq!(landing.status, StatusCode::OK, "sign-in page: {}", landing.body);
        handoff_code_in(&landing.body).unwrap_or_else(|| panic!("no code on the page: {}", landing.body))
    }

    /// Redeems a handoff code with connector A's key.
    pub async fn redeem(&self, code: &str) -> (StatusCode, Value) {
        self.api(
            Method::POST,
            "/v1/handoff/redeem",
            Some(KEY_A),
            Some(json!({"code": code})),
        )
        .await
    }

    /// Signs `login_hint` in with connector A and redeems the code; returns the connection id.
    pub async fn connect(&self, login_hint: &str) -> String {
        let code = self.sign_in_oob(login_hint).await;
        let (status, body) = self.redeem(&code).await;
        assert_eq!(status, StatusCode::OK, "redeem: {body}");
        body["connection_id"].as_str().expect("connection_id").to_string()
    }

    /// `GET /v1/connect-sessions/{id}` for a session `session` returned, with connector A's key.
    pub async fn poll_session(&self, session: &Value) -> (StatusCode, Value) {
        let id = session["session_id"].as_str().expect("session_id");
        self.api(Method::GET, &format!("/v1/connect-sessions/{id}"), Some(KEY_A), None)
            .await
    }

    /// `GET /v1/connections/{id}/token` with connector A's key.
    pub async fn token(&self, id: &str, min_ttl: Option<u64>) -> (StatusCode, Value) {
        let q = min_ttl.map(|t| format!("?min_ttl={t}")).unwrap_or_default();
        self.api(
            Method::GET,
            &format!("/v1/connections/{id}/token{q}"),
            Some(KEY_A),
            None,
        )
        .await
    }
}

impl World {
    /// The UPN of the simulator user whose name starts with `name@`.
    pub fn upn(&self, name: &str) -> String {
        self.user(name)["upn"].as_str().expect("upn").to_string()
    }

    /// The object id of that user.
    pub fn oid(&self, name: &str) -> String {
        self.user(name)["oid"].as_str().expect("oid").to_string()
    }

    fn user(&self, name: &str) -> &Value {
        let prefix = format!("{name}@");
        self.sim_config["tenants"]
            .as_array()
            .expect("tenants")
            .iter()
            .flat_map(|t| t["users"].as_array().into_iter().flatten())
            .find(|u| u["upn"].as_str().is_some_and(|s| s.starts_with(&prefix)))
            .unwrap_or_else(|| panic!("no simulator user {name}"))
    }

    /// True when the store holds a connection of connector A for this user in this tenant.
    pub async fn has_connection(&self, tenant_id: &str, name: &str) -> bool {
        self.broker
            .state
            .records
            .connection_for_user(&"files".into(), &tenant_id.into(), &self.oid(name))
            .await
            .expect("store answers")
            .is_some()
    }
}

/// The handoff code shown on the out-of-band page.
pub fn handoff_code_in(html: &str) -> Option<String> {
    let start = html.find("id=\"handoff-code\"")?;
    let rest = &html[start..];
    let v = rest.find("data-code=\"")? + 11;
    let end = rest[v..].find('"')?;
    Some(rest[v..v + end].to_string())
}

/// Replaces (or adds) one query parameter of a URL.
pub fn with_param(url: &url::Url, name: &str, value: &str) -> url::Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut out = url.clone();
    out.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair(name, value);
    out
}

/// A query parameter's value.
pub fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}
