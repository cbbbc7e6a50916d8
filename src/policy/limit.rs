//! Rate limits (`rate_limits`): token buckets per key, per replica, with `governor`'s keyed
//! GCRA limiter (lock-free per key, no timer task).
//!
//! Semantics:
//! - Every JSON-RPC *request* a caller sends is one unit (a batch counts each element;
//!   notifications and answers to server requests count nothing). It is charged after the
//!   policy allowed it, so a denied or hidden name never answers 429 (that would reveal it).
//! - `principal`: one bucket per caller (issuer and subject; every anonymous caller shares one).
//!   `server`: one bucket per upstream a request is forwarded to (lists that `/mcp` fans out
//!   name no single server and are not counted by `server` rules). `tool`: one bucket per
//!   caller and tool, `tools/call` only. `claim:NAME`: one bucket per value of that claim (a
//!   caller in two groups is charged in both; a token without the claim is not limited by it).
//! - `tools: [patterns]`: the rule counts only `tools/call` of matching tools and, for those
//!   calls, overrides the rule of the same key without `tools` (the first matching one written
//!   wins), so write-like tools get their own, smaller budget.
//! - A reload keeps the buckets of every rule whose key, rate, burst and tools are unchanged.
//! - Units are taken rule by rule: a request refused by a later rule keeps what earlier rules
//!   charged (as nginx's `limit_req` does).

use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

use super::pattern::Pattern;
use crate::auth::Principal;
use crate::config::{RateLimit, RateLimitKey};

/// One request to charge: the upstream it goes to and, for `tools/call`, the tool (its
/// upstream's own name), if known.
#[derive(Debug, Clone, Copy, Default)]
pub struct Charge<'a> {
    /// The upstream the request is forwarded to (`None`: fanned out or answered by the gateway).
    pub server: Option<&'a str>,
    /// The tool a `tools/call` calls.
    pub tool: Option<&'a str>,
}

/// A request over a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited<'a> {
    /// The rule, as written in the config (`rate_limits[1]`).
    pub rule: &'a str,
    /// How long until the bucket holds a unit again.
    pub retry_after: Duration,
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

    /// Charge one unit per request in `charges` for `principal`; the first rule over its limit
    /// refuses the whole message.
    pub fn admit<'a>(
        &self,
        principal: &Principal,
        charges: impl IntoIterator<Item = Charge<'a>>,
    ) -> Result<(), Limited<'_>> {
        if self.rules.is_empty() {
            return Ok(());
        }
        for charge in charges {
            for (i, rule) in self.rules.iter().enumerate() {
                if !self.applies(i, charge) {
                    continue;
                }
                let take = |key: u64| {
                    rule.buckets.check_key(&key).map_err(|not_until| Limited {
                        rule: &rule.spec.source,
                        retry_after: not_until.wait_time_from(rule.buckets.clock().now()),
                    })
                };
                match &rule.spec.key {
                    RateLimitKey::Principal => take(self.hash(&principal.tag()))?,
                    RateLimitKey::Server => {
                        if let Some(server) = charge.server {
                            take(self.hash(server))?;
                        }
                    }
                    RateLimitKey::Tool => {
                        if let (Some(server), Some(tool)) = (charge.server, charge.tool) {
                            take(self.hash(&(principal.tag(), server, tool)))?;
                        }
                    }
                    RateLimitKey::Claim(claim) => {
                        for value in principal.claims.values(claim) {
                            take(self.hash(&value))?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether rule `i` counts `charge` (see the module's semantics on `tools`).
    fn applies(&self, i: usize, charge: Charge<'_>) -> bool {
        let rule = &self.rules[i];
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
        assert_eq!(err.rule, "rate_limits[1]");
        // Any other tool: rule 2 (`*:*` overrides the general rule for every tool call).
        for _ in 0..5 {
            assert!(limits.admit(&p, [call("gh", "read")]).is_ok());
        }
        assert_eq!(
            limits.admit(&p, [call("gh", "read")]).unwrap_err().rule,
            "rate_limits[2]"
        );
        // A request that calls no tool: the general rule.
        assert!(limits.admit(&p, [Charge::default()]).is_ok());
        assert_eq!(
            limits.admit(&p, [Charge::default()]).unwrap_err().rule,
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
        assert_eq!(err.rule, "rate_limits[0]");
        // Server `b` has its own bucket; the tool `x` on `b` too.
        assert!(limits.admit(&p, [call("b", "x")]).is_ok());
    }

    #[test]
    fn a_batch_is_charged_per_request() {
        let limits = Limits::new(&[rule(RateLimitKey::Principal, 2, &[], 0)], None);
        let p = who("alice", json!({}));
        assert!(limits.admit(&p, [Charge::default(); 3]).is_err());
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
            kept.admit(&p, [Charge::default()]).unwrap_err().rule,
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
