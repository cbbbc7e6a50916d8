//! The compile context: where each node of the file is, the errors and warnings found so far,
//! and the small checks every compile step shares (URLs, loopback hosts).

use std::collections::HashMap;

use crate::config::diagnostic::{Diagnostic, FieldPath};
use crate::config::raw::List;
use crate::config::source::yaml::{Node, Pos};

/// Where things are, and what was already reported.
pub(crate) struct Ctx<'a> {
    file: &'a str,
    positions: HashMap<FieldPath, (Option<Pos>, Pos)>,
    structural: &'a [FieldPath],
    /// Errors found so far.
    pub(crate) errors: Vec<Diagnostic>,
    /// Warnings found so far.
    pub(crate) warnings: Vec<Diagnostic>,
    /// A reload of the running gateway: files the running gateway owns apart from the config
    /// (the listener's certificate, which its own watcher re-reads) are not read again.
    pub(crate) reload: bool,
}

impl<'a> Ctx<'a> {
    /// A context over the final tree; `structural` lists the paths already reported.
    pub(crate) fn new(file: &'a str, root: &Node, structural: &'a [FieldPath]) -> Self {
        let mut positions = HashMap::new();
        root.walk(&FieldPath::root(), &mut |p, key_pos, node| {
            positions.insert(p.clone(), (key_pos, node.pos));
        });
        Self {
            file,
            positions,
            structural,
            errors: Vec::new(),
            warnings: Vec::new(),
            reload: false,
        }
    }

    fn diag(
        &self,
        path: &FieldPath,
        pos: Pos,
        message: String,
        hint: Option<String>,
    ) -> Diagnostic {
        Diagnostic {
            file: self.file.to_owned(),
            line: pos.line,
            column: pos.col,
            path: path.to_string(),
            message,
            hint,
        }
    }

    /// The position of the nearest existing node at or above `path`: its value, or for an
    /// ancestor, its key (so "missing" errors point at the section that lacks the field).
    fn locate(&self, path: &FieldPath, prefer_key: bool) -> Pos {
        if let Some((key, value)) = self.positions.get(path) {
            return if prefer_key {
                key.unwrap_or(*value)
            } else {
                *value
            };
        }
        let mut p = path.parent();
        while let Some(cur) = p {
            if let Some((key, value)) = self.positions.get(&cur) {
                return key.unwrap_or(*value);
            }
            p = cur.parent();
        }
        Pos { line: 1, col: 1 }
    }

    /// An error about the value at `path`.
    /// A file named in the config: relative paths are relative to the config file's directory.
    pub(crate) fn file_path(&self, name: &str) -> std::path::PathBuf {
        let name = std::path::Path::new(name.trim());
        match std::path::Path::new(self.file).parent() {
            Some(dir) if name.is_relative() => dir.join(name),
            _ => name.to_path_buf(),
        }
    }

    pub(crate) fn error(&mut self, path: &FieldPath, message: String, hint: Option<String>) {
        let d = self.diag(path, self.locate(path, false), message, hint);
        self.errors.push(d);
    }

    /// An error about the key at `path` (e.g. a permission pattern).
    pub(crate) fn key_error(&mut self, path: &FieldPath, message: String, hint: Option<String>) {
        let d = self.diag(path, self.locate(path, true), message, hint);
        self.errors.push(d);
    }

    /// A required value is absent; skipped if an error was already reported near `path`.
    pub(crate) fn missing(&mut self, path: &FieldPath, message: String, hint: Option<String>) {
        if self
            .structural
            .iter()
            .any(|e| e.starts_with(path) || path.starts_with(e))
        {
            return;
        }
        self.error(path, message, hint);
    }

    /// The entries of a list with their index in the file; null entries are reported (unless an
    /// error was already reported there) and skipped.
    pub(crate) fn entries<T>(
        &mut self,
        path: &FieldPath,
        list: Option<List<T>>,
    ) -> Vec<(usize, T)> {
        let mut out = Vec::new();
        for (i, item) in list.unwrap_or_default().into_iter().enumerate() {
            match item {
                Some(v) => out.push((i, v)),
                None => self.missing(
                    &path.index(i),
                    "empty list entry".into(),
                    Some("remove the empty entry, or quote the value".into()),
                ),
            }
        }
        out
    }

    /// Like [`Ctx::entries`], without the indices.
    pub(crate) fn values<T>(&mut self, path: &FieldPath, list: Option<List<T>>) -> Vec<T> {
        self.entries(path, list)
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    /// A finding that does not stop the load.
    pub(crate) fn warn(&mut self, path: &FieldPath, message: String, hint: Option<String>) {
        let d = self.diag(path, self.locate(path, true), message, hint);
        self.warnings.push(d);
    }
}

/// Checks `u` is an absolute http(s) URL with a host.
pub(crate) fn http_url(ctx: &mut Ctx<'_>, path: &FieldPath, u: &str) -> Option<url::Url> {
    match url::Url::parse(u.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
            Some(url)
        }
        Ok(url) => {
            ctx.error(
                path,
                format!("invalid URL `{u}`: scheme must be http or https and a host is required"),
                Some(format!(
                    "found scheme `{}`; write e.g. `https://mcp.example.com`",
                    url.scheme()
                )),
            );
            None
        }
        Err(e) => {
            ctx.error(
                path,
                format!("invalid URL `{u}`: {e}"),
                Some("write an absolute URL such as `https://mcp.example.com/mcp`".into()),
            );
            None
        }
    }
}

/// True for `localhost` and loopback IP literals.
pub(crate) fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

pub(crate) fn root() -> FieldPath {
    FieldPath::root()
}
