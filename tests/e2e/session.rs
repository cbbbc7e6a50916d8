//! A raw MCP client over HTTP (legacy 2025-11-25 sessions): the headers a client sends, JSON-RPC
//! requests whose answers are read as SSE or JSON, and small helpers on results.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::Stack;
use crate::sse::{read_messages, Arrival};

pub const PROTOCOL_VERSION: &str = "2025-11-25";
const ACCEPT: &str = "application/json, text/event-stream";

/// A client session over raw HTTP.
pub struct Session<'a> {
    stack: &'a Stack,
    pub session_id: Option<String>,
    pub protocol_version: Option<String>,
    next_id: u64,
}

impl<'a> Session<'a> {
    pub fn new(stack: &'a Stack) -> Self {
        Self {
            stack,
            session_id: None,
            protocol_version: None,
            next_id: 1,
        }
    }

    pub fn with_headers(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let mut request = request.header("accept", ACCEPT);
        if let Some(id) = &self.session_id {
            request = request.header("mcp-session-id", id);
        }
        if let Some(version) = &self.protocol_version {
            request = request.header("mcp-protocol-version", version);
        }
        request
    }

    pub async fn post(&self, body: &Value) -> reqwest::Response {
        self.with_headers(self.stack.client.post(self.stack.mcp_url()))
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("POST to the gateway")
    }

    /// `initialize` (capturing `Mcp-Session-Id`) and `notifications/initialized`, asserting
    /// the answers a conforming server gives.
    pub async fn initialize(&mut self) {
        let response = self
            .post(&json!({
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "portcullis-e2e", "version": "0"},
                },
            }))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "initialize");
        let session_id = response
            .headers()
            .get("mcp-session-id")
            .expect("initialize answer has Mcp-Session-Id")
            .to_str()
            .expect("ASCII session id")
            .to_owned();
        let messages = read_messages(response).await;
        let init = &messages.last().expect("initialize result").message;
        assert_eq!(init["id"], 0);
        assert_eq!(init["result"]["protocolVersion"], PROTOCOL_VERSION);
        self.session_id = Some(session_id);
        self.protocol_version = Some(PROTOCOL_VERSION.to_owned());

        let response = self
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "initialized");
    }

    /// Sends a request and returns every message of its answer, asserting the last one is the
    /// response to it.
    pub async fn request(&mut self, method: &str, params: Value) -> (Vec<Arrival>, Value) {
        let id = self.next_id;
        self.next_id += 1;
        let response = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{method}: HTTP status");
        let messages = read_messages(response).await;
        let last = messages
            .last()
            .unwrap_or_else(|| panic!("{method}: empty answer"));
        assert_eq!(
            last.message["id"],
            json!(id),
            "{method}: {:?}",
            last.message
        );
        let result = last
            .message
            .get("result")
            .unwrap_or_else(|| panic!("{method} failed: {}", last.message))
            .clone();
        (messages, result)
    }
}

/// The text blocks of a tool result, joined by newlines.
pub fn text_content(result: &Value) -> String {
    result["content"]
        .as_array()
        .expect("content array")
        .iter()
        .filter(|c| c["type"] == "text")
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}
