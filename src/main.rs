//! The `consent-broker` command line: parses arguments and calls the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "consent-broker",
    version,
    about = "OAuth 2.0 consent-flow broker for Microsoft Entra ID"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve {
        /// Config file (TOML); BROKER_* environment variables override it.
        #[arg(long, short, env = "BROKER_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file and exit (0 when it is valid).
    CheckConfig {
        /// Config file (TOML).
        config: PathBuf,
    },
    /// Generate a connector API key and the hash to put in the config.
    NewApiKey,
    /// Print a fresh 256-bit encryption key (64 hex digits) on standard output, for a key file
    /// or environment variable named in [[encryption.keys]]; how to configure it goes to stderr.
    NewEncryptionKey,
    /// Re-encrypt every stored record under the primary key, in batches, while brokers run
    /// (Redis; the embedded store admits one writing process, so stop its broker first). Exits non-zero
    /// when a record could not be re-encrypted.
    RotateKeys {
        /// Config file (TOML) with the [encryption] keys: the new primary and every old key.
        #[arg(long, short, env = "BROKER_CONFIG")]
        config: PathBuf,
        /// Records per batch.
        #[arg(long, default_value_t = consent_broker::store::rotate::DEFAULT_BATCH, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
        batch: usize,
        /// Also encrypt records stored before encryption was turned on (instead of reporting
        /// them as unreadable).
        #[arg(long)]
        encrypt_plaintext: bool,
    },
    /// Write the store, still encrypted, to a file (0600) while brokers run: the embedded store
    /// as one consistent snapshot (one read transaction), Redis key by key (the broker's keys by
    /// the key prefix, with their expiries). Prints counts, never values.
    Backup {
        /// Config file (TOML) naming the store.
        #[arg(long, short, env = "BROKER_CONFIG")]
        config: PathBuf,
        /// The backup file to write (replaced atomically when it exists).
        #[arg(long)]
        to: PathBuf,
    },
    /// Load a backup into the configured store, which must be empty (stop the brokers first;
    /// the embedded store is refused while its broker runs). Checks the whole file before
    /// writing anything. Prints counts, never values.
    Restore {
        /// Config file (TOML) naming the store and the encryption keys the backup was taken with.
        #[arg(long, short, env = "BROKER_CONFIG")]
        config: PathBuf,
        /// The backup file to read.
        #[arg(long)]
        from: PathBuf,
        /// Write into a store that is not empty: the backup's records replace those of the same
        /// key, the others are kept.
        #[arg(long)]
        force: bool,
    },
    /// Explain an Entra error a user pasted (sign-in page text, log line, exception, token body, URL).
    Explain {
        /// The text; read from --file or standard input when omitted.
        #[arg(conflicts_with = "file")]
        text: Option<String>,
        /// Read the text from this file ("-" for standard input).
        #[arg(long, short)]
        file: Option<PathBuf>,
        /// Print the same JSON object as POST /v1/explain.
        #[arg(long)]
        json: bool,
        /// Language of the messages and of the text output.
        #[arg(long, value_enum, default_value_t = ExplainLang::En)]
        lang: ExplainLang,
    },
    /// Start the Entra simulator and the broker on loopback and print URLs to try.
    Demo {
        /// Where the demo keeps its store and files (default: a fresh temporary directory).
        /// Kept when the demo stops; a temporary one is removed.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Show the broker's and the simulator's info-level log lines (default: warnings only).
        #[arg(long, short)]
        verbose: bool,
    },
}

/// The languages `explain` answers in.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ExplainLang {
    /// English.
    En,
    /// German.
    De,
}

