//! Logging setup. Log lines name flows, connectors and connections by id; tokens, codes,
//! secrets and API keys are never logged (records hold them as [`crate::crypto::Sensitive`]).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: human text or JSON, filtered by `level`
/// (`RUST_LOG` overrides). Safe to call more than once; later calls do nothing.
pub fn init(json: bool, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal; pipes and log collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        // Its report of a failed write is an eprintln!, which panics when stderr is gone (a log
        // collector that died): the panicking task could be the one waiting for SIGTERM, and the
        // broker would never stop. A lost log line is the lesser harm.
        .log_internal_errors(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
