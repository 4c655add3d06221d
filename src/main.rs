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
    /// Explain an Entra error a user pasted (sign-in page text, log line, exception, token body, URL).
    Explain {
        /// The text; read from standard input when omitted.
        text: Option<String>,
        /// Print the same JSON object as POST /v1/explain.
        #[arg(long)]
        json: bool,
    },
    /// Start the Entra simulator and the broker on loopback and print URLs to try.
    Demo {
        /// Where the demo keeps its store and files (default: a fresh temporary directory).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let config = consent_broker::Config::load(&config)?;
            consent_broker::telemetry::init(config.log.json, &config.log.level);
            runtime()?.block_on(async {
                let app = consent_broker::Application::build(config).await?;
                tracing::info!(addr = %app.local_addr(), "consent-broker listening");
                app.run_until(consent_broker::app::shutdown_signal()).await
            })?;
        }
        Command::CheckConfig { config } => {
            let loaded = consent_broker::Config::load(&config)?;
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
        Command::Explain { text, json } => {
            let text = match text {
                Some(t) => t,
                None => {
                    let mut buf = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut buf).context("reading standard input")?;
                    buf
                }
            };
            let e = consent_broker::entra::explain::explain(&text);
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                print!("{}", consent_broker::entra::explain::render_text(&e));
            }
        }
        Command::Demo { data_dir } => {
            consent_broker::telemetry::init(false, "consent_broker=info,warn");
            runtime()?.block_on(consent_broker::demo::run(data_dir))?;
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
