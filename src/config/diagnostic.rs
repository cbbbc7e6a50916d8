//! Config diagnostics: one located error ([`Diagnostic`]), the set returned by a failed load
//! ([`Diagnostics`]), their rustc-like rendering, field paths and the "did you mean" helper.
//!
//! Rendering (checked byte for byte by the golden tests in `tests/fixtures/config/invalid`):
//!
//! ```text
//! error: unknown field `conection`
//!   --> gateway.yaml:12:7
//!    | at proxy.servers[0].conection
//!    = hint: did you mean `connection`? expected one of `url`, `timeout`
//! ```

use std::fmt;

/// One problem found in a config file, located at `file:line:column` and a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as given to the loader (e.g. `gateway.yaml`).
    pub file: String,
    /// 1-based line; 0 when the problem has no position (e.g. the file could not be read).
    pub line: usize,
    /// 1-based column, in characters; 0 when `line` is 0.
    pub column: usize,
    /// The field path, e.g. `proxy.servers[0].connection.url` or `auth.mappings["groups:Admin"]`;
    /// empty when the problem concerns the whole file.
    pub path: String,
    /// What is wrong, one line.
    pub message: String,
    /// How to fix it, when we can tell.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// Renders the diagnostic with `warning` instead of `error` as its label (for findings that do
    /// not stop a load, see [`crate::config::Config::warnings`]).
    pub fn render_as_warning(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out, "warning");
        out
    }

    fn render_into(&self, out: &mut String, label: &str) {
        out.push_str(label);
        out.push_str(": ");
        out.push_str(&self.message);
        out.push('\n');
        if self.line == 0 {
            out.push_str(&format!("  --> {}", self.file));
        } else {
            out.push_str(&format!(
                "  --> {}:{}:{}",
                self.file, self.line, self.column
            ));
        }
        if !self.path.is_empty() {
            out.push_str(&format!("\n   | at {}", self.path));
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("\n   = hint: {hint}"));
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.render_into(&mut out, "error");
        f.write_str(&out)
    }
}

/// Every error found while loading a config file; a load never stops at the first one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// The number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no error (never the case for a failed load).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the errors, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}\n")?;
        }
        let n = self.0.len();
        write!(
            f,
            "error: could not load config: {n} error{}",
            if n == 1 { "" } else { "s" }
        )
    }
}

/// One step of a field path: a map key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Seg {
    /// A map key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A field path from the document root, rendered as `a.b[0]["c:d"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct FieldPath(pub(crate) Vec<Seg>);

impl FieldPath {
    /// The root path (renders as the empty string).
    pub(crate) fn root() -> Self {
        Self(Vec::new())
    }

    /// This path extended by a map key.
    pub(crate) fn key(&self, key: &str) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(key.to_owned()));
        Self(v)
    }

    /// This path extended by a sequence index.
    pub(crate) fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        Self(v)
    }

    /// The parent path, or `None` at the root.
    pub(crate) fn parent(&self) -> Option<Self> {
        let (_, rest) = self.0.split_last()?;
        Some(Self(rest.to_vec()))
    }

    /// True when `self` equals `other` or lies under it.
    pub(crate) fn starts_with(&self, other: &FieldPath) -> bool {
        self.0.starts_with(&other.0)
    }
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if is_identifier(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Key(k) => {
                    let escaped = k.replace('\\', "\\\\").replace('"', "\\\"");
                    write!(f, "[\"{escaped}\"]")?;
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Levenshtein distance over characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            let del = prev[j + 1] + 1;
            let ins = cur[j] + 1;
            cur.push(subst.min(del).min(ins));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `word` (case-insensitively), if it is close enough to be a typo:
/// distance at most `max(2, len / 3)`. Ties go to the earlier candidate.
pub(crate) fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = word.to_lowercase();
    let limit = (word.chars().count() / 3).max(2);
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        let d = edit_distance(&lower, &c.to_lowercase());
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// A hint for a name that is not one of `expected`: "did you mean `x`? expected one of ...".
pub(crate) fn expected_hint(word: &str, expected: &[&str]) -> Option<String> {
    if expected.is_empty() {
        return None;
    }
    let list = expected
        .iter()
        .map(|e| format!("`{e}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(match did_you_mean(word, expected.iter().copied()) {
        Some(s) => format!("did you mean `{s}`? expected one of {list}"),
        None => format!("expected one of {list}"),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn distance() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("conection", "connection"), 1);
        assert_eq!(edit_distance("abc", ""), 3);
    }

    #[test]
    fn suggestions() {
        let fields = [
            "name",
            "type",
            "connection",
            "auth",
            "forward_authorization",
        ];
        assert_eq!(did_you_mean("conection", fields), Some("connection"));
        assert_eq!(did_you_mean("Typ", fields), Some("type"));
        assert_eq!(did_you_mean("forward_auth", fields), None);
        assert_eq!(did_you_mean("zzzzzzzz", fields), None);
        assert_eq!(did_you_mean("servre", ["server", "proxy"]), Some("server"));
        assert_eq!(
            expected_hint("auht", &["auth", "proxy"]).as_deref(),
            Some("did you mean `auth`? expected one of `auth`, `proxy`")
        );
        assert_eq!(
            expected_hint("qqqqq", &["auth"]).as_deref(),
            Some("expected one of `auth`")
        );
    }

    #[test]
    fn paths() {
        let p = FieldPath::root()
            .key("proxy")
            .key("servers")
            .index(0)
            .key("url");
        assert_eq!(p.to_string(), "proxy.servers[0].url");
        let p = FieldPath::root()
            .key("auth")
            .key("mappings")
            .key("groups:Admin");
        assert_eq!(p.to_string(), "auth.mappings[\"groups:Admin\"]");
        assert_eq!(FieldPath::root().key("a\"b").to_string(), "[\"a\\\"b\"]");
        assert_eq!(FieldPath::root().to_string(), "");
    }

    #[test]
    fn rendering() {
        let d = Diagnostic {
            file: "gateway.yaml".into(),
            line: 12,
            column: 7,
            path: "proxy.servers[0].conection".into(),
            message: "unknown field `conection`".into(),
            hint: Some("did you mean `connection`?".into()),
        };
        assert_eq!(
            d.to_string(),
            "error: unknown field `conection`\n  --> gateway.yaml:12:7\n   | at proxy.servers[0].conection\n   = hint: did you mean `connection`?"
        );
        let all = Diagnostics(vec![d.clone(), d]);
        assert!(all
            .to_string()
            .ends_with("\n\nerror: could not load config: 2 errors"));
    }
}
