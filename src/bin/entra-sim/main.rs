//! `entra-sim`: a local simulator of Microsoft Entra ID v2.0 for the broker's tests and benchmarks.
//!
//! It serves the authorization, token, admin-consent, discovery and JWKS endpoints with Entra's wire
//! formats (those of the Microsoft identity platform's v2.0 endpoints), derives every outcome from a configured world of
//! tenants, users, policies and apps, and exposes a `/_sim` control API to change that world, move
//! the clock, inject faults and read request counters.
//!
//! Usage: `entra-sim --listen 127.0.0.1:0 [--config FILE.toml|FILE.json]`. After binding it prints
//! exactly one line to stdout, `entra-sim listening on http://127.0.0.1:PORT`; logs go to stderr.

mod adminconsent;
mod assertion;
mod authorize;
mod config;
mod conn;
mod control;
mod discovery;
mod errors;
mod faults;
mod keys;
mod policy;
mod scopes;
mod state;
mod stats;
mod token;
mod web;

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::config::SimConfig;
use crate::conn::{ConnHandle, KillableListener};
use crate::keys::Keys;
use crate::state::SimState;

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "entra-sim", about = "Microsoft Entra ID v2.0 simulator")]
struct Cli {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// World configuration (.toml or .json). Without it the simulator starts with no tenants or apps.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Exit when standard input closes. Parents (tests, the broker's demo) keep a pipe open, so
    /// the simulator dies with them even when they are killed and cannot clean up.
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();

    let config = match &cli.config {
        Some(path) => SimConfig::load(path)?,
        None => {
            tracing::warn!("no --config given: no tenants or apps until PUT /_sim/config");
            SimConfig::default()
        }
    };
    let keys = tokio::task::spawn_blocking(Keys::generate)
        .await
        .context("key generation task")??;

    let listener = TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let address = listener.local_addr()?;
    let base_url = format!("http://{address}");
    let state = Arc::new(SimState::new(base_url.clone(), config, keys));

    let app = Router::new()
        .route("/{tenant}/oauth2/v2.0/authorize", get(authorize::authorize))
        .route("/{tenant}/oauth2/v2.0/token", post(token::token))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(discovery::keys))
        .route("/{tenant}/v2.0/adminconsent", get(adminconsent::admin_consent))
        .merge(control::router())
        .fallback(|| async { (StatusCode::NOT_FOUND, "Not Found") })
        .with_state(state);

    // Tests wait for exactly this line; flush so it is not stuck in a pipe buffer.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "entra-sim listening on {base_url}")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(%base_url, "entra-sim ready");

    axum::serve(
        KillableListener(listener),
        app.into_make_service_with_connect_info::<ConnHandle>(),
    )
    .with_graceful_shutdown(async move {
        if cli.exit_on_stdin_eof {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = stdin_closed() => tracing::info!("standard input closed; stopping"),
            }
        } else {
            let _ = tokio::signal::ctrl_c().await;
        }
    })
    .await
    .context("serving")
}

/// Resolves when standard input reaches end of file (or fails).
async fn stdin_closed() {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
}
