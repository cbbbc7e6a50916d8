//! OTLP/HTTP trace export (`telemetry.otlp_endpoint`): a `server` span per request and a
//! `client` span per upstream call, exported as OTLP JSON by a batch processor on its own thread.
//!
//! Off (the default), nothing here runs: no span is made per request ([`enabled`] is one atomic
//! load). On, the request span takes the request's W3C identity ([`crate::gateway::Trace`]): the
//! incoming `traceparent`'s trace id and parent, and as its own span id the id the gateway sends
//! upstream in `traceparent`, so the upstream's spans hang under it and `request_id` in the logs
//! is the exported trace id. Spans are flushed when the gateway drains on shutdown.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider,
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, SdkTracerProvider,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The spans' target (the only target the exporting layer takes).
pub const TARGET: &str = "portcullis::otel";

static ON: AtomicBool = AtomicBool::new(false);
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

thread_local! {
    /// The ids the next span made on this thread must have (set around [`request_span`]).
    static NEXT: Cell<Option<(TraceId, SpanId)>> = const { Cell::new(None) };
}

/// Whether spans are exported (set once at start).
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Ids from [`NEXT`] when set, random otherwise.
#[derive(Debug, Default)]
struct Ids(RandomIdGenerator);

impl IdGenerator for Ids {
    fn new_trace_id(&self) -> TraceId {
        match NEXT.with(Cell::get) {
            Some((t, _)) => t,
            None => self.0.new_trace_id(),
        }
    }

    fn new_span_id(&self) -> SpanId {
        match NEXT.with(Cell::get) {
            Some((_, s)) => s,
            None => self.0.new_span_id(),
        }
    }
}

/// The exporting layer for `traces_url` (the collector's `/v1/traces`), filtered to [`TARGET`].
pub fn layer<S>(
    traces_url: &str,
    service_name: &str,
) -> Result<impl tracing_subscriber::Layer<S> + Send + Sync, String>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    use tracing_subscriber::Layer;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(traces_url)
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(Duration::from_secs(1))
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_id_generator(Ids::default())
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build();
    let tracer = provider.tracer("portcullis");
    let _ = PROVIDER.set(provider);
    ON.store(true, Ordering::Relaxed);
    Ok(tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(
            tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::INFO),
        ))
}

/// Export what is buffered (shutdown), waiting up to the exporter's timeout.
pub fn flush() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.force_flush();
    }
}

/// The span of one request with the W3C identity of `trace`: `trace_id`, the caller's
/// `parent` span (if it sent one), and `span_id` (what goes upstream in `traceparent`).
pub fn request_span(
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<([u8; 8], u8)>,
    method: &str,
    path: &str,
) -> tracing::Span {
    let (trace, span) = (TraceId::from_bytes(trace_id), SpanId::from_bytes(span_id));
    NEXT.with(|n| n.set(Some((trace, span))));
    let s = tracing::info_span!(
        target: "portcullis::otel",
        "request",
        otel.name = %format_args!("{method} {path}"),
        otel.kind = "server",
        http.request.method = method,
        url.path = path,
        http.response.status_code = tracing::field::Empty,
    );
    if let Some((parent, flags)) = parent {
        // The caller's sampling decision stands (the default sampler follows the parent).
        let remote = SpanContext::new(
            trace,
            SpanId::from_bytes(parent),
            TraceFlags::new(flags),
            true,
            TraceState::default(),
        );
        let _ = s.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    // The OTel span is built (and its ids drawn) when first needed: build it now, while the
    // ids are set.
    let _ = s.context();
    NEXT.with(|n| n.set(None));
    s
}

/// The span of one call to `server` (a child of the current request span).
pub fn upstream_span(server: &str) -> tracing::Span {
    tracing::info_span!(
        target: "portcullis::otel",
        "upstream",
        otel.name = %format_args!("upstream {server}"),
        otel.kind = "client",
        server.name = server,
    )
}

/// Record the answer's status on the current request span.
pub fn status(code: u16) {
    if enabled() {
        tracing::Span::current().record("http.response.status_code", code);
    }
}
