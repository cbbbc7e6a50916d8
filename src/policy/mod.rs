//! The policy engine: who may use which tool, prompt or resource.
//!
//! [`Policy`] is compiled once per config snapshot (in [`crate::reload::Live::new`]) from
//! `auth` and `proxy.separator`; deciding never allocates.
//!
//! Semantics (seed 004 plus most-specific-wins):
//! - `auth.permissions` maps `server:name` patterns (also written `server{separator}name`) with
//!   `*` globs to scope lists. Patterns apply to tools, prompts and resources alike; a resource
//!   name is its URI, and `*` matches any characters including `/` and `:`.
//! - The most specific matching pattern decides (see [`matcher`]: server part first, exact beats
//!   glob, more literal characters beat fewer; ties go to the pattern written first).
//! - The deciding pattern's scopes are satisfied per `auth.options.scope_mode`: `any` needs at
//!   least one of them, `all` needs every one. A rule with an empty scope list never allows
//!   (the config loader refuses those anyway).
//! - No pattern matches: `auth.options.default_scope`; `null` denies, a scope allows exactly the
//!   callers holding it.
//! - Which JSON-RPC methods the policy decides, and where their target is named, is one table:
//!   [`covered`]. A message of a covered method is decided whatever its shape; one that names
//!   nothing decidable is refused before it gets here (`mcp::jsonrpc`).
//! - Forwarding anything upstream takes a [`Permit`], and only this module makes them
//!   ([`Policy::permit`], [`Policy::permit_session`]): "reached the upstream without a decision"
//!   cannot be written.
//!
//! | file         | owns                                       |
//! |--------------|--------------------------------------------|
//! | `mod.rs`     | [`Policy`], [`Permit`], [`Denied`], [`covered`] |
//! | `pattern.rs` | [`pattern::Pattern`], specificity          |
//! | `limit.rs`   | [`limit::Limits`]: `rate_limits` buckets   |

pub mod limit;
pub mod pattern;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use crate::auth::{Principal, ScopeMap};
use crate::config::{Auth, Config, ScopeMode};
use pattern::Pattern;

/// Where a covered method names what it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A string member of `params` (`name`, `uri`) naming a use of this kind.
    Param(Kind, &'static str),
    /// `completion/complete`: `params.ref` names a prompt (`{type: "ref/prompt", name}`) or a
    /// resource template (`{type: "ref/resource", uri}`).
    CompletionRef,
}

/// The methods the policy decides on, and where each names its target. Every message of these
/// methods is authorized; any other method is not about a tool, prompt or resource.
pub const COVERED: [(&str, Target); 6] = [
    ("tools/call", Target::Param(Kind::Tool, "name")),
    ("prompts/get", Target::Param(Kind::Prompt, "name")),
    ("resources/read", Target::Param(Kind::Resource, "uri")),
    ("resources/subscribe", Target::Param(Kind::Resource, "uri")),
    (
        "resources/unsubscribe",
        Target::Param(Kind::Resource, "uri"),
    ),
    ("completion/complete", Target::CompletionRef),
];

/// The target of a covered method (see [`COVERED`]).
pub fn covered(method: &str) -> Option<Target> {
    COVERED.iter().find(|(m, _)| *m == method).map(|(_, t)| *t)
}

/// What is being used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `tools/call`, `tools/list` entries.
    Tool,
    /// `prompts/get`, `prompts/list` entries.
    Prompt,
    /// `resources/read`, `resources/subscribe`, resource and template list entries.
    Resource,
}

impl Kind {
    /// `tool`, `prompt` or `resource`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tool => "tool",
            Kind::Prompt => "prompt",
            Kind::Resource => "resource",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What decided an authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy<'a> {
    /// A permission pattern; its text as written in the config (e.g. `n8n:*`).
    Rule(&'a str),
    /// No pattern matched; `auth.options.default_scope` decided.
    DefaultScope,
    /// No pattern matched and `default_scope` is null: denied.
    NoRule,
    /// Authentication is off (`oauth.enabled: false`): the policy is not applied.
    NoAuthentication,
}

impl DecidedBy<'_> {
    /// The rule's source text, or `default_scope`, or `no rule`.
    pub fn source(&self) -> &str {
        match self {
            DecidedBy::Rule(s) => s,
            DecidedBy::DefaultScope => "default_scope",
            DecidedBy::NoRule => "no rule",
            DecidedBy::NoAuthentication => "authentication off",
        }
    }
}

impl fmt::Display for DecidedBy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecidedBy::Rule(s) => write!(f, "rule `{s}`"),
            DecidedBy::DefaultScope => f.write_str("default_scope"),
            DecidedBy::NoRule => f.write_str("no matching rule (default_scope is null)"),
            DecidedBy::NoAuthentication => f.write_str("no authentication (policy not applied)"),
        }
    }
}

