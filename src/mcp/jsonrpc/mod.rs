//! JSON-RPC classification of a request body in one streaming pass.
//!
//! The gateway must decide before contacting an upstream, so every POST body is checked here:
//! strict UTF-8 JSON (no trailing data, nesting capped by serde_json's recursion limit), no
//! duplicate key in any object at any depth (so the gateway and the upstream can never read the
//! same bytes differently), and the JSON-RPC 2.0 envelope. Only the fields a decision needs are
//! kept (`id`, `method`, and what a method the policy covers uses: [`crate::policy::covered`]);
//! everything else is validated and dropped. The body itself is forwarded byte for byte:
//! nothing here re-serializes it.
//!
//! A message of a covered method must be decidable: a request (a notification would go
//! upstream with no answer to carry a denial: -32600) whose `params` name its target as a string
//! (-32602 otherwise). Such a message is refused here, whatever else the body holds, so the
//! policy never meets a message it cannot decide.

use std::fmt;

mod visit;

use serde::de::{self, Deserializer};
use serde_json::Value;

use crate::policy::{Kind, Target};
use visit::TopVisitor;

/// Most messages in a batch (JSON-RPC -32600 past it). Nesting is bounded by serde_json's
/// recursion limit (128 levels: -32700) and strings by `server.max_body_bytes`.
pub const MAX_BATCH: usize = 100;

/// Why a body was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RpcError {
    /// Not UTF-8 JSON, trailing bytes, too deep, or empty.
    #[error("Parse error: {0}")]
    Parse(String),
    /// Valid JSON, but not an acceptable JSON-RPC 2.0 message.
    #[error("Invalid Request: {0}")]
    Invalid(String),
    /// A method the policy decides, whose `params` name nothing it can decide on.
    #[error("Invalid params: {message}")]
    InvalidParams {
        /// The request's id (null inside a batch).
        id: Value,
        /// What is wrong.
        message: String,
    },
}

impl RpcError {
    /// The JSON-RPC error code for this refusal.
    pub fn code(&self) -> i64 {
        match self {
            RpcError::Parse(_) => -32700,
            RpcError::Invalid(_) => -32600,
            RpcError::InvalidParams { .. } => -32602,
        }
    }

    /// The id to answer with: the request's own for invalid params of a single request.
    pub fn id(&self) -> Value {
        match self {
            RpcError::InvalidParams { id, .. } => id.clone(),
            _ => Value::Null,
        }
    }
}

/// What a request of a covered method uses: a tool, prompt or resource by name (a resource's
/// name is its URI).
#[derive(Debug, Clone)]
pub struct Use {
    /// Tool, prompt or resource.
    pub kind: Kind,
    /// Its name or URI, escapes resolved.
    pub name: String,
    /// Where the name's text is in the body (between its quotes) when it holds no escape: the
    /// aggregated `/mcp` replaces it in place with the upstream's own name. Not part of what
    /// a use is (`==` ignores it).
    pub span: Option<std::ops::Range<usize>>,
}

impl PartialEq for Use {
    fn eq(&self, other: &Use) -> bool {
        self.kind == other.kind && self.name == other.name
    }
}

impl Eq for Use {}

/// One JSON-RPC message, reduced to what a routing or policy decision needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request: has `method` and `id`.
    Request {
        /// The request id (string or number), echoed in gateway errors.
        id: Value,
        /// The method name.
        method: String,
        /// What it uses, for the methods the policy covers (always `Some` for those).
        uses: Option<Use>,
    },
    /// A notification: `method` without `id` (never of a covered method).
    Notification {
        /// The method name.
        method: String,
    },
    /// A response from the client to a server-initiated request (`result` or `error`).
    Response {
        /// The id of the server's request this answers.
        id: Value,
    },
}

impl Message {
    /// The method, for requests and notifications.
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method } => Some(method),
            Message::Response { .. } => None,
        }
    }

    /// The id, for requests and responses.
    pub fn id(&self) -> Option<&Value> {
        match self {
            Message::Request { id, .. } | Message::Response { id } => Some(id),
            Message::Notification { .. } => None,
        }
    }
}

/// A classified body: one message, or a batch (2025-03-26) of several.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The messages in body order.
    pub messages: Vec<Message>,
    /// True when the body was a JSON array.
    pub batch: bool,
}

