//! Online backup of the store file: a consistent copy taken while a node keeps appending; and restore,
//! which puts a copy in place of a store no process has open.
//!
//! SQLite's backup API copies the pages of one read snapshot: every event committed (and so every
//! event acknowledged) before the copy began is in it, none half-written, and the node's writer is
//! never blocked (in WAL mode a reader and the writer run side by side). The copy is written to a
//! temporary file beside the destination, checked (`PRAGMA quick_check`, the head read back), synced,
//! and only then renamed into place: a backup that exists is whole.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::schema::{self, SCHEMA_VERSION};

/// How long the backup waits for a lock another connection holds (a node's checkpoint, say).
const PATIENCE: Duration = Duration::from_secs(10);

/// What a finished backup holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupReport {
    /// The store copied.
    pub source: PathBuf,
    /// The file written.
    pub dest: PathBuf,
    /// The head of the copy: every position up to it that retention kept is in it.
    pub head: u64,
    /// The events in the copy.
    pub events: u64,
    /// The size of the copy in bytes.
    pub bytes: u64,
    /// How long the copy and its check took.
    pub took: Duration,
}

/// Why a backup was not made. Nothing is left at the destination when one fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The source does not exist.
    #[error("there is no event store at {0}")]
    NoStore(PathBuf),
    /// The destination exists: a backup never overwrites a file.
    #[error("{0} exists already; a backup is only written to a new file")]
    Exists(PathBuf),
    /// The source is a file SQLite cannot read, or a database without Tamma's tables.
    #[error("{path} is not a Tamma event store: {why}")]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The source was written by a newer Tamma.
    #[error(
        "the event store at {path} has schema version {found}; this Tamma knows up to {supported}"
    )]
    SchemaTooNew {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// Reading the source failed.
    #[error("cannot read the event store at {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// Writing the copy failed (space, permissions, a missing directory).
    #[error("cannot write the backup {path}: {source}")]
    Write {
        /// The destination.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// Syncing or renaming the copy failed.
    #[error("cannot write the backup {path}: {source}")]
    Io {
        /// The destination.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The copy did not pass its check.
    #[error("the copy for {path} failed its check: {detail}")]
    Check {
        /// The destination.
        path: PathBuf,
        /// What the check found.
        detail: String,
    },
    /// A process has the store open: a restore would pull the file from under it.
    #[error(
        "the event store at {0} is open in another process (a running node?); stop it before restoring"
    )]
    InUse(PathBuf),
    /// Another connection held a lock for longer than the backup waits.
    #[error(
        "the event store at {path} stayed locked for {}s; try again",
        PATIENCE.as_secs()
    )]
    Busy {
        /// The file.
        path: PathBuf,
    },
}

/// Copies the store at `source` (an `events.db`, whether a node has it open or not) into the new file
/// `dest`, as of one moment: every event committed before the copy began, and nothing after.
///
/// The copy is one SQLite file (no `-wal` beside it) that any SQLite opens, and that a node uses in
/// place of `events.db` once the node is stopped (restore).
///
/// # Errors
/// [`BackupError`] naming the file and what is wrong; nothing is left at `dest` then.
pub fn backup(source: &Path, dest: &Path) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    if !source.is_file() {
        return Err(BackupError::NoStore(source.to_path_buf()));
    }
    if std::fs::symlink_metadata(dest).is_ok() {
        return Err(BackupError::Exists(dest.to_path_buf()));
    }
    let read = |e| BackupError::Read {
        path: source.to_path_buf(),
        source: e,
    };
    // Read-write without create: opening a WAL database replays its log into the shared index, which a
    // read-only connection cannot do when no other connection has the file open.
    let src = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(read)?;
    src.busy_timeout(PATIENCE).map_err(read)?;
    check_source(&src, source)?;

    let file_name = dest
        .file_name()
        .map_or_else(|| "backup".into(), |n| n.to_string_lossy().into_owned());
    let partial = dest.with_file_name(format!(".{file_name}.partial-{}", std::process::id()));
    let result = copy_and_check(&src, source, &partial, dest);
    if result.is_err() {
        for leftover in [partial.clone(), journal_of(&partial)] {
            let _ = std::fs::remove_file(leftover);
        }
    }
    let (head, events) = result?;
    let io = |e| BackupError::Io {
        path: dest.to_path_buf(),
        source: e,
    };
    if std::fs::symlink_metadata(dest).is_ok() {
        let _ = std::fs::remove_file(&partial);
        return Err(BackupError::Exists(dest.to_path_buf()));
    }
    std::fs::rename(&partial, dest).map_err(io)?;
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename is durable once the directory is synced.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    let bytes = std::fs::metadata(dest).map_err(io)?.len();
    Ok(BackupReport {
        source: source.to_path_buf(),
        dest: dest.to_path_buf(),
        head,
        events,
        bytes,
        took: started.elapsed(),
    })
}

