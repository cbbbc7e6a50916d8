//! How fields of log lines and spans are written in the human-readable format: `name=value`,
//! separated by spaces, a value quoted only when it needs it. The same shape as
//! `tracing-subscriber`'s default, without its styling layer: every request's span formats its
//! `request_id` here, so this runs once per request.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;

/// Plain `name=value` fields.
#[derive(Debug, Default, Clone, Copy)]
pub struct Plain;

impl<'w> FormatFields<'w> for Plain {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = Visitor {
            writer,
            result: Ok(()),
            empty: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Visitor<'w> {
    writer: Writer<'w>,
    result: fmt::Result,
    empty: bool,
}

impl Visitor<'_> {
    fn separate(&mut self) -> fmt::Result {
        if self.empty {
            self.empty = false;
            Ok(())
        } else {
            self.writer.write_char(' ')
        }
    }
}

/// Written without quotes: nothing in it a reader could take for a separator.
fn bare(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/'))
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        self.result = self.separate().and_then(|()| {
            if field.name() == "message" {
                self.writer.write_str(value)
            } else if bare(value) {
                self.writer.write_str(field.name())?;
                self.writer.write_char('=')?;
                self.writer.write_str(value)
            } else {
                write!(self.writer, "{}={:?}", field.name(), value)
            }
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        self.result = self.separate().and_then(|()| {
            if field.name() == "message" {
                write!(self.writer, "{value:?}")
            } else {
                write!(self.writer, "{}={:?}", field.name(), value)
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_types)] // a test's capture buffer
mod tests {
    use std::sync::{Arc, Mutex};

    #[test]
    fn fields_are_plain_name_value_pairs() {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .map_err(|_| std::io::ErrorKind::Other)?
                    .extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(super::Plain)
            .with_ansi(false)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::error_span!("request", request_id = "4bf92f35");
            let _in = span.enter();
            tracing::warn!(
                server = "up",
                detail = "connection refused",
                n = 3,
                "upstream failed"
            );
        });
        let text = String::from_utf8(buf.0.lock().map(|b| b.clone()).unwrap_or_default())
            .unwrap_or_default();
        assert!(
            text.contains(
                "request{request_id=4bf92f35}: portcullis::telemetry::fields::tests: upstream failed server=up detail=\"connection refused\" n=3"
            ),
            "{text}"
        );
    }
}
