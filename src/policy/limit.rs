//! Rate limits (`rate_limits`): token buckets per key, per replica, with `governor`'s keyed
//! GCRA limiter (lock-free per key, no timer task).
//!
//! Semantics:
//! - Every JSON-RPC *request* a caller sends is one unit (a batch counts each element;
//!   notifications and answers to server requests count nothing), and so is every GET (an
//!   event stream) and DELETE. It is charged after the policy allowed it, so a denied or hidden
//!   name never answers 429 (that would reveal it).
//! - `principal`: one bucket per caller (issuer and subject; every anonymous caller shares one).
//!   `server`: one bucket per upstream a request is forwarded to (lists that `/mcp` fans out
//!   name no single server and are not counted by `server` rules). `tool`: one bucket per
//!   caller and tool, `tools/call` only. `claim:NAME`: one bucket per value of that claim, read
//!   as `auth.claims` reads claims (a caller in two groups is charged in both; a token without
//!   the claim is not limited by it).
//! - `tools: [patterns]`: the rule counts only `tools/call` of matching tools and, for those
//!   calls, overrides the rule of the same key without `tools` (the first matching one written
//!   wins), so write-like tools get their own, smaller budget.
//! - A message is admitted whole or not at all per bucket: its units are summed per bucket and
//!   taken at once. Buckets of the caller alone (`principal`, `tool`) are tried before shared
//!   ones (`claim:`, `server`), so a caller over its own limit never drains a bucket it shares
//!   with others. A message needing more units than a bucket holds ([`Refused::TooLarge`]) can
//!   never pass and is told so, without a retry time.
//! - A reload keeps the buckets of every rule whose key, rate, burst and tools are unchanged.

use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

use super::pattern::Pattern;
use crate::auth::Principal;
use crate::config::{RateLimit, RateLimitKey};

/// Which of a request's rules to charge ([`Charge::part`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Part {
    /// Every rule that applies.
    #[default]
    All,
    /// Only rules that do not need the tool's name (`/mcp`, before a shortened name is looked
    /// up in the upstream's list: that lookup reaches the upstream).
    WithoutTool,
    /// Only rules that need it (`tool`, `tools:`), once the name is known.
    ToolOnly,
}

/// One request to charge: the upstream it goes to and, for `tools/call`, the tool (its
/// upstream's own name), if known.
#[derive(Debug, Clone, Copy, Default)]
pub struct Charge<'a> {
    /// The upstream the request is forwarded to (`None`: fanned out or answered by the gateway).
    pub server: Option<&'a str>,
    /// The tool a `tools/call` calls.
    pub tool: Option<&'a str>,
    /// Which rules to charge.
    pub part: Part,
    /// On `/mcp`: the upstream's own name of what a covered request names (the audit trail
    /// records a refused use under it, as it records allows and denials).
    pub named: Option<&'a str>,
}

/// Why a message is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused<'a> {
    /// A bucket is empty for now.
    Limited {
        /// The rule, as written in the config (`rate_limits[1]`).
        rule: &'a str,
        /// How long until the bucket holds the units again.
        retry_after: Duration,
    },
    /// The message needs more units than the rule's burst: it can never pass.
    TooLarge {
        /// The rule.
        rule: &'a str,
        /// Units the message needs from one bucket.
        units: u32,
        /// The rule's burst.
        burst: u32,
    },
}

impl Refused<'_> {
    /// The rule that refused.
    pub fn rule(&self) -> &str {
        match self {
            Refused::Limited { rule, .. } | Refused::TooLarge { rule, .. } => rule,
        }
    }
}

struct Rule {
    spec: RateLimit,
    tools: Vec<Pattern>,
    /// Indices of the `tools` rules of the same key (they override this one when it has none,
    /// and the first matching one wins among them).
    same_key: Vec<usize>,
    buckets: Arc<DefaultKeyedRateLimiter<u64>>,
}

/// The compiled `rate_limits` of one snapshot, with their buckets.
pub struct Limits {
    rules: Vec<Rule>,
    /// Hashes bucket keys (random per process, kept across reloads with the buckets).
    seed: std::collections::hash_map::RandomState,
}

