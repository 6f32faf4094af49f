//! The history database: SQLite in WAL mode (paper §3: query_db and ns_db with the paper's
//! columns; plus `history`, one row per (zone, NS name, address) with first_seen, last_seen,
//! count and expires, which is what checks and the daemon read).
//!
//! Safety of the operator's files: an existing file is opened read-write *without* the create
//! flag, and only after its first 16 bytes say "SQLite format 3"; a database whose
//! `application_id` is not nsdb's and that already holds tables is refused as foreign; a file
//! failing `PRAGMA quick_check` is refused as corrupt. Nothing is ever truncated or overwritten.
//!
//! Writes are batched: [`Writer`] collects rows and commits them in one transaction per second
//! (or per [`Writer::MAX_BATCH`] rows), so a crash loses at most the last second; [`Writer::flush`]
//! on shutdown loses nothing. A history entry queued several times before a commit is written
//! once, in its latest state. `nsdb learn` commits by capture progress instead (see
//! `cli/learn.rs`): [`Writer::queue`] and [`Writer::flush`] at its own commit points.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::learn::{Learned, NsRow, QueryRow, Rows, Source};

mod raw;
use raw::{Stmt, Val};

/// `PRAGMA application_id` of an nsdb database: "NSDB".
pub const APPLICATION_ID: i32 = 0x4e53_4442;
/// Schema version (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: is a directory, not a database file")]
    IsDir(PathBuf),
    #[error("{0}: not an SQLite database (refusing to touch it)")]
    NotSqlite(PathBuf),
    #[error("{0}: an SQLite database that does not belong to nsdb ({1}); refusing to touch it")]
    Foreign(PathBuf, String),
    #[error("{0}: database is corrupt ({1}); refusing to use it")]
    Corrupt(PathBuf, String),
    #[error("{0}: written by a newer nsdb (schema {1}, this one knows {SCHEMA_VERSION})")]
    TooNew(PathBuf, i32),
    #[error("{0}: no such database (run `nsdb learn` first)")]
    Missing(PathBuf),
    #[error("{0}: directory {1} does not exist")]
    NoDir(PathBuf, PathBuf),
    #[error("{0}: not an nsdb database yet (empty; run `nsdb learn` or `nsdb run --db` first)")]
    Uninitialised(PathBuf),
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// One `history` row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HistoryRow {
    pub zone: String,
    pub ns_name: String,
    pub addr: IpAddr,
    pub first_seen: u64,
    pub last_seen: u64,
    pub count: u64,
    pub expires: u64,
    pub ttl: u32,
    pub source: String,
}

/// An open history database.
pub struct Store {
    /// Prepared on the first write. Declared before `conn`: statements are finalized before
    /// the connection closes.
    stmts: Option<WriteStmts>,
    conn: Connection,
    path: PathBuf,
}

/// Rows written by one multi-row INSERT into query_db and ns_db: one statement per this many
/// rows instead of one per row saves the per-statement work of SQLite (opening the table and
/// index cursors, finding the last rowid, halting and resetting). The rows of a batch that do
/// not fill a chunk are written one by one.
///
/// These statements are `INSERT OR FAIL`: with the default (ABORT) a statement that writes
/// several rows keeps a statement journal (a copy of every page it changes, spilled to a
/// temporary file), only to be able to undo its own rows on a constraint error. No such error
/// can happen here (every NOT NULL column is given a value; the row ids are SQLite's), and any
/// error makes [`Store::write_inner`] roll back the whole transaction anyway.
///
/// History upserts stay one row per statement: `DO UPDATE` always aborts on error, so a
/// multi-row upsert would keep a statement journal, which costs more than it saves. New
/// history entries are inserted [`CHUNK`] at a time by `INSERT OR IGNORE` (no journal either).
const CHUNK: usize = 32;

const QUERY_COLS: usize = 5;
const NS_COLS: usize = 11;
const HISTORY_COLS: usize = 9;

/// The statements of [`Store::write_inner`]: for query_db and ns_db one for a single row and one
/// for [`CHUNK`] rows.
struct WriteStmts {
    query: [Stmt; 2],
    ns: [Stmt; 2],
    history: Stmt,
    /// [`CHUNK`] new history entries (see `write_inner`).
    history_new: Stmt,
}

/// `head` followed by `rows` parenthesised lists of `cols` parameters, numbered in order.
fn insert_sql(head: &str, cols: usize, rows: usize) -> String {
    let mut s = String::from(head);
    for r in 0..rows {
        s.push_str(if r == 0 { " VALUES (" } else { ", (" });
        for c in 0..cols {
            s.push_str(if c == 0 { "?" } else { ", ?" });
        }
        s.push(')');
    }
    s
}

