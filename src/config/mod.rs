//! Configuration: `gateway.yaml` -> [`Config`], the immutable snapshot the gateway runs on.
//!
//! The pipeline, one file per step:
//!
//! | file                   | step                                                            |
//! |------------------------|-----------------------------------------------------------------|
//! | `source/yaml.rs`       | YAML events (`saphyr-parser`) -> positioned tree; anchors, merge keys, duplicate keys rejected |
//! | `source/env.rs`        | `${VAR}` / `${VAR:-default}` / `$$` substituted in scalar values |
//! | `source/de.rs`         | a serde `Deserializer` over the tree that locates every error   |
//! | `raw.rs`               | the serde mirror of the file (all optional, unknown keys denied) |
//! | `schema.rs`            | the JSON Schema of the file, derived from `raw.rs`              |
//! | `compile/mod.rs`       | raw -> [`Config`]: requiredness and semantics, all errors at once (`server`, `oauth`, `proxy`) |
//! | `compile/ctx.rs`       | positions, collected errors and warnings, shared checks         |
//! | `compile/servers.rs`   | one `proxy.servers[]` entry -> `Upstream`                       |
//! | `compile/auth.rs`      | `auth` (mappings, permission patterns)                          |
//! | `compile/limits.rs`    | `rate_limits` (keys, rates, `tools` patterns)                   |
//! | `compiled.rs`          | the typed result (no serde, secrets redacted in `Debug`)       |
//! | `glob.rs`              | `*` globs, shared with the policy                               |
//! | `diagnostic.rs`        | `file:line:col`, field path, hint, rendering, "did you mean"   |
//!
//! Every error in a file is reported at once: when deserialization fails, the error is recorded
//! with its position, the offending node is removed from the tree and deserialization is retried;
//! `compile` then adds the semantic errors.
//!
//! Semantics worth knowing: an `oauth` section without `enabled` means enabled (no section means
//! disabled, allowed only on a loopback listener). A permission naming a server that is not
//! configured is an error when it looks like a typo of a configured name, otherwise a warning
//! ([`Config::warnings`]): the seed's own example has `admin:*` without an `admin` server.
//! Lists keep their indices in error paths even when an entry was removed after an error.
//!
//! Why not `serde_yaml`: it stops at the first error and cannot give the position of later ones
//! (it is also deprecated and accepts duplicate keys); we need every error with
//! `file:line:col`, the field path and a hint. Why not the `envsubst` crate: it refuses values
//! containing `$`, `{` or `}` (a password with a `$` would break it), has no `${VAR:-default}`
//! and silently leaves unset variables in place. Substitution happens after parsing, on scalar
//! values only, so positions stay exact and a secret can never change the YAML structure.

mod compile;
mod compiled;
mod diagnostic;
mod glob;
mod raw;
mod schema;
mod source;
mod summary;

use std::path::Path;

pub use compiled::{
    redacted_url, Auth, BasicAuth, Config, HttpTarget, OAuth, OnDenied, Permission, Provider,
    Proxy, RateLimit, RateLimitKey, ScopeMode, Server, SourceInfo, StdioCommand, Transport,
    Upstream,
};
pub use diagnostic::{Diagnostic, Diagnostics};
pub use glob::Glob;
pub use schema::json_schema;

use diagnostic::{did_you_mean, expected_hint, FieldPath};
use source::de::{self, DeError, ErrKind};
use source::{env, yaml};
use yaml::Kind;

/// Maximum number of deserialize-and-retry rounds (one error is found per round).
const MAX_ROUNDS: usize = 64;

/// The top-level sections, for hints.
const SECTIONS: &[&str] = &[
    "server",
    "oauth",
    "auth",
    "proxy",
    "rate_limits",
    "telemetry",
];

/// Loads and compiles the config file at `path`, substituting variables from the process
/// environment. A file that cannot be read yields one diagnostic at line 0.
pub fn load_file(path: &Path) -> Result<Config, Diagnostics> {
    load_file_as(path, false)
}

/// [`load_file`] for a reload of the running gateway: `server.tls`'s files are not read (the
/// paths are startup-only; the running listener's certificate watcher owns the files, so a
/// certificate caught mid-rotation never blocks an unrelated reload).
pub fn load_file_for_reload(path: &Path) -> Result<Config, Diagnostics> {
    load_file_as(path, true)
}

fn load_file_as(path: &Path, reload: bool) -> Result<Config, Diagnostics> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_text(&text, &file, &|name| std::env::var(name).ok(), reload),
        Err(e) => Err(Diagnostics(vec![Diagnostic {
            file,
            line: 0,
            column: 0,
            path: String::new(),
            message: format!("cannot read the config file: {e}"),
            hint: None,
        }])),
    }
}

