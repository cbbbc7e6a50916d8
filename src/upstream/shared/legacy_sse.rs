//! The legacy HTTP+SSE transport (MCP 2024-11-05) as a [`super::link::Link`].
//!
//! The client opens one long-lived `GET` answered with `text/event-stream`. The server's first
//! `endpoint` event names the URI (usually relative, such as `/messages?sessionId=…`) to which
//! every client message is `POST`ed; the server's messages arrive as `message` events on the
//! stream. The endpoint must be on the stream's own origin: the configured headers (credentials)
//! are sent with every `POST`, so a server may not redirect them elsewhere. Redirects are not
//! followed for the same reason.
//!
//! Outgoing messages are posted concurrently (up to [`MAX_IN_FLIGHT`], started in order of
//! submission), except notifications, which wait for every earlier `POST` to finish and hold
//! back later ones until they are delivered, so that e.g. `notifications/cancelled` cannot
//! overtake the request it cancels. When a `POST` carrying a request fails (non-2xx answer or
//! transport error) the upstream never answers it, so a JSON-RPC error response for that request
//! is synthesized into the link's `rx`.

use std::collections::VecDeque;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use url::Url;

use super::link::{Link, Stop, LINK_BUFFER};
use crate::mcp::sse::{event_data, event_type, Framer};

/// How many `POST`s may be under way at once on one link.
pub const MAX_IN_FLIGHT: usize = 32;

/// How long one `POST` (connect, answer and its body) may take. Servers answer `202 Accepted`
/// at once (the result travels on the stream); some never answer a `POST` for an unknown
/// session, so this bound matters.
pub const POST_TIMEOUT: Duration = Duration::from_secs(60);

/// Most bytes of a successful `POST`'s answer read (then discarded) so the connection can be
/// reused; a longer answer just closes it.
const MAX_POST_ANSWER: usize = 64 * 1024;

/// The JSON-RPC "internal error" code used for synthesized errors.
const INTERNAL_ERROR: i32 = -32603;

/// Open the legacy SSE stream at `url` for the upstream named `server` and wait for its
/// `endpoint` event; `headers` go with the `GET` and with every `POST`. `connect_timeout` bounds
/// the connect, the response head and the arrival of the `endpoint` event together.
pub async fn connect(
    server: &str,
    url: &Url,
    headers: &[(HeaderName, HeaderValue)],
    tls: Option<&crate::tls::UpstreamTls>,
    connect_timeout: Duration,
) -> Result<Link, String> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .tcp_keepalive(Duration::from_secs(60));
    if let Some(tls) = tls {
        builder = with_tls(builder, tls)?;
    }
    let client = builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", describe(e)))?;
    let mut injected = HeaderMap::new();
    for (name, value) in headers {
        let mut value = value.clone();
        value.set_sensitive(true);
        injected.append(name.clone(), value);
    }

    let (events, early, endpoint) =
        tokio::time::timeout(connect_timeout, open(&client, url, &injected))
            .await
            .map_err(|_| {
                format!(
                    "no `endpoint` event within {}",
                    humantime::format_duration(connect_timeout)
                )
            })??;
    tracing::debug!(server = %server, origin = %endpoint.origin().ascii_serialization(), "legacy SSE stream open");

    let (to_upstream, outgoing) = mpsc::channel::<Bytes>(LINK_BUFFER);
    let (inbox, from_upstream) = mpsc::channel::<Bytes>(LINK_BUFFER);
    let (ended_tx, ended_rx) = oneshot::channel();
    let ended_tx = Arc::new(ArcSwapOption::from_pointee(ended_tx));

    let server: Arc<str> = Arc::from(server);
    let mut post_headers = injected;
    post_headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let poster = Arc::new(Poster {
        server: server.clone(),
        client,
        endpoint,
        headers: post_headers,
        inbox: inbox.downgrade(),
    });
    let writer = tokio::spawn(write_loop(poster, outgoing));
    let reader = tokio::spawn(read_loop(server, events, early, inbox, ended_tx.clone()));
    Ok(Link {
        tx: to_upstream,
        rx: from_upstream,
        ended: ended_rx,
        pid: None,
        stopper: Box::new(TaskStopper {
            tasks: vec![reader, writer],
            ended: ended_tx,
        }),
    })
}