/// An allowed use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed<'a> {
    /// What was used.
    pub kind: Kind,
    /// What allowed it.
    pub by: DecidedBy<'a>,
}

/// Leave to forward one request to one upstream: the only way to the upstream interface.
/// Made by [`Policy::permit`] (a request whose every tool, prompt and resource the caller may
/// use) and [`Policy::permit_session`] (session traffic that addresses none: `initialize`,
/// lists, notifications, answers, the GET stream, DELETE). Its fields are private, so no other
/// module can make one.
#[derive(Debug, Clone)]
pub struct Permit<'a> {
    server: &'a str,
    principal: Arc<Principal>,
    /// The rule that allowed the single use a request addresses, if it addresses one.
    by: Option<DecidedBy<'a>>,
}

impl<'a> Permit<'a> {
    /// The upstream server this permit is for.
    pub fn server(&self) -> &'a str {
        self.server
    }

    /// Who it was granted to.
    pub fn principal(&self) -> &Arc<Principal> {
        &self.principal
    }

    /// The rule that allowed the request's use, if it addresses one (audit).
    pub fn decided_by(&self) -> Option<DecidedBy<'a>> {
        self.by
    }
}

/// A refused use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind} denied by {by}{}", needs(*.mode, .needed))]
pub struct Denied<'a> {
    /// What was refused.
    pub kind: Kind,
    /// What refused it.
    pub by: DecidedBy<'a>,
    /// The scopes that would have been needed (per [`Self::mode`]); empty when nothing could
    /// allow it (no rule and no `default_scope`).
    pub needed: &'a [String],
    /// How [`Self::needed`] combines.
    pub mode: ScopeMode,
}

impl Denied<'_> {
    /// The needed scopes, space-separated (for `WWW-Authenticate: ... scope="..."`).
    pub fn scope_hint(&self) -> String {
        self.needed.join(" ")
    }
}

fn needs(mode: ScopeMode, needed: &[String]) -> String {
    match needed {
        [] => String::new(),
        [one] => format!(": needs scope `{one}`"),
        many => format!(
            ": needs {} of [{}]",
            match mode {
                ScopeMode::Any => "any",
                ScopeMode::All => "all",
            },
            many.join(", ")
        ),
    }
}

/// One compiled permission.
#[derive(Debug, Clone)]
struct Rule {
    pattern: Pattern,
    scopes: Box<[String]>,
    source: Box<str>,
}

/// The compiled policy of one config snapshot.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Most specific first; config order among equals.
    rules: Box<[Rule]>,
    mode: ScopeMode,
    /// Empty, or the one `default_scope`.
    default: Box<[String]>,
    separator: Box<str>,
    scope_map: ScopeMap,
}

impl Policy {
    /// Compiles `auth` (permissions, mappings, options) with the `/mcp` name separator.
    pub fn new(auth: &Auth, separator: &str) -> Self {
        let mut rules: Vec<Rule> = auth
            .permissions
            .iter()
            .map(|p| Rule {
                pattern: Pattern::new(&p.server, &p.name),
                scopes: p.scopes.clone().into_boxed_slice(),
                source: p.source.as_str().into(),
            })
            .collect();
        // Stable: equal specificity keeps config order.
        rules.sort_by_key(|r| std::cmp::Reverse(r.pattern.specificity()));
        Policy {
            rules: rules.into_boxed_slice(),
            mode: auth.scope_mode,
            default: auth.default_scope.iter().cloned().collect(),
            separator: separator.into(),
            scope_map: ScopeMap::new(auth),
        }
    }

    /// [`Policy::new`] for a loaded config.
    pub fn from_config(rt: &Config) -> Self {
        Policy::new(&rt.auth, &rt.proxy.separator)
    }

    /// Claims to scopes for this config (`auth.claims`, `auth.mappings`).
    pub fn scope_map(&self) -> &ScopeMap {
        &self.scope_map
    }

    /// `auth.options.scope_mode`.
    pub fn scope_mode(&self) -> ScopeMode {
        self.mode
    }

    /// `auth.options.default_scope`.
    pub fn default_scope(&self) -> Option<&str> {
        self.default.first().map(String::as_str)
    }

    /// The `/mcp` separator between server and name (`proxy.separator`).
    pub fn separator(&self) -> &str {
        &self.separator
    }

