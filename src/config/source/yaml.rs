//! The positioned YAML tree: built from `saphyr-parser` events, every node keeps its 1-based
//! line and column. Anchors and aliases are expanded (with a size budget), YAML merge keys
//! (`<<: *anchor`, `<<: [*a, *b]`) are applied, and duplicate keys are rejected with both
//! positions. Only one document per file.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, StrInput};

use crate::config::diagnostic::{FieldPath, Seg};

/// Maximum nesting depth of the document.
const MAX_DEPTH: usize = 64;
/// Maximum number of nodes, counted after alias expansion ("billion laughs" guard).
const MAX_NODES: usize = 100_000;

/// A 1-based position in the source (column in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Pos {
    /// 1-based line.
    pub(crate) line: usize,
    /// 1-based column.
    pub(crate) col: usize,
}

/// How a scalar was written, which decides how it is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// Plain: typed by the YAML 1.2 core schema or by the target field.
    Plain,
    /// Quoted or block (`|`, `>`): always a string (numbers are read leniently).
    Quoted,
}

/// A scalar value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scalar {
    /// The value, after YAML unescaping (and after variable substitution once applied).
    pub(crate) value: String,
    /// Plain or quoted.
    pub(crate) style: Style,
    /// Position of the value's first character when the source text maps one to one onto the
    /// value (single-line, no escapes), which lets errors point inside the scalar.
    pub(crate) exact_start: Option<Pos>,
}

/// A map entry; keys are always scalars.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// The key text.
    pub(crate) key: String,
    /// Where the key is written.
    pub(crate) key_pos: Pos,
    /// The value (an entry whose value is [`Kind::Removed`] is skipped).
    pub(crate) value: Node,
}

/// The content of a node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// A scalar.
    Scalar(Scalar),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order (merged entries last).
    Map(Vec<Entry>),
    /// A node removed after an error was reported on it; skipped by every reader, so that
    /// sequence indices and positions of the other nodes stay as written.
    Removed,
}

/// A node with its position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// The content.
    pub(crate) kind: Kind,
    /// Where the node starts.
    pub(crate) pos: Pos,
}

/// An error found while building the tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct YamlError {
    /// Where.
    pub(crate) pos: Pos,
    /// The field path (empty for syntax errors).
    pub(crate) path: FieldPath,
    /// What.
    pub(crate) message: String,
    /// How to fix it.
    pub(crate) hint: Option<String>,
}

/// The result of parsing: the root (absent for an empty stream) and the non-fatal errors
/// (duplicate keys, complex keys) found on the way.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// The document root.
    pub(crate) root: Option<Node>,
    /// Non-fatal errors; the offending entries were dropped.
    pub(crate) errors: Vec<YamlError>,
}

impl Node {
    /// True for a plain `null`, `~` or empty scalar.
    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar(s) if s.style == Style::Plain && is_null_str(&s.value))
    }

    /// Marks the node at `path` as removed; false if there is no such node.
    pub(crate) fn remove(&mut self, path: &[Seg]) -> bool {
        let Some((first, rest)) = path.split_first() else {
            let found = !matches!(self.kind, Kind::Removed);
            self.kind = Kind::Removed;
            return found;
        };
        match (&mut self.kind, first) {
            (Kind::Map(entries), Seg::Key(k)) => entries
                .iter_mut()
                .find(|e| &e.key == k && !matches!(e.value.kind, Kind::Removed))
                .is_some_and(|e| e.value.remove(rest)),
            (Kind::Seq(items), Seg::Index(i)) => items.get_mut(*i).is_some_and(|n| n.remove(rest)),
            _ => false,
        }
    }

    /// Calls `f(path, key_pos, node)` for this node and every live node below it.
    pub(crate) fn walk(&self, path: &FieldPath, f: &mut dyn FnMut(&FieldPath, Option<Pos>, &Node)) {
        self.walk_inner(path, None, f);
    }

    fn walk_inner(
        &self,
        path: &FieldPath,
        key_pos: Option<Pos>,
        f: &mut dyn FnMut(&FieldPath, Option<Pos>, &Node),
    ) {
        if matches!(self.kind, Kind::Removed) {
            return;
        }
        f(path, key_pos, self);
        match &self.kind {
            Kind::Map(entries) => {
                for e in entries {
                    e.value.walk_inner(&path.key(&e.key), Some(e.key_pos), f);
                }
            }
            Kind::Seq(items) => {
                for (i, n) in items.iter().enumerate() {
                    n.walk_inner(&path.index(i), None, f);
                }
            }
            Kind::Scalar(_) | Kind::Removed => {}
        }
    }

    fn count(&self) -> usize {
        match &self.kind {
            Kind::Map(entries) => 1 + entries.iter().map(|e| 1 + e.value.count()).sum::<usize>(),
            Kind::Seq(items) => 1 + items.iter().map(Node::count).sum::<usize>(),
            Kind::Scalar(_) | Kind::Removed => 1,
        }
    }
}

