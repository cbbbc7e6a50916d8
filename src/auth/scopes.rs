//! Claims to scopes.
//!
//! Step 1, [`claim_keys`]: every configured claim (`auth.claims`, dotted paths such as
//! `realm_access.roles` walk nested objects) yields `claim:value` keys:
//! - a string yields one key per whitespace-separated word (so the OAuth `scope` claim,
//!   `"openid mcp:read"`, yields `scope:openid` and `scope:mcp:read`; a string without spaces
//!   yields exactly one key);
//! - an array yields one key per string element, taken whole (elements are never split);
//! - any other value (number, bool, null, object, non-string array elements) is ignored.
//!
//! Okta's `scp` (array of granted scopes) and `groups` (array of group names) are
//! [always read](ALWAYS_READ), whether configured or not. Keys are deduplicated, first occurrence
//! kept.
//!
//! Step 2, [`ScopeMap::scopes`]: each key is looked up in `auth.mappings`; a key without a mapping
//! contributes nothing. In addition, every `scp:X` key grants the scope `X` itself: Okta's scopes
//! are scopes, so a permission may name `mcp:read` directly without a mapping. (Only `scp` gets
//! this treatment; other claims, including `scope`, count only through mappings.)

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;

use super::claims::lookup;
use super::principal::Principal;
use crate::config::Auth;

/// Claims read in addition to `auth.claims`: Okta's `scp` and `groups`.
pub const ALWAYS_READ: &[&str] = &["scp", "groups"];

/// The claim whose values also count as scopes directly.
const SCP: &str = "scp";

/// The `claim:value` keys found in `claims` for the `configured` claim names plus
/// [`ALWAYS_READ`], deduplicated, in claim order then value order.
pub fn claim_keys(claims: &Value, configured: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let extra = ALWAYS_READ
        .iter()
        .copied()
        .filter(|a| !configured.iter().any(|c| c == a));
    for name in configured.iter().map(String::as_str).chain(extra) {
        let Some(value) = lookup(claims, name) else {
            continue;
        };
        let mut push = |v: &str| {
            let key = format!("{name}:{v}");
            if !out.contains(&key) {
                out.push(key);
            }
        };
        match value {
            Value::String(s) => s.split_whitespace().for_each(&mut push),
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .filter(|s| !s.is_empty())
                .for_each(&mut push),
            _ => {}
        }
    }
    out
}

/// `auth.claims` and `auth.mappings`, compiled: claim keys to scopes.
#[derive(Debug, Clone, Default)]
pub struct ScopeMap {
    /// Unique per compiled map (0: the empty default), so that scopes remembered for a token
    /// ([`ScopesMemo`]) are reused only under the map that computed them.
    id: u64,
    claims: Box<[String]>,
    map: HashMap<String, Box<[String]>>,
}

/// Source of [`ScopeMap::id`]s.
static NEXT_MAP_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The principal a verified token stands for under one [`ScopeMap`], remembered with the token
/// in the verified-token cache: a repeated token costs neither a signature check nor the claim
/// mapping. A reload compiles a new map (a new id), so it is recomputed once under it.
#[derive(Default)]
pub struct ScopesMemo(arc_swap::ArcSwapOption<(u64, Arc<Principal>)>);

impl Clone for ScopesMemo {
    fn clone(&self) -> Self {
        ScopesMemo::default()
    }
}

impl PartialEq for ScopesMemo {
    fn eq(&self, _: &Self) -> bool {
        true // a cache, not part of the token's identity
    }
}

impl std::fmt::Debug for ScopesMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScopesMemo")
    }
}

impl ScopeMap {
    /// Compiles `auth.claims` and `auth.mappings` (a key listed twice grants the union).
    pub fn new(auth: &Auth) -> Self {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (key, scopes) in &auth.mappings {
            let entry = map.entry(key.clone()).or_default();
            for s in scopes {
                if !entry.contains(s) {
                    entry.push(s.clone());
                }
            }
        }
        ScopeMap {
            id: NEXT_MAP_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            claims: auth.claims.clone().into_boxed_slice(),
            map: map
                .into_iter()
                .map(|(k, v)| (k, v.into_boxed_slice()))
                .collect(),
        }
    }

    /// The configured claim names (`auth.claims`).
    pub fn claims(&self) -> &[String] {
        &self.claims
    }