/// Creates `path` empty, readable by its owner only (mode `0600`, as the store's directory is
/// `0700`): events may carry personal or secret data. SQLite takes an empty file as an empty database
/// and gives its journal the same mode.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}

/// What a finished restore did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreReport {
    /// The store file now holding the backup's events.
    pub store: PathBuf,
    /// Where the store that was there before went (renamed, not deleted), if there was one.
    pub replaced: Option<PathBuf>,
    /// The head of the restored store.
    pub head: u64,
    /// The events in it.
    pub events: u64,
}

/// Puts the backup `from` in place of the store file `store` (`<dataDir>/events.db`), which no process
/// may have open: the node must be stopped.
///
/// A store already at `store` is closed cleanly first (SQLite folds its WAL into it). The backup is
/// copied beside `store`, synced and checked there (an event store this build reads, `PRAGMA
/// quick_check`); only then is the old store renamed to `<store>.replaced-<UTC time>` (never deleted)
/// and the copy renamed into place, with no `-wal` or `-shm` of the old store left beside it. The
/// backup file itself is only read, as bytes.
///
/// # Errors
/// [`BackupError::InUse`] when a process has the store open; otherwise what is wrong with the backup or
/// the files, naming them. The store is unchanged then.
pub fn restore(from: &Path, store: &Path) -> Result<RestoreReport, BackupError> {
    if !from.is_file() {
        return Err(BackupError::NoStore(from.to_path_buf()));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e| BackupError::Io { path, source: e }
    };
    let dir = store
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tamma_core::fs::create_private_dir(dir).map_err(io(dir))?;
    if store.exists() {
        close_unused(store)?;
    }
    // The backup is copied and checked beside the store before anything of the store moves; the
    // backup file itself is only read as bytes (it may sit on read-only media).
    let name = store
        .file_name()
        .map_or_else(|| "events.db".into(), |n| n.to_string_lossy().into_owned());
    let partial = store.with_file_name(format!(".{name}.restoring-{}", std::process::id()));
    let placed = place(from, &partial, store);
    if placed.is_err() {
        for leftover in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(sibling(&partial, leftover));
        }
    }
    let (head, events) = placed?;
    let replaced = if store.exists() {
        let aside = aside_name(store);
        std::fs::rename(store, &aside).map_err(io(store))?;
        Some(aside)
    } else {
        None
    };
    // Whatever `-wal`/`-shm` is still there belongs to no open store now; SQLite would replay a `-wal`
    // into the restored file.
    for suffix in ["-wal", "-shm"] {
        let side = sibling(store, suffix);
        if side.exists() {
            let target = match &replaced {
                Some(aside) => sibling(aside, suffix),
                None => aside_name(&side),
            };
            std::fs::rename(&side, &target).map_err(io(&side))?;
        }
    }
    std::fs::rename(&partial, store).map_err(io(store))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(RestoreReport {
        store: store.to_path_buf(),
        replaced,
        head,
        events,
    })
}

