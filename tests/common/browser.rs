//! A real headless Chromium driven over WebDriver (Debian's chromium + chromium-driver).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};

/// A chromedriver process and a WebDriver session on it; both end on `close`/drop.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn find(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string())
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium session (English).
    pub async fn start() -> Browser {
        Self::start_in("en-US").await
    }

    /// The same, with the browser's language (and so its `Accept-Language`) set to `lang`.
    pub async fn start_in(lang: &str) -> Browser {
        Self::start_with(lang, false).await
    }

    /// The same, with the system's colour scheme dark (pages' `prefers-color-scheme: dark`).
    pub async fn start_dark() -> Browser {
        Self::start_with("en-US", true).await
    }

    async fn start_with(lang: &str, dark: bool) -> Browser {
        let driver_bin = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
            .expect("chromedriver is missing: run scripts/test (installs Debian's chromium and chromium-driver)");
        let chromium = find(&["/usr/bin/chromium", "/usr/lib/chromium/chromium"])
            .expect("chromium is missing: run scripts/test (installs Debian's chromium and chromium-driver)");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1280,2000".into(),
            format!("--lang={lang}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if dark {
            args.push("--blink-settings=preferredColorScheme=0".into());
        }
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": args,
                "prefs": { "intl.accept_languages": lang },
            }
        });
        let caps: serde_json::Map<String, serde_json::Value> = caps.as_object().unwrap().clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
            match builder {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot open a Chromium session through chromedriver: {e}"),
            }
        };
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Saves a PNG of the current page under target/screenshots/.
    pub async fn screenshot(&self, name: &str) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// axe-core's serious and critical violations on the current page (WCAG 2.1 A and AA rules
    /// and best practices), as "rule (impact): element, ..." lines. axe-core is installed by
    /// scripts/test under target/axe and injected here, so the check runs offline.
    pub async fn accessibility_violations(&self) -> Vec<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/axe/node_modules/axe-core/axe.min.js");
        let axe = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run scripts/test (it installs axe-core from npm)",
                path.display()
            )
        });
        self.client.execute(&axe, vec![]).await.expect("inject axe-core");
        let found = self
            .client
            .execute(
                "return axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}, resultTypes: ['violations']})
                   .then(function (r) { return r.violations
                     .filter(function (v) { return v.impact === 'serious' || v.impact === 'critical'; })
                     .map(function (v) { return v.id + ' (' + v.impact + '): ' + v.nodes.map(function (n) { return n.target.join(' '); }).slice(0, 5).join(', '); }); });",
                vec![],
            )
            .await
            .expect("run axe-core");
        serde_json::from_value(found).expect("a list of violations")
    }

    /// Ends the session and the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
