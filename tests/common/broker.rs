//! The real broker, in-process on an ephemeral port, configured against a running `entra-sim`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::{Arc, Mutex, PoisonError};

use consent_broker::{AppState, Application, Config};
use reqwest::redirect::Policy;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::instrument::WithSubscriber as _;

use super::sim::{APP_A_CLIENT_ID, APP_A_SECRET, APP_B_CLIENT_ID, APP_B_SECRET};

/// Connector A's API key (its hash is in the test config).
pub const KEY_A: &str = "cbk_test_connector_a_key_0123456789abcdefghijklmnop";
/// Connector B's API key.
pub const KEY_B: &str = "cbk_test_connector_b_key_0123456789abcdefghijklmnop";
/// Connector A's registered return URL.
pub const RETURN_A: &str = "https://app-a.example.com/oauth/done";
/// Connector B's registered return URL.
pub const RETURN_B: &str = "https://app-b.example.com/return";
/// The encryption key (id `test`) of every test broker that is not given its own `[encryption]`
/// section. Fixed, so that a broker restarted on the same embedded store can read it.
pub const TEST_ENCRYPTION_KEY: &str = "6b1e0c9d2a4f87e35c0b19d6a2f4e87c3d5a1b9e0f2c4d6a8b7e9f1c3d5a7b9e";

/// A change to a broker's validated config, made before it starts.
pub type Configure = Arc<dyn Fn(&mut Config) + Send + Sync>;

/// A port reserved for a broker before it starts (the simulator needs its redirect URI first).
pub struct Reserved {
    listener: TcpListener,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl Reserved {
    /// Binds 127.0.0.1:0.
    pub fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        Self { listener, url }
    }

    /// Rebinds a specific URL's port (restart tests reuse the first broker's URL).
    pub fn at(url: &str) -> Self {
        let addr = url.trim_start_matches("http://");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match TcpListener::bind(addr) {
                Ok(listener) => {
                    return Self {
                        listener,
                        url: url.to_string(),
                    };
                }
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot rebind {addr}: {e}"),
            }
        }
    }

    /// The broker's OAuth redirect URI.
    pub fn callback(&self) -> String {
        format!("{}/v1/callback", self.url)
    }
}

/// Options for a test broker.
pub struct BrokerOptions {
    /// `[store]` section body.
    pub store: String,
    /// Extra TOML appended to the `[flow]` section.
    pub flow: String,
    /// Extra TOML appended to the `[entra]` section.
    pub entra: String,
    /// Extra TOML appended to the `[server]` section.
    pub server: String,
    /// Body of the `[limits]` section (empty: the defaults).
    pub limits: String,
    /// Body of the `[tokens]` section. The default turns the refresh floor off: most tests force
    /// a refresh right after a sign-in with a large `min_ttl`; the floor has tests of its own.
    pub tokens: String,
    /// Serve TLS with this (certificate, key) PEM pair instead of plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Body of the `[encryption]` section (may add `[[encryption.keys]]` blocks); `None` gives
    /// the broker one key, id `test`, [`TEST_ENCRYPTION_KEY`] read from a key file.
    pub encryption: Option<String>,
    /// Connector A's credential lines (e.g. a certificate's two files) instead of its secret file.
    pub credential_a: Option<String>,
    /// Changes the validated config before the broker starts (typed settings, e.g. webhook
    /// endpoints), after the TOML above is parsed.
    pub configure: Option<Configure>,
    /// Connector A's `scopes = [...]` line and any further keys of its (e.g.
    /// `publisher_verified = true`) instead of its two Graph scopes.
    pub scopes_a: Option<String>,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            store: "backend = \"memory\"".into(),
            flow: String::new(),
            entra: "jwks_min_refetch_interval_secs = 300".into(),
            server: String::new(),
            limits: String::new(),
            tokens: "min_refresh_interval_secs = 0".into(),
            tls: None,
            encryption: None,
            credential_a: None,
            configure: None,
            scopes_a: None,
        }
    }
}

/// A running broker; stopped (gracefully) on `stop`, aborted on drop.
pub struct Broker {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// Its shared state (to inspect the store).
    pub state: AppState,
    /// `http://ADDR` of the separate metrics listener, when `server.metrics_listen` is set.
    pub metrics_url: Option<String>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    logs: Logs,
    _secrets: tempfile::TempDir,
}

fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// One broker's log lines, at debug level for all crates: its own `tracing` dispatcher, which
/// the broker's tasks carry on to the tasks they spawn, so parallel tests never see each other's
/// lines. With `TEST_LOG` set they are also written to stderr, each prefixed with the broker.
struct Logs {
    lines: Arc<Mutex<Vec<u8>>>,
    dispatch: tracing::Dispatch,
}

impl Logs {
    fn new(name: &str) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture {
            lines: Some(lines.clone()),
            prefix: format!("[broker {name}] "),
        };
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        Self {
            lines,
            dispatch: tracing::Dispatch::new(subscriber),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.lines.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

/// Keeps what it is given (when it has a buffer) and echoes it to stderr under `TEST_LOG`. The fmt
/// layer writes each event with one call, so the prefix starts each line.
#[derive(Clone)]
struct Capture {
    lines: Option<Arc<Mutex<Vec<u8>>>>,
    prefix: String,
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(lines) = &self.lines {
            lines
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(buf);
        }
        if std::env::var_os("TEST_LOG").is_some() {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(self.prefix.as_bytes());
            let _ = err.write_all(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Once per test binary: a global subscriber for the lines written outside any broker (the tests'
/// own calls into the library), shown only under `TEST_LOG`. It also routes the `log` records
/// of dependencies into `tracing`, hence into the dispatcher current where they are written; it
/// filters at debug, not off, because that bridge takes its level from the dispatchers existing
/// when it is installed.
fn install_global_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let writer = Capture {
            lines: None,
            prefix: "[outside brokers] ".into(),
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
    });
}

/// The broker's config for `url` (`http://127.0.0.1:PORT`) and the simulator at `sim_url`, with
/// its secret and key files written into `secrets`.
pub fn config_toml(url: &str, sim_url: &str, opts: BrokerOptions, secrets: &std::path::Path) -> String {
    let secret_a: PathBuf = secrets.join("a");
    let secret_b: PathBuf = secrets.join("b");
    std::fs::write(&secret_a, APP_A_SECRET).expect("write secret");
    std::fs::write(&secret_b, APP_B_SECRET).expect("write secret");
    let encryption = match opts.encryption {
        Some(section) => section,
        None => {
            let key_file = secrets.join("encryption-key");
            std::fs::write(&key_file, TEST_ENCRYPTION_KEY).expect("write key");
            format!("[[encryption.keys]]\nid = \"test\"\nfile = \"{}\"", key_file.display())
        }
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "{url}"
shutdown_grace_secs = 5
{listener}
{server}

[entra]
authority = "{sim_url}"
{entra}

[store]
{store}

[flow]
{flow}

[encryption]
{encryption}

[limits]
{limits}

[tokens]
{tokens}

[[connectors]]
id = "files"
display_name = "Files Connector"
client_id = "{APP_A_CLIENT_ID}"
{credential_a}
{scopes_a}
return_urls = ["{RETURN_A}", "http://127.0.0.1:9/cb"]
api_key_hashes = ["{hash_a}"]

[[connectors]]
id = "crm"
display_name = "CRM Connector"
client_id = "{APP_B_CLIENT_ID}"
client_secret_file = "{secret_b}"
scopes = ["User.Read"]
return_urls = ["{RETURN_B}"]
api_key_hashes = ["{hash_b}"]
"#,
        url = match &opts.tls {
            Some(_) => url.replace("http://127.0.0.1", "https://localhost"),
            None => url.to_string(),
        },
        listener = match &opts.tls {
            Some((cert, key)) => format!(
                "[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"",
                cert.display(),
                key.display()
            ),
            None => "plain_http = true".into(),
        },
        entra = opts.entra,
        server = opts.server,
        limits = opts.limits,
        tokens = opts.tokens,
        store = opts.store,
        flow = opts.flow,
        credential_a = opts
            .credential_a
            .unwrap_or_else(|| format!("client_secret_file = \"{}\"", secret_a.display())),
        scopes_a = opts
            .scopes_a
            .unwrap_or_else(|| r#"scopes = ["Files.Read.All", "Sites.Read.All"]"#.to_string()),
        secret_b = secret_b.display(),
        hash_a = consent_broker::crypto::api_key_hash(KEY_A),
        hash_b = consent_broker::crypto::api_key_hash(KEY_B),
    )
}

impl Broker {
    /// Starts a broker on `reserved`, talking to the simulator at `sim_url`.
    pub async fn start(reserved: Reserved, sim_url: &str, mut opts: BrokerOptions) -> Broker {
        install_crypto_provider();
        install_global_logs();
        let logs = Logs::new(reserved.url.trim_start_matches("http://"));
        let secrets = tempfile::tempdir().expect("tempdir");
        let configure = opts.configure.take();
        let toml = config_toml(&reserved.url, sim_url, opts, secrets.path());
        let mut config = Config::from_toml_str(&toml, "test config").expect("test config is valid");
        if let Some(configure) = configure {
            configure(&mut config);
        }
        // Start-up logs too (credential expiry warnings, the store's encryption).
        let state = AppState::build(config)
            .with_subscriber(logs.dispatch.clone())
            .await
            .expect("broker state");
        let app = tracing::dispatcher::with_default(&logs.dispatch, || {
            Application::with_listener(state.clone(), reserved.listener)
        })
        .expect("application");
        let metrics_url = app.metrics_addr().map(|a| format!("http://{a}"));
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(
            async move {
                app.run_until(async {
                    let _ = rx.await;
                })
                .await
                .expect("broker ran");
            }
            .with_subscriber(logs.dispatch.clone()),
        );
        Broker {
            url: reserved.url,
            state,
            metrics_url,
            shutdown: Some(tx),
            task: Some(task),
            logs,
            _secrets: secrets,
        }
    }

    /// Every line this broker has logged so far, and no other broker's.
    pub fn logs(&self) -> String {
        self.logs.text()
    }

    /// Stops gracefully and waits until the port and the store are released.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("broker stops within 15 s")
                .expect("broker task");
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// An HTTP client that never follows redirects (tests follow them explicitly).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        // One client is one browser: sign-ins are bound to the cookie it keeps.
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// `GET {broker}/v1/connections/{conn}/token[?min_ttl=…]` with connector A's key: the status and
/// the JSON body (`Null` when it is not JSON).
pub async fn token_at(
    http: &reqwest::Client,
    broker: &str,
    conn: &str,
    min_ttl: Option<u64>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let q = min_ttl.map(|t| format!("?min_ttl={t}")).unwrap_or_default();
    let r = http
        .get(format!("{broker}/v1/connections/{conn}/token{q}"))
        .bearer_auth(KEY_A)
        .send()
        .await
        .expect("broker answers");
    let status = r.status();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// The real `consent-broker serve` binary on a given loopback URL, for crash tests: SIGKILLed on
/// `kill` and on drop.
pub struct BrokerProcess {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl BrokerProcess {
    /// Writes `config_toml` for `url` into `dir` (its secrets too) and serves it; returns once
    /// `/readyz` answers.
    pub async fn start(url: &str, sim_url: &str, opts: BrokerOptions, dir: &std::path::Path) -> BrokerProcess {
        Self::start_with_env(url, sim_url, opts, dir, &[]).await
    }

    /// [`start`](Self::start) with extra environment variables (e.g. `FAILPOINTS`).
    ///
    /// The process ignores SIGXFSZ (set before exec, which keeps it), so a test that caps its file
    /// size with `prlimit` sees writes fail with EFBIG, as a full disk fails them with ENOSPC,
    /// instead of the signal killing it.
    pub async fn start_with_env(
        url: &str,
        sim_url: &str,
        opts: BrokerOptions,
        dir: &std::path::Path,
        env: &[(&str, &str)],
    ) -> BrokerProcess {
        let addr = url.trim_start_matches("http://");
        let toml =
            config_toml(url, sim_url, opts, dir).replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{addr}\""));
        let file = dir.join("broker.toml");
        std::fs::write(&file, toml).expect("write config");
        let child = std::process::Command::new("sh")
            .args([
                "-c",
                "trap '' XFSZ; exec \"$0\" \"$@\"",
                env!("CARGO_BIN_EXE_consent-broker"),
            ])
            .args(["serve", "--config"])
            .arg(&file)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn consent-broker serve");
        let process = BrokerProcess {
            child,
            url: url.to_string(),
        };
        let http = client();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{url}/readyz")).send().await
                && r.status().is_success()
            {
                return process;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the broker process did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The broker's process id (the shell it was started through exec'd into it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown, no flush, nothing finishes.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
