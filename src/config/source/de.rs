//! A serde `Deserializer` over the positioned YAML tree ([`super::yaml::Node`]).
//!
//! Every error carries the path and position of the node where it arose; the innermost node
//! wins, and an unknown field is located at its key. Scalars are typed by the field that asks
//! for them (`listen: ${PORT}` works for an integer field); `deserialize_any` on a plain scalar
//! follows the YAML 1.2 core schema. Quoted scalars are strings, but numeric fields also read a
//! quoted number. Booleans are strict.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::yaml::{is_null_str, Entry, Kind, Node, Pos, Scalar, Style};
use crate::config::diagnostic::FieldPath;

/// Separates a message from its hint inside `serde::de::Error::custom` text.
pub(crate) const HINT_SEP: char = '\u{1f}';

/// Where a deserialization error arose.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Site {
    /// The path of the node (for a key: the path of its entry).
    pub(crate) path: FieldPath,
    /// The position of the node (for a key: of the key).
    pub(crate) pos: Pos,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ErrKind {
    /// A free-form message with an optional hint.
    Message(String, Option<String>),
    /// A key that the struct does not have.
    UnknownField(String, &'static [&'static str]),
    /// An enum value that does not exist.
    UnknownVariant(String, &'static [&'static str]),
}

/// A deserialization error, located once it has passed through a node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeError {
    /// What.
    pub(crate) kind: ErrKind,
    /// Where (set by the innermost node).
    pub(crate) site: Option<Site>,
}

