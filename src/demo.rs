//! `consent-broker demo`: the simulator and the broker on loopback, with two tenants to try —
//! one where sign-in just works, one that needs admin approval — and the commands to fetch a
//! token. Everything lives in a private data directory; nothing leaves the machine.

mod banner;
mod data_dir;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use self::banner::{Banner, Session};
use self::data_dir::DataDir;
use crate::app::AppState;
use crate::config::Config;
use crate::crypto::{api_key_hash, new_api_key, random_token};
use crate::server::Application;
use crate::store::encrypted::EncryptionKey;

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
    /// The data directory cannot be used.
    #[error("data directory {}: {reason}", path.display())]
    DataDir {
        /// The directory (or the file in it) that failed.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The demo's own API calls failed.
    #[error("demo setup call failed: {0}")]
    Setup(String),
}

const CONTOSO: &str = "6c2d4f8e-1a3b-4c5d-8e9f-0a1b2c3d4e5f";
const FABRIKAM: &str = "7d3e5a9f-2b4c-4d6e-9fa0-1b2c3d4e5f60";
const CLIENT_ID: &str = "4a1f2e3d-5c6b-4a79-8e0d-1f2a3b4c5d6e";
const CONNECTOR: &str = "demo-files";

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> DemoError {
    move |source| DemoError::Io { what, source }
}

/// Runs the demo until Ctrl-C or SIGTERM: prints the banner once everything is up, and again
/// whenever a line (Enter) arrives on standard input. `verbose` lets the simulator log at info
/// level too (the broker's level is set by the caller's log filter).
pub async fn run(data_dir: Option<PathBuf>, verbose: bool) -> Result<(), DemoError> {
    // Registered before anything starts, so a Ctrl-C during start-up still cleans up.
    let stop = CancellationToken::new();
    let signals = Signals::register()?;
    let on_signal = stop.clone();
    tokio::spawn(async move {
        signals.wait().await;
        on_signal.cancel();
    });
    // Dropped last: the broker and the simulator stop before their files are removed.
    let dir = DataDir::open(data_dir)?;
    let running = tokio::select! {
        started = start(&dir, verbose, &stop) => started?,
        () = stop.cancelled() => return Ok(()),
    };
    let Running {
        mut sim,
        server,
        banner,
    } = running;
    // The broker's log lines go through a writer thread; give it a moment so the start-up lines
    // are out before the banner and the banner stays the last thing on screen.
    tokio::time::sleep(Duration::from_millis(300)).await;
    print_banner(&banner);
    repeat_on_enter(banner);
    let result = server.await;
    let _ = sim.kill().await;
    match result {
        Ok(r) => Ok(r?),
        Err(e) => Err(DemoError::Setup(format!("broker task failed: {e}"))),
    }
}

/// The demo once it is up.
struct Running {
    sim: Child,
    server: tokio::task::JoinHandle<Result<(), crate::app::StartError>>,
    banner: String,
}

/// Starts the simulator and the broker and makes the two demo sessions.
async fn start(dir: &DataDir, verbose: bool, stop: &CancellationToken) -> Result<Running, DemoError> {
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
    let sim_config = sim_config(&broker_url, &client_secret);
    let sim_config_file = dir.write_private("entra-sim.json", sim_config.to_string().as_bytes())?;
    let (sim, sim_url) = start_simulator(&sim_bin, &sim_config_file, verbose).await?;

    let secret_file = dir.write_private("client-secret", client_secret.as_bytes())?;
    let key_file = encryption_key_file(dir)?;
    let store_file = dir.private_file("broker.redb")?;
    let api_key = new_api_key();
    let config = Config::from_toml_str(
        &broker_config(&broker_url, &sim_url, &store_file, &secret_file, &key_file, &api_key),
        "demo config",
    )?;
    let session_ttl = config.flow.session_ttl;
    let app = Application::with_listener(AppState::build(config).await?, listener)?;
    let server = tokio::spawn(app.run_until(stop.clone().cancelled_owned()));

    let works = create_session(&broker_url, &api_key, "alice@contoso.onmicrosoft.com", CONTOSO).await?;
    let needs_approval = create_session(&broker_url, &api_key, "frank@fabrikam.onmicrosoft.com", FABRIKAM).await?;
    let banner = Banner {
        data_dir: dir.path(),
        temporary: dir.is_temporary(),
        broker_url: &broker_url,
        sim_url: &sim_url,
        api_key: &api_key,
        sim_config: &sim_config,
        session_ttl,
        works: &works,
        needs_approval: &needs_approval,
        tenant: CONTOSO,
        connector: CONNECTOR,
    }
    .render();
    Ok(Running { sim, server, banner })
}

