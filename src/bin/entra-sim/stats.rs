//! Request counters exposed on `GET /_sim/stats`, so tests and benchmarks can assert how often the broker
//! really called Entra (e.g. that a cached token avoided a refresh).

use std::collections::BTreeMap;

use serde::Serialize;

/// The simulated Entra endpoints (names are the keys used in stats and in fault filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/oauth2/v2.0/authorize`.
    Authorize,
    /// `/oauth2/v2.0/token`.
    Token,
    /// `/discovery/v2.0/keys`.
    Keys,
    /// `/v2.0/.well-known/openid-configuration`.
    OpenidConfiguration,
    /// `/v2.0/adminconsent`.
    AdminConsent,
}

impl Endpoint {
    /// The stats / fault-filter name.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Authorize => "authorize",
            Endpoint::Token => "token",
            Endpoint::Keys => "keys",
            Endpoint::OpenidConfiguration => "openid_configuration",
            Endpoint::AdminConsent => "adminconsent",
        }
    }

    const ALL: [Endpoint; 5] = [
        Endpoint::Authorize,
        Endpoint::Token,
        Endpoint::Keys,
        Endpoint::OpenidConfiguration,
        Endpoint::AdminConsent,
    ];
}

/// Counters since start-up or the last reset.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Every request received per endpoint, faulted ones included.
    requests: BTreeMap<String, u64>,
    /// Token requests per `grant_type` value.
    token_grants: BTreeMap<String, u64>,
    /// Token error responses per first AADSTS code (`"429"` for plain-text throttling answers).
    token_errors: BTreeMap<String, u64>,
    /// The `jti` of every client assertion received, in order (tests check they are never reused).
    assertion_jtis: Vec<String>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            requests: Endpoint::ALL.iter().map(|e| (e.name().to_string(), 0)).collect(),
            token_grants: ["authorization_code", "refresh_token"]
                .iter()
                .map(|g| (g.to_string(), 0))
                .collect(),
            token_errors: BTreeMap::new(),
            assertion_jtis: Vec::new(),
        }
    }
}

impl Stats {
    /// Counts one request to `endpoint`.
    pub fn request(&mut self, endpoint: Endpoint) {
        *self.requests.entry(endpoint.name().to_string()).or_default() += 1;
    }

    /// Counts one token request with this `grant_type` (absent grant types are not counted).
    pub fn grant(&mut self, grant_type: &str) {
        *self.token_grants.entry(grant_type.to_string()).or_default() += 1;
    }

    /// Records a client assertion's `jti`.
    pub fn assertion(&mut self, jti: String) {
        self.assertion_jtis.push(jti);
    }

    /// Counts one token error response under `key` (an AADSTS number, or `429`).
    pub fn token_error(&mut self, key: String) {
        *self.token_errors.entry(key).or_default() += 1;
    }
}
