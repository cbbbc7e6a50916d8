//! Names on the aggregated `/mcp`: every upstream's tools and prompts are exposed as
//! `PREFIX{separator}NAME` (the prefix is the server's `prefix`, else its name; `NAME` its
//! `aliases` entry, else the upstream's own name), and resource URIs as `mcp://PREFIX/URI`.
//! Both are reversed on the way back, without state: any replica resolves any name.
//!
//! Every exposed tool and prompt name satisfies the strictest client rule,
//! `^[a-zA-Z0-9_-]{1,64}$`. A name that would not (too long, or a character outside the set)
//! is shortened deterministically: its characters outside the set become `_`, it is cut to fit,
//! and `-` plus 8 hex digits of its SHA-256 are appended. Such a name cannot be reversed by
//! reading it: [`Resolved::Shortened`] asks the caller to find it in the upstream's list.

use std::borrow::Cow;
use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::config::Config;

/// Longest exposed name (the strictest client rule).
pub const MAX_NAME: usize = 64;
/// `-` and 8 hex digits: what a shortened name ends with.
const HASH_TAIL: usize = 9;
/// The scheme of a namespaced resource URI.
const URI_SCHEME: &str = "mcp://";

/// True for a name every client accepts.
pub fn valid(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One server's names.
struct Server {
    name: Box<str>,
    prefix: Box<str>,
    /// Upstream name -> exposed tail.
    alias: HashMap<Box<str>, Box<str>>,
    /// Exposed tail -> upstream name.
    unalias: HashMap<Box<str>, Box<str>>,
}

/// How an exposed name maps back.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved<'a> {
    /// The upstream's own name.
    Name(Cow<'a, str>),
    /// A shortened name: find the upstream name whose [`Names::expose`] is this.
    Shortened,
}

/// The names of one config snapshot, compiled at load.
pub struct Names {
    separator: Box<str>,
    servers: Vec<Server>,
    by_prefix: HashMap<Box<str>, usize>,
    by_name: HashMap<Box<str>, usize>,
    /// What the last lists merged on `/mcp` showed of each server's live names (for `/status`).
    seen: arc_swap::ArcSwap<std::collections::BTreeMap<String, Seen>>,
}

/// What a server's live list showed on `/mcp`: names shortened to fit, and names that two
/// upstream names would share (the later one is left out of lists).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Seen {
    /// Upstream name -> the shortened name it is exposed as.
    pub shortened: Vec<(String, String)>,
    /// "`a` and `b` both become `P__x`".
    pub collisions: Vec<String>,
}

