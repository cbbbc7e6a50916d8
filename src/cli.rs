//! The command line: `serve` (default), `check`, `explain`, `probe`, `schema`, `completions`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::telemetry::{self, LogFormat};

/// The version and the commit the binary was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PORTCULLIS_COMMIT"),
    ")"
);

/// Portcullis: a declarative MCP gateway.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version = VERSION, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
    /// Write the audit trail (one JSON line per decision on a tool, prompt or resource) to
    /// this file, appending; `-` for stderr.
    #[arg(long, global = true, env = "PORTCULLIS_AUDIT_LOG", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Where the config comes from: `--config`, else `$PORTCULLIS_CONFIG`, else `./gateway.yaml`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// The gateway config file.
    #[arg(
        long,
        short = 'c',
        env = "PORTCULLIS_CONFIG",
        default_value = "gateway.yaml"
    )]
    pub config: PathBuf,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ConfigArg),
    /// Load and compile the config without serving; print every error found.
    Check(CheckArgs),
    /// Show which scopes a token's claims grant and what they allow, and which rule decided.
    Explain(ExplainArgs),
    /// GET a URL (e.g. `http://127.0.0.1:8080/live`) and exit 0 on a 2xx answer: the image's
    /// health check, which has no curl.
    Probe(ProbeArgs),
    /// Print the JSON Schema of gateway.yaml (for editors: `# yaml-language-server: $schema=...`).
    Schema,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `check` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The config to check.
    #[command(flatten)]
    pub config: ConfigArg,
    /// `text` (a summary, or every error with file:line:col) or `json` (one object on stdout:
    /// `ok`, `errors`, `warnings`, each with file, line, column, path, message, hint).
    #[arg(long, value_enum, default_value = "text")]
    pub format: CheckFormat,
}

/// `check --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    /// For people.
    Text,
    /// For editors and CI.
    Json,
}

/// `probe` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// An `http://` URL.
    pub url: String,
    /// Give up after this long (connect and answer).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

/// `explain` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ExplainArgs {
    /// The config whose policy is explained.
    #[command(flatten)]
    pub config: ConfigArg,
    /// The token's claims as a JSON object (or `@FILE` to read them from a file).
    #[arg(long)]
    pub claims: String,
    /// A tool to check, as `SERVER{separator}TOOL` or `SERVER:TOOL`; repeatable. Without it,
    /// every configured permission pattern is checked.
    #[arg(long = "tool", value_name = "SERVER__TOOL")]
    pub tools: Vec<String>,
}