/// `GET` the stream and read it up to its `endpoint` event. Returns the stream, the messages
/// that came before the endpoint (if any), and the resolved endpoint.
async fn open(
    client: &reqwest::Client,
    url: &Url,
    injected: &HeaderMap,
) -> Result<(Events, Vec<Bytes>, Url), String> {
    let mut headers = injected.clone();
    headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let resp = client
        .get(url.clone())
        .headers(headers)
        .send()
        .await
        .map_err(|e| format!("GET failed: {}", describe(e)))?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(format!(
            "GET answered HTTP {} (redirects are not followed)",
            status.as_u16()
        ));
    }
    if !status.is_success() {
        return Err(format!("GET answered HTTP {}", status.as_u16()));
    }
    let is_sse = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("text/event-stream"));
    if !is_sse {
        return Err("GET did not answer with text/event-stream".into());
    }

    let mut events = Events {
        resp,
        framer: Framer::default(),
        queued: VecDeque::new(),
    };
    let mut early = Vec::new();
    loop {
        let Some(event) = events.next().await? else {
            return Err("the SSE stream ended before its `endpoint` event".into());
        };
        match classify(&event) {
            Kind::Endpoint(data) => {
                let endpoint = resolve_endpoint(url, &data)?;
                return Ok((events, early, endpoint));
            }
            Kind::Message(msg) => {
                if early.len() >= LINK_BUFFER {
                    return Err("too many messages before the `endpoint` event".into());
                }
                early.push(msg);
            }
            Kind::Other => {}
        }
    }
}

/// Resolve the `endpoint` event's data against the stream's URL; it must stay on its origin.
fn resolve_endpoint(base: &Url, data: &[u8]) -> Result<Url, String> {
    let text = std::str::from_utf8(data)
        .map(str::trim)
        .map_err(|_| "the `endpoint` event is not UTF-8")?;
    if text.is_empty() {
        return Err("the `endpoint` event is empty".into());
    }
    let endpoint = base
        .join(text)
        .map_err(|e| format!("the `endpoint` event is not a URI: {e}"))?;
    if endpoint.origin() != base.origin() {
        return Err(format!(
            "refusing an endpoint on another origin ({}, the stream is on {})",
            endpoint.origin().ascii_serialization(),
            base.origin().ascii_serialization()
        ));
    }
    Ok(endpoint)
}

/// The SSE events of a response body, one at a time.
struct Events {
    resp: reqwest::Response,
    framer: Framer,
    /// Events framed but not handed out yet.
    queued: VecDeque<Bytes>,
}

impl Events {
    /// The next event; `Ok(None)` when the stream ended (an unfinished event is discarded, as
    /// the HTML standard says). Cancel-safe: nothing is lost if the future is dropped.
    async fn next(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            if let Some(event) = self.queued.pop_front() {
                return Ok(Some(event));
            }
            match self.resp.chunk().await {
                Ok(Some(chunk)) => {
                    let events = self.framer.push(&chunk).map_err(|e| e.to_string())?;
                    self.queued.extend(events);
                }
                Ok(None) => return Ok(None),
                Err(e) => return Err(describe(e)),
            }
        }
    }
}

/// What an SSE event means to this transport.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// A JSON-RPC message from the server (`event: message`, or no event name).
    Message(Bytes),
    /// The `endpoint` event's data.
    Endpoint(Vec<u8>),
    /// Comments, data-less events, other event types.
    Other,
}

fn classify(event: &[u8]) -> Kind {
    let Some(data) = event_data(event) else {
        return Kind::Other;
    };
    match event_type(event) {
        None | Some(b"") | Some(b"message") => {
            if data.iter().all(u8::is_ascii_whitespace) {
                Kind::Other
            } else {
                Kind::Message(Bytes::from(data))
            }
        }
        Some(b"endpoint") => Kind::Endpoint(data),
        Some(_) => Kind::Other,
    }
}

/// Forward the stream's messages into the link until the stream or the link ends; then report
/// why on `ended`.
async fn read_loop(
    server: Arc<str>,
    mut events: Events,
    early: Vec<Bytes>,
    inbox: mpsc::Sender<Bytes>,
    ended: Arc<ArcSwapOption<oneshot::Sender<String>>>,
) {
    let reason = async {
        const CLOSED: &str = "the link was closed by the gateway";
        for msg in early {
            if inbox.send(msg).await.is_err() {
                return CLOSED.to_string();
            }
        }
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                () = inbox.closed() => return CLOSED.to_string(),
            };
            match event {
                Ok(Some(event)) => match classify(&event) {
                    Kind::Message(msg) => {
                        if inbox.send(msg).await.is_err() {
                            return CLOSED.to_string();
                        }
                    }
                    Kind::Endpoint(_) => {
                        tracing::debug!(server = %server, "ignoring a repeated `endpoint` event");
                    }
                    Kind::Other => {}
                },
                Ok(None) => return "the upstream closed the SSE stream".to_string(),
                Err(e) => return format!("the SSE stream failed: {e}"),
            }
        }
    }
    .await;
    tracing::debug!(server = %server, reason = %reason, "legacy SSE stream ended");
    drop(inbox);
    let sender = ended.swap(None).and_then(Arc::into_inner);
    if let Some(sender) = sender {
        let _ = sender.send(reason);
    }
}

/// Posts messages to the endpoint.
struct Poster {
    server: Arc<str>,
    client: reqwest::Client,
    endpoint: Url,
    /// The injected headers plus `Content-Type`.
    headers: HeaderMap,
    /// Where synthesized error responses go; weak so the link's `rx` closes with the stream.
    inbox: mpsc::WeakSender<Bytes>,
}