    /// Splits `server{separator}name` (first occurrence of the separator), or else
    /// `server:name`; `None` when neither splits into two non-empty parts.
    pub fn split_qualified<'n>(&self, qualified: &'n str) -> Option<(&'n str, &'n str)> {
        let by_sep = (!self.separator.is_empty())
            .then(|| qualified.split_once(&*self.separator))
            .flatten();
        by_sep
            .or_else(|| qualified.split_once(':'))
            .filter(|(s, n)| !s.is_empty() && !n.is_empty())
    }

    /// The permission pattern that decides for `server` and `name` (its source text and
    /// scopes), if any matches.
    pub fn rule_for(&self, server: &str, name: &str) -> Option<(&str, &[String])> {
        self.find(server, name).map(|r| (&*r.source, &*r.scopes))
    }

    fn find(&self, server: &str, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.pattern.matches(server, name))
    }

    /// Decides whether a caller holding `scopes` may use `name` of `kind` on `server`.
    pub fn authorize(
        &self,
        scopes: &BTreeSet<String>,
        kind: Kind,
        server: &str,
        name: &str,
    ) -> Result<Allowed<'_>, Denied<'_>> {
        let (by, needed, mode) = match self.find(server, name) {
            Some(rule) => (DecidedBy::Rule(&rule.source), &*rule.scopes, self.mode),
            None if !self.default.is_empty() => {
                (DecidedBy::DefaultScope, &*self.default, ScopeMode::Any)
            }
            None => (DecidedBy::NoRule, &[][..], self.mode),
        };
        let has = |s: &String| scopes.contains(s.as_str());
        let allowed = !needed.is_empty()
            && match mode {
                ScopeMode::Any => needed.iter().any(has),
                ScopeMode::All => needed.iter().all(has),
            };
        if allowed {
            Ok(Allowed { kind, by })
        } else {
            Err(Denied {
                kind,
                by,
                needed,
                mode,
            })
        }
    }

    /// Whether `name` of `kind` on `server` may be shown to (and used by) a caller holding
    /// `scopes`: the same decision as [`Policy::authorize`], for list filtering.
    pub fn visible(&self, scopes: &BTreeSet<String>, kind: Kind, server: &str, name: &str) -> bool {
        self.authorize(scopes, kind, server, name).is_ok()
    }

    /// Whether a caller holding `scopes` may use anything at all on `server` (a rule naming the
    /// server grants it, or the default scope does): the servers of its `/mcp` session. What it
    /// may use there is still decided name by name.
    pub fn may_reach(&self, principal: &Principal, server: &str) -> bool {
        let has = |s: &String| principal.scopes.contains(s.as_str());
        principal.anonymous
            || self.default.iter().any(has)
            || self.rules.iter().any(|r| {
                r.pattern.server.matches(server)
                    && !r.scopes.is_empty()
                    && match self.mode {
                        ScopeMode::Any => r.scopes.iter().any(has),
                        ScopeMode::All => r.scopes.iter().all(has),
                    }
            })
    }

    /// A permit for `principal` to send upstream to `server` a request that uses each of `uses`
    /// (kind, name), or the first use it may not make (its index in `uses`) and why. Without
    /// authentication (an anonymous principal) the policy is not applied.
    pub fn permit<'a, 'n>(
        &'a self,
        principal: &Arc<Principal>,
        server: &'a str,
        uses: impl IntoIterator<Item = (Kind, &'n str)>,
    ) -> Result<Permit<'a>, (usize, Denied<'a>)> {
        self.permit_each(principal, server, uses, |_, _, _| {})
    }

    /// [`Policy::permit`], telling `each` every use decided, in order, with its outcome (the
    /// audit trail): `Ok` with what allowed it, `Err` with the refusal (the last one told).
    /// Without authentication every use is told allowed by [`DecidedBy::NoAuthentication`].
    pub fn permit_each<'a, 'n>(
        &'a self,
        principal: &Arc<Principal>,
        server: &'a str,
        uses: impl IntoIterator<Item = (Kind, &'n str)>,
        mut each: impl FnMut(Kind, &'n str, Result<DecidedBy<'a>, &Denied<'a>>),
    ) -> Result<Permit<'a>, (usize, Denied<'a>)> {
        let mut by = None;
        for (i, (kind, name)) in uses.into_iter().enumerate() {
            if principal.anonymous {
                each(kind, name, Ok(DecidedBy::NoAuthentication));
                continue;
            }
            match self.authorize(&principal.scopes, kind, server, name) {
                Ok(a) => {
                    each(kind, name, Ok(a.by));
                    by = Some(a.by);
                }
                Err(denied) => {
                    each(kind, name, Err(&denied));
                    return Err((i, denied));
                }
            }
        }
        Ok(Permit {
            server,
            principal: Arc::clone(principal),
            by,
        })
    }

    /// A permit for traffic of a session with `server` that uses no tool, prompt or resource
    /// (every authenticated caller may initialize, list, notify, answer, stream and end its
    /// session; lists are filtered per caller on the way back).
    pub fn permit_session<'a>(&'a self, principal: &Arc<Principal>, server: &'a str) -> Permit<'a> {
        Permit {
            server,
            principal: Arc::clone(principal),
            by: None,
        }
    }

    /// The compiled patterns, most specific first: (source text, scopes).
    pub fn rules(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.rules.iter().map(|r| (&*r.source, &*r.scopes))
    }
}