impl WriteStmts {
    fn prepare(conn: &Connection) -> rusqlite::Result<WriteStmts> {
        let both = |head: &str, cols: usize| {
            Ok::<_, rusqlite::Error>([
                Stmt::prepare(conn, &insert_sql(head, cols, 1))?,
                Stmt::prepare(conn, &insert_sql(head, cols, CHUNK))?,
            ])
        };
        Ok(WriteStmts {
            query: both(
                "INSERT OR FAIL INTO query_db (querytime, queryid, queryname, client, server)",
                QUERY_COLS,
            )?,
            ns: both(
                "INSERT OR FAIL INTO ns_db (querytime, queryid, queryname, res_time, zname, nsttl,
                   nsfqdn, glueAttl, glueA, server, source)",
                NS_COLS,
            )?,
            history: Stmt::prepare(
                conn,
                "INSERT INTO history (zone, ns_name, addr, first_seen, last_seen, count,
                   expires, ttl, source)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?9, ?6, ?7, ?8)
                 ON CONFLICT (zone, ns_name, addr) DO UPDATE SET
                   first_seen = min(first_seen, excluded.first_seen),
                   last_seen = max(last_seen, excluded.last_seen),
                   count = CASE WHEN ?10 THEN max(count, excluded.count) ELSE count + 1 END,
                   expires = max(expires, excluded.expires),
                   ttl = excluded.ttl",
            )?,
            history_new: Stmt::prepare(
                conn,
                &insert_sql(
                    "INSERT OR IGNORE INTO history (zone, ns_name, addr, first_seen, last_seen,
                       count, expires, ttl, source)",
                    HISTORY_COLS,
                    CHUNK,
                ),
            )?,
        })
    }
}

/// Run the values of some rows (`cols` each) as one multi-row INSERT when there are [`CHUNK`]
/// rows, else row by row.
fn exec_rows(stmts: &mut [Stmt; 2], vals: &[Val<'_>], cols: usize) -> rusqlite::Result<()> {
    if vals.len() == CHUNK * cols {
        return stmts[1].exec(vals).map(|_| ());
    }
    for row in vals.chunks(cols) {
        stmts[0].exec(row)?;
    }
    Ok(())
}

/// The order in which to write history entries: by the first 16 bytes of the zone (the start
/// of the primary key), else as given. Upserts in about key order go to neighbouring places
/// of the primary-key B-tree, which then splits pages where it appends instead of
/// rebalancing them all over; a full key sort cost more than that saved. Entries with the
/// same key keep their order (the last `ttl` wins, as before).
fn history_order(learned: &[Learned]) -> impl Iterator<Item = usize> {
    let mut keys: Vec<(u128, u32)> = learned
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut k = [0u8; 16];
            let z = l.zone.as_bytes();
            let n = z.len().min(16);
            k[..n].copy_from_slice(&z[..n]);
            (u128::from_be_bytes(k), i as u32)
        })
        .collect();
    keys.sort_unstable();
    keys.into_iter().map(|(_, i)| i as usize)
}

/// Text columns of one chunk of rows, formatted into one buffer reused chunk after chunk.
#[derive(Default)]
struct Texts {
    buf: String,
    ends: Vec<usize>,
}

