//! Driving the engine from capture files: open each file, pull DNS messages out of it in capture
//! order, report per-file problems, show progress on a terminal, and stop cleanly on SIGINT or
//! SIGTERM (the caller then flushes what it has).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::capture::{self, CaptureError, DnsPacket, Extractor, Reader};

/// A per-file problem. Files that are not captures are skipped; a truncated file keeps the
/// frames read before the damage.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{0}: {1}")]
    Open(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Capture(PathBuf, CaptureError),
    #[error("{0}: {1} (the frames before it were read)")]
    Damaged(PathBuf, CaptureError),
}

/// What reading the files found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ReadSummary {
    pub files: u64,
    pub files_failed: u64,
    pub files_truncated: u64,
    pub bytes: u64,
    pub packets: u64,
    pub dns_messages: u64,
    pub queries: u64,
    pub responses: u64,
    /// Messages too short for a DNS header.
    pub runts: u64,
    pub capture: capture::CaptureStats,
    pub seconds: f64,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Ask to be told about SIGINT/SIGTERM instead of dying, so batched writes can be flushed.
pub fn catch_signals() {
    // SAFETY: installing an async-signal-safe handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
}

/// Was a stop requested?
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// One DNS message with its direction decided by the QR bit.
pub struct Msg<'a> {
    pub pkt: DnsPacket<'a>,
    pub ts_ms: u64,
    pub is_response: bool,
}

/// Counts one extracted message and hands it to `f`, its direction decided by the QR bit.
#[inline]
fn deliver(sum: &mut ReadSummary, f: &mut dyn FnMut(&Msg<'_>), pkt: DnsPacket<'_>) {
    if pkt.msg.len() < crate::wire::HEADER_LEN {
        // Not even a DNS header (snaplen-cut, or junk on port 53).
        sum.runts += 1;
        return;
    }
    sum.dns_messages += 1;
    let is_response = pkt.msg.get(2).is_some_and(|b| b & 0x80 != 0);
    if is_response {
        sum.responses += 1;
    } else {
        sum.queries += 1;
    }
    f(&Msg {
        ts_ms: pkt.ts_us / 1000,
        pkt,
        is_response,
    });
}

/// Fails, with one line saying what is wrong with each, when none of `paths` opens as a
/// capture (missing, a directory, empty, not pcap/pcapng, cut inside its header or first
/// record), so that a command given only bad
/// files stops before it creates or changes anything. With at least one readable file the
/// others are reported by [`read_all`] and reading goes on.
pub fn check_any_readable(paths: &[PathBuf]) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for path in paths {
        match capture::map_file(path) {
            // Readable: a valid header and a first record that is whole (or no record at all);
            // a capture cut inside its first record holds nothing.
            Ok(map) => match Reader::new(&map).and_then(|mut r| r.next_frame().map(|_| ())) {
                Ok(()) => return Ok(()),
                Err(e) => errors.push(OfflineError::Capture(path.clone(), e).to_string()),
            },
            Err(e) => errors.push(OfflineError::Open(path.clone(), e).to_string()),
        }
    }
    match errors.as_slice() {
        [one] => anyhow::bail!("{one}"),
        all => anyhow::bail!(
            "none of the {} capture files can be read: {}",
            all.len(),
            all.join("; ")
        ),
    }
}

/// Read `paths` in order and call `f` for every DNS message. `tick` is called about every
/// 64k frames (for batched writes). Problems with single files are returned in the list and
/// reading goes on with the next file.
pub fn read_all(
    paths: &[PathBuf],
    ports: &[u16],
    progress: bool,
    f: &mut dyn FnMut(&Msg<'_>),
    tick: &mut dyn FnMut(),
) -> (ReadSummary, Vec<OfflineError>) {
    let start = Instant::now();
    let mut sum = ReadSummary::default();
    let mut errors = Vec::new();
    let mut ex = Extractor::new(ports);
    let show = progress && std::io::stderr().is_terminal();
    let total_bytes: u64 = paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let mut done_bytes = 0u64;
    let mut last_draw = Instant::now();
    for path in paths {
        if stop_requested() {
            break;
        }
        sum.files += 1;
        let map = match capture::map_file(path) {
            Ok(m) => m,
            Err(e) => {
                sum.files_failed += 1;
                errors.push(OfflineError::Open(path.clone(), e));
                continue;
            }
        };
        let mut rd = match Reader::new(&map) {
            Ok(r) => r,
            Err(e) => {
                sum.files_failed += 1;
                errors.push(OfflineError::Capture(path.clone(), e));
                continue;
            }
        };
        let mut n = 0u32;
        // Inlined into each per-format loop of the reader.
        let read = rd.for_each_frame(
            #[inline(always)]
            |frame, offset| {
                // The common frame shape decoded inline, anything else by the general path.
                match ex.frame_fast(frame) {
                    Some(pkt) => deliver(&mut sum, f, pkt),
                    None => ex.frame_general(frame, &mut |pkt| deliver(&mut sum, f, pkt)),
                }
                n += 1;
                if n & 0xffff == 0 {
                    map.release_before(offset);
                    tick();
                    if stop_requested() {
                        return false;
                    }
                    if show && last_draw.elapsed() > Duration::from_millis(250) {
                        last_draw = Instant::now();
                        draw(path, done_bytes + offset as u64, total_bytes, &sum, start);
                    }
                }
                true
            },
        );
        if let Err(e) = read {
            sum.files_truncated += 1;
            errors.push(OfflineError::Damaged(path.clone(), e));
        }
        done_bytes += map.len() as u64;
        sum.bytes += map.len() as u64;
    }
    ex.finish(&mut |pkt| deliver(&mut sum, f, pkt));
    if show {
        eprint!("\r\x1b[K");
    }
    sum.packets = ex.stats().frames;
    sum.capture = ex.stats();
    sum.seconds = start.elapsed().as_secs_f64();
    (sum, errors)
}

fn draw(path: &Path, done: u64, total: u64, s: &ReadSummary, start: Instant) {
    let pct = (done * 100).checked_div(total).unwrap_or(0);
    let width = 30;
    let filled = (pct as usize * width / 100).min(width);
    let rate = s.dns_messages as f64 / start.elapsed().as_secs_f64().max(1e-9);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    eprint!(
        "\r\x1b[K[{}{}] {pct:>3}% {name} {} msgs, {:.0} msg/s",
        "#".repeat(filled),
        "-".repeat(width - filled),
        s.dns_messages,
        rate
    );
    let _ = std::io::stderr().flush();
}

/// Format Unix milliseconds as RFC 3339 UTC.
pub fn fmt_ms(ms: u64) -> String {
    if ms == u64::MAX {
        return "never".into();
    }
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}
