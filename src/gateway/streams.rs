//! Open event streams per caller (`server.max_streams_per_principal`): a GET stream, on
//! `/mcp/{server}` or `/mcp`, holds a [`StreamSlot`] of its caller for as long as it is open.
//! One caller past the cap gets 429 and holds nothing upstream; other callers are not touched.
//!
//! Kept beside the snapshot (not in it), so the count survives reloads: a lowered cap refuses
//! new streams until enough of the open ones end; none is cut. Only opening and closing a
//! stream touches the map (a sharded one), never a request on the hot path.

use std::sync::Arc;

use dashmap::DashMap;
use serde_json::json;

use crate::auth::Principal;
use crate::mcp::reply::Reply;
use crate::telemetry::metrics::metrics;

/// The JSON-RPC error code of a refused stream: the rate-limit code (an agent backs off the
/// same way).
const REFUSED: i64 = super::limit::RATE_LIMITED;

/// The open streams of every caller, by [`Principal::tag`] (issuer and subject; every anonymous
/// caller shares one).
#[derive(Debug, Default)]
pub struct Streams {
    open: DashMap<[u8; 16], usize>,
}

/// One open stream of one caller; counted until dropped.
#[derive(Debug)]
pub struct StreamSlot {
    streams: Arc<Streams>,
    key: [u8; 16],
}

impl Streams {
    /// A slot for one more stream of `principal`, unless `max` are open. `Err`: the answer (429).
    pub fn enter(
        self: &Arc<Self>,
        principal: &Principal,
        max: usize,
        server: Option<&str>,
    ) -> Result<StreamSlot, Reply> {
        let key = principal.tag();
        let mut n = self.open.entry(key).or_insert(0);
        if *n >= max {
            drop(n);
            let label = server.unwrap_or(super::limit::AGGREGATE_LABEL);
            metrics().streams_refused(label);
            crate::in_request!(debug, server = label, subject = %principal.subject, max, "refused an event stream: the caller holds server.max_streams_per_principal");
            return Err(refusal(max));
        }
        *n += 1;
        Ok(StreamSlot {
            streams: self.clone(),
            key,
        })
    }

    /// Streams `principal` holds open now.
    pub fn open(&self, principal: &Principal) -> usize {
        self.open.get(&principal.tag()).map_or(0, |n| *n)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let dashmap::Entry::Occupied(mut e) = self.streams.open.entry(self.key) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

/// 429 with a JSON-RPC error an agent can act on (the SDKs read a GET's error body as one).
fn refusal(max: usize) -> Reply {
    let body = json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {
            "code": REFUSED,
            "message": format!("Too many open event streams: this caller holds {max} (server.max_streams_per_principal); close one before opening another"),
            "data": { "rule": "max_streams_per_principal", "limit": max, "retryAfter": 1 },
        },
    });
    Reply::json(429, &body).with_header("retry-after", "1")
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    fn principal(sub: &str) -> Principal {
        Principal {
            subject: sub.into(),
            issuer: "https://idp".into(),
            ..Principal::default()
        }
    }

    #[test]
    fn a_caller_holds_at_most_max_and_a_slot_is_given_back_when_dropped() {
        let s = Arc::new(Streams::default());
        let (a, b) = (principal("alice"), principal("bob"));
        let one = s.enter(&a, 2, Some("x")).expect("first");
        let two = s.enter(&a, 2, None).expect("second");
        let refused = s.enter(&a, 2, Some("x")).expect_err("third");
        assert_eq!(refused.status, 429);
        // Another caller is not touched.
        let _b = s.enter(&b, 2, Some("x")).expect("bob");
        assert_eq!(s.open(&a), 2);
        drop(one);
        assert_eq!(s.open(&a), 1);
        let _three = s.enter(&a, 2, Some("x")).expect("a slot given back");
        drop(two);
        drop(_three);
        assert_eq!(s.open(&a), 0);
        assert!(
            !s.open.contains_key(&a.tag()),
            "an idle caller leaves no entry"
        );
    }

    #[test]
    fn a_lowered_cap_refuses_new_streams_and_cuts_none() {
        let s = Arc::new(Streams::default());
        let a = principal("alice");
        let held: Vec<_> = (0..3)
            .map(|_| s.enter(&a, 3, None).expect("open"))
            .collect();
        assert!(s.enter(&a, 1, None).is_err());
        assert_eq!(s.open(&a), 3);
        drop(held);
        assert!(s.enter(&a, 1, None).is_ok());
    }
}