impl Texts {
    fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }
    /// Close the field written since the last one.
    fn end(&mut self) {
        self.ends.push(self.buf.len());
    }
    fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS query_db (
    id INTEGER PRIMARY KEY,
    querytime INTEGER NOT NULL,   -- Unix ms the query was sent
    queryid INTEGER NOT NULL,     -- DNS message id
    queryname TEXT NOT NULL,      -- 'FQDN' for A, 'FQDN TYPE' otherwise
    client TEXT NOT NULL,
    server TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ns_db (
    id INTEGER PRIMARY KEY,
    querytime INTEGER NOT NULL,
    queryid INTEGER NOT NULL,
    queryname TEXT NOT NULL,
    res_time INTEGER NOT NULL,    -- Unix ms the response was received
    zname TEXT NOT NULL,
    nsttl INTEGER NOT NULL,
    nsfqdn TEXT NOT NULL,
    glueAttl INTEGER,             -- NULL until a glue-less NS name is resolved
    glueA TEXT,
    server TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ns_db_glueA ON ns_db(glueA);
CREATE TABLE IF NOT EXISTS history (
    zone TEXT NOT NULL,
    ns_name TEXT NOT NULL,
    addr TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    count INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    ttl INTEGER NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (zone, ns_name, addr)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS history_addr ON history(addr);
CREATE TABLE IF NOT EXISTS exceptions (
    net TEXT PRIMARY KEY,         -- the operator's exceptions, kept apart from learned data
    note TEXT
);
";

/// Append `ip` as `Display` writes it. IPv4 (nearly every row) is written from a digit table:
/// `to_string()` went through the `fmt` machinery and a fresh allocation per column, which
/// profiling showed as a few per cent of `nsdb learn` on a referral-heavy trace. IPv6 keeps
/// `Display` (RFC 5952 compression is not worth duplicating).
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => push_v4(out, a.octets()),
        IpAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
}

/// Append `sa` as `Display` writes it ("a.b.c.d:port", IPv6 via `Display`).
fn push_sock(out: &mut String, sa: SocketAddr) {
    match sa {
        SocketAddr::V4(v) => {
            push_v4(out, v.ip().octets());
            out.push(':');
            push_dec(out, v.port() as u32);
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{sa}");
        }
    }
}

/// Decimal text of 0..=255: three bytes (digits, then padding) and the number of digits.
static DEC_U8: [([u8; 3], u8); 256] = {
    let mut t = [([0u8; 3], 0u8); 256];
    let mut v = 0;
    while v < 256 {
        let (h, d, u) = ((v / 100) as u8, (v / 10 % 10) as u8, (v % 10) as u8);
        t[v] = if v >= 100 {
            ([b'0' + h, b'0' + d, b'0' + u], 3)
        } else if v >= 10 {
            ([b'0' + d, b'0' + u, 0], 2)
        } else {
            ([b'0' + u, 0, 0], 1)
        };
        v += 1;
    }
    t
};

fn push_v4(out: &mut String, o: [u8; 4]) {
    // Built on the stack and appended once (String::push per digit re-checks capacity).
    let mut b = [0u8; 16];
    let mut n = 0;
    for v in o {
        let (d, len) = DEC_U8[v as usize];
        b[n..n + 3].copy_from_slice(&d);
        n += len as usize;
        b[n] = b'.';
        n += 1;
    }
    // Without the last dot.
    out.push_str(std::str::from_utf8(&b[..n - 1]).unwrap_or_default());
}

/// Decimal digits of `v`, no padding.
fn push_dec(out: &mut String, v: u32) {
    let mut d = [0u8; 10];
    let mut i = d.len();
    let mut v = v;
    loop {
        i -= 1;
        d[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&d[i..]).unwrap_or_default());
}

fn clamp_i64(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

fn ver_of(conn: &Connection) -> i32 {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap_or(0)
}

impl Store {
    /// Open (creating it if missing) a database for writing.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_inner(path, true)
    }

    /// Open an existing database for reading (`check`, `lookup`, `export`).
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        Self::open_inner(path, false)
    }

    fn open_inner(path: &Path, create: bool) -> Result<Store, StoreError> {
        let p = path.to_path_buf();
        let io = |e| StoreError::Io {
            path: p.clone(),
            source: e,
        };
        let exists = match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => return Err(StoreError::IsDir(p)),
            Ok(m) => {
                if m.len() > 0 {
                    use std::io::Read;
                    let mut head = [0u8; 16];
                    let mut f = std::fs::File::open(path).map_err(io)?;
                    let n = f.read(&mut head).map_err(io)?;
                    if n < 16 || &head != b"SQLite format 3\0" {
                        return Err(StoreError::NotSqlite(p));
                    }
                }
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io(e)),
        };
        if !exists && !create {
            return Err(StoreError::Missing(p));
        }
        if !exists {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            if let Some(dir) = dir.filter(|d| !d.is_dir()) {
                return Err(StoreError::NoDir(p, dir.to_path_buf()));
            }
        }
        // Opening an existing history only to read it (lookup, export, check) writes nothing:
        // it works on a read-only or full file system, next to a running daemon.
        let read_only = !create;
        let flags = OpenFlags::SQLITE_OPEN_NO_MUTEX
            | if read_only {
                OpenFlags::SQLITE_OPEN_READ_ONLY
            } else if exists {
                OpenFlags::SQLITE_OPEN_READ_WRITE
            } else {
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
            };
        let sq = |e| StoreError::Sqlite {
            path: p.clone(),
            source: e,
        };
        let conn = Connection::open_with_flags(path, flags).map_err(sq)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sq)?;
        let corrupt = |e: rusqlite::Error| StoreError::Corrupt(p.clone(), e.to_string());
        if exists {
            let check: String = conn
                .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
                .map_err(corrupt)?;
            if check != "ok" {
                let one_line = check.split_whitespace().collect::<Vec<_>>().join(" ");
                return Err(StoreError::Corrupt(p, one_line));
            }
            let app: i32 = conn
                .query_row("PRAGMA application_id", [], |r| r.get(0))
                .map_err(corrupt)?;
            let tables: i64 = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                    [],
                    |r| r.get(0),
                )
                .map_err(corrupt)?;
            if app != APPLICATION_ID && tables > 0 {
                return Err(StoreError::Foreign(
                    p,
                    format!("application_id 0x{app:08x}, {tables} tables"),
                ));
            }
            let ver: i32 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(corrupt)?;
            if ver > SCHEMA_VERSION {
                return Err(StoreError::TooNew(p, ver));
            }
        }
        if read_only {
            if ver_of(&conn) < SCHEMA_VERSION {
                return Err(StoreError::Uninitialised(p));
            }
            return Ok(Store {
                stmts: None,
                conn,
                path: p,
            });
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sq)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sq)?;
        conn.execute_batch(SCHEMA).map_err(sq)?;
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(sq)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(sq)?;
        Ok(Store {
            stmts: None,
            conn,
            path: p,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source: e,
        }
    }

    /// Write a batch of rows in one transaction; each `learned` value is one sighting (the
    /// history count goes up by one), as returned by [`crate::learn::Engine::on_response`].
    pub fn write(
        &mut self,
        queries: &[QueryRow],
        ns: &[NsRow],
        learned: &[Learned],
    ) -> Result<(), StoreError> {
        self.write_inner(queries, ns, learned, None)
    }

    /// Write what [`crate::learn::Engine::take_rows`] produced: history entries carry their
    /// absolute sighting counts.
    pub fn write_rows(&mut self, rows: &Rows) -> Result<(), StoreError> {
        self.write_inner(&rows.queries, &rows.ns, &rows.learned, Some(&rows.counts))
    }

    fn write_inner(
        &mut self,
        queries: &[QueryRow],
        ns: &[NsRow],
        learned: &[Learned],
        counts: Option<&[u64]>,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sq = |e| StoreError::Sqlite {
            path: path.clone(),
            source: e,
        };
        if self.stmts.is_none() {
            self.stmts = Some(WriteStmts::prepare(&self.conn).map_err(sq)?);
        }
        let Some(st) = self.stmts.as_mut() else {
            unreachable!("prepared above")
        };
        let tx = self.conn.transaction().map_err(sq)?;
        // Address columns of a chunk are formatted into `t`, reused chunk after chunk.
        let mut t = Texts::default();
        for rows in queries.chunks(CHUNK) {
            t.clear();
            for r in rows {
                push_sock(&mut t.buf, r.client);
                t.end();
                push_sock(&mut t.buf, r.server);
                t.end();
            }
            let mut vals = Vec::with_capacity(rows.len() * QUERY_COLS);
            for (j, r) in rows.iter().enumerate() {
                vals.extend_from_slice(&[
                    Val::Int(clamp_i64(r.querytime)),
                    Val::Int(r.queryid.into()),
                    Val::Text(&r.queryname),
                    Val::Text(t.get(2 * j)),
                    Val::Text(t.get(2 * j + 1)),
                ]);
            }
            exec_rows(&mut st.query, &vals, QUERY_COLS).map_err(sq)?;
        }
        for rows in ns.chunks(CHUNK) {
            t.clear();
            for r in rows {
                if let Some(a) = r.glue {
                    push_ip(&mut t.buf, a);
                }
                t.end();
                push_sock(&mut t.buf, r.server);
                t.end();
            }
            let mut vals = Vec::with_capacity(rows.len() * NS_COLS);
            for (j, r) in rows.iter().enumerate() {
                vals.extend_from_slice(&[
                    Val::Int(clamp_i64(r.querytime)),
                    Val::Int(r.queryid.into()),
                    Val::Text(&r.queryname),
                    Val::Int(clamp_i64(r.res_time)),
                    Val::Text(&r.zname),
                    Val::Int(r.nsttl.into()),
                    Val::Text(&r.nsfqdn),
                    r.glue_ttl.map_or(Val::Null, |t| Val::Int(t.into())),
                    r.glue.map_or(Val::Null, |_| Val::Text(t.get(2 * j))),
                    Val::Text(t.get(2 * j + 1)),
                    Val::Text(r.source.as_str()),
                ]);
            }
            exec_rows(&mut st.ns, &vals, NS_COLS).map_err(sq)?;
        }
        // History: with absolute counts an upsert is idempotent (min, max, the same TTL), so
        // a chunk of entries is first inserted by one INSERT OR IGNORE; only when it skipped
        // some (a key already stored, or twice in the chunk) are all of its entries upserted
        // one by one, which ends in the same rows, and the rest of the batch is upserted
        // row by row (keys already stored tend to come together: a database learning more).
        let order: Vec<usize> = history_order(learned).collect();
        let mut try_insert = counts.is_some_and(|c| c.len() >= learned.len());
        let count = |i: usize| counts.and_then(|c| c.get(i)).copied().unwrap_or(1);
        for idxs in order.chunks(CHUNK) {
            t.clear();
            for &i in idxs {
                push_ip(&mut t.buf, learned[i].addr);
                t.end();
            }
            if try_insert && idxs.len() == CHUNK {
                let mut vals = Vec::with_capacity(CHUNK * HISTORY_COLS);
                for (j, &i) in idxs.iter().enumerate() {
                    let l = &learned[i];
                    vals.extend_from_slice(&[
                        Val::Text(&l.zone),
                        Val::Text(&l.ns_name),
                        Val::Text(t.get(j)),
                        Val::Int(clamp_i64(l.first_seen_ms)),
                        Val::Int(clamp_i64(l.learned_ms)),
                        Val::Int(clamp_i64(count(i))),
                        Val::Int(clamp_i64(l.expires_ms)),
                        Val::Int(l.ttl.into()),
                        Val::Text(l.source.as_str()),
                    ]);
                }
                if st.history_new.exec(&vals).map_err(sq)? == CHUNK as u64 {
                    continue;
                }
                try_insert = false;
            }
            for (j, &i) in idxs.iter().enumerate() {
                let l = &learned[i];
                // A value in `counts` is the entry's absolute sighting count; without one,
                // the entry is one more sighting.
                let absolute = counts.is_some_and(|c| i < c.len());
                st.history
                    .exec(&[
                        Val::Text(&l.zone),
                        Val::Text(&l.ns_name),
                        Val::Text(t.get(j)),
                        Val::Int(clamp_i64(l.first_seen_ms)),
                        Val::Int(clamp_i64(l.learned_ms)),
                        Val::Int(clamp_i64(l.expires_ms)),
                        Val::Int(l.ttl.into()),
                        Val::Text(l.source.as_str()),
                        Val::Int(clamp_i64(count(i))),
                        Val::Int(absolute.into()),
                    ])
                    .map_err(sq)?;
            }
        }
        tx.commit().map_err(sq)
    }

    /// Record the operator's exceptions (kept apart from learned data).
    pub fn set_exceptions(&mut self, nets: &[ipnet::IpNet]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sq = |e| StoreError::Sqlite {
            path: path.clone(),
            source: e,
        };
        let tx = self.conn.transaction().map_err(sq)?;
        for n in nets {
            tx.execute(
                "INSERT OR IGNORE INTO exceptions (net, note) VALUES (?1, 'operator')",
                params![n.to_string()],
            )
            .map_err(sq)?;
        }
        tx.commit().map_err(sq)
    }

    pub fn exceptions(&self) -> Result<Vec<ipnet::IpNet>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT net FROM exceptions")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            if let Ok(n) = r.map_err(|e| self.err(e))?.parse() {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// Every history row.
    pub fn history(&self) -> Result<Vec<HistoryRow>, StoreError> {
        self.history_where("", params![])
    }

    /// History rows for one address.
    pub fn history_for(&self, addr: IpAddr) -> Result<Vec<HistoryRow>, StoreError> {
        self.history_where(
            "WHERE addr = ?1 ORDER BY first_seen",
            params![addr.to_string()],
        )
    }

    fn history_where(
        &self,
        clause: &str,
        p: impl rusqlite::Params,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let sql = format!(
            "SELECT zone, ns_name, addr, first_seen, last_seen, count, expires, ttl, source
             FROM history {clause}"
        );
        let mut st = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = st
            .query_map(p, |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, String>(8)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            let (zone, ns_name, addr, fs, ls, count, exp, ttl, source) =
                r.map_err(|e| self.err(e))?;
            let Ok(addr) = addr.parse() else {
                return Err(StoreError::Corrupt(
                    self.path.clone(),
                    format!("history row with address {addr:?}"),
                ));
            };
            out.push(HistoryRow {
                zone,
                ns_name,
                addr,
                first_seen: fs.max(0) as u64,
                last_seen: ls.max(0) as u64,
                count: count.max(0) as u64,
                expires: exp.max(0) as u64,
                ttl: ttl.clamp(0, u32::MAX as i64) as u32,
                source,
            });
        }
        Ok(out)
    }

    /// Addresses registered at `now_unix_ms`, with their latest expiry (Unix ms).
    pub fn unexpired(&self, now_unix_ms: u64) -> Result<Vec<(IpAddr, u64)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT addr, max(expires) FROM history WHERE expires >= ?1 GROUP BY addr")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![clamp_i64(now_unix_ms)], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            let (a, e) = r.map_err(|e| self.err(e))?;
            if let Ok(a) = a.parse() {
                out.push((a, e.max(0) as u64));
            }
        }
        Ok(out)
    }

    /// Stream ns_db rows in insertion order.
    pub fn for_each_ns_row(
        &self,
        mut f: impl FnMut(NsExportRow) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT querytime, queryid, queryname, res_time, zname, nsttl, nsfqdn,
                        glueAttl, glueA FROM ns_db ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = st.query([]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let row = (|| {
                Ok::<_, rusqlite::Error>(NsExportRow {
                    querytime: r.get(0)?,
                    queryid: r.get(1)?,
                    queryname: r.get(2)?,
                    res_time: r.get(3)?,
                    zname: r.get(4)?,
                    nsttl: r.get(5)?,
                    nsfqdn: r.get(6)?,
                    glue_attl: r.get(7)?,
                    glue_a: r.get(8)?,
                })
            })()
            .map_err(|e| self.err(e))?;
            f(row)?;
        }
        Ok(())
    }

    /// Row counts of (query_db, ns_db, history).
    pub fn counts(&self) -> Result<(u64, u64, u64), StoreError> {
        let c = |t: &str| -> Result<u64, StoreError> {
            self.conn
                .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|v| v as u64)
                .map_err(|e| self.err(e))
        };
        Ok((c("query_db")?, c("ns_db")?, c("history")?))
    }

    /// ns_db rows mentioning `addr` as glue.
    pub fn ns_rows_for(&self, addr: IpAddr) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM ns_db WHERE glueA = ?1",
                params![addr.to_string()],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|v| v.unwrap_or(0) as u64)
            .map_err(|e| self.err(e))
    }

    /// Checkpoint the WAL into the main file (on shutdown).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| self.err(e))
    }
}

