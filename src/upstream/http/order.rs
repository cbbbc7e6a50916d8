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
//! The GET and the POST come on two connections, which two threads of the gateway may serve,
//! so the POST can be ready before the GET's head is even read. Clients open the GET stream
//! when `notifications/initialized` is accepted: for a short window after that (`expect`), a
//! POST of the session waits for its GET as if the gateway had already taken it.
//!
//! The request path pays one lock-free load when no GET is being opened or expected anywhere;
//! opening or expecting a GET publishes a changed copy of a small map (read-copy-update).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::time::Instant;

/// Turns true once a GET stream is open upstream.
type Gate = Arc<watch::Sender<bool>>;

/// One session held: by a GET being opened, or by a GET expected (`until`).
#[derive(Clone)]
struct Held {
    gate: Gate,
    /// `Some`: no GET came yet, one is expected until then; `None`: a GET is being opened.
    until: Option<Instant>,
}

/// The GET streams being opened or expected, by session id.
#[derive(Default)]
pub struct Opening {
    gates: ArcSwap<HashMap<Box<[u8]>, Held>>,
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
        let fresh: Gate = Arc::new(watch::channel(false).0);
        let mut taken = Arc::clone(&fresh);
        self.gates.rcu(|current| {
            let mut next = HashMap::clone(current);
            // An expected GET keeps the gate the waiting POSTs watch.
            taken = match current.get(session) {
                Some(h) if h.until.is_some() => Arc::clone(&h.gate),
                _ => Arc::clone(&fresh),
            };
            next.insert(
                session.into(),
                Held {
                    gate: Arc::clone(&taken),
                    until: None,
                },
            );
            next
        });
        Ticket {
            opening: self,
            session: session.into(),
            gate: taken,
        }
    }

    /// The upstream accepted `notifications/initialized` of `session`: clients open the GET
    /// stream right then, so for `window` a POST of the session waits for it as if it had come.
    /// (The GET and the next POST travel on two connections, which two threads of the gateway
    /// may serve: the GET's head can still be unread when the POST is ready to go.)
    pub fn expect(&self, session: &[u8], window: Duration) {
        let now = Instant::now();
        self.gates.rcu(|current| {
            let mut next = HashMap::clone(current);
            // Expectations no GET and no POST came for end here.
            next.retain(|_, h| h.until.is_none_or(|u| u > now));
            next.entry(session.into()).or_insert_with(|| Held {
                gate: Arc::new(watch::channel(false).0),
                until: Some(now + window),
            });
            next
        });
    }

    /// Forget the expectation of `session` if it ran out (a GET taking it keeps it).
    fn expired(&self, session: &[u8]) {
        let now = Instant::now();
        self.gates.rcu(|current| {
            let mut next = HashMap::clone(current);
            if next
                .get(session)
                .is_some_and(|h| h.until.is_some_and(|u| u <= now))
            {
                next.remove(session);
            }
            next
        });
    }

    /// Wait (at most `limit`) until the GET of `session` being opened, if any, is open, or the
    /// GET expected of it came and is open, or the expectation ran out.
    pub async fn after(&self, session: &[u8], limit: Duration) {
        if self.gates.load().is_empty() {
            return;
        }
        let deadline = Instant::now() + limit;
        loop {
            let gates = self.gates.load();
            if gates.is_empty() {
                return;
            }
            let Some(held) = gates.get(session).cloned() else {
                return;
            };
            drop(gates);
            let mut open = held.gate.subscribe();
            let until = held.until.map_or(deadline, |u| u.min(deadline));
            if tokio::time::timeout_at(until, open.wait_for(|o| *o))
                .await
                .is_ok()
            {
                return;
            }
            if Instant::now() >= deadline {
                // Given up on that GET: the session's later POSTs do not wait for it again.
                held.gate.send_replace(true);
                crate::in_request!(
                    debug,
                    "the session's GET stream did not open in time; sending the POST"
                );
                return;
            }
            // The expectation ran out: no GET came (unless one just took it: then wait for it).
            self.expired(session);
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
                .is_some_and(|h| Arc::ptr_eq(&h.gate, &self.gate))
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
    async fn the_wait_is_bounded_and_paid_once() {
        let opening = Opening::default();
        let _stuck = opening.enter(b"s1");
        let started = std::time::Instant::now();
        opening.after(b"s1", Duration::from_millis(20)).await;
        assert!(started.elapsed() >= Duration::from_millis(20));
        // A GET whose answer head never comes holds the session's next POSTs no more.
        tokio::time::timeout(
            Duration::from_secs(5),
            opening.after(b"s1", Duration::from_secs(60)),
        )
        .await
        .expect("not held again");
    }

    #[tokio::test]
    async fn an_expected_get_holds_a_post_until_it_is_open_or_the_window_ends() {
        let opening = Opening::default();
        opening.expect(b"s1", Duration::from_millis(30));
        let started = std::time::Instant::now();
        // No GET comes: the window ends, then the session is forgotten.
        opening.after(b"s1", Duration::from_secs(60)).await;
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(opening.gates.load().is_empty());

        opening.expect(b"s1", Duration::from_millis(30));
        let waiting = opening.after(b"s1", Duration::from_secs(60));
        tokio::pin!(waiting);
        assert!(futures_util::poll!(&mut waiting).is_pending());
        let ticket = opening.enter(b"s1");
        // Held past the window while the GET is being opened.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), &mut waiting)
                .await
                .is_err()
        );
        drop(ticket);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("released when the GET opened");
        assert!(opening.gates.load().is_empty());
    }
}
