//! Prepared statements driven through the SQLite C API, for the batched writes of
//! [`super::Store`]: every value is bound without a copy (`SQLITE_STATIC`) and the statement is
//! stepped and reset directly. Through rusqlite each text value was copied into an SQLite
//! allocation and freed again, and each parameter went through `ToSql` and its checks, which
//! profiling showed as about a fifth of a commit.
//!
//! Soundness of the no-copy binding: [`Stmt::exec`] binds *every* parameter of the statement
//! from the values it is given, steps and resets the statement before it returns. SQLite reads
//! a bound value only while the statement runs, so the borrowed bytes are alive whenever they
//! are read; the pointers left in the statement afterwards are never read again (the next
//! `exec` replaces all of them first, and finalizing a statement does not read them).

use std::ffi::{c_char, c_int};

use rusqlite::ffi;

/// One value to bind.
#[derive(Debug, Clone, Copy)]
pub enum Val<'a> {
    Int(i64),
    Text(&'a str),
    Null,
}

/// A prepared statement on a connection the owner keeps open longer than the statement.
pub struct Stmt {
    ptr: *mut ffi::sqlite3_stmt,
    db: *mut ffi::sqlite3,
    params: usize,
}

// SAFETY: the statement is used only through `&mut Stmt`, together with the connection that
// owns it (both live in `Store`, which is used by one thread at a time; rusqlite's
// `Connection` is `Send` for the same reason).
unsafe impl Send for Stmt {}

fn error(db: *mut ffi::sqlite3, rc: c_int) -> rusqlite::Error {
    // SAFETY: `db` is an open connection; sqlite3_errmsg returns a NUL-terminated string
    // owned by SQLite, copied here before any other call on the connection.
    let msg = unsafe {
        let m = ffi::sqlite3_errmsg(db);
        (!m.is_null()).then(|| std::ffi::CStr::from_ptr(m).to_string_lossy().into_owned())
    };
    rusqlite::Error::SqliteFailure(ffi::Error::new(rc), msg)
}

impl Stmt {
    /// Prepare `sql` (one statement) on `conn`. The statement must be dropped before the
    /// connection is closed.
    pub fn prepare(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<Stmt> {
        // SAFETY: the handle is only used to prepare a statement and read errors; the
        // connection outlives the statement (see above).
        let db = unsafe { conn.handle() };
        let len = c_int::try_from(sql.len()).map_err(|_| {
            rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_TOOBIG), None)
        })?;
        let mut ptr = std::ptr::null_mut();
        // SAFETY: `sql` is valid for `len` bytes (no NUL terminator needed with a length).
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                db,
                sql.as_ptr().cast::<c_char>(),
                len,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut ptr,
                std::ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(error(db, rc));
        }
        if ptr.is_null() {
            // Only whitespace or a comment.
            return Err(rusqlite::Error::SqliteFailure(
                ffi::Error::new(ffi::SQLITE_MISUSE),
                Some("empty statement".into()),
            ));
        }
        // SAFETY: `ptr` is a valid prepared statement.
        let params = unsafe { ffi::sqlite3_bind_parameter_count(ptr) } as usize;
        Ok(Stmt { ptr, db, params })
    }

    /// Bind `vals` to parameters 1.. (all of them: `vals.len()` must be the statement's
    /// parameter count), run the statement to completion and reset it. Returns the number of
    /// rows it inserted, changed or deleted.
    pub fn exec(&mut self, vals: &[Val<'_>]) -> rusqlite::Result<u64> {
        if vals.len() != self.params {
            return Err(rusqlite::Error::InvalidParameterCount(
                vals.len(),
                self.params,
            ));
        }
        for (i, v) in vals.iter().enumerate() {
            let n = i as c_int + 1;
            // SAFETY: `self.ptr` is a valid statement, `n` a valid parameter index. Text is
            // bound without a copy: it is read only by the step below, while `vals` is
            // borrowed (see the module comment).
            let rc = unsafe {
                match *v {
                    Val::Int(x) => ffi::sqlite3_bind_int64(self.ptr, n, x),
                    Val::Null => ffi::sqlite3_bind_null(self.ptr, n),
                    Val::Text(s) => {
                        let Ok(len) = c_int::try_from(s.len()) else {
                            return Err(rusqlite::Error::SqliteFailure(
                                ffi::Error::new(ffi::SQLITE_TOOBIG),
                                None,
                            ));
                        };
                        // An empty string still needs a pointer that stays valid.
                        let p = if len == 0 { "".as_ptr() } else { s.as_ptr() };
                        ffi::sqlite3_bind_text(
                            self.ptr,
                            n,
                            p.cast::<c_char>(),
                            len,
                            ffi::SQLITE_STATIC(),
                        )
                    }
                }
            };
            if rc != ffi::SQLITE_OK {
                return Err(error(self.db, rc));
            }
        }
        // SAFETY: a valid statement with every parameter bound to live data.
        let rc = unsafe { ffi::sqlite3_step(self.ptr) };
        let res = match rc {
            // SAFETY: an open connection; the count is that of the statement just run.
            ffi::SQLITE_DONE => Ok(unsafe { ffi::sqlite3_changes64(self.db) } as u64),
            ffi::SQLITE_ROW => Err(rusqlite::Error::ExecuteReturnedResults),
            rc => Err(error(self.db, rc)),
        };
        // Reset at once (also after an error, whose message was read above), so that no
        // statement is left running inside the caller's transaction.
        // SAFETY: as above.
        unsafe { ffi::sqlite3_reset(self.ptr) };
        res
    }
}

impl Drop for Stmt {
    fn drop(&mut self) {
        // SAFETY: the statement is valid and not used again.
        unsafe { ffi::sqlite3_finalize(self.ptr) };
    }
}
