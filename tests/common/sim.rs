//! Runs the real `entra-sim` binary for a test: one process per [`Sim`], killed on drop.
//!
//! [`standard_config`] is the canned world most tests use:
//! - Contoso ([`CONTOSO_TID`]): user consent allowed, admin-consent workflow off, APP_B requires
//!   assignment. Users: alice (default, assigned to APP_B), bob (cancels consent prompts), carol (admin),
//!   dave (disabled), erin (not assigned to APP_B).
//! - Fabrikam ([`FABRIKAM_TID`]): user consent disabled, workflow off (→ AADSTS90094). Users: frank
//!   (default), fiona (admin).
//! - Northwind ([`NORTHWIND_TID`]): user consent disabled, workflow on (→ AADSTS90095). Users: nina
//!   (default), noah (admin).
//! - APP_A (publisher-verified) asks for `Files.Read.All Sites.Read.All`, which users may consent to;
//!   APP_B is unverified. Both register the given redirect URIs. APP_A also has an expired secret.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// Contoso's tenant id.
pub const CONTOSO_TID: &str = "3f2c5d1e-8a4b-4c7d-9e0f-1a2b3c4d5e6f";
/// Fabrikam's tenant id.
pub const FABRIKAM_TID: &str = "7b9d1f3a-5c6e-4a8b-8c0d-2e4f6a8b0c1d";
/// Northwind's tenant id.
pub const NORTHWIND_TID: &str = "c4e6a8b0-2d4f-4b6c-9e8a-0b2d4f6a8c1e";

/// The connector app the broker fronts.
pub const APP_A_CLIENT_ID: &str = "a1b2c3d4-0001-4e5f-8a9b-0c1d2e3f4a5b";
/// APP_A's valid client secret.
pub const APP_A_SECRET: &str = "Qv8Q~simAppA.secret-value_0123456789abcd";
/// APP_A's secret that expired in 2020 (→ AADSTS7000222).
pub const APP_A_EXPIRED_SECRET: &str = "Ex9Q~simAppA.expired-secret_00000000000";
/// A second app (unverified publisher; requires assignment in Contoso).
pub const APP_B_CLIENT_ID: &str = "b2c3d4e5-0002-4f6a-9b0c-1d2e3f4a5b6c";
/// APP_B's client secret.
pub const APP_B_SECRET: &str = "Xk2Q~simAppB.secret-value_9876543210dcba";

/// Contoso's default user, assigned to APP_B.
pub const ALICE: &str = "alice@contoso.onmicrosoft.com";
/// Contoso user who cancels consent prompts (AADSTS65004).
pub const BOB: &str = "bob@contoso.onmicrosoft.com";
/// Contoso admin.
pub const CAROL: &str = "carol@contoso.onmicrosoft.com";
/// Disabled Contoso user (AADSTS50057).
pub const DAVE: &str = "dave@contoso.onmicrosoft.com";
/// Contoso user not assigned to APP_B (AADSTS50105).
pub const ERIN: &str = "erin@contoso.onmicrosoft.com";
/// Fabrikam's default user.
pub const FRANK: &str = "frank@fabrikam.onmicrosoft.com";
/// Fabrikam admin.
pub const FIONA: &str = "fiona@fabrikam.onmicrosoft.com";
/// Northwind's default user.
pub const NINA: &str = "nina@northwind.onmicrosoft.com";
/// Northwind admin.
pub const NOAH: &str = "noah@northwind.onmicrosoft.com";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
const LISTENING_PREFIX: &str = "entra-sim listening on ";
/// Keep this much of the simulator's stderr for failure messages.
const STDERR_KEEP: usize = 64 * 1024;

/// A running simulator process.
pub struct Sim {
    child: Child,
    base_url: String,
    http: reqwest::Client,
    _config_file: tempfile::NamedTempFile,
}

