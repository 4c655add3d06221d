//! `consent-broker demo`: the simulator and the broker on loopback, with two tenants to try —
//! one where sign-in just works, one that needs admin approval — and the commands to fetch a
//! token. Everything lives in a data directory; nothing leaves the machine.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::app::AppState;
use crate::config::Config;
use crate::crypto::{api_key_hash, new_api_key, random_token};
use crate::server::Application;
use crate::store::encrypted::EncryptionKey;
use secrecy::ExposeSecret;

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The simulator binary is not next to this one.
    #[error("entra-sim not found at {0}; build both binaries first: cargo build --release --bins")]
    SimulatorMissing(PathBuf),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The simulator did not start.
    #[error("entra-sim did not start: {0}")]
    Simulator(String),
    /// The generated config was refused (a bug).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The broker could not start.
    #[error(transparent)]
    Start(#[from] crate::app::StartError),
    /// The demo's own API calls failed.
    #[error("demo setup call failed: {0}")]
    Setup(String),
}

const CONTOSO: &str = "6c2d4f8e-1a3b-4c5d-8e9f-0a1b2c3d4e5f";
const FABRIKAM: &str = "7d3e5a9f-2b4c-4d6e-9fa0-1b2c3d4e5f60";
const CLIENT_ID: &str = "4a1f2e3d-5c6b-4a79-8e0d-1f2a3b4c5d6e";

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> DemoError {
    move |source| DemoError::Io { what, source }
}

/// Runs the demo until Ctrl-C.
pub async fn run(data_dir: Option<PathBuf>) -> Result<(), DemoError> {
    let dir =
        data_dir.unwrap_or_else(|| std::env::temp_dir().join(format!("consent-broker-demo-{}", &random_token()[..8])));
    std::fs::create_dir_all(&dir).map_err(io("creating the data directory"))?;
    let sim_bin = std::env::current_exe()
        .map_err(io("locating this program"))?
        .with_file_name("entra-sim");
    if !sim_bin.is_file() {
        return Err(DemoError::SimulatorMissing(sim_bin));
    }

    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("binding the broker's port"))?;
    let broker_url = format!(
        "http://{}",
        listener.local_addr().map_err(io("reading the broker's port"))?
    );
    let client_secret = random_token();
    let (mut sim, sim_url) = start_simulator(&sim_bin, &dir, &broker_url, &client_secret).await?;

    let secret_file = dir.join("client-secret");
    std::fs::write(&secret_file, &client_secret).map_err(io("writing the client secret file"))?;
    let key_file = encryption_key_file(&dir)?;
    let api_key = new_api_key();
    let config = Config::from_toml_str(
        &broker_config(&broker_url, &sim_url, &dir, &secret_file, &key_file, &api_key),
        "demo config",
    )?;
    let app = Application::with_listener(AppState::build(config).await?, listener)?;
    let server = tokio::spawn(app.run_until(crate::server::shutdown_signal()));

    let contoso = create_session(&broker_url, &api_key, "alice@contoso.onmicrosoft.com", CONTOSO).await?;
    let fabrikam = create_session(&broker_url, &api_key, "frank@fabrikam.onmicrosoft.com", FABRIKAM).await?;
    println!(
        r#"
consent-broker demo is running (Ctrl-C stops it). Data: {dir}
  broker:     {broker_url}
  entra-sim:  {sim_url}   (stands in for login.microsoftonline.com)
  API key of connector "demo-files": {api_key}

1. A sign-in that works (Contoso lets users consent). Open:
   {contoso}
   You land on a "copy this code" page. Redeem the code for a connection id:
   curl -s -X POST {broker_url}/v1/handoff/redeem -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' -d '{{"code":"<paste the code>"}}'

2. A tenant that needs admin approval (Fabrikam allows no user consent). Open:
   {fabrikam}

3. Fetch a fresh access token for the connection from step 1:
   curl -s {broker_url}/v1/connections/<connection_id>/token -H 'Authorization: Bearer {api_key}'

   Start more sign-ins with:
   curl -s -X POST {broker_url}/v1/connect-sessions -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' -d '{{"connector":"demo-files","end_user":"me","tenant":"{CONTOSO}"}}'
"#,
        dir = dir.display(),
    );
    let result = server.await;
    let _ = sim.kill().await;
    match result {
        Ok(r) => Ok(r?),
        Err(e) => Err(DemoError::Setup(format!("broker task failed: {e}"))),
    }
}

