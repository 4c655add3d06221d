//! What the sections' tests share: a minimal valid config, a connector, a key, and a way to get
//! the error a text produces with the test's environment variables set.

use super::Config;

/// A valid config (plain HTTP, memory store) with `extra` appended after `[store]`.
pub(super) fn base(extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:8080"
plain_http = true
[store]
backend = "memory"
{extra}
"#
    )
}

/// A valid connector whose secret is in `CB_TEST_SECRET_PRESENT`.
pub(super) const CONNECTOR: &str = r#"
[[connectors]]
id = "sp"
display_name = "SharePoint"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret_env = "CB_TEST_SECRET_PRESENT"
scopes = ["Files.Read.All"]
return_urls = ["https://app.example.com/oauth/done"]
api_key_hashes = ["sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"]
"#;

/// An encryption key (64 hex digits), set as `CB_TEST_KEY` by [`err_of`].
pub(super) const TEST_KEY: &str = "8f1c2e3d4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// One `[[encryption.keys]]` block reading [`TEST_KEY`] from `CB_TEST_KEY`.
pub(super) const ONE_KEY: &str = "\n[[encryption.keys]]\nid = \"k1\"\nenv = \"CB_TEST_KEY\"\n";

/// The error `text` fails with, as printed; panics when it loads.
// figment's Jail closures return its (large) error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
pub(super) fn err_of(text: &str) -> String {
    let mut out = String::new();
    figment::Jail::expect_with(|jail| {
        jail.set_env("CB_TEST_SECRET_PRESENT", "s3cret");
        jail.set_env("CB_TEST_KEY", TEST_KEY);
        out = Config::from_toml_str(text, "t.toml")
            .expect_err("must fail")
            .to_string();
        Ok(())
    });
    out
}
