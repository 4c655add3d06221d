//! The `consent-broker` binary: check-config, new-api-key and serve (with SIGTERM); the demo is in
//! demo.rs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_consent-broker");

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The file's active keys, through the real binary. That it names every key, commented-out ones
/// included, and states the code's defaults is checked against the raw shapes in
/// src/config/example.rs.
#[test]
fn example_config_documents_only_real_keys_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "cert.pem", "placeholder");
    let key = write(dir.path(), "key.pem", "placeholder");
    let out = Command::new(BIN)
        .args([
            "check-config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml"),
        ])
        .env("SHAREPOINT_CLIENT_SECRET", "example-secret")
        .env("SHAREPOINT_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .env("CONSENT_BROKER_KEY_K1", "0f".repeat(32))
        .env("BROKER_SERVER__TLS__CERT_FILE", &cert)
        .env("BROKER_SERVER__TLS__KEY_FILE", &key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (1 connector)"));
}

#[test]
fn unrelated_broker_variables_are_ignored_with_a_warning_and_known_ones_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "minimal.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1\"\nplain_http = true\n[store]\nbackend = \"memory\"\n",
    );
    // What a Kubernetes Service named `broker` injects into every pod of its namespace.
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .env("BROKER_PORT", "tcp://10.0.0.1:8443")
        .env("BROKER_SERVICE_HOST", "10.0.0.1")
        .env("BROKER_SERVER__NO_SUCH_KEY", "1")
        .env("BROKER_SERVER__SHUTDOWN_GRACE_SECS", "7")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for var in ["BROKER_PORT", "BROKER_SERVICE_HOST", "BROKER_SERVER__NO_SUCH_KEY"] {
        assert!(
            stderr.contains(&format!("ignoring the environment variable {var}")),
            "{var}: {stderr}"
        );
    }
    assert!(
        !stderr.contains("SHUTDOWN_GRACE"),
        "a known key is an override: {stderr}"
    );
    assert!(!stderr.contains("10.0.0.1"), "values are not echoed: {stderr}");

    // A wrong value for a known key is still fatal, and names it.
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .env("BROKER_PORT", "tcp://10.0.0.1:8443")
        .env("BROKER_SERVER__SHUTDOWN_GRACE_SECS", "soon")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_ascii_lowercase().contains("shutdown_grace_secs"), "{stderr}");
}

#[test]
fn check_config_warns_about_credentials_close_to_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let soon = time::OffsetDateTime::now_utc() + time::Duration::days(10) + time::Duration::hours(1);
    let past = time::OffsetDateTime::now_utc() - time::Duration::days(2);
    let rfc = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();
    let connector = |id: &str, expires: &str| {
        format!(
            "[[connectors]]\nid = \"{id}\"\ndisplay_name = \"{id}\"\nclient_id = \"00000000-0000-0000-0000-000000000001\"\nclient_secret_env = \"CB_CLI_SECRET\"\nclient_secret_expires_at = \"{expires}\"\nscopes = [\"User.Read\"]\nreturn_urls = [\"https://app.example.com/done\"]\napi_key_hashes = [\"sha256:{}\"]\n",
            // Each connector its own key: one key naming two connectors is refused.
            if id == "soon" { "ab" } else { "cd" }.repeat(32)
        )
    };
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1\"\nplain_http = true\n[store]\nbackend = \"memory\"\n{}{}",
        connector("soon", &rfc(soon)),
        connector("gone", &rfc(past))
    );
    let file = write(dir.path(), "expiring.toml", &text);
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .env("CB_CLI_SECRET", "a-secret-value-for-the-test")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("connector soon: the client secret expires in 10 days"),
        "{stderr}"
    );
    assert!(
        stderr.contains("connector gone: the client secret has expired"),
        "{stderr}"
    );
    assert!(!stderr.contains("a-secret-value-for-the-test"));
}