impl Sim {
    /// Spawns target/…/entra-sim on 127.0.0.1:0 with `config` written to a temp file; waits for the
    /// listening line (timeout 20s, panicking with the simulator's stderr on failure).
    pub async fn start(config: Value) -> Sim {
        let mut config_file = tempfile::Builder::new()
            .prefix("entra-sim-")
            .suffix(".json")
            .tempfile()
            .expect("create temp config file");
        serde_json::to_writer_pretty(&mut config_file, &config).expect("write sim config");
        config_file.flush().expect("flush sim config");

        let mut child = Command::new(env!("CARGO_BIN_EXE_entra-sim"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--config")
            .arg(config_file.path())
            // The stdin pipe stays open in `child` while this `Sim` lives; if the test process dies
            // without running Drop, the pipe closes and the simulator exits on its own.
            .arg("--exit-on-stdin-eof")
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn entra-sim");

        // Drain both pipes on threads for the whole life of the process, so the simulator never blocks
        // on a full pipe whatever the test's runtime is doing.
        let stderr_log = Arc::new(Mutex::new(String::new()));
        let stderr_thread = {
            let log = Arc::clone(&stderr_log);
            let stderr = child.stderr.take().expect("piped stderr");
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                    if log.len() > STDERR_KEEP {
                        let mut cut = log.len() - STDERR_KEEP;
                        while !log.is_char_boundary(cut) {
                            cut += 1;
                        }
                        log.drain(..cut);
                    }
                }
            })
        };
        let (url_tx, url_rx) = tokio::sync::oneshot::channel::<String>();
        {
            let stdout = child.stdout.take().expect("piped stdout");
            std::thread::spawn(move || {
                let mut url_tx = Some(url_tx);
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(url) = line.strip_prefix(LISTENING_PREFIX)
                        && let Some(tx) = url_tx.take()
                    {
                        let _ = tx.send(url.trim().to_string());
                    }
                }
            });
        }

        let base_url = match tokio::time::timeout(STARTUP_TIMEOUT, url_rx).await {
            Ok(Ok(url)) => url,
            outcome => {
                let _ = child.kill();
                let status = child.wait();
                let _ = stderr_thread.join();
                let stderr = stderr_log.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let reason = match outcome {
                    Err(_) => format!("no listening line within {STARTUP_TIMEOUT:?}"),
                    Ok(_) => format!("it exited first ({status:?})"),
                };
                panic!("entra-sim failed to start: {reason}\n--- entra-sim stderr ---\n{stderr}");
            }
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("build reqwest client");
        Sim {
            child,
            base_url,
            http,
            _config_file: config_file,
        }
    }

    /// `http://127.0.0.1:PORT`, the simulated `https://login.microsoftonline.com`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/_sim{path}", self.base_url);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {url} -> {status}: {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: bad JSON {e}: {text}"))
        }
    }

    /// `GET /_sim/stats`.
    pub async fn stats(&self) -> Value {
        self.control(reqwest::Method::GET, "/stats", None).await
    }

    /// How many token requests with this `grant_type` the simulator received.
    pub async fn token_grants(&self, grant_type: &str) -> u64 {
        self.stats().await["token_grants"][grant_type].as_u64().unwrap_or(0)
    }

    /// The `jti` of every client assertion the simulator received since the last reset, in order.
    pub async fn assertion_jtis(&self) -> Vec<String> {
        self.stats().await["assertion_jtis"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    /// `POST /_sim/stats/reset`.
    pub async fn reset_stats(&self) {
        self.control(reqwest::Method::POST, "/stats/reset", None).await;
    }

    /// `POST /_sim/faults`, e.g. `json!({"endpoint": "token", "kind": "unavailable", "count": 1})`.
    pub async fn fault(&self, fault: Value) {
        self.control(reqwest::Method::POST, "/faults", Some(fault)).await;
    }

    /// `DELETE /_sim/faults`.
    pub async fn clear_faults(&self) {
        self.control(reqwest::Method::DELETE, "/faults", None).await;
    }

    /// `PATCH /_sim/tenants/{id}` with top-level tenant fields, e.g. `json!({"mfa_required": true})`.
    pub async fn patch_tenant(&self, tenant_id: &str, patch: Value) {
        self.control(reqwest::Method::PATCH, &format!("/tenants/{tenant_id}"), Some(patch))
            .await;
    }

    /// Sets the tenant-wide admin grant for `client_id`.
    pub async fn put_grant(&self, tenant_id: &str, client_id: &str, scopes: &[&str]) {
        self.control(
            reqwest::Method::PUT,
            &format!("/tenants/{tenant_id}/grants/{client_id}"),
            Some(json!({ "scopes": scopes })),
        )
        .await;
    }

    /// Withdraws admin consent and all user consent for `client_id` in the tenant.
    pub async fn delete_grant(&self, tenant_id: &str, client_id: &str) {
        self.control(
            reqwest::Method::DELETE,
            &format!("/tenants/{tenant_id}/grants/{client_id}"),
            None,
        )
        .await;
    }

    /// Revokes the user's sign-in sessions (existing refresh tokens then fail with AADSTS50173).
    pub async fn revoke_user(&self, upn: &str) {
        let upn = url::form_urlencoded::byte_serialize(upn.as_bytes()).collect::<String>();
        self.control(reqwest::Method::POST, &format!("/users/{upn}/revoke"), None)
            .await;
    }

    /// Moves the simulator clock forward (codes, refresh tokens and secrets expire on it).
    pub async fn advance_clock(&self, secs: u64) {
        self.control(reqwest::Method::POST, "/clock", Some(json!({ "advance_secs": secs })))
            .await;
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn user(upn: &str, oid: &str, name: &str) -> Value {
    json!({ "upn": upn, "oid": oid, "name": name })
}

/// The canned world above; `redirect_uris` are registered for both apps.
pub fn standard_config(redirect_uris: &[&str]) -> Value {
    let mut alice = user(ALICE, "0a1b2c3d-1111-4a1b-8c1d-000000000001", "Alice Example");
    alice["assigned_apps"] = json!([APP_B_CLIENT_ID]);
    let mut bob = user(BOB, "0a1b2c3d-1111-4a1b-8c1d-000000000002", "Bob Example");
    bob["declines_consent"] = json!(true);
    let mut carol = user(CAROL, "0a1b2c3d-1111-4a1b-8c1d-000000000003", "Carol Admin");
    carol["admin"] = json!(true);
    let mut dave = user(DAVE, "0a1b2c3d-1111-4a1b-8c1d-000000000004", "Dave Disabled");
    dave["disabled"] = json!(true);
    let erin = user(ERIN, "0a1b2c3d-1111-4a1b-8c1d-000000000005", "Erin Unassigned");
    let frank = user(FRANK, "0b2c3d4e-2222-4b2c-9d2e-000000000001", "Frank Example");
    let mut fiona = user(FIONA, "0b2c3d4e-2222-4b2c-9d2e-000000000002", "Fiona Admin");
    fiona["admin"] = json!(true);
    let nina = user(NINA, "0c3d4e5f-3333-4c3d-8e3f-000000000001", "Nina Example");
    let mut noah = user(NOAH, "0c3d4e5f-3333-4c3d-8e3f-000000000002", "Noah Admin");
    noah["admin"] = json!(true);

    json!({
        "access_token_lifetime_secs": 3599,
        "code_lifetime_secs": 600,
        "refresh_token_max_inactive_secs": 7_776_000,
        "refresh_token_rotation_grace_secs": 86_400,
        "throttle_token_requests_per_minute": 0,
        "tenants": [
            {
                "id": CONTOSO_TID,
                "domains": ["contoso.onmicrosoft.com", "contoso.com"],
                "display_name": "Contoso",
                "user_consent": "allowed",
                "admin_consent_workflow": false,
                "assignment_required": [APP_B_CLIENT_ID],
                "default_user": ALICE,
                "users": [alice, bob, carol, dave, erin],
            },
            {
                "id": FABRIKAM_TID,
                "domains": ["fabrikam.onmicrosoft.com"],
                "display_name": "Fabrikam",
                "user_consent": "disabled",
                "admin_consent_workflow": false,
                "default_user": FRANK,
                "users": [frank, fiona],
            },
            {
                "id": NORTHWIND_TID,
                "domains": ["northwind.onmicrosoft.com"],
                "display_name": "Northwind Traders",
                "user_consent": "disabled",
                "admin_consent_workflow": true,
                "default_user": NINA,
                "users": [nina, noah],
            },
        ],
        "apps": [
            {
                "client_id": APP_A_CLIENT_ID,
                "display_name": "Contoso SharePoint Connector",
                "redirect_uris": redirect_uris,
                "verified_publisher": true,
                "secrets": [
                    { "value": APP_A_SECRET, "expires_at": "2099-01-01T00:00:00Z" },
                    { "value": APP_A_EXPIRED_SECRET, "expires_at": "2020-01-01T00:00:00Z" },
                ],
            },
            {
                "client_id": APP_B_CLIENT_ID,
                "display_name": "Mail Archiver",
                "redirect_uris": redirect_uris,
                "verified_publisher": false,
                "secrets": [ { "value": APP_B_SECRET } ],
            },
        ],
    })
}
