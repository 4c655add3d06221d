//! `consent-broker demo`, the real binary with its real simulator: the banner comes last and
//! its copy-paste lines work as printed (run through `sh`, with curl), logs are quiet unless
//! `--verbose`, Enter prints the banner again, and the data directory is private and removed on
//! exit unless it was given.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::flows::handoff_code_in;

const BIN: &str = env!("CARGO_BIN_EXE_consent-broker");
const BANNER_START: &str = "consent-broker demo is running.";
const BANNER_END: &str = "Press Enter to print this again.";

/// A running demo whose stdout and stderr arrive, interleaved as written, in one buffer.
struct Demo {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<String>>,
}

impl Demo {
    /// Starts `consent-broker demo <args>` with `TMPDIR` set (where a temporary data directory goes).
    fn start(args: &[&std::ffi::OsStr], tmp: &Path) -> Self {
        // One pipe for both streams, so the order of log lines and banner is the order written.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("exec \"$0\" demo \"$@\" 2>&1")
            .arg(BIN)
            .args(args)
            .env("TMPDIR", tmp)
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            stdin: child.stdin.take(),
            child,
            out,
        }
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Waits until the output holds `needle` `times` times.
    fn wait_for(&self, needle: &str, times: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let text = self.output();
            if text.matches(needle).count() >= times {
                return text;
            }
            assert!(Instant::now() < deadline, "no {needle:?} x{times} in: {text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asserts nothing more is printed for a while: the demo is waiting with the banner last.
    fn assert_quiet(&self) {
        let before = self.output();
        std::thread::sleep(Duration::from_millis(1_500));
        assert_eq!(self.output(), before, "printed after the banner");
        assert!(before.trim_end().ends_with(BANNER_END), "the banner is last: {before}");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit after a signal; its exit status.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the demo did not stop: {}", self.output());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The (first) banner in the output.
fn banner(text: &str) -> &str {
    let start = text.find(BANNER_START).unwrap_or_else(|| panic!("no banner: {text}"));
    let end = text[start..].find(BANNER_END).unwrap() + start + BANNER_END.len();
    &text[start..end]
}

/// The banner's line that contains `needle` (exactly one).
fn line_with<'a>(banner: &'a str, needle: &str) -> &'a str {
    let lines: Vec<&str> = banner.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(lines.len(), 1, "one line with {needle:?}: {banner}");
    lines[0].trim()
}

/// Runs a copy-pasted line through the shell; its output as JSON.
fn run_line(line: &str) -> serde_json::Value {
    let out = Command::new("sh").arg("-c").arg(line).output().unwrap();
    assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{line}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The directory is 0700 and every file in it 0600.
fn assert_private(dir: &Path) {
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    let files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(files.len() >= 4, "secret, key, simulator config and store: {files:?}");
    for f in files {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
}

/// Follows every redirect (the demo's links end on broker pages) and returns the last body.
async fn follow_to_end(http: &::reqwest::Client, url: &str) -> String {
    let mut next = url.to_string();
    for _ in 0..10 {
        let r = http.get(&next).send().await.unwrap();
        match r.headers().get("location") {
            Some(loc) => next = loc.to_str().unwrap().to_string(),
            None => return r.text().await.unwrap(),
        }
    }
    panic!("redirect loop from {url}");
}

#[tokio::test]
async fn the_banner_comes_last_its_lines_work_and_the_temporary_data_dir_goes_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = Demo::start(&[], tmp.path());
    let text = demo.wait_for(BANNER_END, 1);
    demo.assert_quiet();
    let banner = banner(&text).to_string();

    // Quiet by default: no info-level lines, and the API key only inside the banner.
    assert!(!text.contains(" INFO "), "info lines without --verbose: {text}");
    let key = line_with(&banner, "API key of connector")
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    assert!(key.starts_with("cbk_"), "{banner}");
    let outside = text.replace(&banner, "");
    assert!(!outside.contains(&key), "the API key outside the banner: {outside}");

    // Who entra-sim signs in, from the config the demo gave it; what a link is good for.
    for who in [
        "Contoso (users may consent): Alice Contoso <alice@contoso.onmicrosoft.com> is signed in",
        "Frank Fabrikam <frank@fabrikam.onmicrosoft.com> is signed in",
        "administrator Fiona Admin <fiona@fabrikam.onmicrosoft.com>",
        "works until its session completes or expires (1 hour after it was created)",
    ] {
        assert!(banner.contains(who), "{who:?} in {banner}");
    }

    // The data directory: under TMPDIR, private.
    let dir = PathBuf::from(line_with(&banner, "data:").split_whitespace().nth(1).unwrap());
    assert!(dir.starts_with(tmp.path()), "{}", dir.display());
    assert_private(&dir);

    // The lines work as printed: sign in, redeem, poll, fetch a token.
    let urls: Vec<&str> = banner
        .split_whitespace()
        .filter(|w| w.contains("/v1/connect/"))
        .collect();
    assert_eq!(urls.len(), 2, "two sign-in links: {banner}");
    let http = crate::common::broker::client();
    let body = follow_to_end(&http, urls[0]).await;
    let code = handoff_code_in(&body).unwrap_or_else(|| panic!("the first link ends on the code page: {body}"));
    let redeem = line_with(&banner, "/v1/handoff/redeem");
    assert!(
        redeem.starts_with("curl ") && redeem.contains("PASTE-THE-CODE-HERE"),
        "{redeem}"
    );
    let redeemed = run_line(&redeem.replace("PASTE-THE-CODE-HERE", &code));
    let conn = redeemed["connection_id"].as_str().expect("redeemed").to_string();
    let poll = line_with(&banner, "/v1/connect-sessions/cs_");
    assert!(poll.contains("/v1/connect-sessions/cs_"), "a real session id: {poll}");
    let session = run_line(poll);
    assert_eq!(session["status"], "completed", "{session}");
    assert_eq!(session["connection_id"], conn.as_str(), "{session}");
    let token = run_line(&line_with(&banner, "/token").replace("<connection_id>", &conn));
    assert!(token["access_token"].is_string(), "{token}");
    let again = follow_to_end(&http, urls[0]).await;
    assert!(
        handoff_code_in(&again).is_none(),
        "a completed session's link does not sign in again"
    );
    let body = follow_to_end(&http, urls[1]).await;
    assert!(
        body.contains("AADSTS90094"),
        "the second link needs admin approval: {body}"
    );

    // Enter prints the same banner again, and it is again the last thing printed.
    demo.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    let text = demo.wait_for(BANNER_END, 2);
    let second = &text[text.rfind(BANNER_START).unwrap()..];
    assert_eq!(second.trim_end(), banner, "the banner again");
    demo.assert_quiet();

    demo.signal("INT");
    assert!(demo.wait_exit().success(), "{}", demo.output());
    assert!(!dir.exists(), "the temporary data directory is removed on Ctrl-C");
}

#[test]
fn verbose_shows_info_lines_and_a_given_data_dir_is_created_private_and_kept() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("new/data");
    let mut demo = Demo::start(
        &["--verbose".as_ref(), "--data-dir".as_ref(), dir.as_os_str()],
        parent.path(),
    );
    let text = demo.wait_for(BANNER_END, 1);
    let before_banner = &text[..text.find(BANNER_START).unwrap()];
    assert!(before_banner.contains(" INFO "), "start-up info lines first: {text}");
    demo.assert_quiet();
    assert!(banner(&text).contains("kept when the demo stops"), "{text}");
    assert_private(&dir);

    demo.signal("TERM");
    assert!(demo.wait_exit().success(), "{}", demo.output());
    assert_private(&dir);
    assert!(dir.join("broker.redb").is_file(), "a given data directory is kept");
}

#[test]
fn a_temporary_data_dir_goes_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = Demo::start(&[], tmp.path());
    let text = demo.wait_for(BANNER_END, 1);
    let dir = PathBuf::from(line_with(banner(&text), "data:").split_whitespace().nth(1).unwrap());
    assert!(dir.is_dir());
    demo.signal("TERM");
    assert!(demo.wait_exit().success(), "{}", demo.output());
    assert!(!dir.exists(), "removed on SIGTERM");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "nothing left in TMPDIR"
    );
}

