//! The `nsdb` command line. One file per subcommand; this module only dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod check;
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
}

/// Entry point of the binary: parse flags, run the command, print a one-line error on failure.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Learn(args) => learn::run(args),
        Command::Check(args) => check::run(args),
        Command::Lookup(args) => lookup::run(args),
        Command::Export(args) => export::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nsdb: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