/// An ns_db row with the paper's Table 1 columns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NsExportRow {
    pub querytime: i64,
    pub queryid: i64,
    pub queryname: String,
    #[serde(rename = "res_time")]
    pub res_time: i64,
    pub zname: String,
    pub nsttl: i64,
    pub nsfqdn: String,
    #[serde(rename = "glueAttl")]
    pub glue_attl: Option<i64>,
    #[serde(rename = "glueA")]
    pub glue_a: Option<String>,
}

/// Batches rows and commits them at most once a second (or every [`Writer::MAX_BATCH`] rows).
///
/// A history entry (zone, NS name, address) queued again before the commit replaces its queued
/// state (first seen the earliest, last seen, expiry and count the latest), so each changed
/// entry costs one upsert per commit however often it was refreshed in between.
///
/// A failed commit (disk full, read-only file system, a locked file) loses nothing: the rows
/// stay queued and the next tick tries again, so learning goes on in memory and the database
/// catches up when it can be written again. While it cannot, memory stays bounded: history
/// rows are kept (compacted to the latest state of each (zone, NS name, address)), and the
/// per-query log rows (query_db, ns_db) beyond [`Writer::MAX_RETAINED`] are dropped oldest
/// first and counted in [`Writer::dropped`].
pub struct Writer {
    store: Store,
    pending: Rows,
    /// Position in `pending.learned` of each queued history entry; built when a second batch
    /// is queued before a commit (empty while `pending.learned` came from one batch).
    index: HashMap<(String, String, IpAddr), usize>,
    last: Instant,
    interval: Duration,
    failing: bool,
    dropped: u64,
    commits: u64,
    commit_ns: u64,
}

