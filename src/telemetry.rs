//! Logging setup. Log lines name flows, connectors and connections by id; tokens, codes,
//! secrets and API keys are never logged (records hold them as [`crate::crypto::Sensitive`]).

use std::io::{BufWriter, Write};

use tracing_subscriber::EnvFilter;

/// Keeps the log writer's thread alive; dropping it (at the end of `main`) writes what is
/// still queued, waiting at most a second.
#[must_use = "log lines still queued are lost when the guard is dropped"]
pub struct LogGuard(#[allow(dead_code)] Option<tracing_appender::non_blocking::WorkerGuard>);

/// Log lines queued for the writer thread before a request's thread waits for it: a burst is
/// absorbed, and a writer that cannot keep up slows the broker down instead of losing lines.
const QUEUED_LINES: usize = 64 * 1024;

/// Installs the global subscriber: human text or JSON, filtered by `level`
/// (`RUST_LOG` overrides), written to stderr by a thread of its own (lines queued, then written
/// in batches), so no request waits for a slow pipe. Safe to call more than once; later calls
/// install nothing (and their guard holds nothing).
pub fn init(json: bool, level: &str) -> LogGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal; pipes and log collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("consent-broker-log")
        .finish(BufWriter::new(IgnoreErrors(std::io::stderr())));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer)
        // Its report of a failed write is an eprintln!, which panics when stderr is gone (a log
        // collector that died): the panicking task could be the one waiting for SIGTERM, and the
        // broker would never stop. A lost log line is the lesser harm.
        .log_internal_errors(false);
    let installed = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    LogGuard(installed.is_ok().then_some(guard))
}

/// A writer whose failures are dropped: the writer thread reports a failed final flush with an
/// `eprintln!`, which panics once stderr is gone, and a lost log line is the lesser harm (as
/// above).
struct IgnoreErrors<W>(W);

impl<W: Write> Write for IgnoreErrors<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails every write and flush, as a closed pipe does.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        }
    }

    #[test]
    fn a_writer_that_fails_is_treated_as_having_written() {
        let mut w = BufWriter::new(IgnoreErrors(Broken));
        assert_eq!(w.write(b"a line\n").unwrap(), 7);
        w.flush().expect("no error reaches the log thread");
        let mut plain = IgnoreErrors(Vec::new());
        plain.write_all(b"kept").unwrap();
        assert_eq!(plain.0, b"kept");
    }
}
