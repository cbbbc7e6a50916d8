//! A message link to one upstream MCP session that speaks over a single pipe-like channel
//! (a child's stdio, or a legacy HTTP+SSE stream with its POST endpoint). The transport behind
//! it frames messages; [`super::mux`] owns what the messages mean.

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

/// How many messages may wait in either direction before the sender waits.
pub const LINK_BUFFER: usize = 1024;

/// A connected link. Each item is one serialized JSON-RPC message (no framing bytes).
pub struct Link {
    /// Messages to the upstream.
    pub tx: mpsc::Sender<Bytes>,
    /// Messages from the upstream. Closed when the link has ended.
    pub rx: mpsc::Receiver<Bytes>,
    /// Why the link ended (sent once, when the transport notices: exit status, EOF, error).
    pub ended: oneshot::Receiver<String>,
    /// The child's process id (stdio links).
    pub pid: Option<u32>,
    /// Ends the link for good: stops the child (and its process group) and reaps it, or
    /// aborts the stream tasks.
    pub stopper: Box<dyn Stop>,
}

/// Ends a link.
#[async_trait]
pub trait Stop: Send + Sync {
    /// Stop the transport and release everything it holds. Idempotent.
    async fn stop(&mut self);
}