/// True for the YAML 1.2 core-schema spellings of null.
pub(crate) fn is_null_str(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

/// Parses `text` into a positioned tree. A syntax error is fatal and returned as `Err`.
pub(crate) fn parse(text: &str) -> Result<Parsed, YamlError> {
    let mut b = Builder {
        parser: Parser::new_from_str(text),
        chars: text.chars().collect(),
        anchors: HashMap::new(),
        errors: Vec::new(),
        nodes: 0,
    };
    let root = b.document()?;
    Ok(Parsed {
        root,
        errors: b.errors,
    })
}

struct Builder<'a> {
    parser: Parser<'a, StrInput<'a>>,
    chars: Vec<char>,
    anchors: HashMap<usize, Node>,
    errors: Vec<YamlError>,
    nodes: usize,
}

fn pos_of(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

fn fatal(pos: Pos, message: String, hint: Option<&str>) -> YamlError {
    YamlError {
        pos,
        path: FieldPath::root(),
        message,
        hint: hint.map(str::to_owned),
    }
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), YamlError> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => Err(fatal(
                Pos {
                    line: e.marker().line(),
                    col: e.marker().col() + 1,
                },
                format!("invalid YAML: {}", e.info()),
                Some("check the indentation, quoting and brackets around this position"),
            )),
            None => Err(fatal(
                Pos { line: 1, col: 1 },
                "invalid YAML: unexpected end of input".into(),
                None,
            )),
        }
    }

    fn document(&mut self) -> Result<Option<Node>, YamlError> {
        let mut root = None;
        loop {
            let (ev, span) = self.next()?;
            match ev {
                Event::StreamEnd => return Ok(root),
                Event::DocumentStart(_) if root.is_some() => {
                    self.errors.push(YamlError {
                        pos: pos_of(&span),
                        path: FieldPath::root(),
                        message: "a config file holds a single YAML document".into(),
                        hint: Some("remove the second `---` document".into()),
                    });
                    return Ok(root);
                }
                Event::DocumentStart(_) => {
                    let (ev, span) = self.next()?;
                    root = Some(self.node(ev, span, &FieldPath::root(), 0)?);
                }
                _ => {}
            }
        }
    }

    fn budget(&mut self, n: usize, pos: Pos) -> Result<(), YamlError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(fatal(
                pos,
                format!("document too large: more than {MAX_NODES} nodes after expanding aliases"),
                Some("use fewer aliases of large anchors"),
            ));
        }
        Ok(())
    }

    fn node(
        &mut self,
        ev: Event<'a>,
        span: Span,
        path: &FieldPath,
        depth: usize,
    ) -> Result<Node, YamlError> {
        let pos = pos_of(&span);
        if depth > MAX_DEPTH {
            return Err(fatal(
                pos,
                format!("document nested deeper than {MAX_DEPTH} levels"),
                None,
            ));
        }
        self.budget(1, pos)?;
        let (node, anchor) = match ev {
            Event::Alias(id) => {
                let node = match self.anchors.get(&id) {
                    Some(n) => n.clone(),
                    None => return Err(fatal(pos, "invalid YAML: unknown alias".into(), None)),
                };
                self.budget(node.count(), pos)?;
                (node, 0)
            }
            Event::Scalar(value, style, anchor, tag) => {
                let forced_str = tag.is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "str");
                let scalar = self.scalar(value.into_owned(), style, &span, forced_str);
                (
                    Node {
                        kind: Kind::Scalar(scalar),
                        pos,
                    },
                    anchor,
                )
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    let child = self.node(ev, span, &path.index(items.len()), depth + 1)?;
                    items.push(child);
                }
                (
                    Node {
                        kind: Kind::Seq(items),
                        pos,
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _) => (self.mapping(pos, path, depth)?, anchor),
            other => {
                return Err(fatal(
                    pos,
                    format!("invalid YAML: unexpected event {other:?}"),
                    None,
                ));
            }
        };
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    fn scalar(&self, value: String, style: ScalarStyle, span: &Span, forced_str: bool) -> Scalar {
        let (start, end) = (span.start.index(), span.end.index());
        let source = |a: usize, b: usize| -> Option<String> {
            self.chars.get(a..b).map(|c| c.iter().collect())
        };
        let pos = pos_of(span);
        let (style, exact_start) = match style {
            ScalarStyle::Plain => {
                let exact = source(start, end).is_some_and(|s| s == value);
                let style = if forced_str {
                    Style::Quoted
                } else {
                    Style::Plain
                };
                (style, exact.then_some(pos))
            }
            ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
                let exact =
                    end >= start + 2 && source(start + 1, end - 1).is_some_and(|s| s == value);
                let inner = Pos {
                    line: pos.line,
                    col: pos.col + 1,
                };
                (Style::Quoted, exact.then_some(inner))
            }
            ScalarStyle::Literal | ScalarStyle::Folded => (Style::Quoted, None),
        };
        Scalar {
            value,
            style,
            exact_start,
        }
    }

    fn mapping(&mut self, pos: Pos, path: &FieldPath, depth: usize) -> Result<Node, YamlError> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut merged: Vec<Entry> = Vec::new();
        loop {
            let (ev, span) = self.next()?;
            if matches!(ev, Event::MappingEnd) {
                break;
            }
            let key_node = self.node(ev, span, path, depth + 1)?;
            let key_pos = key_node.pos;
            let (key, is_merge) = match key_node.kind {
                Kind::Scalar(s) => {
                    let merge = s.style == Style::Plain && s.value == "<<";
                    (s.value, merge)
                }
                _ => {
                    let (ev, span) = self.next()?;
                    self.node(ev, span, path, depth + 1)?;
                    self.errors.push(YamlError {
                        pos: key_pos,
                        path: path.clone(),
                        message: "mapping keys must be plain strings".into(),
                        hint: Some("complex (sequence or mapping) keys are not supported".into()),
                    });
                    continue;
                }
            };
            let (ev, span) = self.next()?;
            let value = self.node(ev, span, &path.key(&key), depth + 1)?;
            if is_merge {
                self.merge_sources(value, path, &mut merged);
                continue;
            }
            if let Some(first) = entries.iter().find(|e| e.key == key) {
                let first_pos = first.key_pos;
                self.errors.push(YamlError {
                    pos: key_pos,
                    path: path.key(&key),
                    message: format!("duplicate key `{key}`"),
                    hint: Some(format!(
                        "`{key}` is first defined at line {}, column {}; a key may appear only once in a mapping",
                        first_pos.line, first_pos.col
                    )),
                });
                continue;
            }
            entries.push(Entry {
                key,
                key_pos,
                value,
            });
        }
        for m in merged {
            if !entries.iter().any(|e| e.key == m.key) {
                entries.push(m);
            }
        }
        Ok(Node {
            kind: Kind::Map(entries),
            pos,
        })
    }

    /// Collects the entries of a merge value (a mapping or a sequence of mappings); earlier
    /// sources win over later ones.
    fn merge_sources(&mut self, value: Node, path: &FieldPath, merged: &mut Vec<Entry>) {
        let sources = match value.kind {
            Kind::Map(_) => vec![value],
            Kind::Seq(items) => items,
            _ => vec![value],
        };
        for src in sources {
            match src.kind {
                Kind::Map(entries) => {
                    for e in entries {
                        if !merged.iter().any(|m| m.key == e.key) {
                            merged.push(e);
                        }
                    }
                }
                _ => self.errors.push(YamlError {
                    pos: src.pos,
                    path: path.key("<<"),
                    message: "a merge key (`<<`) takes a mapping or a list of mappings".into(),
                    hint: Some("write `<<: *anchor` where `&anchor` marks a mapping".into()),
                }),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn map_keys(n: &Node) -> Vec<String> {
        match &n.kind {
            Kind::Map(e) => e.iter().map(|e| e.key.clone()).collect(),
            _ => vec![],
        }
    }

    #[test]
    fn positions_and_merge() {
        let text = "base: &b\n  x: 1\n  y: 2\nthing:\n  <<: *b\n  y: 3\n";
        let parsed = parse(text).unwrap();
        assert!(parsed.errors.is_empty());
        let root = parsed.root.unwrap();
        let Kind::Map(entries) = &root.kind else {
            panic!()
        };
        let thing = &entries[1];
        assert_eq!(thing.key_pos, Pos { line: 4, col: 1 });
        assert_eq!(map_keys(&thing.value), vec!["y", "x"]);
        let Kind::Map(inner) = &thing.value.kind else {
            panic!()
        };
        assert_eq!(inner[0].value.pos, Pos { line: 6, col: 6 });
        assert_eq!(inner[1].value.pos, Pos { line: 2, col: 6 });
    }

    #[test]
    fn duplicates_are_reported_with_both_positions() {
        let parsed = parse("a: 1\nb: 2\na: 3\n").unwrap();
        assert_eq!(parsed.errors.len(), 1);
        let e = &parsed.errors[0];
        assert_eq!(e.pos, Pos { line: 3, col: 1 });
        assert!(e.hint.as_deref().unwrap().contains("line 1, column 1"));
    }

    #[test]
    fn syntax_error_is_fatal() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(e.pos.line, 2);
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for c in 'b'..='h' {
            text.push_str(&format!("{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
            prev = c;
        }
        assert!(parse(&text).unwrap_err().message.contains("too large"));
    }

    #[test]
    fn exact_scalar_starts() {
        let root = parse("a: \"x${Y}\"\nb: pl ain\nc: 'it''s'\n")
            .unwrap()
            .root
            .unwrap();
        let Kind::Map(e) = &root.kind else { panic!() };
        let starts: Vec<_> = e
            .iter()
            .map(|e| match &e.value.kind {
                Kind::Scalar(s) => s.exact_start,
                _ => None,
            })
            .collect();
        assert_eq!(starts[0], Some(Pos { line: 1, col: 5 }));
        assert_eq!(starts[1], Some(Pos { line: 2, col: 4 }));
        assert_eq!(starts[2], None);
    }
}
