//! `nsdb check`: the paper's check (§5, Table 2) on the queries in capture files.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::cli::learn::{EngineFlags, restore};
use crate::learn::{Engine, KnownAs};
use crate::offline;
use crate::store::Store;
use crate::wire::{self, Message, NameBuf};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckFormat {
    /// `<dst> is registered glueA record` / `<dst> is unknown`, as in the paper.
    Text,
    /// One JSON object per query.
    Json,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  nsdb check suspicious.pcap --db history.db\n  nsdb check day.pcap --db history.db --replay --format json"
)]
pub struct CheckArgs {
    /// Capture files (pcap or pcapng). Example: suspicious.pcap
    #[arg(required = true, value_name = "PCAP")]
    pub pcaps: Vec<PathBuf>,
    /// History database written by `nsdb learn`. With --replay it may be absent (the replay
    /// then starts from the root hints). Example: --db history.db
    #[arg(long, value_name = "PATH")]
    pub db: PathBuf,
    /// Output format. Example: --format json
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
    /// Learn and check in capture order, as the live system would have seen the trace,
    /// honouring TTLs (without it, every address ever learned counts, as in the paper).
    /// Example: --replay
    #[arg(long)]
    pub replay: bool,
    #[command(flatten)]
    pub engine: EngineFlags,
}

pub fn run(args: CheckArgs) -> Result<()> {
    let mut cfg = args.engine.config()?;
    offline::check_any_readable(&args.pcaps)?;
    let store = if args.replay && !args.db.exists() {
        None
    } else {
        Some(Store::open_existing(&args.db)?)
    };
    if let Some(s) = &store {
        cfg.exceptions.extend(s.exceptions()?);
    }
    let mut engine = Engine::new(cfg);
    if let Some(s) = &store {
        restore(&mut engine, s)?;
    }
    drop(store);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut io_err: Option<std::io::Error> = None;
    let replay = args.replay;
    let json = args.format == CheckFormat::Json;
    let mut name = NameBuf::default();
    let (summary, errors) = offline::read_all(
        &args.pcaps,
        &args.engine.ports(),
        false,
        &mut |m| {
            if m.is_response {
                if replay {
                    engine.on_response_count(m.ts_ms, m.pkt.src, m.pkt.dst, m.pkt.msg);
                }
                return;
            }
            let dst = m.pkt.dst.ip();
            let known = if replay {
                engine.is_registered(dst, m.ts_ms)
            } else {
                engine.lookup(dst)
            };
            let r = if json {
                let (qname, qtype) = question(m.pkt.msg, &mut name);
                write_json(&mut out, m, &qname, qtype, known.as_ref())
            } else if known.is_some() {
                writeln!(out, "{dst} is registered glueA record")
            } else {
                writeln!(out, "{dst} is unknown")
            };
            if let Err(e) = r {
                io_err.get_or_insert(e);
            }
            if replay {
                engine.on_query(m.ts_ms, m.pkt.src, m.pkt.dst, m.pkt.msg);
            }
        },
        &mut || {},
    );
    out.flush()?;
    if let Some(e) = io_err
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(e.into());
    }
    for e in &errors {
        eprintln!("nsdb: {e}");
    }
    let failed = summary.files_failed;
    if failed > 0 {
        bail!("{failed} capture files could not be read (see above)");
    }
    Ok(())
}

fn question(msg: &[u8], name: &mut NameBuf) -> (Option<String>, Option<u16>) {
    let Ok(m) = Message::parse(msg) else {
        return (None, None);
    };
    let Some(q) = m.question() else {
        return (None, None);
    };
    match wire::read_name(msg, q.name_off, name) {
        Ok(_) => (Some(name.as_str().to_string()), Some(q.qtype)),
        Err(_) => (None, Some(q.qtype)),
    }
}

fn write_json(
    out: &mut impl Write,
    m: &offline::Msg<'_>,
    qname: &Option<String>,
    qtype: Option<u16>,
    known: Option<&KnownAs>,
) -> std::io::Result<()> {
    let v = serde_json::json!({
        "time": offline::fmt_ms(m.ts_ms),
        "time_ms": m.ts_ms,
        "source": m.pkt.src.to_string(),
        "destination": m.pkt.dst.ip().to_string(),
        "destination_port": m.pkt.dst.port(),
        "transport": if m.pkt.tcp { "tcp" } else { "udp" },
        "qname": qname,
        "qtype": qtype.map(|t| wire::type_name(t).into_owned()),
        "verdict": if known.is_some() { "registered" } else { "unknown" },
        "known_as": known.map(|k| serde_json::json!({
            "kind": k.kind,
            "zone": k.zone,
            "ns_name": k.ns_name,
            "first_seen": offline::fmt_ms(k.first_seen_ms),
            "first_seen_ms": k.first_seen_ms,
            "expires": offline::fmt_ms(k.expires_ms),
        })),
    });
    serde_json::to_writer(&mut *out, &v)?;
    out.write_all(b"\n")
}