    /// The scopes granted by `keys`: their mappings, plus `X` for every `scp:X` key.
    pub fn scopes<I>(&self, keys: I) -> BTreeSet<String>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut out = BTreeSet::new();
        for key in keys {
            let key = key.as_ref();
            if let Some(scopes) = self.map.get(key) {
                out.extend(scopes.iter().cloned());
            }
            if let Some(scope) = key
                .strip_prefix(SCP)
                .and_then(|rest| rest.strip_prefix(':'))
            {
                out.insert(scope.to_owned());
            }
        }
        out
    }

    /// [`claim_keys`] for the configured claims.
    pub fn claim_keys(&self, claims: &Value) -> Vec<String> {
        claim_keys(claims, &self.claims)
    }

    /// The scopes a token with these claims holds: [`Self::claim_keys`] then [`Self::scopes`].
    pub fn scopes_for(&self, claims: &Value) -> BTreeSet<String> {
        self.scopes(self.claim_keys(claims))
    }

    /// The [`Principal`] of a verified token (its scopes from [`Self::scopes_for`]),
    /// remembered in `memo` (lock-free) for the next request that carries the same token under
    /// this map.
    pub fn principal(&self, claims: &Value, memo: &ScopesMemo) -> Arc<Principal> {
        if let Some(hit) = memo.0.load().as_ref().filter(|m| m.0 == self.id) {
            return Arc::clone(&hit.1);
        }
        let principal = Arc::new(Principal::from_claims(claims, self.scopes_for(claims)));
        memo.0
            .store(Some(Arc::new((self.id, Arc::clone(&principal)))));
        principal
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keys_from_each_shape() {
        let claims = json!({
            "roles": "Admin",
            "scope": "openid  mcp:read",
            "groups": ["Dev", "Ops", 3, "Dev"],
            "scp": ["tools.read"],
            "realm_access": {"roles": ["editor"]},
            "n": 5,
            "o": {"a": "b"},
        });
        let keys = claim_keys(
            &claims,
            &names(&["roles", "scope", "realm_access.roles", "n", "o", "missing"]),
        );
        assert_eq!(
            keys,
            names(&[
                "roles:Admin",
                "scope:openid",
                "scope:mcp:read",
                "realm_access.roles:editor",
                "scp:tools.read",
                "groups:Dev",
                "groups:Ops",
            ])
        );
    }

    #[test]
    fn configured_always_read_claims_are_not_doubled() {
        let claims = json!({"groups": ["A"]});
        assert_eq!(
            claim_keys(&claims, &names(&["groups"])),
            names(&["groups:A"])
        );
    }

    #[test]
    fn top_level_dotted_name_wins() {
        let claims = json!({"a.b": "x", "a": {"b": "y"}});
        assert_eq!(claim_keys(&claims, &names(&["a.b"])), names(&["a.b:x"]));
    }

    #[test]
    fn scopes_via_mappings_and_scp() {
        let auth = Auth {
            claims: names(&["groups"]),
            mappings: vec![
                ("groups:Admin".into(), names(&["scope:admin"])),
                ("groups:Admin".into(), names(&["scope:user"])),
                ("scp:mcp:read".into(), names(&["scope:reader"])),
            ],
            permissions: vec![],
            scope_mode: crate::config::ScopeMode::Any,
            default_scope: None,
            on_denied: Default::default(),
        };
        let m = ScopeMap::new(&auth);
        let got = m.scopes_for(&json!({"groups": ["Admin", "Nobody"], "scp": ["mcp:read"]}));
        let want: BTreeSet<String> = ["scope:admin", "scope:user", "scope:reader", "mcp:read"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn remembered_scopes_follow_the_map_that_computed_them() {
        let auth = |scope: &str| Auth {
            claims: names(&["groups"]),
            mappings: vec![("groups:Dev".into(), names(&[scope]))],
            permissions: vec![],
            scope_mode: crate::config::ScopeMode::Any,
            default_scope: None,
            on_denied: Default::default(),
        };
        let (before, after) = (
            ScopeMap::new(&auth("scope:old")),
            ScopeMap::new(&auth("scope:new")),
        );
        let claims = json!({"groups": ["Dev"]});
        let memo = ScopesMemo::default();
        for _ in 0..2 {
            assert!(before
                .principal(&claims, &memo)
                .scopes
                .contains("scope:old"));
        }
        // A reload compiled a new map: the remembered scopes are not reused under it.
        assert!(after.principal(&claims, &memo).scopes.contains("scope:new"));
        assert!(!after.principal(&claims, &memo).scopes.contains("scope:old"));
        let clone = before.clone();
        assert!(clone.principal(&claims, &memo).scopes.contains("scope:old"));
    }
}
