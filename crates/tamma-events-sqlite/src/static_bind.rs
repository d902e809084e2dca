//! A prepared statement whose text and blob parameters are bound without a copy.
//!
//! rusqlite binds every text and blob with `SQLITE_TRANSIENT`, so SQLite copies each value into memory
//! of its own before the statement runs. The writer's event insert binds five such values per event
//! (id, type, tags, metadata, data: about 300 bytes), and the copies (growing the parameter's buffer,
//! `memcpy`, releasing the previous value) were about a tenth of the writer's instructions per event in
//! large appends. Here they are bound with `SQLITE_STATIC`: SQLite reads them where they are.
//!
//! That is sound only while the bound memory outlives every use SQLite makes of it. [`StaticStatement`]
//! therefore binds, runs and resets in one call ([`StaticStatement::execute`]): the values are borrowed
//! for that call, and the bindings are cleared before it returns, so the statement never holds a pointer
//! past the borrow.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_int};
use std::marker::PhantomData;
use std::ptr::NonNull;

use rusqlite::{Connection, ffi};

/// A statement prepared on a connection's raw handle. It must be dropped before its connection (it is
/// finalized on drop; SQLite refuses to close a connection with statements left).
pub(crate) struct StaticStatement {
    stmt: NonNull<ffi::sqlite3_stmt>,
    db: NonNull<ffi::sqlite3>,
}

// SAFETY: the statement is used only by the thread that owns it (the writer), like its connection,
// which is `Send`; SQLite is built threadsafe (rusqlite's bundled build), so moving a statement between
// threads while no other thread uses it is allowed.
unsafe impl Send for StaticStatement {}

impl StaticStatement {
    /// Prepares `sql` on the connection `db`.
    ///
    /// # Safety
    /// `db` is a live connection, used by this thread only, and the statement must be dropped before
    /// it is closed.
    unsafe fn prepare(db: NonNull<ffi::sqlite3>, sql: &str) -> rusqlite::Result<Self> {
        let len = c_int::try_from(sql.len()).map_err(|_| too_big("the statement text"))?;
        let mut stmt = std::ptr::null_mut();
        // SAFETY: `db` is live (the contract); `sql` is valid for `len` bytes for the call; SQLite
        // writes the statement (or NULL) into `stmt`.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                db.as_ptr(),
                sql.as_ptr().cast(),
                len,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &raw mut stmt,
                std::ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(error(db, rc));
        }
        // An empty or comment-only text prepares to NULL.
        let stmt = NonNull::new(stmt).ok_or_else(|| {
            rusqlite::Error::SqliteFailure(
                ffi::Error::new(ffi::SQLITE_MISUSE),
                Some("empty statement".into()),
            )
        })?;
        Ok(Self { stmt, db })
    }

    /// Binds the parameters `bind` gives, runs the statement to completion and resets it; returns the
    /// rows it changed. The bound values are borrowed for this call only: the bindings are cleared
    /// before it returns, whatever happens.
    pub(crate) fn execute<'b>(
        &mut self,
        bind: impl FnOnce(&mut Binder<'_, 'b>) -> rusqlite::Result<()>,
    ) -> rusqlite::Result<usize> {
        let mut binder = Binder {
            stmt: self.stmt,
            db: self.db,
            _values: PhantomData,
        };
        let bound = bind(&mut binder);
        // SAFETY: the statement is live (finalized only on drop); stepping, resetting and clearing the
        // bindings of a live statement is always allowed. The bound pointers are valid until the end
        // of this call ('b outlives it), and cleared before it returns.
        unsafe {
            let result = bound.and_then(|()| {
                loop {
                    match ffi::sqlite3_step(self.stmt.as_ptr()) {
                        ffi::SQLITE_ROW => {}
                        ffi::SQLITE_DONE => {
                            let changes = ffi::sqlite3_changes64(self.db.as_ptr());
                            break Ok(usize::try_from(changes).unwrap_or(0));
                        }
                        rc => break Err(error(self.db, rc)),
                    }
                }
            });
            ffi::sqlite3_reset(self.stmt.as_ptr());
            ffi::sqlite3_clear_bindings(self.stmt.as_ptr());
            result
        }
    }
}

impl Drop for StaticStatement {
    fn drop(&mut self) {
        // SAFETY: the statement is live and not used after this; its connection is still open (the
        // contract of `prepare`).
        unsafe {
            ffi::sqlite3_finalize(self.stmt.as_ptr());
        }
    }
}