/// Copies the backup `from` to `partial` (mode `0600`) and syncs it, then checks the copy as the
/// backup it is (errors name `from`): an event store this build reads, `PRAGMA quick_check`. Returns
/// its head and number of events.
fn place(from: &Path, partial: &Path, store: &Path) -> Result<(u64, u64), BackupError> {
    let io = |e| BackupError::Io {
        path: store.to_path_buf(),
        source: e,
    };
    create_private(partial).map_err(io)?;
    std::fs::copy(from, partial).map_err(io)?;
    std::fs::File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    let read = |e| BackupError::Read {
        path: from.to_path_buf(),
        source: e,
    };
    // Read-write: as the only connection it removes the `-wal` and `-shm` it opens with when it closes
    // (a read-only one would leave them beside the file).
    let conn = Connection::open_with_flags(
        partial,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(read)?;
    check_source(&conn, from)?;
    let quick: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(read)?;
    if quick != "ok" {
        return Err(BackupError::Check {
            path: from.to_path_buf(),
            detail: quick,
        });
    }
    let head = schema::head(&conn).map_err(read)?;
    let events: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .map_err(read)?;
    conn.close().map_err(|(_, e)| read(e))?;
    Ok((head, u64::try_from(events).unwrap_or(0)))
}

/// Refuses a store some process has open; otherwise closes it cleanly, which folds its WAL into the
/// file and removes its `-wal` and `-shm`.
///
/// An exclusive lock in exclusive locking mode is refused while any other connection has a WAL store
/// open, even an idle one, so a running node (or a `tamma events backup` in progress) is found.
fn close_unused(store: &Path) -> Result<(), BackupError> {
    let read = |e| BackupError::Read {
        path: store.to_path_buf(),
        source: e,
    };
    let conn = Connection::open_with_flags(
        store,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(read)?;
    // The other connections' locks last as long as they are open: waiting would not help.
    conn.busy_timeout(Duration::from_millis(200))
        .map_err(read)?;
    let locked = conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT;");
    match locked {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ) =>
        {
            return Err(BackupError::InUse(store.to_path_buf()));
        }
        // Not a database any more (a damaged header: what a restore is for): there is nothing to fold
        // in, and the file is kept aside as it is.
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => {}
        Err(e) => return Err(read(e)),
    }
    conn.close().map_err(|(_, e)| read(e))
}

/// `<path>.replaced-<UTC time>`, beside `path`.
fn aside_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(
        ".replaced-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    ));
    PathBuf::from(name)
}

/// `path` with `suffix` appended (`events.db-wal`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// SQLite's rollback journal of `db` (the copy is written in rollback mode, then removed).
fn journal_of(db: &Path) -> PathBuf {
    sibling(db, "-journal")
}

/// Refuses a file that is not an event store this build can read.
fn check_source(src: &Connection, path: &Path) -> Result<(), BackupError> {
    let not_a_store = |why: String| BackupError::NotAStore {
        path: path.to_path_buf(),
        why,
    };
    let tables: i64 = src
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN ('events', 'meta')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| not_a_store(e.to_string()))?;
    if tables != 2 {
        return Err(not_a_store("it has no events table".into()));
    }
    let version: i64 = src
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| not_a_store(e.to_string()))?;
    if version > SCHEMA_VERSION {
        return Err(BackupError::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Copies `src` into `partial` in one step (one snapshot), syncs it and checks it; returns the head
/// and the number of events of the copy.
fn copy_and_check(
    src: &Connection,
    source: &Path,
    partial: &Path,
    dest: &Path,
) -> Result<(u64, u64), BackupError> {
    let write = |e| BackupError::Write {
        path: dest.to_path_buf(),
        source: e,
    };
    create_private(partial).map_err(|e| BackupError::Io {
        path: dest.to_path_buf(),
        source: e,
    })?;
    let mut dst = Connection::open(partial).map_err(write)?;
    {
        let backup = Backup::new(src, &mut dst).map_err(write)?;
        let deadline = Instant::now() + PATIENCE;
        loop {
            // -1: every page in one step, so the copy is one snapshot even while a node appends
            // (smaller steps restart whenever another connection writes, and may never finish).
            match backup.step(-1).map_err(|e| BackupError::Read {
                path: source.to_path_buf(),
                source: e,
            })? {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    return Err(BackupError::Busy {
                        path: source.to_path_buf(),
                    });
                }
            }
        }
    }
    let check = |detail: String| BackupError::Check {
        path: dest.to_path_buf(),
        detail,
    };
    let quick: String = dst
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| check(e.to_string()))?;
    if quick != "ok" {
        return Err(check(quick));
    }
    let head = schema::head(&dst).map_err(|e| check(e.to_string()))?;
    let events: i64 = dst
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .map_err(|e| check(e.to_string()))?;
    dst.close().map_err(|(_, e)| write(e))?;
    std::fs::File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(|e| BackupError::Io {
            path: dest.to_path_buf(),
            source: e,
        })?;
    Ok((head, u64::try_from(events).unwrap_or(0)))
}
