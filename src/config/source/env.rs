//! Environment variable substitution in scalar values: `${VAR}`, `${VAR:-default}` (default
//! used when the variable is unset or empty, as in the shell) and `$$` for a literal `$`.
//!
//! It runs on the parsed tree, value by value, never on the raw text: positions stay exact and a
//! substituted secret containing `$`, `{`, `}`, `#`, `: ` or newlines can never change the YAML
//! structure. Substituted text is never scanned again. Any other `$` stays literal, including a
//! malformed `${...}` (bad name, no closing `}`). A default runs to the first `}` and is taken
//! literally. Map keys are not substituted.

use super::yaml::{Kind, Node, Pos};
use crate::config::diagnostic::FieldPath;

/// A `${VAR}` whose variable is unset and has no default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Missing {
    /// Offset, in characters, of the `${` within the scalar value.
    pub(crate) offset: usize,
    /// The variable name.
    pub(crate) var: String,
}

/// A missing variable found in the tree, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvFailure {
    /// The path of the scalar holding the reference (the node was removed from the tree).
    pub(crate) path: FieldPath,
    /// The position of the `${` when it can be computed exactly, else of the scalar.
    pub(crate) pos: Pos,
    /// The variable name.
    pub(crate) var: String,
}

fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Substitutes the variables of one value. Returns every missing variable on failure.
pub(crate) fn substitute(
    input: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<Missing>> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = String::with_capacity(input.len());
    let mut missing = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                let close = chars[i + 2..]
                    .iter()
                    .position(|&c| c == '}')
                    .map(|p| p + i + 2);
                let Some(close) = close else {
                    out.push('$');
                    i += 1;
                    continue;
                };
                let inner: String = chars[i + 2..close].iter().collect();
                let (name, default) = match inner.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (inner.as_str(), None),
                };
                if !is_var_name(name) {
                    out.push('$');
                    i += 1;
                    continue;
                }
                match (env(name), default) {
                    (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => missing.push(Missing {
                        offset: i,
                        var: name.to_owned(),
                    }),
                }
                i = close + 1;
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

/// Substitutes every scalar value of the tree in place. Scalars that reference a missing variable
/// are removed from the tree and reported, one failure per missing reference.
pub(crate) fn apply(
    node: &mut Node,
    path: &FieldPath,
    env: &dyn Fn(&str) -> Option<String>,
    failures: &mut Vec<EnvFailure>,
) {
    let pos = node.pos;
    match &mut node.kind {
        Kind::Scalar(s) => {
            if !s.value.contains('$') {
                return;
            }
            match substitute(&s.value, env) {
                Ok(v) => {
                    s.value = v;
                    // The value no longer maps onto the source text.
                    s.exact_start = None;
                }
                Err(missing) => {
                    for m in missing {
                        let pos = match s.exact_start {
                            Some(p) => Pos {
                                line: p.line,
                                col: p.col + m.offset,
                            },
                            None => pos,
                        };
                        failures.push(EnvFailure {
                            path: path.clone(),
                            pos,
                            var: m.var,
                        });
                    }
                    node.kind = Kind::Removed;
                }
            }
        }
        Kind::Seq(items) => {
            for (i, n) in items.iter_mut().enumerate() {
                apply(n, &path.index(i), env, failures);
            }
        }
        Kind::Map(entries) => {
            for e in entries.iter_mut() {
                let p = path.key(&e.key);
                apply(&mut e.value, &p, env, failures);
            }
        }
        Kind::Removed => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::yaml;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("s3cr$t{x}".into()),
            "EMPTY" => Some(String::new()),
            "PORT" => Some("8080".into()),
            "REF" => Some("${KEY}".into()),
            _ => None,
        }
    }

    fn sub(s: &str) -> Result<String, Vec<Missing>> {
        substitute(s, &env)
    }

    #[test]
    fn plain_and_default() {
        assert_eq!(sub("${PORT}").unwrap(), "8080");
        assert_eq!(sub("a${PORT}b").unwrap(), "a8080b");
        assert_eq!(sub("${NOPE:-x}").unwrap(), "x");
        assert_eq!(sub("${EMPTY:-fallback}").unwrap(), "fallback");
        assert_eq!(sub("${EMPTY}").unwrap(), "");
        assert_eq!(sub("${PORT:-1}").unwrap(), "8080");
        assert_eq!(sub("${NOPE:-}").unwrap(), "");
    }

    #[test]
    fn special_characters_survive_and_are_not_rescanned() {
        assert_eq!(sub("${KEY}").unwrap(), "s3cr$t{x}");
        assert_eq!(sub("${REF}").unwrap(), "${KEY}");
        assert_eq!(sub("Bearer ${KEY}").unwrap(), "Bearer s3cr$t{x}");
    }

    #[test]
    fn dollars() {
        assert_eq!(sub("$$").unwrap(), "$");
        assert_eq!(sub("$${PORT}").unwrap(), "${PORT}");
        assert_eq!(sub("a$b").unwrap(), "a$b");
        assert_eq!(sub("$").unwrap(), "$");
        assert_eq!(sub("${not valid}").unwrap(), "${not valid}");
        assert_eq!(sub("${UNCLOSED").unwrap(), "${UNCLOSED");
        assert_eq!(sub("{}$").unwrap(), "{}$");
    }

    #[test]
    fn missing_reports_every_offset() {
        let e = sub("x${A}y${PORT}${B}").unwrap_err();
        assert_eq!(
            e,
            vec![
                Missing {
                    offset: 1,
                    var: "A".into()
                },
                Missing {
                    offset: 13,
                    var: "B".into()
                }
            ]
        );
    }

    #[test]
    fn tree_positions() {
        let text = "a:\n  b: pre-${A}\n  c: \"${B}\"\n  d: |\n    ${C}\n  e: ${PORT}\n";
        let mut root = yaml::parse(text).unwrap().root.unwrap();
        let mut failures = Vec::new();
        apply(&mut root, &FieldPath::root(), &env, &mut failures);
        let got: Vec<_> = failures
            .iter()
            .map(|f| (f.path.to_string(), f.pos.line, f.pos.col, f.var.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a.b".to_string(), 2, 10, "A"),
                ("a.c".to_string(), 3, 7, "B"),
                ("a.d".to_string(), 5, 5, "C"),
            ]
        );
        let mut live = Vec::new();
        root.walk(&FieldPath::root(), &mut |p, _, n| {
            if let Kind::Scalar(s) = &n.kind {
                live.push((p.to_string(), s.value.clone()));
            }
        });
        assert_eq!(live, vec![("a.e".to_string(), "8080".to_string())]);
    }
}
