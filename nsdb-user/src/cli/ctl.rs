//! `nsdb stats` and `nsdb allow add|remove|list`: talk to a running daemon over its control
//! socket (see [`crate::control`]).

use std::path::PathBuf;

use anyhow::Result;
use ipnet::IpNet;
use serde_json::Value;

use crate::control::{self, Request};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    nsdb stats\n  \
    nsdb stats --format json --control /run/nsdb/wan.sock")]
pub struct StatsArgs {
    /// The daemon's control socket (its `nsdb run --control`).
    /// Example: --control /run/nsdb/nsdb.sock
    #[arg(long, default_value = control::DEFAULT_PATH, value_name = "PATH")]
    pub control: PathBuf,

    /// text: a summary for people; json: everything, for scripts. Example: --format json
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    nsdb allow add 198.18.8.8 2001:db8:53::/48\n  \
    nsdb allow remove 198.18.8.8\n  \
    nsdb allow list\n\n\
    Changes last until the daemon stops; to keep an exception, also put it in the --allow file.")]
pub struct AllowArgs {
    #[command(subcommand)]
    pub action: AllowAction,

    /// The daemon's control socket (its `nsdb run --control`).
    /// Example: --control /run/nsdb/nsdb.sock
    #[arg(long, global = true, default_value = control::DEFAULT_PATH, value_name = "PATH")]
    pub control: PathBuf,
}

#[derive(clap::Subcommand, Debug)]
pub enum AllowAction {
    /// Add exceptions (always allowed, verdict `exempt`): IP addresses or CIDR prefixes.
    /// Example: nsdb allow add 198.18.8.8 198.18.4.0/24
    Add {
        #[arg(required = true, value_name = "CIDR", value_parser = parse_net)]
        nets: Vec<IpNet>,
    },
    /// Remove exceptions (exactly as listed by `nsdb allow list`).
    /// Example: nsdb allow remove 198.18.8.8
    Remove {
        #[arg(required = true, value_name = "CIDR", value_parser = parse_net)]
        nets: Vec<IpNet>,
    },
    /// List the exceptions in force, with where each came from.
    List,
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    crate::allowlist::parse_net(s)
        .ok_or_else(|| format!("{s:?} is not an IP address or CIDR prefix"))
}

pub fn stats(args: StatsArgs) -> Result<()> {
    let v = control::call(&args.control, &Request::Stats)?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        Format::Text => print!("{}", stats_text(&v)),
    }
    Ok(())
}

/// A summary of a `stats` answer for people.
fn stats_text(v: &Value) -> String {
    let c = &v["counters"];
    let sum = |prefix: &str| -> u64 {
        c.as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.starts_with(prefix))
                    .map(|(_, v)| v.as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    };
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let mut out = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "nsdb {} on {} (up {} s)",
        v["mode"].as_str().unwrap_or("?"),
        v["ifaces"]
            .as_array()
            .map(|a| a
                .iter()
                .filter_map(|i| i.as_str())
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default(),
        n(&v["uptime_s"])
    );
    let _ = writeln!(out, "queries");
    for verdict in ["registered", "unknown", "exempt", "internal"] {
        let pass = sum(&format!("query_{verdict}_pass_"));
        let drop = sum(&format!("query_{verdict}_drop_"));
        let _ = writeln!(out, "  {verdict:<11} {pass:>12} passed {drop:>12} dropped");
    }
    let _ = writeln!(out, "responses");
    for (label, key) in [
        ("paired", "responses_paired"),
        ("unsolicited", "responses_unsolicited"),
        ("untrusted", "responses_untrusted"),
        ("tcp", "tcp_response_segments"),
    ] {
        let _ = writeln!(out, "  {label:<11} {:>12}", n(&c[key]));
    }
    let l = &v["live"];
    let _ = writeln!(out, "allow maps");
    let _ = writeln!(
        out,
        "  entries     {:>12} of {}",
        n(&l["allow_entries"]),
        n(&l["allow_capacity"])
    );
    let _ = writeln!(
        out,
        "  learned     {:>12} (by the program: {})",
        n(&l["allowed"]),
        n(&c["glue_learned_kernel"])
    );
    let _ = writeln!(out, "  expired     {:>12}", n(&l["expired"]));
    let _ = writeln!(out, "  evicted     {:>12}", n(&l["evicted"]));
    let _ = writeln!(out, "alerts");
    let _ = writeln!(out, "  sent        {:>12}", n(&c["events_sent"]));
    let _ = writeln!(
        out,
        "  suppressed  {:>12} (rate limit)",
        n(&c["events_rate_limited"])
    );
    let _ = writeln!(
        out,
        "  lost        {:>12} (ring buffer full)",
        n(&c["events_lost"])
    );
    let _ = writeln!(
        out,
        "exceptions    {:>12}",
        v["exceptions"].as_array().map_or(0, Vec::len)
    );
    if n(&l["db_errors"]) > 0 {
        let _ = writeln!(
            out,
            "database      {} write errors, {} rows queued",
            n(&l["db_errors"]),
            n(&l["db_queued"])
        );
    }
    out
}

pub fn allow(args: AllowArgs) -> Result<()> {
    match args.action {
        AllowAction::Add { nets } => {
            for net in nets {
                let v = control::call(&args.control, &Request::AllowAdd(net))?;
                println!(
                    "{net} {}",
                    if v["changed"] == true {
                        "added"
                    } else {
                        "was already allowed"
                    }
                );
            }
        }
        AllowAction::Remove { nets } => {
            for net in nets {
                control::call(&args.control, &Request::AllowRemove(net))?;
                println!("{net} removed");
            }
        }
        AllowAction::List => {
            let v = control::call(&args.control, &Request::AllowList)?;
            for e in v["exceptions"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}",
                    e["net"].as_str().unwrap_or("?"),
                    e["source"].as_str().unwrap_or("?")
                );
            }
        }
    }
    Ok(())
}