/// Post every outgoing message, in order of submission, until the gateway drops the link's `tx`.
async fn write_loop(poster: Arc<Poster>, mut outgoing: mpsc::Receiver<Bytes>) {
    let mut in_flight = JoinSet::new();
    loop {
        let msg = tokio::select! {
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => continue,
            msg = outgoing.recv() => msg,
        };
        let Some(msg) = msg else { break };
        if is_notification(&msg) {
            while in_flight.join_next().await.is_some() {}
            poster.post(msg).await;
        } else {
            while in_flight.len() >= MAX_IN_FLIGHT {
                in_flight.join_next().await;
            }
            let poster = poster.clone();
            in_flight.spawn(async move { poster.post(msg).await });
        }
    }
    while in_flight.join_next().await.is_some() {}
}

impl Poster {
    /// Post one message; on failure, answer the requests it carried with an error.
    async fn post(&self, msg: Bytes) {
        let sent = self
            .client
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .timeout(POST_TIMEOUT)
            .body(msg.clone())
            .send()
            .await;
        let reason = match sent {
            Ok(mut resp) if resp.status().is_success() => {
                let mut read = 0;
                while let Ok(Some(chunk)) = resp.chunk().await {
                    read += chunk.len();
                    if read > MAX_POST_ANSWER {
                        break;
                    }
                }
                return;
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                tracing::warn!(server = %self.server, status, "the legacy SSE upstream rejected a message");
                format!("upstream rejected the message: HTTP {status}")
            }
            Err(e) => {
                let e = describe(e);
                tracing::warn!(server = %self.server, error = %e, "posting a message to the legacy SSE upstream failed");
                format!("could not deliver the message upstream: {e}")
            }
        };
        let replies = failure_replies(&msg, &reason);
        if replies.is_empty() {
            return;
        }
        let Some(inbox) = self.inbox.upgrade() else {
            return;
        };
        for reply in replies {
            if inbox.send(reply).await.is_err() {
                return;
            }
        }
    }
}

/// The parts of an outgoing JSON-RPC message that decide how a failed delivery is reported.
#[derive(serde::Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a RawValue>,
}

/// The messages in `msg` (one, or each of a batch); empty when it is not JSON-RPC.
fn probe(msg: &[u8]) -> Vec<Probe<'_>> {
    if let Ok(one) = serde_json::from_slice::<Probe>(msg) {
        return vec![one];
    }
    serde_json::from_slice::<Vec<Probe>>(msg).unwrap_or_default()
}

/// True when `msg` is a single notification (a method, no id).
fn is_notification(msg: &[u8]) -> bool {
    matches!(
        serde_json::from_slice::<Probe>(msg),
        Ok(Probe {
            id: None,
            method: Some(_)
        })
    )
}

/// A JSON-RPC error response for each request in `msg`, carrying `reason`.
fn failure_replies(msg: &[u8], reason: &str) -> Vec<Bytes> {
    let message = serde_json::Value::String(reason.to_string());
    probe(msg)
        .into_iter()
        .filter(|p| p.method.is_some())
        .filter_map(|p| p.id)
        .map(|id| {
            Bytes::from(format!(
                r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":{INTERNAL_ERROR},"message":{message}}}}}"#,
                id.get()
            ))
        })
        .collect()
}

/// `connection.tls` on the client: its CA certificates replace the system roots (as for
/// Streamable HTTP upstreams), its client certificate is presented.
fn with_tls(
    mut builder: reqwest::ClientBuilder,
    tls: &crate::tls::UpstreamTls,
) -> Result<reqwest::ClientBuilder, String> {
    if let Some(ca) = &tls.ca {
        builder = builder.tls_built_in_root_certs(false);
        for der in ca {
            let cert = reqwest::Certificate::from_der(der)
                .map_err(|e| format!("CA certificate: {}", describe(e)))?;
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some(client) = &tls.client {
        let mut pem = String::new();
        for der in &client.chain {
            pem.push_str(&pem_block("CERTIFICATE", der));
        }
        pem.push_str(&pem_block(client.key_label, &client.key));
        let id = reqwest::Identity::from_pem(pem.as_bytes())
            .map_err(|e| format!("client certificate: {}", describe(e)))?;
        builder = builder.identity(id);
    }
    Ok(builder)
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A reqwest error and its causes, without the URL (it may carry a session id).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Stops a legacy SSE link: aborts its stream and `POST` tasks.
struct TaskStopper {
    tasks: Vec<JoinHandle<()>>,
    ended: Arc<ArcSwapOption<oneshot::Sender<String>>>,
}

#[async_trait]
impl Stop for TaskStopper {
    async fn stop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        let sender = self.ended.swap(None).and_then(Arc::into_inner);
        if let Some(sender) = sender {
            let _ = sender.send("stopped by the gateway".to_string());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