impl Envelope {
    /// The single message of a body that is not a batch.
    pub fn single(&self) -> Option<&Message> {
        match (self.batch, self.messages.as_slice()) {
            (false, [one]) => Some(one),
            _ => None,
        }
    }

    /// The method of a single request (not a batch, not a notification).
    pub fn single_request(&self) -> Option<&str> {
        match self.single() {
            Some(Message::Request { method, .. }) => Some(method),
            _ => None,
        }
    }

    /// The tool of a single `tools/call` request.
    pub fn single_tool_call(&self) -> Option<&str> {
        match self.single() {
            Some(Message::Request {
                uses:
                    Some(Use {
                        kind: Kind::Tool,
                        name,
                        ..
                    }),
                ..
            }) => Some(name),
            _ => None,
        }
    }

    /// The id to answer an error with (null for batches and notifications).
    pub fn error_id(&self) -> Value {
        self.single()
            .and_then(Message::id)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Every use the body makes of a tool, prompt or resource, in body order, with the id of
    /// the request making it.
    pub fn uses(&self) -> impl Iterator<Item = (&Value, &Use)> {
        self.messages.iter().filter_map(|m| match m {
            Message::Request {
                id, uses: Some(u), ..
            } => Some((id, u)),
            _ => None,
        })
    }
}

/// Classify a request body. See the module docs for what is checked.
pub fn classify(body: &[u8]) -> Result<Envelope, RpcError> {
    let Some(first) = body.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Err(RpcError::Parse("empty body".into()));
    };
    let batch = *first == b'[';
    let mut de = serde_json::Deserializer::from_slice(body);
    let top = de
        .deserialize_any(TopVisitor)
        .map_err(|e| map_json_err(e, batch))?;
    de.end().map_err(|e| map_json_err(e, batch))?;
    let mut top = top?;
    // The visitors saw the borrowed name's address: make it an offset into `body`.
    let base = body.as_ptr() as usize;
    for m in &mut top.messages {
        if let Message::Request { uses: Some(u), .. } = m {
            u.span = u.span.take().and_then(|at| {
                let start = at.start.checked_sub(base)?;
                let end = start + at.len();
                (end <= body.len()).then_some(start..end)
            });
        }
    }
    Ok(top)
}

/// serde_json reports our own semantic errors as `custom`; split them back out. (serde_json
/// appends " at line L column C": kept, it helps find the spot.)
fn map_json_err(e: serde_json::Error, batch: bool) -> RpcError {
    let text = e.to_string();
    if let Some(rest) = text.strip_prefix(INVALID_MARK) {
        RpcError::Invalid(rest.to_string())
    } else if let Some(rest) = text.strip_prefix(PARAMS_MARK) {
        let (id, message) = rest.split_once(ID_END).unwrap_or(("null", rest));
        let id = match batch {
            true => Value::Null,
            false => serde_json::from_str(id).unwrap_or(Value::Null),
        };
        RpcError::InvalidParams {
            id,
            message: message.to_string(),
        }
    } else {
        RpcError::Parse(text)
    }
}

/// Prefix marking a semantic (not syntactic) error raised from inside the visitors.
const INVALID_MARK: &str = "\u{1}invalid:";
/// Prefix marking invalid params: the request's id (JSON) follows, then [`ID_END`].
const PARAMS_MARK: &str = "\u{1}params:";
const ID_END: char = '\u{2}';

pub(super) fn invalid<E: de::Error>(msg: impl fmt::Display) -> E {
    E::custom(format_args!("{INVALID_MARK}{msg}"))
}

pub(super) fn invalid_params<E: de::Error>(id: Option<&Value>, msg: impl fmt::Display) -> E {
    let id = id.unwrap_or(&Value::Null);
    E::custom(format_args!("{PARAMS_MARK}{id}{ID_END}{msg}"))
}

/// What a covered method's `params` must hold, for error messages.
pub(super) fn describe_target(t: Target) -> &'static str {
    match t {
        Target::Param(_, "name") => "`params` as an object with `name` as a string",
        Target::Param(_, _) => "`params` as an object with `uri` as a string",
        Target::CompletionRef => {
            "`params.ref` naming a prompt (`{\"type\":\"ref/prompt\",\"name\":...}`) or a resource (`{\"type\":\"ref/resource\",\"uri\":...}`)"
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