/// Loads and compiles config `text`; `file_name` is used in diagnostics and `env` looks up
/// variables (so tests need not touch the process environment).
pub fn load_str(
    text: &str,
    file_name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Diagnostics> {
    load_text(text, file_name, env, false)
}

fn load_text(
    text: &str,
    file_name: &str,
    env: &dyn Fn(&str) -> Option<String>,
    reload: bool,
) -> Result<Config, Diagnostics> {
    let source = compile::source_info(file_name, text);
    let mk = |pos: yaml::Pos, path: &FieldPath, message: String, hint: Option<String>| Diagnostic {
        file: file_name.to_owned(),
        line: pos.line,
        column: pos.col,
        path: path.to_string(),
        message,
        hint,
    };
    let parsed = match yaml::parse(text) {
        Ok(p) => p,
        Err(e) => return Err(Diagnostics(vec![mk(e.pos, &e.path, e.message, e.hint)])),
    };
    let mut diags: Vec<Diagnostic> = parsed
        .errors
        .into_iter()
        .map(|e| mk(e.pos, &e.path, e.message, e.hint))
        .collect();
    let root_path = FieldPath::root();
    let mut root = match parsed.root {
        Some(r) if !r.is_null() => r,
        _ => {
            diags.push(Diagnostic {
                file: file_name.to_owned(),
                line: 0,
                column: 0,
                path: String::new(),
                message: "the config file is empty".into(),
                hint: Some(
                    "a config needs at least `proxy.servers`; see the example `gateway.yaml`"
                        .into(),
                ),
            });
            return Err(finish(diags));
        }
    };
    if !matches!(root.kind, Kind::Map(_)) {
        let list = SECTIONS
            .iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ");
        diags.push(mk(
            root.pos,
            &root_path,
            "the config must be a mapping of sections".into(),
            Some(format!("expected top-level keys among {list}")),
        ));
        return Err(finish(diags));
    }

    let mut failures = Vec::new();
    env::apply(&mut root, &root_path, env, &mut failures);
    let mut structural: Vec<FieldPath> = Vec::new();
    for f in failures {
        diags.push(mk(
            f.pos,
            &f.path,
            format!("environment variable `{}` is not set", f.var),
            Some(format!(
                "set it, or give a default: `${{{}:-value}}`",
                f.var
            )),
        ));
        structural.push(f.path);
    }

    let mut raw = None;
    for _ in 0..MAX_ROUNDS {
        match de::from_tree::<raw::RawConfig>(&root) {
            Ok(r) => {
                raw = Some(r);
                break;
            }
            Err(e) => {
                let (d, site_path, meant) = de_diagnostic(e, file_name);
                diags.push(d);
                // `conection` reported as unknown: do not also report `connection` missing.
                structural.extend(meant);
                match site_path {
                    Some(p) if !p.0.is_empty() && root.remove(&p.0) => structural.push(p),
                    _ => break,
                }
            }
        }
    }

    if let Some(raw) = raw {
        let mut ctx = compile::Ctx::new(file_name, &root, &structural);
        ctx.reload = reload;
        let runtime = compile::compile(raw, &mut ctx, source);
        diags.append(&mut ctx.errors);
        if diags.is_empty() {
            if let Some(rt) = runtime {
                return Ok(rt);
            }
        }
    }
    if diags.is_empty() {
        diags.push(mk(
            yaml::Pos { line: 1, col: 1 },
            &root_path,
            format!("too many errors (more than {MAX_ROUNDS})"),
            None,
        ));
    }
    Err(finish(diags))
}

/// Sorts by position and drops exact repeats (an anchor's error shows once per alias otherwise).
fn finish(mut diags: Vec<Diagnostic>) -> Diagnostics {
    diags.sort_by_key(|d| (d.line, d.column));
    let mut out: Vec<Diagnostic> = Vec::with_capacity(diags.len());
    for d in diags {
        if !out
            .iter()
            .any(|o| o.line == d.line && o.column == d.column && o.message == d.message)
        {
            out.push(d);
        }
    }
    Diagnostics(out)
}

/// Turns a located deserialization error into a diagnostic; returns the node path to remove and,
/// for a misspelt field, the path of the field probably meant.
fn de_diagnostic(e: DeError, file: &str) -> (Diagnostic, Option<FieldPath>, Option<FieldPath>) {
    let (path, pos) = match &e.site {
        Some(s) => (s.path.clone(), s.pos),
        None => (FieldPath::root(), yaml::Pos { line: 1, col: 1 }),
    };
    let message = e.to_string();
    let meant = match &e.kind {
        ErrKind::UnknownField(name, expected) => did_you_mean(name, expected.iter().copied())
            .and_then(|m| path.parent().map(|p| p.key(m))),
        _ => None,
    };
    let hint = match e.kind {
        ErrKind::Message(_, hint) => hint,
        ErrKind::UnknownField(name, expected) | ErrKind::UnknownVariant(name, expected) => {
            expected_hint(&name, expected)
        }
    };
    let d = Diagnostic {
        file: file.to_owned(),
        line: pos.line,
        column: pos.col,
        path: path.to_string(),
        message,
        hint,
    };
    (d, e.site.map(|_| path), meant)
}
