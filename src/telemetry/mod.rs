//! Telemetry: structured logs to stderr ([`init_logging`]; plain fields: [`fields`]; the
//! request a line belongs to: [`request`]) and the Prometheus registry ([`metrics`]).

pub mod fields;
pub mod metrics;
pub mod request;

use tracing_subscriber::{fmt, EnvFilter};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable, one line per event.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Install the global tracing subscriber. `RUST_LOG` filters (`EnvFilter` directives); without
/// it, INFO and above, with a static level filter (an `EnvFilter` keeps per-span state that
/// every request's span would pay for on each poll). Safe to call twice.
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    // Colours only for a person at a terminal: a log file or collector gets plain text.
    let builder = fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match (EnvFilter::try_from_default_env(), format) {
        (Ok(filter), LogFormat::Pretty) => builder
            .with_env_filter(filter)
            .fmt_fields(fields::Plain)
            .with_target(false)
            .try_init(),
        (Ok(filter), LogFormat::Json) => builder
            .with_env_filter(filter)
            .json()
            .flatten_event(true)
            .try_init(),
        (Err(_), LogFormat::Pretty) => builder
            .with_max_level(tracing::Level::INFO)
            .fmt_fields(fields::Plain)
            .with_target(false)
            .try_init(),
        (Err(_), LogFormat::Json) => builder
            .with_max_level(tracing::Level::INFO)
            .json()
            .flatten_event(true)
            .try_init(),
    };
}
