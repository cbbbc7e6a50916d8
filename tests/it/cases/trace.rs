//! A trace per request: the client's W3C `traceparent` is continued (or one is created) and
//! passed upstream with the gateway's own span as parent; every log line of the request carries
//! the trace id as `request_id`; no token or upstream secret is ever in a log line.

use std::io::Write;
use std::sync::{Arc, Mutex};

use super::authn::{config as authn_config, token};
use crate::common::{client, config_for, Gateway, Upstream};

const CLIENT_TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

#[tokio::test]
async fn the_clients_trace_is_continued_upstream_with_the_gateways_span() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    let resp = client()
        .post(gw.url("/mcp/up"))
        .header("content-type", "application/json")
        .header("traceparent", CLIENT_TRACE)
        .body(PING)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = up.last_headers();
    let tp = seen["traceparent"].to_str().unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{tp}"
    );
    assert!(
        !tp.contains("00f067aa0ba902b7"),
        "the gateway's span is the parent: {tp}"
    );
    assert!(tp.ends_with("-01"), "{tp}");
    assert_eq!(seen.get_all("traceparent").iter().count(), 1);

    // Without one (or with a malformed one), a new trace starts.
    for sent in [None, Some("00-zz-00f067aa0ba902b7-01")] {
        let mut req = client()
            .post(gw.url("/mcp/up"))
            .header("content-type", "application/json")
            .body(PING);
        if let Some(v) = sent {
            req = req.header("traceparent", v);
        }
        assert_eq!(req.send().await.unwrap().status(), 200);
        let seen = up.last_headers();
        let tp = seen["traceparent"].to_str().unwrap();
        assert_eq!(tp.len(), 55, "{tp}");
        assert!(!tp.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{tp}");
    }
}

/// Log output captured for the current thread (the test's runtime runs the gateway's tasks on
/// it).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn log_lines_of_a_request_carry_its_id_and_no_secret() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("portcullis=debug")
        .fmt_fields(portcullis::telemetry::fields::Plain)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // The upstream fails (it closes every connection at once; a port freed for the purpose
    // could be taken by another test's listener meanwhile): the relay logs a warning.
    let closing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = closing.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((conn, _)) = closing.accept().await {
            drop(conn);
        }
    });
    let secret = "upstream-secret-value";
    let yaml = authn_config(dead).replace(
        "      connection:\n",
        &format!(
            "      auth: {{ type: header, header: x-key, value: {secret} }}\n      connection:\n"
        ),
    );
    let gw = Gateway::start(&yaml).await;
    let bearer = token(&["User"], 600);
    let resp = client()
        .post(gw.url("/mcp/up"))
        .header("content-type", "application/json")
        .header("traceparent", CLIENT_TRACE)
        .bearer_auth(&bearer)
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    // A refused token is logged (at DEBUG) inside its request too.
    let resp = client()
        .post(gw.url("/mcp/up"))
        .header("content-type", "application/json")
        .header("traceparent", CLIENT_TRACE)
        .bearer_auth("forged.token.value")
        .body(PING)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let text = logs.text();
    let request_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("upstream request failed") || l.contains("bearer token rejected"))
        .collect();
    assert_eq!(request_lines.len(), 2, "{text}");
    for line in request_lines {
        assert!(
            line.contains("request_id=4bf92f3577b34da6a3ce929d0e0e4736"),
            "{line}"
        );
    }
    for leaked in [bearer.as_str(), "forged.token.value", secret] {
        assert!(!text.contains(leaked), "a secret is in the logs:\n{text}");
    }
}