impl Limits {
    /// Compile `rules`, keeping the buckets of every rule of `previous` that is unchanged.
    pub fn new(rules: &[RateLimit], previous: Option<&Limits>) -> Self {
        let mut reused = vec![false; previous.map_or(0, |p| p.rules.len())];
        let compiled: Vec<Rule> = rules
            .iter()
            .map(|spec| {
                let kept = previous.and_then(|p| {
                    let i = p
                        .rules
                        .iter()
                        .enumerate()
                        .position(|(i, r)| !reused[i] && same_rule(&r.spec, spec))?;
                    reused[i] = true;
                    Some(p.rules[i].buckets.clone())
                });
                Rule {
                    spec: spec.clone(),
                    tools: spec.tools.iter().map(|(s, t)| Pattern::new(s, t)).collect(),
                    same_key: Vec::new(),
                    buckets: kept
                        .unwrap_or_else(|| Arc::new(governor::RateLimiter::keyed(quota(spec)))),
                }
            })
            .collect();
        let mut out = Limits {
            rules: compiled,
            seed: previous.map_or_else(Default::default, |p| p.seed.clone()),
        };
        for i in 0..out.rules.len() {
            out.rules[i].same_key = (0..out.rules.len())
                .filter(|&j| j != i && out.rules[j].spec.key == out.rules[i].spec.key)
                .filter(|&j| !out.rules[j].tools.is_empty())
                .collect();
        }
        out
    }

    /// Whether no rule is configured (the request path then does nothing).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Charge one unit per request in `charges` for `principal`: all of a bucket's units at
    /// once, the caller's own buckets first; the first bucket that cannot give them refuses
    /// the whole message.
    pub fn admit<'a>(
        &self,
        principal: &Principal,
        charges: impl IntoIterator<Item = Charge<'a>>,
    ) -> Result<(), Refused<'_>> {
        if self.rules.is_empty() {
            return Ok(());
        }
        // (rule, bucket key, units): a few entries (rules x distinct targets of one message).
        let mut units: Vec<(usize, u64, u32)> = Vec::with_capacity(self.rules.len());
        let mut add = |rule: usize, key: u64| match units
            .iter_mut()
            .find(|(r, k, _)| *r == rule && *k == key)
        {
            Some(u) => u.2 = u.2.saturating_add(1),
            None => units.push((rule, key, 1)),
        };
        for charge in charges {
            for (i, rule) in self.rules.iter().enumerate() {
                if !self.applies(i, charge) {
                    continue;
                }
                match &rule.spec.key {
                    RateLimitKey::Principal => add(i, self.hash(&principal.tag())),
                    RateLimitKey::Server => {
                        if let Some(server) = charge.server {
                            add(i, self.hash(server));
                        }
                    }
                    RateLimitKey::Tool => {
                        if let (Some(server), Some(tool)) = (charge.server, charge.tool) {
                            add(i, self.hash(&(principal.tag(), server, tool)));
                        }
                    }
                    RateLimitKey::Claim(claim) => {
                        for value in principal.claims.values(claim) {
                            add(i, self.hash(value));
                        }
                    }
                }
            }
        }
        units.sort_by_key(|&(i, _, _)| (shared(&self.rules[i].spec.key), i));
        for (i, key, n) in units {
            let rule = &self.rules[i];
            let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
            match rule.buckets.check_key_n(&key, n) {
                Ok(Ok(())) => {}
                Ok(Err(not_until)) => {
                    return Err(Refused::Limited {
                        rule: &rule.spec.source,
                        retry_after: not_until.wait_time_from(rule.buckets.clock().now()),
                    })
                }
                Err(_) => {
                    return Err(Refused::TooLarge {
                        rule: &rule.spec.source,
                        units: n.get(),
                        burst: rule.spec.burst,
                    })
                }
            }
        }
        Ok(())
    }

    /// Whether rule `i` counts `charge` (see the module's semantics on `tools`).
    fn applies(&self, i: usize, charge: Charge<'_>) -> bool {
        let rule = &self.rules[i];
        let needs_tool = rule.spec.key == RateLimitKey::Tool || !rule.tools.is_empty();
        match charge.part {
            Part::WithoutTool if needs_tool => return false,
            Part::ToolOnly if !needs_tool => return false,
            _ => {}
        }
        let matches = |r: &Rule| match (charge.server, charge.tool) {
            (Some(s), Some(t)) => r.tools.iter().any(|p| p.matches(s, t)),
            _ => false,
        };
        if rule.tools.is_empty() {
            // Overridden for this call by a `tools` rule of the same key.
            !rule.same_key.iter().any(|&j| matches(&self.rules[j]))
        } else {
            matches(rule)
                && !rule
                    .same_key
                    .iter()
                    .any(|&j| j < i && matches(&self.rules[j]))
        }
    }

    fn hash<T: Hash + ?Sized>(&self, key: &T) -> u64 {
        self.seed.hash_one(key)
    }

    /// Forget buckets that are full again (they behave exactly like new ones) and give the
    /// memory back; run from a background task, never on the request path.
    pub fn sweep(&self) {
        for rule in &self.rules {
            rule.buckets.retain_recent();
            rule.buckets.shrink_to_fit();
        }
    }

    /// Buckets held, over every rule.
    pub fn buckets(&self) -> usize {
        self.rules.iter().map(|r| r.buckets.len()).sum()
    }
}