/// Binds the parameters of one [`StaticStatement::execute`]; every value must live for `'b`.
pub(crate) struct Binder<'s, 'b> {
    stmt: NonNull<ffi::sqlite3_stmt>,
    db: NonNull<ffi::sqlite3>,
    _values: PhantomData<(&'s mut StaticStatement, &'b [u8])>,
}

impl<'b> Binder<'_, 'b> {
    /// Binds text to parameter `i` (from 1) without a copy.
    pub(crate) fn text(&mut self, i: usize, value: &'b str) -> rusqlite::Result<()> {
        self.bytes(i, value.as_bytes(), true)
    }

    /// Binds a blob to parameter `i` (from 1) without a copy.
    pub(crate) fn blob(&mut self, i: usize, value: &'b [u8]) -> rusqlite::Result<()> {
        self.bytes(i, value, false)
    }

    /// Binds an integer to parameter `i` (from 1).
    pub(crate) fn int(&mut self, i: usize, value: i64) -> rusqlite::Result<()> {
        let i = index(i)?;
        // SAFETY: a live statement; an integer is copied.
        self.check(unsafe { ffi::sqlite3_bind_int64(self.stmt.as_ptr(), i, value) })
    }

    /// Binds NULL to parameter `i` (from 1).
    pub(crate) fn null(&mut self, i: usize) -> rusqlite::Result<()> {
        let i = index(i)?;
        // SAFETY: a live statement.
        self.check(unsafe { ffi::sqlite3_bind_null(self.stmt.as_ptr(), i) })
    }

    fn bytes(&mut self, i: usize, value: &'b [u8], text: bool) -> rusqlite::Result<()> {
        let i = index(i)?;
        let len = c_int::try_from(value.len()).map_err(|_| too_big("a bound value"))?;
        // An empty slice's pointer is dangling: give SQLite a real (static) one.
        let ptr = if value.is_empty() {
            c"".as_ptr()
        } else {
            value.as_ptr().cast()
        };
        // SAFETY: a live statement; `ptr` is valid for `len` bytes for 'b, which outlives the
        // `execute` call that clears this binding before returning (SQLITE_STATIC: no copy is made,
        // so SQLite reads it in place until then). Text is UTF-8 (`&str`).
        let rc = unsafe {
            if text {
                ffi::sqlite3_bind_text(self.stmt.as_ptr(), i, ptr, len, ffi::SQLITE_STATIC())
            } else {
                ffi::sqlite3_bind_blob(self.stmt.as_ptr(), i, ptr.cast(), len, ffi::SQLITE_STATIC())
            }
        };
        self.check(rc)
    }

    fn check(&self, rc: c_int) -> rusqlite::Result<()> {
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(error(self.db, rc))
        }
    }
}

fn index(i: usize) -> rusqlite::Result<c_int> {
    c_int::try_from(i).map_err(|_| rusqlite::Error::InvalidParameterCount(i, c_int::MAX as usize))
}

fn too_big(what: &str) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        ffi::Error::new(ffi::SQLITE_TOOBIG),
        Some(format!("{what} is too large for SQLite")),
    )
}

/// The connection's error for result code `rc`, with its message.
fn error(db: NonNull<ffi::sqlite3>, rc: c_int) -> rusqlite::Error {
    // SAFETY: a live connection; the message is a NUL-terminated string SQLite owns until the next
    // call on the connection, copied here at once.
    let (code, message) = unsafe {
        let code = ffi::sqlite3_extended_errcode(db.as_ptr());
        let msg = ffi::sqlite3_errmsg(db.as_ptr());
        let message = if msg.is_null() {
            None
        } else {
            Some(CStr::from_ptr(msg).to_string_lossy().into_owned())
        };
        (code, message)
    };
    // The extended code of the last failing call; `rc` when the connection reports none.
    let code = if code & 0xff == rc & 0xff { code } else { rc };
    rusqlite::Error::SqliteFailure(ffi::Error::new(code), message)
}

/// A connection and statements of its own prepared on it: the statements are finalized before the
/// connection closes, which is what makes [`StaticStatement`] safe to hand out. The connection is
/// reachable only by shared reference (and by the transactions [`Self::transaction`] opens), so it
/// cannot be swapped for another under the statements.
pub(crate) struct OwnedStatements {
    /// Declared first: dropped before `conn`.
    statements: Vec<Option<StaticStatement>>,
    conn: Connection,
}