impl DeError {
    fn msg(message: String, hint: Option<String>) -> Self {
        Self {
            kind: ErrKind::Message(message, hint),
            site: None,
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrKind::Message(m, _) => f.write_str(m),
            ErrKind::UnknownField(name, _) => write!(f, "unknown field `{name}`"),
            ErrKind::UnknownVariant(name, _) => write!(f, "unknown value `{name}`"),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        let text = msg.to_string();
        match text.split_once(HINT_SEP) {
            Some((m, h)) => Self::msg(m.to_owned(), Some(h.to_owned())),
            None => Self::msg(text, None),
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let found = match unexp {
            de::Unexpected::Seq => "a list".to_owned(),
            de::Unexpected::Map => "a mapping".to_owned(),
            de::Unexpected::Unit => "null".to_owned(),
            de::Unexpected::Str(s) => format!("`{s}`"),
            de::Unexpected::Bool(b) => format!("`{b}`"),
            de::Unexpected::Unsigned(n) => format!("`{n}`"),
            de::Unexpected::Signed(n) => format!("`{n}`"),
            de::Unexpected::Float(n) => format!("`{n}`"),
            other => other.to_string(),
        };
        Self::msg(format!("invalid type: expected {exp}, found {found}"), None)
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self {
            kind: ErrKind::UnknownField(field.to_owned(), expected),
            site: None,
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self {
            kind: ErrKind::UnknownVariant(variant.to_owned(), expected),
            site: None,
        }
    }
}

/// Deserializes a `T` from the tree rooted at `root`.
pub(crate) fn from_tree<'de, T: de::Deserialize<'de>>(root: &'de Node) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node: root,
        path: FieldPath::root(),
    })
}

/// How a node is described in a type error.
fn describe(node: &Node) -> String {
    match &node.kind {
        Kind::Map(_) => "a mapping".into(),
        Kind::Seq(_) => "a list".into(),
        Kind::Removed => "nothing".into(),
        Kind::Scalar(s) if s.style == Style::Plain && is_null_str(&s.value) => "null".into(),
        Kind::Scalar(s) => {
            let mut v: String = s.value.chars().take(40).collect();
            if v.len() < s.value.len() {
                v.push_str("...");
            }
            if s.style == Style::Quoted {
                format!("the quoted string `{v}`")
            } else {
                format!("`{v}`")
            }
        }
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn parse_int(s: &str) -> Option<i128> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (radix, digits) = if let Some(h) = body.strip_prefix("0x") {
        (16, h)
    } else if let Some(o) = body.strip_prefix("0o") {
        (8, o)
    } else {
        (10, body)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = i128::from_str_radix(digits, radix).ok()?;
    Some(if neg { -v } else { v })
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let ok = s.chars().any(|c| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    if ok {
        s.parse().ok()
    } else {
        None
    }
}

/// Deserializer for one node.
struct NodeDe<'de> {
    node: &'de Node,
    path: FieldPath,
}

impl<'de> NodeDe<'de> {
    fn locate<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|mut e| {
            if e.site.is_none() {
                e.site = Some(Site {
                    path: self.path.clone(),
                    pos: self.node.pos,
                });
            }
            e
        })
    }

    fn fail<T>(&self, expected: &str) -> Result<T, DeError> {
        self.locate(Err(DeError::msg(
            format!(
                "invalid type: expected {expected}, found {}",
                describe(self.node)
            ),
            None,
        )))
    }

    fn scalar(&self) -> Option<&'de Scalar> {
        match &self.node.kind {
            Kind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    fn int<T: TryFrom<i128> + fmt::Display>(&self, min: T, max: T) -> Result<T, DeError> {
        let Some(s) = self.scalar() else {
            return self.fail("an integer");
        };
        let Some(v) = parse_int(s.value.trim()) else {
            return self.fail("an integer");
        };
        match T::try_from(v) {
            Ok(v) => Ok(v),
            Err(_) => self.locate(Err(DeError::msg(
                format!("integer `{v}` is out of range"),
                Some(format!("expected an integer from {min} to {max}")),
            ))),
        }
    }
}

macro_rules! de_int {
    ($($method:ident $visit:ident $ty:ty),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let v = self.int::<$ty>(<$ty>::MIN, <$ty>::MAX)?;
            self.locate(visitor.$visit(v))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            Kind::Map(entries) => visitor.visit_map(MapDe::new(entries, &self.path)),
            Kind::Seq(items) => visitor.visit_seq(SeqDe::new(items, &self.path)),
            Kind::Removed => visitor.visit_unit(),
            Kind::Scalar(s) if s.style == Style::Quoted => visitor.visit_str(&s.value),
            Kind::Scalar(s) => {
                let v = s.value.as_str();
                if is_null_str(v) {
                    visitor.visit_unit()
                } else if let Some(b) = parse_bool(v) {
                    visitor.visit_bool(b)
                } else if let Some(i) = parse_int(v) {
                    if let Ok(u) = u64::try_from(i) {
                        visitor.visit_u64(u)
                    } else if let Ok(n) = i64::try_from(i) {
                        visitor.visit_i64(n)
                    } else {
                        visitor.visit_str(v)
                    }
                } else if let Some(f) = parse_float(v) {
                    visitor.visit_f64(f)
                } else {
                    visitor.visit_str(v)
                }
            }
        };
        self.locate(r)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(s) if s.style == Style::Plain => match parse_bool(&s.value) {
                Some(b) => self.locate(visitor.visit_bool(b)),
                None if matches!(
                    s.value.to_ascii_lowercase().as_str(),
                    "yes" | "no" | "on" | "off" | "y" | "n"
                ) =>
                {
                    self.locate(Err(DeError::msg(
                        format!(
                            "invalid type: expected a boolean, found {}",
                            describe(self.node)
                        ),
                        Some(
                            "write `true` or `false` (YAML 1.2 has no `yes`/`no`/`on`/`off`)"
                                .into(),
                        ),
                    )))
                }
                None => self.fail("a boolean (`true` or `false`)"),
            },
            Some(s) if parse_bool(&s.value).is_some() => self.locate(Err(DeError::msg(
                format!(
                    "invalid type: expected a boolean, found {}",
                    describe(self.node)
                ),
                Some("remove the quotes".into()),
            ))),
            _ => self.fail("a boolean (`true` or `false`)"),
        }
    }

