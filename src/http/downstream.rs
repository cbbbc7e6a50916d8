//! What the relay and the writer need from a client connection, implemented by both front ends
//! (the HTTP/1.1 front door's connection and Pingora's session), so that answers are written and
//! relayed by one piece of code whichever front end received the request.

use std::future::Future;

use crate::response::Head;
use bytes::Bytes;

/// One client's side of one request.
pub trait Downstream: Send {
    /// Send the response head. `body_follows`: body bytes are at hand and follow at once (the
    /// head may wait to go out with them in one write); otherwise it goes out now. Without a
    /// length the body is framed by the front end (chunked on HTTP/1.1).
    fn head(
        &mut self,
        head: Head,
        body_follows: bool,
    ) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Send a piece of the body.
    fn chunk(&mut self, data: Bytes) -> impl Future<Output = std::io::Result<()>> + Send;

    /// The body is complete.
    fn end(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Resolves when the client hangs up (`true`), or sends bytes of a next request (`false`:
    /// stop watching; they wait for that request). Cancel-safe.
    fn hangup(&mut self) -> impl Future<Output = bool> + Send;

    /// The answer was cut short: close the connection so the client cannot take it as whole.
    fn abort(&mut self) -> impl Future<Output = ()> + Send;

    /// The connection closes after this answer (its request body was left unread, or the
    /// gateway is stopping): `Connection: close` goes with the head.
    fn close_after(&mut self);

    /// Read and drop what the client is still sending of a request body left unread, bounded
    /// in bytes and time, so that it reads the answer rather than a reset (nginx's lingering
    /// close).
    fn linger(&mut self) -> impl Future<Output = ()> + Send;

    /// HTTP/2: the protocol frames bodies.
    fn http2(&self) -> bool;
}