impl OwnedStatements {
    /// Wraps `conn`, with room for `slots` statements, prepared on first use.
    pub(crate) fn new(conn: Connection, slots: usize) -> Self {
        Self {
            statements: std::iter::repeat_with(|| None).take(slots).collect(),
            conn,
        }
    }

    /// The connection.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Opens a transaction, and gives the statements with it.
    pub(crate) fn transaction(
        &mut self,
        behavior: rusqlite::TransactionBehavior,
    ) -> rusqlite::Result<(rusqlite::Transaction<'_>, Statements<'_>)> {
        // SAFETY: only the pointer is read; it stays valid as long as `self.conn` is open.
        let db = NonNull::new(unsafe { self.conn.handle() })
            .ok_or_else(|| too_big("a closed connection"))?;
        let tx = self.conn.transaction_with_behavior(behavior)?;
        Ok((
            tx,
            Statements {
                statements: &mut self.statements,
                db,
            },
        ))
    }
}

/// The statements of an [`OwnedStatements`] while one of its transactions is open.
pub(crate) struct Statements<'a> {
    statements: &'a mut Vec<Option<StaticStatement>>,
    /// The owner's connection.
    db: NonNull<ffi::sqlite3>,
}

impl Statements<'_> {
    /// The statement in `slot`, prepared from `sql` the first time.
    ///
    /// # Panics
    /// When `slot` is not below the `slots` given to [`OwnedStatements::new`] (a bug of the caller).
    pub(crate) fn get(&mut self, slot: usize, sql: &str) -> rusqlite::Result<&mut StaticStatement> {
        let entry = &mut self.statements[slot];
        if let Some(st) = entry {
            return Ok(st);
        }
        // SAFETY: `db` is the connection of the `OwnedStatements` this borrows (open while it
        // lives), used by its thread only, and the statement is stored in that owner, which drops its
        // statements before its connection.
        let st = unsafe { StaticStatement::prepare(self.db, sql)? };
        Ok(entry.insert(st))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT, c BLOB, d TEXT UNIQUE)")
            .unwrap();
        c
    }

    #[test]
    fn values_are_stored_as_bound_and_the_statement_runs_again() {
        let c = conn();
        let mut owned = OwnedStatements::new(c, 1);
        let (tx, mut sts) = owned
            .transaction(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        let st = sts.get(0, "INSERT INTO t VALUES (?, ?, ?, ?)").unwrap();
        for i in 0..3 {
            let text = format!("text {i} é");
            let blob = vec![u8::try_from(i).unwrap(), 0, 255];
            let n = st
                .execute(|b| {
                    b.int(1, i)?;
                    b.text(2, &text)?;
                    b.blob(3, &blob)?;
                    match i {
                        0 => b.text(4, "zero"),
                        1 => b.null(4),
                        _ => b.text(4, ""),
                    }
                })
                .unwrap();
            assert_eq!(n, 1);
        }
        tx.commit().unwrap();
        let rows: Vec<(i64, String, Vec<u8>, Option<String>)> = owned
            .conn()
            .prepare("SELECT a, b, c, d FROM t ORDER BY a")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1], (1, "text 1 é".into(), vec![1, 0, 255], None));
        assert_eq!(rows[2].3.as_deref(), Some(""));
    }

    #[test]
    fn a_failing_statement_names_the_error_and_is_usable_after() {
        let c = conn();
        let mut owned = OwnedStatements::new(c, 2);
        let (_tx, mut sts) = owned
            .transaction(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        let st = sts.get(0, "INSERT INTO t (a, d) VALUES (?, ?)").unwrap();
        st.execute(|b| {
            b.int(1, 1)?;
            b.text(2, "same")
        })
        .unwrap();
        let err = st
            .execute(|b| {
                b.int(1, 2)?;
                b.text(2, "same")
            })
            .unwrap_err();
        assert_eq!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation)
        );
        assert!(
            err.to_string().contains("UNIQUE constraint failed: t.d"),
            "{err}"
        );
        // A parameter out of range is an error too, not a crash.
        let err = st.execute(|b| b.int(3, 0)).unwrap_err();
        assert!(err.to_string().contains("range"), "{err}");
        assert_eq!(
            st.execute(|b| {
                b.int(1, 2)?;
                b.text(2, "other")
            })
            .unwrap(),
            1
        );
        // An unknown table is refused when preparing.
        let err = sts.get(1, "INSERT INTO nope VALUES (1)").err().unwrap();
        assert!(err.to_string().contains("no such table: nope"), "{err}");
    }
}
