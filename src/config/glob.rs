//! `*` globs, compiled once: permission patterns ([`crate::policy`]) and the config's own checks
//! of those patterns against the configured servers match with the same code.

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

#[cfg(test)]
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
}
