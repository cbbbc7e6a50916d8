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
}

/// Run the CLI; returns the process exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_logging(cli.log_format);
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
