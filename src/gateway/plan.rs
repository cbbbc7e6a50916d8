//! What [`super::decide`] decided: answer the request itself, or forward it to an upstream with
//! a [`Permit`].

use bytes::Bytes;
use serde_json::Value;

use crate::mcp::filter::{ListFilter, ListKind};
use crate::mcp::jsonrpc::Envelope;
use crate::mcp::reply::Reply;
use crate::policy::{Permit, Policy};
use crate::upstream::Upstream;

/// The decision on one request.
pub enum Plan<'s> {
    /// The gateway answers (an error, a denial, an admin or metadata document).
    Answer(Reply),
    /// The request goes to one upstream.
    Forward(Forward<'s>),
}

/// Which upstream operation a forwarded request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// POST: a JSON-RPC body.
    Call,
    /// GET: the server-initiated stream.
    Events,
    /// DELETE: end the session.
    Delete,
}

/// A request allowed to reach `upstream`.
pub struct Forward<'s> {
    /// The operation.
    pub op: Op,
    /// Where it goes.
    pub upstream: &'s Upstream,
    /// The policy's leave (the only way into the upstream interface).
    pub permit: Permit<'s>,
    /// The body of a POST, as received (forwarded byte for byte).
    pub body: Bytes,
    /// The classified body of a POST.
    pub envelope: Option<Envelope>,
    /// A list request whose answer is filtered per caller.
    pub list: Option<(ListKind, &'s Policy)>,
}

impl Forward<'_> {
    /// The tool of a single `tools/call`.
    pub fn tool(&self) -> Option<&str> {
        self.envelope.as_ref().and_then(Envelope::single_tool_call)
    }

    /// The id to answer an error with (the single request's, else null).
    pub fn error_id(&self) -> Value {
        self.envelope
            .as_ref()
            .map(Envelope::error_id)
            .unwrap_or(Value::Null)
    }

    /// The per-caller filter of a list answer.
    pub fn list_filter(&self) -> Option<ListFilter<'_>> {
        self.list.map(|(kind, policy)| ListFilter {
            policy,
            scopes: &self.permit.principal().scopes,
            server: self.permit.server(),
            kind,
        })
    }
}