impl Names {
    /// Compile `config`'s prefixes and aliases.
    pub fn new(config: &Config) -> Names {
        let servers: Vec<Server> = config
            .proxy
            .servers
            .iter()
            .map(|u| Server {
                name: u.name.as_str().into(),
                prefix: u.prefix.as_str().into(),
                alias: u
                    .aliases
                    .iter()
                    .map(|(n, e)| (n.as_str().into(), e.as_str().into()))
                    .collect(),
                unalias: u
                    .aliases
                    .iter()
                    .map(|(n, e)| (e.as_str().into(), n.as_str().into()))
                    .collect(),
            })
            .collect();
        let by_prefix = servers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.prefix.clone(), i))
            .collect();
        let by_name = servers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        Names {
            separator: config.proxy.separator.as_str().into(),
            servers,
            by_prefix,
            by_name,
            seen: arc_swap::ArcSwap::default(),
        }
    }

    fn server(&self, name: &str) -> Option<&Server> {
        self.by_name.get(name).map(|&i| &self.servers[i])
    }

    /// The name a tool or prompt `name` of `server` has on `/mcp`.
    pub fn expose(&self, server: &str, name: &str) -> String {
        let Some(s) = self.server(server) else {
            return shorten(&format!("{server}{}{name}", self.separator), MAX_NAME);
        };
        let mut out = String::with_capacity(s.prefix.len() + self.separator.len() + name.len());
        out.push_str(&s.prefix);
        out.push_str(&self.separator);
        let budget = MAX_NAME.saturating_sub(out.len());
        match s.alias.get(name) {
            Some(alias) => out.push_str(alias),
            None if valid(name) && name.len() <= budget => out.push_str(name),
            None => out.push_str(&shorten(name, budget)),
        }
        out
    }

    /// `PREFIX{separator}`: what every name of `server` starts with on `/mcp`.
    pub fn head(&self, server: &str) -> String {
        let prefix = self.server(server).map_or(server, |s| &s.prefix);
        format!("{prefix}{}", self.separator)
    }

    /// The server whose prefix `exposed` starts with, and the rest after the separator.
    pub fn split<'a>(&self, exposed: &'a str) -> Option<(&str, &'a str)> {
        let (prefix, tail) = exposed.split_once(&*self.separator)?;
        Some((&self.servers[*self.by_prefix.get(prefix)?].name, tail))
    }

    /// The server a name on `/mcp` belongs to, and how its upstream name is found.
    pub fn resolve<'a>(&self, exposed: &'a str) -> Option<(&str, Resolved<'a>)> {
        let (prefix, tail) = exposed.split_once(&*self.separator)?;
        let s = &self.servers[*self.by_prefix.get(prefix)?];
        if let Some(name) = s.unalias.get(tail) {
            return Some((&s.name, Resolved::Name(Cow::Owned(name.to_string()))));
        }
        if s.alias.contains_key(tail) {
            // Aliased away: the upstream name itself is not exposed.
            return None;
        }
        let budget = MAX_NAME.saturating_sub(prefix.len() + self.separator.len());
        if valid(tail) && tail.len() <= budget && !looks_shortened(tail) {
            return Some((&s.name, Resolved::Name(Cow::Borrowed(tail))));
        }
        Some((&s.name, Resolved::Shortened))
    }

    /// The URI a resource `uri` of `server` has on `/mcp` (a template is namespaced alike).
    pub fn expose_uri(&self, server: &str, uri: &str) -> String {
        let prefix = self.server(server).map_or(server, |s| &s.prefix);
        format!("{URI_SCHEME}{prefix}/{uri}")
    }

    /// The server and upstream URI of a resource URI on `/mcp`.
    pub fn resolve_uri<'a>(&self, exposed: &'a str) -> Option<(&str, &'a str)> {
        let rest = exposed.strip_prefix(URI_SCHEME)?;
        let (prefix, uri) = rest.split_once('/')?;
        let s = &self.servers[*self.by_prefix.get(prefix)?];
        (!uri.is_empty()).then_some((&*s.name, uri))
    }

    /// Record what a merged list of `server` showed (only when it changed: lists are merged
    /// often, reports rarely change).
    pub fn observe(&self, server: &str, seen: Seen) {
        if self.seen.load().get(server) == Some(&seen) {
            return;
        }
        self.seen.rcu(|all| {
            let mut all = (**all).clone();
            all.insert(server.to_owned(), seen.clone());
            all
        });
    }

    /// What lists showed of each server's live names.
    pub fn seen(&self) -> std::sync::Arc<std::collections::BTreeMap<String, Seen>> {
        self.seen.load_full()
    }

    /// Names of `/mcp` that two upstream names of `server` would share, and upstream names
    /// that had to be shortened: for `portcullis check` and `/status`.
    pub fn report<'n>(
        &self,
        server: &str,
        names: impl IntoIterator<Item = &'n str>,
    ) -> (Vec<String>, Vec<(String, String)>) {
        let mut seen: HashMap<String, &str> = HashMap::new();
        let (mut collisions, mut shortened) = (Vec::new(), Vec::new());
        for n in names {
            let e = self.expose(server, n);
            if self.resolve(&e).map(|(_, r)| r) == Some(Resolved::Shortened) {
                shortened.push((n.to_owned(), e.clone()));
            }
            if let Some(other) = seen.insert(e.clone(), n) {
                collisions.push(format!("`{other}` and `{n}` both become `{e}`"));
            }
        }
        (collisions, shortened)
    }
}