/// Run the CLI; returns the process exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    // Trace export is configured in the file `serve` runs (startup-only): peek at it.
    let serving = match &cli.command {
        None => Some(
            std::env::var_os("PORTCULLIS_CONFIG")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("gateway.yaml")),
        ),
        Some(Command::Serve(c)) => Some(c.config.clone()),
        Some(_) => None,
    };
    let telemetry = serving
        .and_then(|p| crate::config::load_file(&p).ok())
        .map(|c| c.telemetry)
        .unwrap_or_default();
    let otlp = telemetry
        .otlp_traces
        .as_ref()
        .map(|u| (u.as_str(), telemetry.service_name.as_str()));
    if let Err(e) = telemetry::init_logging(cli.log_format, cli.audit_log.as_deref(), otlp) {
        eprintln!("error: cannot set up logging or trace export: {e}");
        return ExitCode::FAILURE;
    }
    let command = cli.command.unwrap_or(Command::Serve(ConfigArg {
        config: std::env::var_os("PORTCULLIS_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("gateway.yaml")),
    }));
    match command {
        Command::Serve(c) => match crate::app::serve(&c.config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Check(c) => check(&c.config.config, c.format),
        Command::Explain(a) => explain(&a),
        Command::Probe(p) => match probe(&p.url, p.timeout) {
            Ok(status) => {
                println!("{status}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("probe {}: {e}", p.url);
                ExitCode::FAILURE
            }
        },
        Command::Schema => {
            let text =
                serde_json::to_string_pretty(&crate::config::json_schema()).unwrap_or_default();
            use std::io::Write;
            let _ = writeln!(std::io::stdout(), "{text}");
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "portcullis", &mut script);
            use std::io::Write;
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::stdout().write_all(&script);
            ExitCode::SUCCESS
        }
    }
}

/// `GET url` over plain HTTP/1.1 within `timeout`: the status line of a 2xx answer, or why not.
pub fn probe(url: &str, timeout: std::time::Duration) -> Result<String, String> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let u = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if u.scheme() != "http" {
        return Err("only http:// URLs are probed".into());
    }
    let host = u.host_str().ok_or("the URL has no host")?;
    let port = u.port_or_known_default().unwrap_or(80);
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to nothing"))?;
    let mut conn =
        std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    conn.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let target = &url[url.find(u.path()).unwrap_or(url.len())..];
    let target = if target.is_empty() { "/" } else { target };
    let authority = match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    write!(
        conn,
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: portcullis-probe\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = conn.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or_default().to_owned();
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP answer (`{line}`)"))?;
    if (200..300).contains(&code) {
        Ok(line)
    } else {
        Err(line)
    }
}

fn check(path: &std::path::Path, format: CheckFormat) -> ExitCode {
    if format == CheckFormat::Json {
        let (ok, report) = check_json(path);
        println!("{report}");
        return if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    match crate::config::load_file(path) {
        Ok(rt) => {
            println!("{}: OK", path.display());
            println!("{}", rt.summary());
            if let Err(e) = crate::app::check_servable(&rt) {
                println!("note: `serve` will refuse this file for now: {e}");
            }
            ExitCode::SUCCESS
        }
        Err(diags) => {
            eprintln!("{diags}");
            ExitCode::FAILURE
        }
    }
}

/// `check --format json`: whether the file loads, and the report.
pub fn check_json(path: &std::path::Path) -> (bool, serde_json::Value) {
    use serde_json::json;
    let diag = |d: &crate::config::Diagnostic| {
        json!({
            "file": d.file, "line": d.line, "column": d.column, "path": d.path,
            "message": d.message, "hint": d.hint,
        })
    };
    match crate::config::load_file(path) {
        Ok(rt) => {
            let servable = crate::app::check_servable(&rt).err().map(|e| e.to_string());
            (
                true,
                json!({
                    "file": path.display().to_string(),
                    "ok": true,
                    "hash": rt.source.hash,
                    "errors": [],
                    "warnings": rt.warnings.iter().map(diag).collect::<Vec<_>>(),
                    "summary": rt.summary().lines().collect::<Vec<_>>(),
                    "serve_refuses": servable,
                }),
            )
        }
        Err(diags) => (
            false,
            json!({
                "file": path.display().to_string(),
                "ok": false,
                "errors": diags.iter().map(diag).collect::<Vec<_>>(),
                "warnings": [],
            }),
        ),
    }
}

fn explain(args: &ExplainArgs) -> ExitCode {
    let text = match args.claims.strip_prefix('@') {
        Some(file) => match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read the claims file `{file}`: {e}");
                return ExitCode::from(2);
            }
        },
        None => args.claims.clone(),
    };
    let claims: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => {
            eprintln!("error: --claims must be a JSON object, e.g. '{{\"groups\": [\"Admin\"]}}'");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: --claims is not valid JSON: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match crate::config::load_file(&args.config.config) {
        Ok(rt) => rt,
        Err(diags) => {
            eprintln!("{diags}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", explain_text(&rt, &claims, &args.tools));
    ExitCode::SUCCESS
}

/// The `explain` report for `claims` against the policy of `rt`: claim keys, scopes, then one
/// line per tool in `tools` (or per configured pattern when `tools` is empty).
pub fn explain_text(
    rt: &crate::config::Config,
    claims: &serde_json::Value,
    tools: &[String],
) -> String {
    use crate::policy::{Kind, Policy};
    use std::fmt::Write as _;

    let policy = Policy::from_config(rt);
    let map = policy.scope_map();
    let keys = map.claim_keys(claims);
    let scopes = map.scopes(&keys);
    let list = |v: &mut dyn Iterator<Item = &String>| {
        let items: Vec<&str> = v.map(String::as_str).collect();
        if items.is_empty() {
            "(none)".to_string()
        } else {
            items.join(", ")
        }
    };
    let mut read: Vec<String> = map.claims().to_vec();
    for a in crate::auth::ALWAYS_READ {
        if !read.iter().any(|c| c == a) {
            read.push((*a).to_string());
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "claims read: {}", read.join(", "));
    let _ = writeln!(out, "claim keys:  {}", list(&mut keys.iter()));
    let _ = writeln!(out, "scopes:      {}", list(&mut scopes.iter()));
    let _ = writeln!(
        out,
        "policy:      {} rules, scope_mode {}, default_scope {}",
        policy.rules().count(),
        match policy.scope_mode() {
            crate::config::ScopeMode::Any => "any",
            crate::config::ScopeMode::All => "all",
        },
        policy
            .default_scope()
            .map_or("null (deny)".to_string(), |s| format!("`{s}`"))
    );
    let targets: Vec<(String, Option<(String, String)>)> = if tools.is_empty() {
        rt.auth
            .permissions
            .iter()
            .map(|p| {
                (
                    format!("pattern {}", p.source),
                    Some((p.server.clone(), p.name.clone())),
                )
            })
            .collect()
    } else {
        tools
            .iter()
            .map(|t| {
                let split = policy
                    .split_qualified(t)
                    .map(|(s, n)| (s.to_string(), n.to_string()));
                (t.clone(), split)
            })
            .collect()
    };
    if targets.is_empty() {
        let _ = writeln!(
            out,
            "(no permission patterns configured and no --tool given)"
        );
    }
    let width = targets.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    for (label, split) in &targets {
        let Some((server, name)) = split else {
            let _ = writeln!(
                out,
                "{label:<width$}  invalid   not `SERVER{}TOOL` or `SERVER:TOOL`",
                policy.separator()
            );
            continue;
        };
        match policy.authorize(&scopes, Kind::Tool, server, name) {
            Ok(p) => {
                let _ = writeln!(out, "{label:<width$}  allowed   by {}", p.by);
            }
            Err(d) => {
                let why = d.to_string();
                let why = why.strip_prefix("tool denied ").unwrap_or(&why);
                let _ = writeln!(out, "{label:<width$}  denied    {why}");
            }
        }
    }
    out
}