impl Writer {
    /// Rows held before a commit is forced regardless of time.
    pub const MAX_BATCH: usize = 100_000;
    /// Log rows (query_db + ns_db) kept queued while the database cannot be written.
    pub const MAX_RETAINED: usize = 1_000_000;

    pub fn new(store: Store) -> Writer {
        Writer {
            store,
            pending: Rows::default(),
            index: HashMap::new(),
            last: Instant::now(),
            interval: Duration::from_secs(1),
            failing: false,
            dropped: 0,
            commits: 0,
            commit_ns: 0,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn len(&self) -> usize {
        self.pending.queries.len() + self.pending.ns.len() + self.pending.learned.len()
    }

    /// Rows queued and not yet committed.
    pub fn queued(&self) -> usize {
        self.len()
    }

    /// Log rows dropped because the database could not be written for a long time.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// True while the last commit failed.
    pub fn failing(&self) -> bool {
        self.failing
    }

    /// Commits done, and the time they took in all (ns).
    pub fn commit_stats(&self) -> (u64, u64) {
        (self.commits, self.commit_ns)
    }

    /// Queue rows (from [`crate::learn::Engine::take_rows`]); commits if a second has passed.
    pub fn push(&mut self, rows: Rows) -> Result<(), StoreError> {
        self.queue(rows);
        self.tick()
    }

    /// Queue rows without committing (the caller decides when to [`Self::flush`]).
    pub fn queue(&mut self, mut rows: Rows) {
        self.pending.queries.append(&mut rows.queries);
        self.pending.ns.append(&mut rows.ns);
        // Keep `counts` aligned with `learned` (values without a count are one sighting).
        rows.counts.resize(rows.learned.len(), 1);
        if self.pending.learned.is_empty() {
            // Nothing to merge with (the usual case offline: one batch per commit).
            self.index.clear();
            self.pending.learned = rows.learned;
            self.pending.counts = rows.counts;
        } else {
            if self.index.len() != self.pending.learned.len() {
                self.reindex();
            }
            for (l, c) in rows.learned.into_iter().zip(rows.counts) {
                self.queue_learned(l, c);
            }
        }
        if self.failing {
            self.bound();
        }
    }

    /// Adds one history entry to the queue, merged into its queued state if it has one.
    fn queue_learned(&mut self, l: Learned, count: u64) {
        let p = &mut self.pending;
        match self
            .index
            .entry((l.zone.clone(), l.ns_name.clone(), l.addr))
        {
            std::collections::hash_map::Entry::Occupied(o) => {
                let i = *o.get();
                let old = &mut p.learned[i];
                // What the upsert would make of the two rows one after the other.
                old.first_seen_ms = old.first_seen_ms.min(l.first_seen_ms);
                old.learned_ms = old.learned_ms.max(l.learned_ms);
                old.expires_ms = old.expires_ms.max(l.expires_ms);
                old.ttl = l.ttl;
                p.counts[i] = p.counts[i].max(count);
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(p.learned.len());
                p.learned.push(l);
                p.counts.push(count);
            }
        }
    }

    /// Rebuilds `index` over the queued history entries, merging duplicates.
    fn reindex(&mut self) {
        let learned = std::mem::take(&mut self.pending.learned);
        let mut counts = std::mem::take(&mut self.pending.counts);
        counts.resize(learned.len(), 1);
        self.index.clear();
        for (l, c) in learned.into_iter().zip(counts) {
            self.queue_learned(l, c);
        }
    }

    /// Commit if the interval has passed or the batch is full (while failing: once per
    /// interval only, a retry).
    pub fn tick(&mut self) -> Result<(), StoreError> {
        let full = self.len() >= Self::MAX_BATCH && !self.failing;
        if full || self.last.elapsed() >= self.interval {
            self.flush()?;
        }
        Ok(())
    }

    /// Commit everything queued now. On failure the rows stay queued.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.last = Instant::now();
        if self.len() == 0 {
            return Ok(());
        }
        let started = Instant::now();
        match self.store.write_rows(&self.pending) {
            Ok(()) => {
                self.pending = Rows::default();
                self.index.clear();
                if self.failing {
                    tracing::info!("the history database can be written again; queued rows saved");
                }
                self.failing = false;
                self.commits += 1;
                self.commit_ns += started.elapsed().as_nanos() as u64;
                Ok(())
            }
            Err(e) => {
                self.failing = true;
                self.bound();
                Err(e)
            }
        }
    }

    /// Keeps the queue bounded while commits fail: history rows compacted to the last state
    /// of each entry, the oldest log rows dropped beyond [`Self::MAX_RETAINED`].
    fn bound(&mut self) {
        let p = &mut self.pending;
        p.counts.resize(p.learned.len(), 1);
        if p.learned.len() > 4096 {
            let mut seen = std::collections::HashSet::new();
            let mut keep = vec![false; p.learned.len()];
            for (i, l) in p.learned.iter().enumerate().rev() {
                keep[i] = seen.insert((l.zone.clone(), l.ns_name.clone(), l.addr));
            }
            let mut k = keep.iter();
            p.learned.retain(|_| *k.next().unwrap_or(&true));
            let mut k = keep.iter();
            p.counts.retain(|_| *k.next().unwrap_or(&true));
            // Positions moved; rebuilt at the next queue.
            self.index.clear();
        }
        let logs = p.queries.len() + p.ns.len();
        if logs > Self::MAX_RETAINED {
            let mut excess = logs - Self::MAX_RETAINED;
            let q = excess.min(p.queries.len());
            p.queries.drain(..q);
            excess -= q;
            let n = excess.min(p.ns.len());
            p.ns.drain(..n);
            self.dropped += (q + n) as u64;
        }
    }

    /// Flush and checkpoint; returns the store.
    pub fn finish(mut self) -> Result<Store, StoreError> {
        self.flush()?;
        self.store.checkpoint()?;
        Ok(self.store)
    }
}

/// The source tag stored for an entry.
pub fn source_of(s: &str) -> Source {
    Source::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_text_is_display() {
        let mut s = String::from("junk");
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "192.0.2.1",
            "10.200.3.45",
            "2001:db8::1",
            "::ffff:192.0.2.1",
            "fe80::1:2:3:4",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            s.clear();
            push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
            for port in [0u16, 9, 53, 100, 65535] {
                let sa = SocketAddr::new(ip, port);
                s.clear();
                push_sock(&mut s, sa);
                assert_eq!(s, sa.to_string());
            }
        }
        let scoped: SocketAddr = "[fe80::1%7]:53".parse().unwrap();
        s.clear();
        push_sock(&mut s, scoped);
        assert_eq!(s, scoped.to_string());
        for v in 0..=255u8 {
            let ip = IpAddr::from([v, v / 3, 255 - v, 7]);
            s.clear();
            push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nsdb-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&d);
        d
    }