#[test]
fn a_data_dir_that_is_a_file_or_under_one_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain");
    std::fs::write(&file, "keep me").unwrap();
    for (path, says) in [
        (file.clone(), "exists and is not a directory"),
        (file.join("sub"), "Not a directory"),
    ] {
        let out = Command::new(BIN)
            .args(["demo", "--data-dir"])
            .arg(&path)
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("data directory {}: {says}", path.display())),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            out.stdout.is_empty(),
            "no banner: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "keep me",
        "the file is left alone"
    );
}

/// Processes whose command line mentions `needle` (Linux /proc).
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Zombies (state Z) have exited; only live processes count.
            String::from_utf8_lossy(&cmdline).contains(needle) && !stat.contains(") Z ")
        })
        .collect()
}

#[test]
fn the_demo_simulator_dies_with_the_demo_even_when_it_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut demo = Demo::start(&["--data-dir".as_ref(), dir.as_os_str()], tmp.path());
    demo.wait_for(BANNER_END, 1);
    let sim_config = dir.join("entra-sim.json").display().to_string();
    assert_eq!(processes_mentioning(&sim_config).len(), 1, "the demo's simulator runs");
    demo.child.kill().unwrap();
    demo.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_mentioning(&sim_config).is_empty() {
        assert!(Instant::now() < deadline, "the simulator outlived a killed demo");
        std::thread::sleep(Duration::from_millis(50));
    }
}
