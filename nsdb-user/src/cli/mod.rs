//! The `nsdb` command line. One file per subcommand; this module only dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod check;
pub mod config;
pub mod ctl;
pub mod export;
pub mod learn;
pub mod lookup;
pub mod run;

#[derive(Parser, Debug)]
#[command(name = "nsdb", version, about = "Catch DNS-based botnet C&C traffic at the gateway", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Attach the XDP filter to gateway interfaces and run the daemon.
    Run(run::RunArgs),
    /// Learn NS records and glue from capture files into the history database.
    Learn(learn::LearnArgs),
    /// Check the destination of every DNS query in capture files against the history.
    Check(check::CheckArgs),
    /// Show what the history knows about an address.
    Lookup(lookup::LookupArgs),
    /// Export the ns_db rows (the paper's Table 1 columns) as CSV or JSON.
    Export(export::ExportArgs),
    /// Show the live counters of a running daemon.
    Stats(ctl::StatsArgs),
    /// Change the exceptions of a running daemon: add, remove, list.
    Allow(ctl::AllowArgs),
}

/// Entry point of the binary: parse flags, run the command, print a one-line error on failure.
pub fn main() -> ExitCode {
    let args = match config::expand_args(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("nsdb: error: {}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Learn(args) => learn::run(args),
        Command::Check(args) => check::run(args),
        Command::Lookup(args) => lookup::run(args),
        Command::Export(args) => export::run(args),
        Command::Stats(args) => ctl::stats(args),
        Command::Allow(args) => ctl::allow(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nsdb: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause left out when the message before it
/// already says it (errors that print their source, like `"{path}: {source}"`, would
/// otherwise repeat it).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if out.contains(s.trim()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Structured logs to stderr through `tracing`; `RUST_LOG` overrides the level (default info).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Allows the unexpired name servers of the history database in the maps, before the program
/// is attached, so that a restart raises no false alerts. Returns how many were restored.
pub fn restore_history(
    filter: &mut crate::loader::Filter,
    store: &crate::store::Store,
) -> anyhow::Result<usize> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let live = store.unexpired(now_ms)?;
    for (addr, expires_ms) in &live {
        if filter
            .allowed(*addr)
            .is_some_and(|e| e.kind == nsdb_common::kind::ROOT)
        {
            continue;
        }
        filter.allow(
            *addr,
            crate::clock::wall_ms_to_mono(*expires_ms),
            nsdb_common::kind::GLUE,
        )?;
    }
    Ok(live.len())
}

#[cfg(test)]
mod help_tests {
    use clap::CommandFactory as _;

    /// Every flag and argument of every command explains itself with an example (issue 5).
    #[test]
    fn every_flag_of_every_command_has_help_with_an_example() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                let help = a
                    .get_long_help()
                    .or(a.get_help())
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                let positional = a.get_long().is_none() && a.get_short().is_none();
                // Positional arguments are shown in the command's own examples.
                let ok = if positional {
                    !help.is_empty() || cmd.get_after_help().is_some() || cmd.get_about().is_some()
                } else {
                    help.contains("Example")
                };
                if !ok {
                    missing.push(format!("{path} {id}: {help:?}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        let cmd = super::Cli::command();
        for sub in cmd.get_subcommands() {
            walk(sub, sub.get_name(), &mut missing);
        }
        assert!(
            missing.is_empty(),
            "flags without an example:\n{}",
            missing.join("\n")
        );
    }
}
