//! Which request a log line belongs to. A request runs inside [`scope`] with its id (the W3C
//! trace id); a log line written with [`in_request!`](crate::in_request) inside it is emitted
//! within a `request{request_id=...}` span made for it, so every log line of a request carries
//! its id, whatever module writes it.
//!
//! The span is made when a line is written, not for every request: making a span per request
//! (and entering it on every poll) cost about 5% of the CPU of a proxied call with the default
//! subscriber (BENCHMARKS.md), and most requests write no line at all. Outside a request (a
//! background task) the line is written as it is.

use std::future::Future;

tokio::task_local! {
    static REQUEST: RequestId;
}

/// A request's id: its trace id, 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId([u8; 32]);

impl RequestId {
    /// All zeros (never a valid trace id): what a broken id becomes.
    pub const ZERO: RequestId = RequestId([b'0'; 32]);

    /// The id of hex `digits` (32 ASCII hex digits); `None` otherwise.
    pub fn new(digits: &[u8]) -> Option<RequestId> {
        let id: [u8; 32] = digits.try_into().ok()?;
        id.iter()
            .all(u8::is_ascii_hexdigit)
            .then_some(RequestId(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // ASCII hex digits only (checked in `new`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Run `fut` as the request `id`. (The future is moved once into the scope: a request's future
/// should stay small, with rare large parts boxed.)
pub fn scope<F: Future>(id: RequestId, fut: F) -> impl Future<Output = F::Output> {
    REQUEST.scope(id, fut)
}

/// The id of the request being served, if any.
pub fn current() -> Option<RequestId> {
    REQUEST.try_with(|id| *id).ok()
}

/// A span for a line about to be written: `request{request_id=...}` inside a request, none
/// outside one.
pub fn span() -> tracing::Span {
    match current() {
        Some(id) => tracing::error_span!("request", request_id = id.as_str()),
        None => tracing::Span::none(),
    }
}

/// Write a log line (`tracing`'s `error!`, `warn!`, `info!`, `debug!` or `trace!` arguments
/// after the level's name) inside the current request's span; nothing is made when the level
/// is off.
#[macro_export]
macro_rules! in_request {
    (error, $($arg:tt)+) => { $crate::in_request!(@ ERROR, error, $($arg)+) };
    (warn, $($arg:tt)+) => { $crate::in_request!(@ WARN, warn, $($arg)+) };
    (info, $($arg:tt)+) => { $crate::in_request!(@ INFO, info, $($arg)+) };
    (debug, $($arg:tt)+) => { $crate::in_request!(@ DEBUG, debug, $($arg)+) };
    (trace, $($arg:tt)+) => { $crate::in_request!(@ TRACE, trace, $($arg)+) };
    (@ $level:ident, $mac:ident, $($arg:tt)+) => {
        if ::tracing::enabled!(::tracing::Level::$level) {
            $crate::telemetry::request::span().in_scope(|| ::tracing::$mac!($($arg)+));
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_id_is_known_inside_its_scope_only() {
        let id = RequestId::new(b"4bf92f3577b34da6a3ce929d0e0e4736").unwrap_or(RequestId::ZERO);
        assert_eq!(current(), None);
        scope(id, async {
            assert_eq!(
                current().map(|i| i.as_str().to_owned()).as_deref(),
                Some("4bf92f3577b34da6a3ce929d0e0e4736")
            );
            crate::in_request!(debug, "inside");
        })
        .await;
        assert_eq!(current(), None);
        assert!(RequestId::new(b"xyz").is_none());
        assert!(RequestId::new(&[b'g'; 32]).is_none());
    }
}
