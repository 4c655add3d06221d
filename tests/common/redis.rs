//! Real `redis-server` processes for a test: one server (plain or TLS), a 3-master Redis Cluster,
//! or a master with one replica watched by three sentinels (`redis-server --sentinel`), each on
//! ephemeral loopback ports, with nothing persisted (except `start_persistent`), killed when
//! dropped. Needs `redis-server` and `redis-cli` on the PATH (`scripts/test` installs them).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use consent_broker::config::RedisConfig;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a start is retried when the chosen port was taken in the meantime.
const PORT_ATTEMPTS: usize = 5;

/// A port that was free a moment ago (bound on 127.0.0.1:0, then released for Redis to take).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The last lines of a Redis log file, for failure messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// One `redis-server` process.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `redis-server` with `args` plus the test defaults, logging to `dir`. `None` when it
    /// exited because its port was taken (the caller retries with other ports).
    fn spawn(dir: &Path, name: &str, args: &[String]) -> Option<Process> {
        Self::spawn_with(dir, name, &[], args)
    }

    /// [`Process::spawn`] with `leading` arguments first (a config file must come first).
    fn spawn_with(dir: &Path, name: &str, leading: &[String], args: &[String]) -> Option<Process> {
        let log = dir.join(format!("{name}.log"));
        let child = Command::new("redis-server")
            .args(leading)
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "no",
            ])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (is it installed? scripts/test installs it)");
        let mut process = Process { child, log };
        // Give it a moment to fail on a taken port before anyone waits for it to answer.
        let deadline = Instant::now() + Duration::from_millis(300);
        while Instant::now() < deadline {
            if let Some(status) = process.child.try_wait().expect("poll redis-server") {
                let tail = log_tail(&process.log);
                if tail.contains("Address already in use") {
                    return None;
                }
                panic!("redis-server exited ({status}):\n{tail}");
            }
            if std::fs::read_to_string(&process.log)
                .unwrap_or_default()
                .contains("Ready to accept connections")
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(process)
    }

    /// Waits until `ping` succeeds, panicking with the log after the startup timeout.
    fn wait_until(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if ready() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("redis-server exited ({status}) before {what}:\n{}", log_tail(&self.log));
            }
            if Instant::now() > deadline {
                panic!(
                    "redis-server: no {what} within {STARTUP_TIMEOUT:?}:\n{}",
                    log_tail(&self.log)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A synchronous connection to one node, for checks and raw inspection in tests.
fn raw_connection(url: &str, ca: Option<&Path>) -> redis::RedisResult<redis::Connection> {
    install_crypto_provider();
    let client = match ca {
        Some(ca) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(ca).expect("read the CA file")),
            },
        )?,
        None => redis::Client::open(url)?,
    };
    client.get_connection_with_timeout(Duration::from_millis(500))
}

fn answers_ping(url: &str, ca: Option<&Path>) -> bool {
    raw_connection(url, ca)
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_ok_and(|pong| pong == "PONG")
}

/// Store settings for a test: explicit timeouts generous enough for a loaded 2-core machine.
pub fn store_config(urls: Vec<String>, cluster: bool, ca: Option<PathBuf>) -> RedisConfig {
    RedisConfig {
        urls,
        cluster,
        sentinel: None,
        key_prefix: "cb:".into(),
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(2),
        tls_ca_file: ca,
    }
}

