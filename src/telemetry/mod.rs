//! Telemetry: structured logs to stderr ([`init_logging`]; plain fields: [`fields`]; the
//! request a line belongs to: [`request`]) and the Prometheus registry ([`metrics`]).

pub mod fields;
pub mod metrics;
pub mod otel;
pub mod request;

use tracing_subscriber::{fmt, EnvFilter};

/// The audit trail's `tracing` target (its events: `crate::gateway::audit`).
pub const AUDIT_TARGET: &str = "portcullis::audit";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable, one line per event.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Install the global tracing subscriber. `RUST_LOG` filters (`EnvFilter` directives); without
/// it, INFO and above, with static filters (an `EnvFilter` keeps per-span state that every
/// request's span would pay for on each poll). The audit trail (`portcullis::audit`) leaves
/// stderr unless `RUST_LOG` names it, and goes as JSON lines to `audit` when given (`-`:
/// stderr). Safe to call twice. `Err`: the audit file cannot be opened.
pub fn init_logging(
    format: LogFormat,
    audit: Option<&std::path::Path>,
    otlp: Option<(&str, &str)>,
) -> std::io::Result<()> {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    // Colours only for a person at a terminal: a log file or collector gets plain text.
    let ansi = std::io::stderr().is_terminal();
    let stderr = match format {
        LogFormat::Pretty => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .fmt_fields(fields::Plain)
            .with_target(false)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .boxed(),
    };
    let stderr = match EnvFilter::try_from_default_env() {
        Ok(env) => {
            // The audit trail stays off stderr unless RUST_LOG names its target.
            let names_audit = std::env::var("RUST_LOG").is_ok_and(|v| v.contains(AUDIT_TARGET));
            let env = match (names_audit, "portcullis::audit=off".parse()) {
                (false, Ok(off)) => env.add_directive(off),
                _ => env,
            };
            stderr.with_filter(env).boxed()
        }
        Err(_) => stderr
            .with_filter(
                Targets::new()
                    .with_default(LevelFilter::INFO)
                    .with_target(AUDIT_TARGET, LevelFilter::OFF),
            )
            .boxed(),
    };
    let audit_layer = match audit {
        None => None,
        Some(path) => {
            let writer: Box<dyn Fn() -> Box<dyn std::io::Write> + Send + Sync> =
                if path.as_os_str() == "-" {
                    Box::new(|| Box::new(std::io::stderr()))
                } else {
                    let file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)?;
                    let file = std::sync::Arc::new(file);
                    Box::new(move || Box::new(AppendFile(file.clone())))
                };
            Some(
                fmt::layer()
                    .with_writer(writer)
                    .with_ansi(false)
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_filter(Targets::new().with_target(AUDIT_TARGET, LevelFilter::INFO))
                    .boxed(),
            )
        }
    };
    let otel = match otlp {
        Some((url, service)) => Some(otel::layer(url, service).map_err(std::io::Error::other)?),
        None => None,
    };
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(audit_layer)
        .with(otel)
        .try_init();
    Ok(())
}

/// An append-only file shared by the audit layer's writers (each event is one `write` of one
/// line; appends of a line are atomic for regular files on Linux).
struct AppendFile(std::sync::Arc<std::fs::File>);

impl std::io::Write for AppendFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        (&*self.0).flush()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Pingora writes `log` records at debug and trace on every request: they must be dropped
    /// by `log`'s static max level, not handed to the subscriber one by one.
    #[test]
    fn log_records_below_info_are_skipped_at_the_source() {
        if std::env::var_os("RUST_LOG").is_some() {
            return; // The filter is the caller's then.
        }
        init_logging(LogFormat::Pretty, None, None).unwrap();
        assert_eq!(log::max_level(), log::LevelFilter::Info);
        assert_eq!(
            tracing::level_filters::LevelFilter::current(),
            tracing::level_filters::LevelFilter::INFO
        );
    }
}
