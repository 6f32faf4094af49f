//! `nsdb export`: the ns_db rows with the paper's Table 1 columns.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;

use crate::store::{NsExportRow, Store, StoreError};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Json,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  nsdb export --db history.db --format csv > ns_db.csv")]
pub struct ExportArgs {
    /// History database written by `nsdb learn`. Example: --db history.db
    #[arg(long, value_name = "PATH")]
    pub db: PathBuf,
    /// Output format: csv (with a header line) or json (an array of objects).
    /// Example: --format json
    #[arg(long, value_enum)]
    pub format: ExportFormat,
}

/// The paper's Table 1 columns, in order.
pub const COLUMNS: [&str; 9] = [
    "querytime",
    "queryid",
    "queryname",
    "res_time",
    "zname",
    "nsttl",
    "nsfqdn",
    "glueAttl",
    "glueA",
];

fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

pub fn run(args: ExportArgs) -> Result<()> {
    let store = Store::open_existing(&args.db)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let io = |e: std::io::Error| StoreError::Io {
        path: "stdout".into(),
        source: e,
    };
    let r = match args.format {
        ExportFormat::Csv => {
            writeln!(out, "{}", COLUMNS.join(",")).map_err(io)?;
            store.for_each_ns_row(|r: NsExportRow| {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{}",
                    r.querytime,
                    r.queryid,
                    csv_field(&r.queryname),
                    r.res_time,
                    csv_field(&r.zname),
                    r.nsttl,
                    csv_field(&r.nsfqdn),
                    r.glue_attl.map(|v| v.to_string()).unwrap_or_default(),
                    r.glue_a.as_deref().unwrap_or("")
                )
                .map_err(io)
            })
        }
        ExportFormat::Json => {
            out.write_all(b"[").map_err(io)?;
            let mut first = true;
            let r = store.for_each_ns_row(|r| {
                if !first {
                    out.write_all(b",").map_err(io)?;
                }
                first = false;
                out.write_all(b"\n").map_err(io)?;
                serde_json::to_writer(&mut out, &r).map_err(|e| io(e.into()))
            });
            out.write_all(b"\n]\n").map_err(io)?;
            r
        }
    };
    match r {
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            return Ok(());
        }
        r => r?,
    }
    out.flush()?;
    Ok(())
}
