//! Permission patterns: `*` globs ([`Glob`], shared with the config checks) over a server name
//! and a tool, prompt or resource name, compiled once at load (no regex, no allocation when
//! matching), and the specificity key that picks the most specific matching pattern.
//!
//! Ordering (most specific first):
//! 1. the server part before the name part;
//! 2. within a part, an exact (glob-free) part beats any glob;
//! 3. among globs, more literal (non-`*`) characters beat fewer.
//!
//! Equal keys are broken by config order (earlier wins) by the caller ([`super::Policy`]).

use crate::config::Glob;

/// How specific a [`Pattern`] is; a greater key is more specific. The derived ordering compares
/// the fields in declaration order: server exactness, server literal length, name exactness,
/// name literal length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity {
    server_exact: bool,
    server_literal: usize,
    name_exact: bool,
    name_literal: usize,
}

/// A compiled `server:name` (or `server{separator}name`) permission pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The server part.
    pub server: Glob,
    /// The tool, prompt or resource part.
    pub name: Glob,
    specificity: Specificity,
}

impl Pattern {
    /// Compiles a pattern from its two parts (the config has already split them).
    pub fn new(server: &str, name: &str) -> Self {
        let server = Glob::new(server);
        let name = Glob::new(name);
        let specificity = Specificity {
            server_exact: server.is_exact(),
            server_literal: server.literal_len(),
            name_exact: name.is_exact(),
            name_literal: name.literal_len(),
        };
        Pattern {
            server,
            name,
            specificity,
        }
    }

    /// Whether the pattern matches `server` and `name`.
    pub fn matches(&self, server: &str, name: &str) -> bool {
        self.server.matches(server) && self.name.matches(name)
    }

    /// The specificity key (greater is more specific).
    pub fn specificity(&self) -> Specificity {
        self.specificity
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn spec(p: &str) -> Specificity {
        let (s, n) = p.split_once(':').unwrap();
        Pattern::new(s, n).specificity()
    }

    #[test]
    fn specificity_ordering() {
        // Each pattern is strictly more specific than the next.
        let chain = [
            "n8n:send_email",
            "n8n:send_*",
            "n8n:s*",
            "n8n:*",
            "n8*:send_email",
            "n8*:*",
            "n*:*",
            "*:send_email",
            "*:send_*",
            "*:*",
        ];
        for w in chain.windows(2) {
            assert!(spec(w[0]) > spec(w[1]), "{} should beat {}", w[0], w[1]);
        }
        assert_eq!(spec("n8n:a*"), spec("n8n:*b"));
    }

    #[test]
    fn pattern_matching() {
        let p = Pattern::new("n8n", "*");
        assert!(p.matches("n8n", "anything"));
        assert!(!p.matches("n8n2", "anything"));
        let p = Pattern::new("*", "delete_*");
        assert!(p.matches("github", "delete_repo"));
        assert!(!p.matches("github", "create_repo"));
    }
}