fn print_banner(banner: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the terminal went away) is no reason to stop serving.
    let _ = out.write_all(banner.as_bytes());
    let _ = out.flush();
}

/// Prints the banner again for every line on standard input, on a plain thread: tokio's stdin
/// reads on a thread it cannot cancel, which would hold up the runtime's shutdown until the next
/// Enter. At end of input (stdin is /dev/null or closed) it just stops listening.
fn repeat_on_enter(banner: String) {
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if line.is_err() {
                break;
            }
            print_banner(&banner);
        }
    });
}

/// SIGINT (Ctrl-C) and SIGTERM, registered when created.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> Result<Self, DemoError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt()).map_err(io("listening for Ctrl-C"))?,
                terminate: signal(SignalKind::terminate()).map_err(io("listening for SIGTERM"))?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The simulator's tenants, users and the demo app, as written to its config file.
fn sim_config(broker_url: &str, secret: &str) -> serde_json::Value {
    let user =
        |upn: &str, oid: &str, name: &str, admin: bool| json!({"upn": upn, "oid": oid, "name": name, "admin": admin});
    json!({
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
    })
}

/// Starts entra-sim on a free loopback port; returns it and its base URL.
async fn start_simulator(bin: &Path, config: &Path, verbose: bool) -> Result<(Child, String), DemoError> {
    let mut command = Command::new(bin);
    // Quiet unless asked, like the broker; an explicit RUST_LOG reaches it unchanged.
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", if verbose { "info" } else { "warn" });
    }
    let mut child = command
        .args(["--listen", "127.0.0.1:0", "--exit-on-stdin-eof", "--config"])
        .arg(config)
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
/// reused `--data-dir` keeps its store readable), otherwise a fresh key; readable by the owner only.
fn encryption_key_file(dir: &DataDir) -> Result<PathBuf, DemoError> {
    const NAME: &str = "encryption-key";
    if dir.path().join(NAME).is_file() {
        return dir.private_file(NAME);
    }
    dir.write_private(NAME, EncryptionKey::generate().to_hex().expose_secret().as_bytes())
}

fn broker_config(
    broker_url: &str,
    sim_url: &str,
    store_file: &Path,
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
id = "{CONNECTOR}"
display_name = "Demo Files Connector"
client_id = "{CLIENT_ID}"
client_secret_file = "{secret}"
scopes = ["Files.Read.All", "Sites.Read.All"]
api_key_hashes = ["{hash}"]
"#,
        store = store_file.display(),
        secret = secret_file.display(),
        key_file = key_file.display(),
        hash = api_key_hash(api_key),
    )
}

/// Makes a connect session for the demo connector; its id, link and expiry.
async fn create_session(broker_url: &str, api_key: &str, login_hint: &str, tenant: &str) -> Result<Session, DemoError> {
    let response = reqwest::Client::new()
        .post(format!("{broker_url}/v1/connect-sessions"))
        .bearer_auth(api_key)
        .json(&json!({"connector": CONNECTOR, "end_user": login_hint, "tenant": tenant, "login_hint": login_hint}))
        .send()
        .await
        .map_err(|e| DemoError::Setup(e.to_string()))?;
    let body: serde_json::Value = response.json().await.map_err(|e| DemoError::Setup(e.to_string()))?;
    Session::deserialize(&body).map_err(|e| DemoError::Setup(format!("unexpected answer ({e}): {body}")))
}