    fn learned(addr: &str, t: u64) -> Learned {
        Learned {
            zone: "example.test".into(),
            ns_name: "ns1.example.test".into(),
            addr: addr.parse().unwrap(),
            expires_ms: t + 1000,
            ttl: 1,
            learned_ms: t,
            source: Source::Glue,
            first_seen_ms: t,
        }
    }

    /// Batches of absolute history entries (as `Writer` commits them) end in the rows that
    /// upserting them one by one gives: new keys in full chunks, keys twice in a chunk, keys
    /// already stored, and a rest.
    #[test]
    fn history_chunks_end_as_single_upserts() {
        let p = tmp("hchunks.db");
        let mut s = Store::open(&p).unwrap();
        let mut model: HashMap<(String, String, IpAddr), HistoryRow> = HashMap::new();
        let entry = |k: usize, t: u64| Learned {
            zone: format!("zone{}.example.", k % 40),
            ns_name: format!("ns{}.zone{}.example.", k % 3, k % 40),
            addr: IpAddr::from([192, 0, 2, (k % 250) as u8]),
            expires_ms: t + 5_000 - 7 * (k as u64 % 11),
            ttl: 60 + (t % 97) as u32,
            learned_ms: t + (k as u64 % 5),
            source: if k.is_multiple_of(4) {
                Source::GluelessLookup
            } else {
                Source::Glue
            },
            first_seen_ms: t - (k as u64 % 13),
        };
        let batches: Vec<Vec<usize>> = vec![
            // All new, two full chunks and a rest.
            (0..2 * CHUNK + 7).collect(),
            // Keys stored and new, and the same key twice in a row.
            (CHUNK..3 * CHUNK).chain([5, 5, 900, 901]).collect(),
            // New keys only, again (a batch starts inserting again), one repeated in a chunk.
            (1000..1000 + CHUNK)
                .chain([1003])
                .chain(1100..1100 + CHUNK)
                .collect(),
        ];
        for (b, keys) in batches.iter().enumerate() {
            let t = 10_000 * (b as u64 + 1);
            let mut rows = Rows::default();
            for (n, &k) in keys.iter().enumerate() {
                let l = entry(k, t + n as u64);
                let count = 3 + (k as u64 * 7 + b as u64) % 10;
                let key = (l.zone.clone(), l.ns_name.clone(), l.addr);
                let new = HistoryRow {
                    zone: l.zone.clone(),
                    ns_name: l.ns_name.clone(),
                    addr: l.addr,
                    first_seen: l.first_seen_ms,
                    last_seen: l.learned_ms,
                    count,
                    expires: l.expires_ms,
                    ttl: l.ttl,
                    source: l.source.as_str().to_string(),
                };
                model
                    .entry(key)
                    .and_modify(|h| {
                        h.first_seen = h.first_seen.min(new.first_seen);
                        h.last_seen = h.last_seen.max(new.last_seen);
                        h.count = h.count.max(new.count);
                        h.expires = h.expires.max(new.expires);
                        h.ttl = new.ttl;
                    })
                    .or_insert(new);
                rows.learned.push(l);
                rows.counts.push(count);
            }
            s.write_rows(&rows).unwrap();
            let mut got = s.history().unwrap();
            let mut want: Vec<HistoryRow> = model.values().cloned().collect();
            let key = |h: &HistoryRow| (h.zone.clone(), h.ns_name.clone(), h.addr);
            got.sort_by_key(key);
            want.sort_by_key(key);
            assert_eq!(got, want, "after batch {b}");
        }
        drop(s);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn log_rows_in_chunks_and_singly_keep_order_and_values() {
        let p = tmp("chunks.db");
        let mut s = Store::open(&p).unwrap();
        let sock = |i: usize| -> SocketAddr {
            if i % 7 == 3 {
                format!("[2001:db8::{i:x}]:{}", 1000 + i).parse().unwrap()
            } else {
                format!("10.{}.{}.{}:{}", i % 256, i / 3, 255 - i % 256, 1000 + i)
                    .parse()
                    .unwrap()
            }
        };
        let query = |i: usize| QueryRow {
            querytime: 1_000 + i as u64,
            queryid: i as u16,
            queryname: format!(
                "q{i}.example. {}",
                if i.is_multiple_of(2) { "NS" } else { "A" }
            ),
            client: sock(i),
            server: sock(i + 1),
        };
        let ns = |i: usize| NsRow {
            querytime: 2_000 + i as u64,
            queryid: i as u16,
            queryname: format!("n{i}.example."),
            res_time: 2_001 + i as u64,
            zname: format!("z{}.example.", i % 9),
            nsttl: 3_600 + i as u32,
            nsfqdn: format!("ns{i}.z.example."),
            glue_ttl: (!i.is_multiple_of(5)).then_some(60 + i as u32),
            glue: (!i.is_multiple_of(5)).then(|| sock(i * 3).ip()),
            server: sock(i + 2),
            source: if i.is_multiple_of(2) {
                Source::Glue
            } else {
                Source::GluelessLookup
            },
            expires_ms: 0,
        };
        // Two full chunks and a rest, then a batch smaller than a chunk.
        let (q1, n1): (Vec<_>, Vec<_>) = (0..2 * CHUNK + 5).map(|i| (query(i), ns(i))).unzip();
        s.write(&q1, &n1, &[]).unwrap();
        let (q2, n2): (Vec<_>, Vec<_>) = (100..103).map(|i| (query(i), ns(i))).unzip();
        s.write(&q2, &n2, &[]).unwrap();
        let (qs, ns_rows) = ([q1, q2].concat(), [n1, n2].concat());
        let mut st = s
            .conn
            .prepare("SELECT id, querytime, queryid, queryname, client, server FROM query_db")
            .unwrap();
        let got: Vec<(i64, i64, i64, String, String, String)> = st
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        drop(st);
        assert_eq!(got.len(), qs.len());
        for (k, (g, q)) in got.iter().zip(&qs).enumerate() {
            let want = (
                k as i64 + 1,
                q.querytime as i64,
                q.queryid as i64,
                q.queryname.clone(),
                q.client.to_string(),
                q.server.to_string(),
            );
            assert_eq!(*g, want);
        }
        let mut st = s
            .conn
            .prepare("SELECT id, server, source, typeof(glueA) FROM ns_db ORDER BY id")
            .unwrap();
        let got: Vec<(i64, String, String, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        drop(st);
        assert_eq!(got.len(), ns_rows.len());
        let mut exported = Vec::new();
        s.for_each_ns_row(|r| {
            exported.push(r);
            Ok(())
        })
        .unwrap();
        for (k, ((g, e), n)) in got.iter().zip(&exported).zip(&ns_rows).enumerate() {
            let glue_type = if n.glue.is_some() { "text" } else { "null" };
            let want = (
                k as i64 + 1,
                n.server.to_string(),
                n.source.as_str().to_string(),
                glue_type.to_string(),
            );
            assert_eq!(*g, want);
            let want = NsExportRow {
                querytime: n.querytime as i64,
                queryid: n.queryid as i64,
                queryname: n.queryname.clone(),
                res_time: n.res_time as i64,
                zname: n.zname.clone(),
                nsttl: n.nsttl as i64,
                nsfqdn: n.nsfqdn.clone(),
                glue_attl: n.glue_ttl.map(i64::from),
                glue_a: n.glue.map(|a| a.to_string()),
            };
            assert_eq!(*e, want);
        }
        drop(s);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn history_upserts_and_unexpired() {
        let p = tmp("upsert.db");
        let mut s = Store::open(&p).unwrap();
        s.write(
            &[],
            &[],
            &[learned("192.0.2.1", 100), learned("192.0.2.1", 200)],
        )
        .unwrap();
        let h = s.history().unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(
            (h[0].first_seen, h[0].last_seen, h[0].count, h[0].expires),
            (100, 200, 2, 1200)
        );
        assert_eq!(
            s.unexpired(1200).unwrap(),
            vec![("192.0.2.1".parse().unwrap(), 1200)]
        );
        assert!(s.unexpired(1201).unwrap().is_empty());
        drop(s);
        // Reopening keeps the data.
        let s = Store::open_existing(&p).unwrap();
        assert_eq!(s.history().unwrap().len(), 1);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn foreign_and_corrupt_files_are_refused_and_untouched() {
        let p = tmp("text.db");
        std::fs::write(&p, b"hello, not a database").unwrap();
        assert!(matches!(Store::open(&p), Err(StoreError::NotSqlite(_))));
        assert_eq!(std::fs::read(&p).unwrap(), b"hello, not a database");

        let p = tmp("foreign.db");
        {
            let c = Connection::open(&p).unwrap();
            c.execute_batch("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('x');")
                .unwrap();
        }
        let before = std::fs::read(&p).unwrap();
        let e = Store::open(&p).err().unwrap();
        assert!(matches!(e, StoreError::Foreign(..)), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), before);

        let p = tmp("dir.db");
        let _ = std::fs::create_dir(&p);
        assert!(matches!(Store::open(&p), Err(StoreError::IsDir(_))));
        let _ = std::fs::remove_dir(&p);
    }
}
