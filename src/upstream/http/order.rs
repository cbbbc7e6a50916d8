//! A session's GET stream before its next POSTs, as the client sent them.
//!
//! A client opens a session's GET stream, then POSTs a call during which the server sends
//! requests of its own (sampling, elicitation) on that stream; a server that finds no open
//! stream drops them, and the call waits for an answer that never comes. The client sends the
//! GET first, but on another connection: through a gateway the two could race (the GET on a new
//! upstream connection, the POST on a pooled one) and the POST reach the server first. So a POST
//! of a session waits until the session's GETs that the gateway took before it have their answer
//! head from the upstream (the stream is open there), for a bounded time.
//!
//! The request path pays one lock-free load when no GET is being opened anywhere; opening a
//! GET publishes a changed copy of a small map (read-copy-update).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

/// Turns true once a GET stream is open upstream.
type Gate = Arc<watch::Sender<bool>>;

/// The GET streams being opened, by session id.
#[derive(Default)]
pub struct Opening {
    gates: ArcSwap<HashMap<Box<[u8]>, Gate>>,
}

/// A GET stream being opened; dropped once its answer head arrived (or it failed).
pub struct Ticket<'a> {
    opening: &'a Opening,
    session: Box<[u8]>,
    gate: Gate,
}

impl Opening {
    /// A GET of `session` is about to be sent upstream.
    pub fn enter(&self, session: &[u8]) -> Ticket<'_> {
        let gate = Arc::new(watch::channel(false).0);
        self.gates.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(session.into(), Arc::clone(&gate));
            next
        });
        Ticket {
            opening: self,
            session: session.into(),
            gate,
        }
    }

    /// Wait (at most `limit`) until the GET of `session` being opened, if any, is open.
    pub async fn after(&self, session: &[u8], limit: Duration) {
        let gates = self.gates.load();
        if gates.is_empty() {
            return;
        }
        let Some(gate) = gates.get(session) else {
            return;
        };
        let mut open = gate.subscribe();
        drop(gates);
        if tokio::time::timeout(limit, open.wait_for(|o| *o))
            .await
            .is_err()
        {
            crate::in_request!(
                debug,
                "the session's GET stream did not open in time; sending the POST"
            );
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.gate.send_replace(true);
        self.opening.gates.rcu(|current| {
            let mut next = HashMap::clone(current);
            if next
                .get(&self.session)
                .is_some_and(|g| Arc::ptr_eq(g, &self.gate))
            {
                next.remove(&self.session);
            }
            next
        });
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_post_waits_for_its_sessions_get_to_open() {
        let opening = Opening::default();
        // No GET being opened: no wait at all.
        opening.after(b"s1", Duration::from_secs(60)).await;
        let ticket = opening.enter(b"s1");
        // Another session is not held.
        opening.after(b"s2", Duration::from_secs(60)).await;
        let waiting = opening.after(b"s1", Duration::from_secs(60));
        tokio::pin!(waiting);
        assert!(futures_util::poll!(&mut waiting).is_pending());
        drop(ticket);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("released when the GET opened");
        assert!(opening.gates.load().is_empty());
    }

    #[tokio::test]
    async fn the_wait_is_bounded() {
        let opening = Opening::default();
        let _stuck = opening.enter(b"s1");
        let started = std::time::Instant::now();
        opening.after(b"s1", Duration::from_millis(20)).await;
        assert!(started.elapsed() >= Duration::from_millis(20));
    }
}
