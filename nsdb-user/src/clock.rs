//! Clocks shared with the XDP program.
//!
//! - Events are stamped with CLOCK_BOOTTIME (`bpf_ktime_get_boot_ns`), converted here to wall
//!   time for alerts.
//! - Allow-map expiries are CLOCK_MONOTONIC_COARSE (`bpf_ktime_get_coarse_ns`): the hot path
//!   reads it for every registered query, and it costs a fraction of the precise clocks.
//!   Userspace computes expiries with the same clock, so an entry written as expired is seen
//!   expired by the program at once. (A gateway does not suspend; if one did, entries would
//!   live longer by the time it slept.)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime cannot fail for a valid clock");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_BOOTTIME now, in ns.
pub fn boot_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// CLOCK_MONOTONIC_COARSE now, in ns: the clock of allow-map expiries.
pub fn mono_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_COARSE)
}

/// Wall-clock time of a CLOCK_BOOTTIME stamp.
pub fn boot_to_wall(boot_ns_stamp: u64) -> SystemTime {
    let now_boot = boot_ns();
    let now_wall = SystemTime::now();
    if boot_ns_stamp <= now_boot {
        now_wall - Duration::from_nanos(now_boot - boot_ns_stamp)
    } else {
        now_wall + Duration::from_nanos(boot_ns_stamp - now_boot)
    }
}

/// Allow-map expiry (CLOCK_MONOTONIC_COARSE) of a wall-clock time in Unix milliseconds
/// (saturating at 0 and `u64::MAX - 1`; `u64::MAX` means "never expires" in the maps).
pub fn wall_ms_to_mono(unix_ms: u64) -> u64 {
    let now_mono = mono_ns();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let delta_ns = unix_ms.abs_diff(now_ms).saturating_mul(1_000_000);
    if unix_ms >= now_ms {
        now_mono.saturating_add(delta_ns).min(u64::MAX - 1)
    } else {
        now_mono.saturating_sub(delta_ns)
    }
}

/// RFC 3339 text of a wall-clock time, UTC, microsecond precision.
pub fn rfc3339(t: SystemTime) -> String {
    let odt = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    odt.format(&fmt).expect("a UTC date formats")
}
