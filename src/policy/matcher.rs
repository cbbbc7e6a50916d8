//! Permission patterns: `*` globs over a server name and a tool, prompt or resource name,
//! compiled once at load (no regex, no allocation when matching), and the specificity key that
//! picks the most specific matching pattern.
//!
//! Ordering (most specific first):
//! 1. the server part before the name part;
//! 2. within a part, an exact (glob-free) part beats any glob;
//! 3. among globs, more literal (non-`*`) characters beat fewer.
//!
//! Equal keys are broken by config order (earlier wins) by the caller ([`super::Policy`]).

use std::fmt;

/// A `*` glob: `*` matches any run of characters (including none, `/` and `:`); every other
/// character matches itself. Compiled once; [`Glob::matches`] never allocates.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    /// The pattern split on `*`; one part means no `*` (an exact match).
    parts: Box<[Box<str>]>,
    /// Number of literal (non-`*`) bytes.
    literal: usize,
}

impl Glob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Self {
        let parts: Box<[Box<str>]> = pattern.split('*').map(Box::from).collect();
        let literal = parts.iter().map(|p| p.len()).sum();
        Glob { parts, literal }
    }

    /// True when the pattern has no `*`.
    pub fn is_exact(&self) -> bool {
        self.parts.len() == 1
    }

    /// The number of literal (non-`*`) bytes in the pattern.
    pub fn literal_len(&self) -> usize {
        self.literal
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        match &*self.parts {
            [only] => **only == *text,
            [first, mids @ .., last] => {
                let Some(rest) = text.strip_prefix(&**first) else {
                    return false;
                };
                let Some(mut rest) = rest.strip_suffix(&**last) else {
                    return false;
                };
                for mid in mids {
                    match rest.split_once(&**mid) {
                        Some((_, after)) => rest = after,
                        None => return false,
                    }
                }
                true
            }
            // `split` always yields at least one part.
            [] => false,
        }
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str("*")?;
            }
            f.write_str(p)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({self})")
    }
}

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

    #[test]
    fn glob_matching() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "n8n", true),
            ("n8*", "n8n", true),
            ("n8*", "n9n", false),
            ("*n", "n8n", true),
            ("a*c*e", "abcde", true),
            ("a*c*e", "ace", true),
            ("a*c*e", "abde", false),
            ("ab*ba", "aba", false),
            ("ab*ba", "abba", true),
            ("a*a", "a", false),
            ("a**b", "ab", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("exact", "", false),
            ("", "", true),
            ("file:///*", "file:///etc/passwd", true),
            ("file:///*.md", "file:///docs/a/b.md", true),
            ("file:///*.md", "file:///docs/a/b.txt", false),
            ("*://*", "https://x/y", true),
            ("get_*_by_id", "get_user_by_id", true),
            ("get_*_by_id", "get_user_by_name", false),
            ("é*", "éa", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(
                Glob::new(pattern).matches(text),
                *want,
                "{pattern} vs {text}"
            );
        }
    }

    #[test]
    fn glob_facts() {
        let g = Glob::new("get_*_by_*");
        assert!(!g.is_exact());
        assert_eq!(g.literal_len(), 8);
        assert_eq!(g.to_string(), "get_*_by_*");
        assert!(Glob::new("x").is_exact());
    }

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