/// One `redis-server` (plain, or TLS-only with a fresh self-signed certificate for `localhost`).
pub struct RedisServer {
    process: Option<Process>,
    port: u16,
    /// The certificate clients must trust (TLS servers only).
    ca_file: Option<PathBuf>,
    /// Whether every write is appended to a file (fsynced) that a restart reads back.
    persistent: bool,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// A plain server on an ephemeral loopback port; returns once it answers PING.
    pub fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = RedisServer {
            process: None,
            port: 0,
            ca_file: None,
            persistent: false,
            dir,
        };
        server.launch(None);
        server
    }

    /// A plain server that writes every change to an append-only file before answering, so that
    /// [`RedisServer::restart`] (even after a kill) finds the data again.
    pub fn start_persistent() -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = RedisServer {
            process: None,
            port: 0,
            ca_file: None,
            persistent: true,
            dir,
        };
        server.launch(None);
        server
    }

    /// A TLS-only server (`--port 0 --tls-port P`) whose certificate (CN/SAN `localhost` and
    /// `127.0.0.1`) is in [`RedisServer::ca_file`]; clients are not asked for certificates.
    pub fn start_tls() -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("self-signed certificate");
        let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_file, cert.cert.pem()).expect("write cert");
        std::fs::write(&key_file, cert.signing_key.serialize_pem()).expect("write key");
        let mut server = RedisServer {
            process: None,
            port: 0,
            ca_file: Some(cert_file),
            persistent: false,
            dir,
        };
        server.launch(None);
        server
    }

    /// Starts the process (on `port`, or on a fresh ephemeral port, retried if it was taken).
    fn launch(&mut self, port: Option<u16>) {
        for _ in 0..PORT_ATTEMPTS {
            let port = port.unwrap_or_else(free_port);
            let mut args: Vec<String> = match &self.ca_file {
                Some(cert) => vec![
                    "--port".into(),
                    "0".into(),
                    "--tls-port".into(),
                    port.to_string(),
                    "--tls-cert-file".into(),
                    cert.display().to_string(),
                    "--tls-key-file".into(),
                    self.dir.path().join("key.pem").display().to_string(),
                    "--tls-auth-clients".into(),
                    "no".into(),
                ],
                None => vec!["--port".into(), port.to_string()],
            };
            args.extend(["--loglevel".into(), "notice".into()]);
            if self.persistent {
                // Later arguments override the defaults of `Process::spawn`.
                args.extend(["--appendonly", "yes", "--appendfsync", "always"].map(String::from));
            }
            let Some(mut process) = Process::spawn(self.dir.path(), &format!("redis-{port}"), &args) else {
                continue;
            };
            self.port = port;
            let (url, ca) = (self.url(), self.ca_file.clone());
            process.wait_until("PING answer", || answers_ping(&url, ca.as_deref()));
            self.process = Some(process);
            return;
        }
        panic!("redis-server could not get a free port in {PORT_ATTEMPTS} attempts");
    }

    /// `redis://127.0.0.1:P`, or `rediss://localhost:P` for a TLS server.
    pub fn url(&self) -> String {
        match self.ca_file {
            Some(_) => format!("rediss://localhost:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PEM certificate to trust (TLS servers only).
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// Store settings pointing at this server (trusting its certificate when it is a TLS one).
    pub fn config(&self) -> RedisConfig {
        store_config(vec![self.url()], false, self.ca_file.clone())
    }

    /// A synchronous connection for inspecting what the store wrote.
    pub fn raw(&self) -> redis::Connection {
        raw_connection(&self.url(), self.ca_file()).expect("raw connection to redis-server")
    }

    /// Kills the server (it stays stopped until [`RedisServer::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// The `[store]` section of a broker on this server with short timeouts, so that outage tests
    /// see an unreachable Redis within a fraction of a second.
    pub fn store_section(&self) -> String {
        format!(
            "backend = \"redis\"\nurl = \"{}\"\nresponse_timeout_ms = 300\nconnect_timeout_ms = 200",
            self.url()
        )
    }

    /// Starts a stopped server again on the same port (data is gone unless it is persistent).
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port;
        self.launch(Some(port));
    }
}

/// A 3-master Redis Cluster (no replicas) made with `redis-cli --cluster create`.
pub struct RedisCluster {
    nodes: Vec<Process>,
    ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, joins them and waits for `cluster_state:ok` on all.
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut nodes = Vec::new();
        let mut ports = Vec::new();
        while nodes.len() < 3 {
            let mut started = None;
            for _ in 0..PORT_ATTEMPTS {
                // The cluster bus gets its own ephemeral port: the default (port + 10000) may be
                // above 65535 or taken.
                let (port, bus) = (free_port(), free_port());
                if port == bus {
                    continue;
                }
                let args: Vec<String> = [
                    "--port",
                    &port.to_string(),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                    "--cluster-config-file",
                    &dir.path().join(format!("nodes-{port}.conf")).display().to_string(),
                    "--cluster-node-timeout",
                    "5000",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                if let Some(p) = Process::spawn(dir.path(), &format!("node-{port}"), &args) {
                    started = Some((p, port));
                    break;
                }
            }
            let (mut process, port) = started.expect("a cluster node could not get free ports");
            let url = format!("redis://127.0.0.1:{port}");
            process.wait_until("PING answer", || answers_ping(&url, None));
            nodes.push(process);
            ports.push(port);
        }

        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli (is it installed? scripts/test installs it)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        for (process, port) in nodes.iter_mut().zip(&ports) {
            let url = format!("redis://127.0.0.1:{port}");
            process.wait_until("cluster_state:ok", || {
                raw_connection(&url, None)
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            });
        }
        RedisCluster {
            nodes,
            ports,
            _dir: dir,
        }
    }

    /// `redis://127.0.0.1:P` of every master.
    pub fn urls(&self) -> Vec<String> {
        self.ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect()
    }

    /// Store settings for cluster mode, seeded with every node.
    pub fn config(&self) -> RedisConfig {
        store_config(self.urls(), true, None)
    }

    /// Synchronous connections to each master, for inspecting where keys went.
    pub fn raw_nodes(&self) -> Vec<redis::Connection> {
        self.urls()
            .iter()
            .map(|u| raw_connection(u, None).expect("raw connection to a cluster node"))
            .collect()
    }
}

/// The name the test sentinels monitor their master under.
pub const SENTINEL_MASTER: &str = "mymaster";

/// A master, one replica (`--replicaof`) and three sentinels (quorum 2, the master deemed down
/// after 1 s), optionally with a password on the data nodes, optionally all TLS-only (one
/// self-signed certificate for `localhost` and `127.0.0.1`, also used between the processes).
pub struct RedisSentinel {
    master: Option<Process>,
    replica: Option<Process>,
    sentinels: Vec<Process>,
    master_port: u16,
    replica_port: u16,
    sentinel_ports: Vec<u16>,
    password: Option<String>,
    /// The certificate everyone trusts, when TLS-only.
    ca_file: Option<PathBuf>,
    dir: tempfile::TempDir,
}

impl RedisSentinel {
    /// Starts everything and returns once the replica is in sync and every sentinel sees the
    /// replica and the other two sentinels (so a failover can be authorised).
    pub fn start(password: Option<&str>) -> RedisSentinel {
        Self::launch(password, false)
    }

    /// [`RedisSentinel::start`] with TLS only: `rediss://` for the sentinels, the data nodes and
    /// replication; trust [`RedisSentinel::ca_file`].
    pub fn start_tls() -> RedisSentinel {
        Self::launch(None, true)
    }

    fn launch(password: Option<&str>, tls: bool) -> RedisSentinel {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = tls.then(|| {
            let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("self-signed certificate");
            let cert_file = dir.path().join("cert.pem");
            std::fs::write(&cert_file, cert.cert.pem()).expect("write cert");
            std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).expect("write key");
            cert_file
        });
        // The directives both as arguments (data nodes) and as config lines (sentinels).
        let tls_directives: Vec<(&str, String)> = match &ca_file {
            Some(cert) => vec![
                ("tls-cert-file", cert.display().to_string()),
                ("tls-key-file", dir.path().join("key.pem").display().to_string()),
                ("tls-ca-cert-file", cert.display().to_string()),
                ("tls-auth-clients", "no".into()),
                ("tls-replication", "yes".into()),
            ],
            None => Vec::new(),
        };
        let port_directives = |port: u16| -> Vec<(&'static str, String)> {
            if tls {
                vec![("port", "0".into()), ("tls-port", port.to_string())]
            } else {
                vec![("port", port.to_string())]
            }
        };
        let ca = ca_file.clone();
        let auth: Vec<String> = match password {
            Some(pw) => ["--requirepass", pw, "--masterauth", pw].map(String::from).to_vec(),
            None => Vec::new(),
        };
        let data_node = |name: &str, extra: &[String]| -> (Process, u16) {
            for _ in 0..PORT_ATTEMPTS {
                let port = free_port();
                let mut args = Vec::new();
                for (k, v) in port_directives(port).into_iter().chain(tls_directives.iter().cloned()) {
                    args.extend([format!("--{k}"), v]);
                }
                args.extend(auth.iter().cloned());
                args.extend(extra.iter().cloned());
                if let Some(mut p) = Process::spawn(dir.path(), &format!("{name}-{port}"), &args) {
                    let url = node_url(port, password, tls);
                    p.wait_until("PING answer", || answers_ping(&url, ca.as_deref()));
                    return (p, port);
                }
            }
            panic!("{name} could not get a free port");
        };
        let (master, master_port) = data_node("master", &[]);
        let (replica, replica_port) = data_node(
            "replica",
            &["--replicaof".into(), "127.0.0.1".into(), master_port.to_string()],
        );

        let mut sentinels = Vec::new();
        let mut sentinel_ports = Vec::new();
        while sentinels.len() < 3 {
            let mut started = None;
            for _ in 0..PORT_ATTEMPTS {
                let port = free_port();
                // Each sentinel rewrites its own file (it records what it learns), so one each.
                let conf = dir.path().join(format!("sentinel-{port}.conf"));
                let mut text: String = port_directives(port)
                    .into_iter()
                    .chain(tls_directives.iter().cloned())
                    .map(|(k, v)| format!("{k} {v}\n"))
                    .collect();
                text.push_str(&format!(
                    "bind 127.0.0.1\nsentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                     sentinel failover-timeout {SENTINEL_MASTER} 3000\n"
                ));
                if let Some(pw) = password {
                    text.push_str(&format!("sentinel auth-pass {SENTINEL_MASTER} {pw}\n"));
                }
                std::fs::write(&conf, text).expect("write the sentinel config");
                let leading = [conf.display().to_string(), "--sentinel".into()];
                if let Some(p) = Process::spawn_with(dir.path(), &format!("sentinel-{port}"), &leading, &[]) {
                    started = Some((p, port));
                    break;
                }
            }
            let (mut process, port) = started.expect("a sentinel could not get a free port");
            let url = node_url(port, None, tls);
            process.wait_until("PING answer", || answers_ping(&url, ca.as_deref()));
            sentinels.push(process);
            sentinel_ports.push(port);
        }

        let mut group = RedisSentinel {
            master: Some(master),
            replica: Some(replica),
            sentinels,
            master_port,
            replica_port,
            sentinel_ports,
            password: password.map(str::to_string),
            ca_file,
            dir,
        };
        let master_url = node_url(master_port, password, tls);
        if let Some(m) = group.master.as_mut() {
            m.wait_until("the replica in sync", || {
                raw_connection(&master_url, ca.as_deref())
                    .and_then(|mut c| redis::cmd("INFO").arg("replication").query::<String>(&mut c))
                    .is_ok_and(|info| info.contains("connected_slaves:1") && info.contains("state=online"))
            });
        }
        for (process, port) in group.sentinels.iter_mut().zip(&group.sentinel_ports) {
            let url = node_url(*port, None, tls);
            process.wait_until("the replica and the other sentinels", || {
                let Ok(mut c) = raw_connection(&url, ca.as_deref()) else {
                    return false;
                };
                let replicas: redis::RedisResult<Vec<redis::Value>> = redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg(SENTINEL_MASTER)
                    .query(&mut c);
                let quorum: redis::RedisResult<String> = redis::cmd("SENTINEL")
                    .arg("CKQUORUM")
                    .arg(SENTINEL_MASTER)
                    .query(&mut c);
                replicas.is_ok_and(|r| r.len() == 1) && quorum.is_ok_and(|q| q.contains("3 usable"))
            });
        }
        group
    }

    /// `redis://127.0.0.1:P` (`rediss://localhost:P` with TLS) of every sentinel.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinel_ports
            .iter()
            .map(|p| node_url(*p, None, self.ca_file.is_some()))
            .collect()
    }

    /// The PEM certificate to trust (TLS groups only).
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// Store settings for Sentinel mode, with the data nodes' password when there is one.
    pub fn config(&self) -> RedisConfig {
        let mut config = store_config(self.sentinel_urls(), false, self.ca_file.clone());
        config.sentinel = Some(consent_broker::config::SentinelConfig {
            master: SENTINEL_MASTER.into(),
            username: None,
            password: self.password.clone(),
            wait_replicas: 0,
        });
        config
    }

    /// The `[store]` lines for a broker on this group (without a password: that comes from the
    /// environment, which tests share).
    pub fn store_toml(&self) -> String {
        let urls = self
            .sentinel_urls()
            .iter()
            .map(|u| format!("{u:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!("backend = \"redis\"\nsentinel_urls = [{urls}]\nsentinel_master = \"{SENTINEL_MASTER}\"")
    }

    /// The current master's port as the sentinels report it (`None` when none answers).
    pub fn reported_master_port(&self) -> Option<u16> {
        self.sentinel_urls().iter().find_map(|url| {
            let mut c = raw_connection(url, self.ca_file()).ok()?;
            let (_, port): (String, u16) = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(SENTINEL_MASTER)
                .query(&mut c)
                .ok()?;
            Some(port)
        })
    }

    /// The first master's port.
    pub fn master_port(&self) -> u16 {
        self.master_port
    }

    /// The replica's port (the master's after a failover).
    pub fn replica_port(&self) -> u16 {
        self.replica_port
    }

    /// A synchronous connection to the data node on `port`, for inspection.
    pub fn raw(&self, port: u16) -> redis::Connection {
        raw_connection(
            &node_url(port, self.password.as_deref(), self.ca_file.is_some()),
            self.ca_file(),
        )
        .expect("raw connection to a data node")
    }

    /// Kills the first master; the sentinels then promote the replica.
    pub fn kill_master(&mut self) {
        if let Some(mut p) = self.master.take() {
            p.kill();
        }
    }

    /// Waits (bounded) until the sentinels name the replica as master and it acts as one.
    pub fn wait_for_failover(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        let replica_url = node_url(self.replica_port, self.password.as_deref(), self.ca_file.is_some());
        loop {
            let promoted = self.reported_master_port() == Some(self.replica_port)
                && raw_connection(&replica_url, self.ca_file())
                    .and_then(|mut c| redis::cmd("ROLE").query::<Vec<redis::Value>>(&mut c))
                    .is_ok_and(|role| matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master"));
            if promoted {
                return;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = std::fs::read_dir(self.dir.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("sentinel-"))
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                    .map(|e| log_tail(&e.path()))
                    .collect();
                panic!("no failover within {within:?}:\n{}", logs.join("\n---\n"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `redis://[:password@]127.0.0.1:P`, or `rediss://[:password@]localhost:P` for TLS.
fn node_url(port: u16, password: Option<&str>, tls: bool) -> String {
    let login = password.map(|pw| format!(":{pw}@")).unwrap_or_default();
    match tls {
        true => format!("rediss://{login}localhost:{port}"),
        false => format!("redis://{login}127.0.0.1:{port}"),
    }
}
