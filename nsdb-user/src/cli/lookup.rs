//! `nsdb lookup`: what the history knows about one address.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Result;

use crate::offline::fmt_ms;
use crate::roots;
use crate::store::Store;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  nsdb lookup 192.26.92.31 --db history.db")]
pub struct LookupArgs {
    /// The address to look up (IPv4 or IPv6). Example: 192.26.92.31
    #[arg(value_name = "IP")]
    pub ip: IpAddr,
    /// History database written by `nsdb learn`. Example: --db history.db
    #[arg(long, value_name = "PATH")]
    pub db: PathBuf,
    /// Output format. Example: --format json
    #[arg(long, value_enum, default_value_t = LookupFormat::Text)]
    pub format: LookupFormat,
    /// Judge expiry at this time (Unix ms) instead of now. Example: --at 1414782044659
    #[arg(long, value_name = "UNIX_MS")]
    pub at: Option<u64>,
}

pub fn run(args: LookupArgs) -> Result<()> {
    let store = Store::open_existing(&args.db)?;
    let rows = store.history_for(args.ip)?;
    let ns_rows = store.ns_rows_for(args.ip)?;
    let exception = store
        .exceptions()?
        .into_iter()
        .find(|n| n.contains(&args.ip));
    let root = roots::builtin().into_iter().find(|h| h.addr == args.ip);
    let now = args.at.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    });
    let registered = !rows.is_empty() || exception.is_some() || root.is_some();
    match args.format {
        LookupFormat::Json => {
            let v = serde_json::json!({
                "address": args.ip.to_string(),
                "registered": registered,
                "root_hint": root.map(|r| r.name),
                "exception": exception.map(|n| n.to_string()),
                "ns_db_rows": ns_rows,
                "history": rows.iter().map(|r| serde_json::json!({
                    "zone": r.zone, "ns_name": r.ns_name,
                    "first_seen": fmt_ms(r.first_seen), "last_seen": fmt_ms(r.last_seen),
                    "count": r.count, "expires": fmt_ms(r.expires), "expires_ms": r.expires,
                    "expired": r.expires < now, "ttl": r.ttl, "source": r.source,
                })).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        LookupFormat::Text => {
            if registered {
                println!("{} is registered glueA record", args.ip);
            } else {
                println!("{} is unknown", args.ip);
            }
            if let Some(r) = root {
                println!("  root hint {}", r.name);
            }
            if let Some(n) = exception {
                println!("  operator exception {n}");
            }
            for r in &rows {
                println!(
                    "  zone {}  ns {}  first seen {}  last seen {}  seen {} times  expires {}{}  ({})",
                    r.zone,
                    r.ns_name,
                    fmt_ms(r.first_seen),
                    fmt_ms(r.last_seen),
                    r.count,
                    fmt_ms(r.expires),
                    if r.expires < now { " (expired)" } else { "" },
                    r.source
                );
            }
            if ns_rows > 0 {
                println!("  {ns_rows} ns_db rows name it as glueA");
            }
        }
    }
    Ok(())
}
