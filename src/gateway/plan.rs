//! What [`super::decide`] decided: answer the request itself, or forward it to an upstream with
//! a [`Permit`].

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::streams::StreamSlot;
use crate::auth::Principal;
use crate::mcp::names::Names;
use crate::state::Snapshot;

use crate::mcp::filter::{ListFilter, ListKind};
use crate::mcp::jsonrpc::Envelope;
use crate::mcp::reply::Reply;
use crate::policy::{Kind, Permit, Policy};
use crate::upstream::Upstream;

/// The decision on one request.
pub enum Plan<'s> {
    /// The gateway answers (an error, a denial, an admin or metadata document).
    Answer(Reply),
    /// The request goes to one upstream.
    Forward(Forward<'s>),
    /// The request goes to several upstreams, and the gateway composes the answer (the
    /// aggregated `/mcp`).
    Fanout(Fanout<'s>),
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
    /// Set on the aggregated `/mcp`: the session and names the request travels under.
    pub via: Option<Via<'s>>,
    /// A GET stream's place among its caller's open streams, held while the stream is open.
    pub stream: Option<StreamSlot>,
}

/// How a request on the aggregated `/mcp` reaches its upstream.
pub struct Via<'s> {
    /// The upstream's session id the gateway holds for the client (`None`: the upstream has
    /// no sessions).
    pub session: Option<String>,
    /// The protocol version the upstream negotiated for the session.
    pub version: Option<String>,
    /// The snapshot's names: the answer's ids and URIs are namespaced with them.
    pub names: &'s Names,
    /// 2026-07-28: the `Mcp-Name` the upstream gets (its own name for what the body names).
    pub mcp_name: Option<String>,
    /// A call that makes or names a task: what its task ids are bound to, and the key that
    /// binds them (the answer's task ids are made `/mcp` ones).
    /// (Boxed: rare, and every request's plan is moved around.)
    pub task: Option<
        Box<(
            crate::mcp::tasks::Binding,
            &'s crate::mcp::session::SessionKey,
        )>,
    >,
}

/// One upstream of a fan-out.
pub struct Leg<'s> {
    /// The upstream.
    pub upstream: &'s Upstream,
    /// The policy's leave for it.
    pub permit: Permit<'s>,
    /// The session id held there for the client (none before `initialize`, or for an
    /// upstream without sessions).
    pub session: Option<String>,
    /// The protocol version the upstream negotiated for the session (`MCP-Protocol-Version`
    /// on its requests; none before `initialize` and at 2026-07-28: the client's).
    pub version: Option<String>,
}

/// What a fan-out does.
pub enum Work {
    /// `initialize`: open a session on every leg and answer with a sealed session id.
    Initialize {
        /// The request's id.
        id: Value,
        /// The client's message, sent to every leg as is.
        body: Bytes,
        /// The protocol version answered.
        version: &'static str,
    },
    /// A list request: every leg's page, filtered, namespaced, merged in config order.
    List {
        /// The request's id.
        id: Value,
        /// Which list.
        kind: ListKind,
        /// The legs' cursors from the client's cursor (`None`: the first page).
        cursors: Option<serde_json::Map<String, Value>>,
        /// 2026-07-28: the client's `params._meta`, sent on with every leg's request (the
        /// result is then a 2026-07-28 result).
        modern: Option<Value>,
    },
    /// 2026-07-28 `server/discover`: every leg's, merged.
    Discover {
        /// The request's id.
        id: Value,
        /// The client's request, sent to every leg as is.
        body: Bytes,
    },
    /// A message every leg gets (a notification; `logging/setLevel`); `answer`: the id of a
    /// request the gateway answers with an empty result once every leg has it.
    Broadcast {
        /// The message.
        body: Bytes,
        /// The request's id, if it is a request.
        answer: Option<Value>,
    },
    /// A covered request naming a shortened name: the one leg's list finds the upstream
    /// name, then [`super::route::route`] decides it.
    Resolve {
        /// The classified request.
        envelope: Envelope,
        /// The request as received.
        body: Bytes,
        /// The name it uses on `/mcp`.
        exposed: String,
        /// Tool or prompt.
        kind: Kind,
    },
    /// GET: every leg's server-initiated stream, merged.
    Events,
    /// 2026-07-28 `subscriptions/listen`: every leg's listen stream, merged into one.
    Listen {
        /// The request's id (the subscription id).
        id: Value,
        /// The client's `params._meta`, sent on with every leg's request.
        meta: Value,
        /// What the client asked for; its URIs are the ones the caller may use, each with its
        /// server and upstream URI.
        filter: crate::mcp::listen::Filter,
        /// (server, upstream URI, URI on `/mcp`) of each subscribed resource.
        uris: Vec<(String, String, String)>,
    },
    /// DELETE: end the session on every leg.
    Delete,
}

/// A request on the aggregated `/mcp` that goes to several upstreams.
pub struct Fanout<'s> {
    /// The pinned snapshot (policy, names, session key).
    pub snap: &'s Snapshot,
    /// The caller.
    pub principal: Arc<Principal>,
    /// The upstreams it goes to, in config order.
    pub legs: Vec<Leg<'s>>,
    /// What to do.
    pub work: Work,
    /// A GET stream's place among its caller's open streams, held while the stream is open.
    pub stream: Option<StreamSlot>,
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