/// True when `tail` has the shape of a shortened name: `-` and 8 lowercase hex digits at its
/// end. (An upstream name of that shape is resolved through the list too, which finds it.)
fn looks_shortened(tail: &str) -> bool {
    let b = tail.as_bytes();
    b.len() >= HASH_TAIL
        && b[b.len() - HASH_TAIL] == b'-'
        && b[b.len() - 8..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// `name` made valid within `budget` characters: characters outside `A-Z a-z 0-9 _ -` become
/// `_`, cut to fit, then `-` and 8 hex digits of the SHA-256 of the original name.
pub fn shorten(name: &str, budget: usize) -> String {
    let hash = Sha256::digest(name.as_bytes());
    let keep = budget.saturating_sub(HASH_TAIL);
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(keep)
        .collect();
    out.push('-');
    out.push_str(&hex::encode(&hash[..4]));
    out
}

/// A cursor of `/mcp` lists: the next cursor of each upstream that has more, by server name.
pub mod cursor {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde_json::{Map, Value};

    /// Encode the upstreams' next cursors (`None` when no upstream has more).
    pub fn encode(next: &Map<String, Value>) -> Option<String> {
        (!next.is_empty())
            .then(|| URL_SAFE_NO_PAD.encode(serde_json::to_vec(next).unwrap_or_default()))
    }

    /// Decode a cursor the gateway made; `None` for anything else.
    pub fn decode(cursor: &str) -> Option<Map<String, Value>> {
        let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        match serde_json::from_slice(&bytes).ok()? {
            Value::Object(m) if m.values().all(Value::is_string) => Some(m),
            _ => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn names(extra: &str) -> Names {
        let yaml = format!(
            "server:\n  listen: \"127.0.0.1:8080\"\noauth:\n  enabled: false\nproxy:\n  servers:\n    - name: everything\n      type: stdio\n      connection: {{ command: x }}\n    - name: n8n\n      type: stdio\n      prefix: wf\n      aliases: {{ calculator: calc }}\n      connection: {{ command: x }}\n{extra}"
        );
        Names::new(&crate::config::load_str(&yaml, "t.yaml", &|_| None).unwrap())
    }

    #[test]
    fn names_are_prefixed_aliased_and_resolved_back() {
        let n = names("");
        assert_eq!(n.expose("everything", "echo"), "everything__echo");
        assert_eq!(n.expose("n8n", "calculator"), "wf__calc");
        assert_eq!(n.expose("n8n", "mail"), "wf__mail");
        assert_eq!(
            n.resolve("everything__echo"),
            Some(("everything", Resolved::Name(Cow::Borrowed("echo"))))
        );
        assert_eq!(
            n.resolve("wf__calc"),
            Some(("n8n", Resolved::Name(Cow::Owned("calculator".into()))))
        );
        // The aliased name itself is not exposed; the server's own name is not its prefix.
        assert_eq!(n.resolve("wf__calculator"), None);
        assert_eq!(n.resolve("n8n__mail"), None);
        // The first separator splits: a name may hold the separator itself.
        assert_eq!(
            n.resolve("everything__a__b"),
            Some(("everything", Resolved::Name(Cow::Borrowed("a__b"))))
        );
        assert_eq!(n.resolve("everything"), None);
        assert_eq!(n.resolve("nobody__echo"), None);
    }

    #[test]
    fn invalid_names_are_shortened_deterministically_and_stay_valid() {
        let n = names("");
        let long = "x".repeat(80);
        for name in [
            long.as_str(),
            "has space",
            "dots.in.name",
            "ünïcode",
            &"y".repeat(53),
        ] {
            let e = n.expose("everything", name);
            assert!(valid(&e), "{e}");
            assert_eq!(e, n.expose("everything", name));
            assert_eq!(n.resolve(&e), Some(("everything", Resolved::Shortened)));
        }
        // Two names that differ only past the cut differ in the hash.
        let a = n.expose("everything", &format!("{long}a"));
        let b = n.expose("everything", &format!("{long}b"));
        assert_ne!(a, b);
        // Exactly at the budget: kept as is.
        let fits = "z".repeat(MAX_NAME - "everything__".len());
        assert_eq!(n.expose("everything", &fits), format!("everything__{fits}"));
    }

    #[test]
    fn uris_round_trip() {
        let n = names("");
        let e = n.expose_uri("n8n", "file:///etc/x?y=1");
        assert_eq!(e, "mcp://wf/file:///etc/x?y=1");
        assert_eq!(n.resolve_uri(&e), Some(("n8n", "file:///etc/x?y=1")));
        assert_eq!(n.resolve_uri("mcp://n8n/file:///x"), None);
        assert_eq!(n.resolve_uri("mcp://wf/"), None);
        assert_eq!(n.resolve_uri("file:///x"), None);
    }

    #[test]
    fn collisions_and_shortenings_are_reported() {
        let n = names("");
        let (collisions, shortened) = n.report("n8n", ["calc", "calculator", &"q".repeat(70)]);
        assert_eq!(collisions.len(), 1, "{collisions:?}");
        assert_eq!(shortened.len(), 1);
    }

    #[test]
    fn cursors_round_trip_and_refuse_others() {
        let mut m = serde_json::Map::new();
        m.insert("a".into(), "c1".into());
        let c = cursor::encode(&m).unwrap();
        assert_eq!(cursor::decode(&c), Some(m));
        assert_eq!(cursor::encode(&serde_json::Map::new()), None);
        assert_eq!(cursor::decode("not a cursor"), None);
    }
}