#[test]
fn bad_config_names_file_key_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[server]\nlisten = \"nope\"\npublic_url = \"http://127.0.0.1\"\nplain_http = true\n",
            "listen",
        ),
        (
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://broker.example.com\"\nplain_http = true\n",
            "server.public_url",
        ),
        (
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1\"\nplain_http = true\n[store]\nbackend = \"mongo\"\n",
            "store.backend",
        ),
        (
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1\"\nplain_http = true\n[[connectors]]\nid = \"a\"\ndisplay_name = \"A\"\nclient_id = \"00000000-0000-0000-0000-000000000000\"\nclient_secret = \"inline!\"\n",
            "client_secret",
        ),
    ];
    for (text, key) in cases {
        let file = write(dir.path(), "bad.toml", text);
        let out = Command::new(BIN).args(["check-config"]).arg(&file).output().unwrap();
        assert!(!out.status.success(), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("bad.toml") && err.contains(key), "{key}: {err}");
        assert!(!err.contains("inline!"), "a secret value is never echoed");
    }
    let out = Command::new(BIN)
        .args(["check-config", "/does/not/exist.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/does/not/exist.toml"));
}

#[test]
fn new_api_key_prints_a_key_and_its_hash() {
    let out = Command::new(BIN).arg("new-api-key").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let key = text.split_whitespace().find(|w| w.starts_with("cbk_")).expect("a key");
    assert!(text.contains(&consent_broker::crypto::api_key_hash(key)));
}

/// Reads lines from a child's stream until one contains `needle` (or the deadline passes).
fn wait_for_line(reader: &mut impl BufRead, needle: &str, seen: &mut String) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        seen.push_str(&line);
        if line.contains(needle) {
            return Some(line.clone());
        }
    }
    None
}

/// A child process stopped like an operator would: SIGTERM, then SIGKILL if it lingers.
struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve --config <cfg>` (without the test run's RUST_LOG); returns the process, its
/// stderr, what was read of it, and the "listening" line.
fn serve(cfg: &std::path::Path) -> (Killed, BufReader<std::process::ChildStderr>, String, String) {
    let mut child = Killed(
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(cfg)
            .env_remove("RUST_LOG")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut err = BufReader::new(child.0.stderr.take().unwrap());
    let mut seen = String::new();
    let line = wait_for_line(&mut err, "listening", &mut seen).unwrap_or_else(|| panic!("no listening line: {seen}"));
    (child, err, seen, line)
}

#[test]
fn serve_answers_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "broker.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1\"\nplain_http = true\n[store]\npath = \"{}\"\n[[encryption.keys]]\nid = \"k1\"\nfile = \"{}\"\n",
            dir.path().join("db/broker.redb").display(),
            write(dir.path(), "key", &"5a".repeat(32)).display()
        ),
    );
    // Its stderr is closed at once: a broker whose log reader went away must still serve, and
    // stop on SIGTERM.
    let (mut child, stderr, _, line) = serve(&cfg);
    drop(stderr);
    let addr = line
        .split("addr=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let body = reqwest::blocking_get(&format!("http://{addr}/readyz"));
    assert_eq!(body, "ready");
    assert!(
        dir.path().join("db/broker.redb").is_file(),
        "the embedded store is the default backend"
    );
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "clean exit on SIGTERM: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// With `[log] format = "json"`, every line is one JSON object, and a request's lines carry its id
/// (the operator's way to follow one request through a log collector).
#[test]
fn json_logs_carry_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "broker.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1\"\nplain_http = true\n[store]\nbackend = \"memory\"\n[log]\nformat = \"json\"\nlevel = \"info\"\n[[encryption.keys]]\nid = \"k1\"\nfile = \"{}\"\n",
            write(dir.path(), "key", &"5a".repeat(32)).display()
        ),
    );
    // `_child` (not `_`): the broker must live, and is stopped when the test ends.
    let (_child, mut err, mut seen, line) = serve(&cfg);
    let listening: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    let addr = listening["fields"]["addr"].as_str().expect("addr field").to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        ::reqwest::Client::new()
            .get(format!("http://{addr}/v1/connections/conn_x"))
            .header("x-request-id", "cli-json-req-9")
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 401);
    let line = wait_for_line(&mut err, "cli-json-req-9", &mut seen).unwrap_or_else(|| panic!("{seen}"));
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(v["span"]["request_id"], "cli-json-req-9", "{v}");
    assert_eq!(v["span"]["route"], "/v1/connections/{connection_id}", "{v}");
    assert_eq!(v["fields"]["message"], "request answered", "{v}");
    assert_eq!(v["fields"]["status"], 401, "{v}");
    // Close the client's pooled keep-alive connection first, so the graceful stop that `child`'s
    // drop asks for has nothing left to wait for.
    drop(rt);
}

mod reqwest {
    /// A tiny blocking GET for the synchronous CLI tests.
    pub fn blocking_get(url: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { ::reqwest::get(url).await.unwrap().text().await.unwrap() })
    }
}
