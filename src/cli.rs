//! The command line: `serve` (default), `check`, `explain`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::telemetry::{self, LogFormat};

/// Portcullis: a declarative MCP gateway.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
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
    Check(ConfigArg),
    /// Show which scopes a token's claims grant and what they allow, and which rule decided.
    Explain(ExplainArgs),
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
    if let Err(e) = telemetry::init_logging(cli.log_format, cli.audit_log.as_deref()) {
        eprintln!(
            "error: cannot open the audit log {}: {e}",
            cli.audit_log
                .as_deref()
                .unwrap_or(std::path::Path::new(""))
                .display()
        );
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
        Command::Check(c) => check(&c.config),
        Command::Explain(a) => explain(&a),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
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