    de_int!(
        deserialize_i8 visit_i8 i8, deserialize_i16 visit_i16 i16,
        deserialize_i32 visit_i32 i32, deserialize_i64 visit_i64 i64,
        deserialize_u8 visit_u8 u8, deserialize_u16 visit_u16 u16,
        deserialize_u32 visit_u32 u32, deserialize_u64 visit_u64 u64
    );

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar().and_then(|s| parse_float(s.value.trim())) {
            Some(f) => self.locate(visitor.visit_f64(f)),
            None => self.fail("a number"),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(s) => self.locate(visitor.visit_str(&s.value)),
            None => self.fail("a string"),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() || matches!(self.node.kind, Kind::Removed) {
            self.locate(visitor.visit_none())
        } else {
            let path = self.path.clone();
            let node = self.node;
            self.locate(visitor.visit_some(NodeDe { node, path }))
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            self.locate(visitor.visit_unit())
        } else {
            self.fail("null")
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        let node = self.node;
        self.locate(visitor.visit_newtype_struct(NodeDe { node, path }))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Seq(items) => self.locate(visitor.visit_seq(SeqDe::new(items, &self.path))),
            _ => self.fail("a list"),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Map(entries) => self.locate(visitor.visit_map(MapDe::new(entries, &self.path))),
            _ => self.fail("a mapping"),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(s) => {
                let d: de::value::StrDeserializer<'_, DeError> =
                    s.value.as_str().into_deserializer();
                self.locate(visitor.visit_enum(d))
            }
            None => {
                let list: Vec<String> = variants.iter().map(|v| format!("`{v}`")).collect();
                self.fail(&format!("one of {}", list.join(", ")))
            }
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.locate(visitor.visit_unit())
    }
}

/// Sequence access.
struct SeqDe<'de> {
    items: std::iter::Enumerate<std::slice::Iter<'de, Node>>,
    path: FieldPath,
}

impl<'de> SeqDe<'de> {
    fn new(items: &'de [Node], path: &FieldPath) -> Self {
        Self {
            items: items.iter().enumerate(),
            path: path.clone(),
        }
    }
}

impl<'de> de::SeqAccess<'de> for SeqDe<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        // Removed items are passed on (they read as `None` into `raw::List`) so that indices
        // stay as written.
        match self.items.next() {
            Some((i, node)) => {
                let path = self.path.index(i);
                seed.deserialize(NodeDe { node, path }).map(Some)
            }
            None => Ok(None),
        }
    }
}

/// Map access; removed entries are skipped.
struct MapDe<'de> {
    entries: std::slice::Iter<'de, Entry>,
    current: Option<&'de Entry>,
    path: FieldPath,
}

impl<'de> MapDe<'de> {
    fn new(entries: &'de [Entry], path: &FieldPath) -> Self {
        Self {
            entries: entries.iter(),
            current: None,
            path: path.clone(),
        }
    }
}

impl<'de> de::MapAccess<'de> for MapDe<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        for entry in self.entries.by_ref() {
            if matches!(entry.value.kind, Kind::Removed) {
                continue;
            }
            self.current = Some(entry);
            let key = KeyDe {
                key: &entry.key,
                site: Site {
                    path: self.path.key(&entry.key),
                    pos: entry.key_pos,
                },
            };
            return seed.deserialize(key).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.current.take() {
            Some(entry) => seed.deserialize(NodeDe {
                node: &entry.value,
                path: self.path.key(&entry.key),
            }),
            None => Err(DeError::msg(
                "internal error: value without a key".into(),
                None,
            )),
        }
    }
}

/// Deserializer for a map key: always a string, errors located at the key.
struct KeyDe<'de> {
    key: &'de str,
    site: Site,
}

impl<'de> de::Deserializer<'de> for KeyDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str(self.key).map_err(|mut e: DeError| {
            if e.site.is_none() {
                e.site = Some(self.site.clone());
            }
            e
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}