/// The text to explain: the argument, the file, or standard input (at most the contract's limit
/// is looked at; `explain` cuts longer text).
fn explain_input(text: Option<String>, file: Option<PathBuf>) -> anyhow::Result<String> {
    let read_stdin = || -> anyhow::Result<String> {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("reading standard input")?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match (text, file) {
        (Some(t), _) => Ok(t),
        (None, Some(path)) if path.as_os_str() == "-" => read_stdin(),
        (None, Some(path)) => {
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            // Pasted text saved by editors may be in any encoding; bad bytes become U+FFFD.
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        (None, None) => read_stdin(),
    }
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // Test builds only: FAILPOINTS names the points where the chaos tests stop this process.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let config = consent_broker::Config::load(&config)?;
            let _log = consent_broker::telemetry::init(config.log.json, &config.log.level);
            for warning in &config.warnings {
                tracing::warn!("{warning}");
            }
            runtime()?.block_on(async {
                let app = consent_broker::Application::build(config).await?;
                tracing::info!(addr = %app.local_addr(), "consent-broker listening");
                app.run_until(consent_broker::server::shutdown_signal()).await
            })?;
        }
        Command::CheckConfig { config } => {
            let loaded = consent_broker::Config::load(&config)?;
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            // The same expiry checks the broker logs at start-up, for a pre-deploy check.
            let now = time::OffsetDateTime::now_utc();
            for c in &loaded.connectors {
                use consent_broker::entra::credential::ExpiryStatus;
                let what = match c.credential.kind() {
                    "certificate" => "client certificate",
                    _ => "client secret",
                };
                match ExpiryStatus::of(c.credential.expires_at(), now) {
                    ExpiryStatus::Fine => {}
                    ExpiryStatus::Soon(days) => {
                        eprintln!(
                            "warning: connector {}: the {what} expires in {days} days; rotate it",
                            c.id
                        )
                    }
                    ExpiryStatus::Expired => {
                        eprintln!("error: connector {}: the {what} has expired; Entra refuses it", c.id)
                    }
                }
            }
            println!(
                "{}: OK ({} connector{})",
                config.display(),
                loaded.connectors.len(),
                if loaded.connectors.len() == 1 { "" } else { "s" }
            );
        }
        Command::NewApiKey => {
            let key = consent_broker::crypto::new_api_key();
            println!("API key (give it to the connector backend; it is not stored): {key}");
            println!(
                "Add to the connector's api_key_hashes:  \"{}\"",
                consent_broker::crypto::api_key_hash(&key)
            );
        }
        Command::NewEncryptionKey => {
            let key = consent_broker::store::encrypted::EncryptionKey::generate();
            println!("{}", secrecy::ExposeSecret::expose_secret(&key.to_hex()));
            eprintln!(
                "A new 256-bit key is on standard output. Keep it in a file only the broker can read (or an environment variable) and add to the config:\n  [[encryption.keys]]\n  id = \"k2\"   # any new id\n  file = \"/run/secrets/consent-broker-k2\"\nTo rotate: make it the primary (keep the old keys), restart the brokers, run `consent-broker rotate-keys`, then remove the old keys."
            );
        }
        Command::RotateKeys {
            config,
            batch,
            encrypt_plaintext,
        } => {
            let config = consent_broker::Config::load(&config)?;
            let _log = consent_broker::telemetry::init(config.log.json, &config.log.level);
            let report = runtime()?.block_on(async {
                let store = consent_broker::app::open_store(&config).await?;
                let options = consent_broker::store::rotate::RotateOptions {
                    batch,
                    encrypt_plaintext,
                };
                anyhow::Ok(consent_broker::store::rotate::rotate_all(store.as_ref(), options).await?)
            })?;
            println!("rotate-keys: {report}");
            for failure in &report.failures {
                println!("  failed: {failure}");
            }
            if report.failed > 0 {
                anyhow::bail!(
                    "{} record(s) could not be re-encrypted; keep the old keys configured until they are dealt with",
                    report.failed
                );
            }
        }
        Command::Backup { config, to } => {
            let config = consent_broker::Config::load(&config)?;
            let _log = consent_broker::telemetry::init(config.log.json, &config.log.level);
            let summary = runtime()?.block_on(consent_broker::backup::backup(&config, &to))?;
            println!(
                "backup: {} records and {} index entries of the {} store written to {}",
                summary.record_count(),
                summary.member_count(),
                summary.store,
                to.display()
            );
            for line in summary.details() {
                println!("{line}");
            }
        }
        Command::Restore { config, from, force } => {
            let config = consent_broker::Config::load(&config)?;
            let _log = consent_broker::telemetry::init(config.log.json, &config.log.level);
            let summary = runtime()?.block_on(consent_broker::backup::restore(&config, &from, force))?;
            println!(
                "restore: {} records and {} index entries from {} written to the {} store",
                summary.record_count(),
                summary.member_count(),
                from.display(),
                summary.store
            );
            for line in summary.details() {
                println!("{line}");
            }
            for warning in summary.warnings() {
                eprintln!("warning: {warning}");
            }
        }
        Command::Explain { text, file, json, lang } => {
            let text = explain_input(text, file)?;
            let lang = match lang {
                ExplainLang::En => consent_broker::http::i18n::Lang::En,
                ExplainLang::De => consent_broker::http::i18n::Lang::De,
            };
            let e = consent_broker::entra::explain::explain_in(&text, lang);
            if json {
                let answer = consent_broker::http::api_types::ExplainResponse::from(e);
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                print!("{}", consent_broker::entra::explain::render_text(&e));
            }
        }
        Command::Demo { data_dir, verbose } => {
            // Quiet by default, so the banner is not buried under request lines.
            let level = if verbose { "consent_broker=info,warn" } else { "warn" };
            let _log = consent_broker::telemetry::init(false, level);
            runtime()?.block_on(consent_broker::demo::run(data_dir, verbose))?;
        }
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
