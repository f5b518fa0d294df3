//! Logging: one line per event on stderr, human-readable by default, JSON for machines.
//!
//! Every role logs through `tracing`. The rule for callers: a state change (a member's
//! role, a backend's health, the leader lock) is exactly one line at INFO or WARN saying what
//! changed and why. Secrets are never passed to a log macro; config types redact them in
//! their `Debug`/`Display` implementations.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// `2026-11-21T23:22:08.123456Z  INFO manning::proxy: server worker-01 is DOWN ...`
    #[default]
    Human,
    /// One JSON object per line with `timestamp`, `level`, `target` and the event's fields.
    Json,
}

/// Install the global subscriber.
///
/// Precedence of the filter: `--log-level` when given, else `RUST_LOG`, else `info`.
/// `level` accepts a plain level (`debug`) or a full filter (`info,manning::proxy=debug`).
pub fn init(level: Option<&str>, format: LogFormat) -> anyhow::Result<()> {
    let filter = match level {
        Some(l) => EnvFilter::try_new(l)
            .map_err(|e| crate::error::usage(format!("--log-level {l:?}: {e}")))?,
        None => match std::env::var("RUST_LOG") {
            Ok(v) if !v.is_empty() => EnvFilter::try_new(&v)
                .map_err(|e| crate::error::usage(format!("RUST_LOG={v:?}: {e}")))?,
            _ => EnvFilter::new("info"),
        },
    };
    // tokio_postgres logs every statement it sends at DEBUG, including role statements that
    // carry password verifiers: never let those through, whatever the filter says.
    let filter = match "tokio_postgres=info".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    // A second init (tests calling roles in-process) is harmless: keep the first subscriber.
    let _ = result;
    Ok(())
}