async fn start_simulator(bin: &Path, dir: &Path, broker_url: &str, secret: &str) -> Result<(Child, String), DemoError> {
    let user =
        |upn: &str, oid: &str, name: &str, admin: bool| json!({"upn": upn, "oid": oid, "name": name, "admin": admin});
    let config = json!({
        "tenants": [
            {
                "id": CONTOSO, "domains": ["contoso.onmicrosoft.com"], "display_name": "Contoso",
                "user_consent": "allowed", "admin_consent_workflow": false,
                "default_user": "alice@contoso.onmicrosoft.com",
                "users": [user("alice@contoso.onmicrosoft.com", "0b8a4c1e-7a51-4d2e-9c1f-3e5d7a9b1c2d", "Alice Contoso", false)]
            },
            {
                "id": FABRIKAM, "domains": ["fabrikam.onmicrosoft.com"], "display_name": "Fabrikam",
                "user_consent": "disabled", "admin_consent_workflow": false,
                "default_user": "frank@fabrikam.onmicrosoft.com",
                "users": [
                    user("frank@fabrikam.onmicrosoft.com", "1c9b5d2f-8b62-4e3f-8d20-4f6e8b0c2d3e", "Frank Fabrikam", false),
                    user("fiona@fabrikam.onmicrosoft.com", "2d0c6e3a-9c73-4f40-9e31-5a7f9c1d3e4f", "Fiona Admin", true)
                ]
            }
        ],
        "apps": [{
            "client_id": CLIENT_ID,
            "display_name": "Demo Files Connector",
            "redirect_uris": [format!("{broker_url}/v1/callback"), format!("{broker_url}/v1/admin-consent/callback")],
            "secrets": [{"value": secret}]
        }]
    });
    let path = dir.join("entra-sim.json");
    std::fs::write(&path, config.to_string()).map_err(io("writing the simulator config"))?;
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--exit-on-stdin-eof", "--config"])
        .arg(&path)
        // The pipe closes when the demo exits, however it exits, and the simulator follows it.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(io("starting entra-sim"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| DemoError::Simulator("no stdout".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .map_err(|_| DemoError::Simulator("no listening line within 20 s".into()))?
        .map_err(io("reading entra-sim's output"))?
        .ok_or_else(|| DemoError::Simulator("exited before listening".into()))?;
    let url = line
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("http://"))
        .ok_or_else(|| DemoError::Simulator(format!("unexpected first line: {line}")))?
        .to_string();
    Ok((child, url))
}

/// The demo store's encryption key file: kept when the data directory already has one (a
/// reused `--data-dir` keeps its store readable), otherwise a fresh key readable by the owner only.
fn encryption_key_file(dir: &Path) -> Result<PathBuf, DemoError> {
    let path = dir.join("encryption-key");
    if path.is_file() {
        return Ok(path);
    }
    let key = EncryptionKey::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(io("creating the encryption key file"))?;
    std::io::Write::write_all(&mut file, key.to_hex().expose_secret().as_bytes())
        .map_err(io("writing the encryption key file"))?;
    Ok(path)
}

fn broker_config(
    broker_url: &str,
    sim_url: &str,
    dir: &Path,
    secret_file: &Path,
    key_file: &Path,
    api_key: &str,
) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "{broker_url}"
plain_http = true

[entra]
authority = "{sim_url}"

[store]
backend = "embedded"
path = "{store}"

[[encryption.keys]]
id = "demo"
file = "{key_file}"

[[connectors]]
id = "demo-files"
display_name = "Demo Files Connector"
client_id = "{CLIENT_ID}"
client_secret_file = "{secret}"
scopes = ["Files.Read.All", "Sites.Read.All"]
api_key_hashes = ["{hash}"]
"#,
        store = dir.join("broker.redb").display(),
        secret = secret_file.display(),
        key_file = key_file.display(),
        hash = api_key_hash(api_key),
    )
}

async fn create_session(broker_url: &str, api_key: &str, login_hint: &str, tenant: &str) -> Result<String, DemoError> {
    let response = reqwest::Client::new()
        .post(format!("{broker_url}/v1/connect-sessions"))
        .bearer_auth(api_key)
        .json(&json!({"connector": "demo-files", "end_user": login_hint, "tenant": tenant, "login_hint": login_hint}))
        .send()
        .await
        .map_err(|e| DemoError::Setup(e.to_string()))?;
    let body: serde_json::Value = response.json().await.map_err(|e| DemoError::Setup(e.to_string()))?;
    body["connect_url"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| DemoError::Setup(format!("unexpected answer: {body}")))
}