/// Whether a key's buckets are shared between callers (tried after the caller's own).
fn shared(key: &RateLimitKey) -> bool {
    matches!(key, RateLimitKey::Claim(_) | RateLimitKey::Server)
}

fn same_rule(a: &RateLimit, b: &RateLimit) -> bool {
    a.key == b.key
        && a.requests_per_second == b.requests_per_second
        && a.burst == b.burst
        && a.tools == b.tools
}

fn quota(spec: &RateLimit) -> Quota {
    let burst = NonZeroU32::new(spec.burst).unwrap_or(NonZeroU32::MIN);
    // The config refuses rates that are not positive and finite; the period is at least 1 ns.
    let period = Duration::from_secs_f64((1.0 / spec.requests_per_second).clamp(1e-9, 1e9));
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

/// `Retry-After` seconds for a wait: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let s = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    s.max(1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(key: RateLimitKey, burst: u32, tools: &[(&str, &str)], i: usize) -> RateLimit {
        RateLimit {
            key,
            requests_per_second: 0.001,
            burst,
            tools: tools
                .iter()
                .map(|(s, t)| (s.to_string(), t.to_string()))
                .collect(),
            source: format!("rate_limits[{i}]"),
        }
    }

    fn who(sub: &str, claims: serde_json::Value) -> Principal {
        let mut c = claims;
        c["sub"] = json!(sub);
        c["iss"] = json!("https://issuer");
        Principal::from_claims(&c, Default::default())
    }

    fn call<'a>(server: &'a str, tool: &'a str) -> Charge<'a> {
        Charge {
            server: Some(server),
            tool: Some(tool),
            part: Part::All,
            named: None,
        }
    }

    #[test]
    fn the_first_matching_tools_rule_overrides_the_general_one() {
        let limits = Limits::new(
            &[
                rule(RateLimitKey::Principal, 1, &[], 0),
                rule(RateLimitKey::Principal, 2, &[("n8n", "delete_*")], 1),
                rule(RateLimitKey::Principal, 5, &[("*", "*")], 2),
            ],
            None,
        );
        let p = who("alice", json!({}));
        // delete_*: rule 1 only (rule 2 matches too but comes later; rule 0 is overridden).
        assert!(limits.admit(&p, [call("n8n", "delete_a")]).is_ok());
        assert!(limits.admit(&p, [call("n8n", "delete_b")]).is_ok());
        let err = limits.admit(&p, [call("n8n", "delete_c")]).unwrap_err();
        assert_eq!(err.rule(), "rate_limits[1]");
        // Any other tool: rule 2 (`*:*` overrides the general rule for every tool call).
        for _ in 0..5 {
            assert!(limits.admit(&p, [call("gh", "read")]).is_ok());
        }
        assert_eq!(
            limits.admit(&p, [call("gh", "read")]).unwrap_err().rule(),
            "rate_limits[2]"
        );
        // A request that calls no tool: the general rule.
        assert!(limits.admit(&p, [Charge::default()]).is_ok());
        assert_eq!(
            limits.admit(&p, [Charge::default()]).unwrap_err().rule(),
            "rate_limits[0]"
        );
    }

    #[test]
    fn claim_rules_charge_every_value_and_skip_callers_without_the_claim() {
        let limits = Limits::new(
            &[rule(RateLimitKey::Claim("groups".into()), 1, &[], 0)],
            None,
        );
        let (ab, b, none) = (
            who("x", json!({"groups": ["A", "B"]})),
            who("y", json!({"groups": "B"})),
            who("z", json!({})),
        );
        assert!(limits.admit(&ab, [Charge::default()]).is_ok());
        // B was charged by x's request.
        assert!(limits.admit(&b, [Charge::default()]).is_err());
        for _ in 0..10 {
            assert!(limits.admit(&none, [Charge::default()]).is_ok());
        }
    }

    #[test]
    fn server_and_tool_keys_need_what_they_are_keyed_by() {
        let limits = Limits::new(
            &[
                rule(RateLimitKey::Server, 1, &[], 0),
                rule(RateLimitKey::Tool, 1, &[], 1),
            ],
            None,
        );
        let p = who("alice", json!({}));
        // Fanned out (no server): neither applies.
        for _ in 0..3 {
            assert!(limits.admit(&p, [Charge::default()]).is_ok());
        }
        assert!(limits.admit(&p, [call("a", "x")]).is_ok());
        // Server `a` is spent, whatever the tool.
        let err = limits.admit(&p, [call("a", "y")]).unwrap_err();
        assert_eq!(err.rule(), "rate_limits[0]");
        // Server `b` has its own bucket; the tool `x` on `b` too.
        assert!(limits.admit(&p, [call("b", "x")]).is_ok());
    }

    #[test]
    fn a_batch_is_charged_per_request_and_whole() {
        let limits = Limits::new(&[rule(RateLimitKey::Principal, 3, &[], 0)], None);
        let p = who("alice", json!({}));
        assert!(limits.admit(&p, [Charge::default(); 2]).is_ok());
        // Two more do not fit in the one unit left: refused, and the unit stays.
        assert!(matches!(
            limits.admit(&p, [Charge::default(); 2]).unwrap_err(),
            Refused::Limited { .. }
        ));
        assert!(limits.admit(&p, [Charge::default()]).is_ok());
        // More than the burst can never pass.
        let fresh = who("bob", json!({}));
        assert_eq!(
            limits.admit(&fresh, [Charge::default(); 4]).unwrap_err(),
            Refused::TooLarge {
                rule: "rate_limits[0]",
                units: 4,
                burst: 3
            }
        );
        assert!(limits.admit(&fresh, [Charge::default(); 3]).is_ok());
    }

    #[test]
    fn a_caller_over_its_own_limit_does_not_drain_a_shared_bucket() {
        let limits = Limits::new(
            &[
                rule(RateLimitKey::Server, 5, &[], 0),
                rule(RateLimitKey::Principal, 1, &[], 1),
            ],
            None,
        );
        let (alice, bob) = (who("alice", json!({})), who("bob", json!({})));
        assert!(limits.admit(&alice, [call("s", "x")]).is_ok());
        for _ in 0..4 {
            let err = limits.admit(&alice, [call("s", "x")]).unwrap_err();
            assert_eq!(err.rule(), "rate_limits[1]");
        }
        // The server bucket lost only alice's one admitted call.
        for b in 0..4 {
            let bob = who(&format!("bob{b}"), json!({}));
            assert!(limits.admit(&bob, [call("s", "x")]).is_ok(), "{b}");
        }
        assert_eq!(
            limits.admit(&bob, [call("s", "x")]).unwrap_err().rule(),
            "rate_limits[0]"
        );
    }

    #[test]
    fn claims_are_read_as_auth_reads_them() {
        let limits = Limits::new(
            &[
                rule(RateLimitKey::Claim("realm_access.roles".into()), 1, &[], 0),
                rule(RateLimitKey::Claim("scp".into()), 2, &[], 1),
            ],
            None,
        );
        let p = who(
            "x",
            json!({"realm_access": {"roles": ["a", "a"]}, "scp": "read write read"}),
        );
        // Dotted path; duplicates count once; a space-separated string is split.
        assert!(limits.admit(&p, [Charge::default()]).is_ok());
        assert_eq!(
            limits.admit(&p, [Charge::default()]).unwrap_err().rule(),
            "rate_limits[0]"
        );
        let q = who("y", json!({"scp": "write"}));
        assert!(limits.admit(&q, [Charge::default()]).is_ok());
        assert_eq!(
            limits.admit(&q, [Charge::default()]).unwrap_err().rule(),
            "rate_limits[1]"
        );
    }

    #[test]
    fn parts_split_the_rules_by_whether_they_need_the_tool() {
        let limits = Limits::new(
            &[
                rule(RateLimitKey::Principal, 1, &[], 0),
                rule(RateLimitKey::Tool, 1, &[], 1),
            ],
            None,
        );
        let p = who("alice", json!({}));
        let before = Charge {
            part: Part::WithoutTool,
            ..call("s", "x")
        };
        let after = Charge {
            part: Part::ToolOnly,
            ..call("s", "x")
        };
        assert!(limits.admit(&p, [before]).is_ok());
        assert!(limits.admit(&p, [after]).is_ok());
        assert_eq!(
            limits.admit(&p, [before]).unwrap_err().rule(),
            "rate_limits[0]"
        );
        assert_eq!(
            limits.admit(&p, [after]).unwrap_err().rule(),
            "rate_limits[1]"
        );
    }

    #[test]
    fn unchanged_rules_keep_their_buckets() {
        let old = Limits::new(&[rule(RateLimitKey::Principal, 1, &[], 0)], None);
        let p = who("alice", json!({}));
        assert!(old.admit(&p, [Charge::default()]).is_ok());
        // Same rule, now written second: kept.
        let kept = Limits::new(
            &[
                rule(RateLimitKey::Server, 1, &[], 0),
                rule(RateLimitKey::Principal, 1, &[], 1),
            ],
            Some(&old),
        );
        assert_eq!(
            kept.admit(&p, [Charge::default()]).unwrap_err().rule(),
            "rate_limits[1]"
        );
        let changed = Limits::new(&[rule(RateLimitKey::Principal, 2, &[], 0)], Some(&kept));
        assert!(changed.admit(&p, [Charge::default()]).is_ok());
        assert_eq!(changed.buckets(), 1);
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
