//! A SQLite VFS that gathers the writes to a WAL file into one `pwrite` per commit.
//!
//! SQLite writes each WAL frame as two `pwrite` calls (a 24-byte header, then the page), so a commit of
//! 20 pages makes 40 system calls, each 4,120-byte frame straddling two file pages: the kernel's
//! per-call and per-partial-page work was a third of the writer thread's time in 100-event appends.
//! This VFS is the default (`unix`) VFS with one difference: writes to a WAL file that continue the
//! previous one are kept in a buffer, and the buffer is written (one `pwrite`) before anything that
//! could observe the file: a sync, a read, a size query, a truncation, a file control, or closing.
//!
//! Durability is unchanged: SQLite syncs the WAL before a commit counts (`synchronous=FULL`), and the
//! buffer is written before that sync. A process killed with writes still buffered loses only frames
//! of a commit that was never synced nor acknowledged, which SQLite's WAL recovery discards anyway
//! (frame checksums), as it discards a commit cut off halfway through its `pwrite`s.
//!
//! Only WAL files are wrapped; the database file, its shared memory and every other file are the
//! default VFS's own, so connections using the default VFS (other processes, the readers) share the
//! file and its locks as usual.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rusqlite::ffi;

/// The name this VFS is registered under.
pub(crate) const NAME: &str = "tamma-wal-buffer";
const NAME_C: &CStr = c"tamma-wal-buffer";

/// Buffered bytes after which the buffer is passed on before the next write.
const MAX_BUFFER: usize = 4 << 20;

/// Most bytes passed to the default VFS in one write: its `unixWrite` takes at most 128 KiB - 1 per
/// call (it masks the length to 17 bits).
const WRITE_CHUNK: usize = 64 << 10;

/// Registers the VFS (once per process); `Err` when SQLite has no default VFS or refuses it.
pub(crate) fn register() -> Result<(), c_int> {
    static REGISTERED: OnceLock<Result<(), c_int>> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        // SAFETY: `sqlite3_vfs_find(NULL)` returns the default VFS or NULL; a registered VFS lives for
        // the process. The copy we register is leaked, so it lives for the process too.
        unsafe {
            let real = ffi::sqlite3_vfs_find(std::ptr::null());
            if real.is_null() {
                return Err(ffi::SQLITE_ERROR);
            }
            REAL.set(Real(real)).map_err(|_| ffi::SQLITE_MISUSE)?;
            let mut vfs: ffi::sqlite3_vfs = std::ptr::read(real);
            let real_size = usize::try_from((*real).szOsFile).map_err(|_| ffi::SQLITE_ERROR)?;
            vfs.szOsFile =
                c_int::try_from(WAL_FILE_SIZE + real_size).map_err(|_| ffi::SQLITE_ERROR)?;
            vfs.zName = NAME_C.as_ptr();
            vfs.pNext = std::ptr::null_mut();
            vfs.xOpen = Some(open);
            let rc = ffi::sqlite3_vfs_register(Box::into_raw(Box::new(vfs)), 0);
            if rc == ffi::SQLITE_OK {
                Ok(())
            } else {
                Err(rc)
            }
        }
    })
}

/// The default VFS, wrapped.
struct Real(*mut ffi::sqlite3_vfs);
// SAFETY: a registered VFS is immutable and shared by every thread (SQLite's own contract).
unsafe impl Send for Real {}
// SAFETY: as above.
unsafe impl Sync for Real {}
static REAL: OnceLock<Real> = OnceLock::new();

/// A WAL file: SQLite's `sqlite3_file` header, then our state, then the default VFS's file.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// Bytes written but not yet passed on, starting at file offset `at`.
    pending: Vec<u8>,
    at: i64,
}

/// Our part of a WAL file's allocation, rounded up so the default VFS's file that follows is aligned.
const WAL_FILE_SIZE: usize = std::mem::size_of::<WalFile>().next_multiple_of(16);

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let Some(Real(real)) = REAL.get() else {
        return ffi::SQLITE_ERROR;
    };
    // SAFETY: SQLite hands us `szOsFile` bytes at `file` (our size plus the default VFS's) and calls
    // the default VFS's `xOpen` contract on it: we either open the default file in place (not a WAL)
    // or after our header (a WAL), and set `pMethods` only when the open succeeded.
    unsafe {
        let Some(real_open) = (**real).xOpen else {
            return ffi::SQLITE_ERROR;
        };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return real_open(*real, name, file, flags, out_flags);
        }
        let wal = file.cast::<WalFile>();
        let inner = file
            .cast::<u8>()
            .add(WAL_FILE_SIZE)
            .cast::<ffi::sqlite3_file>();
        (*wal).base.pMethods = std::ptr::null();
        let rc = real_open(*real, name, inner, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            // The default VFS may have set its methods even on failure: SQLite then calls `xClose`
            // on `file`, which must reach it.
            if !(*inner).pMethods.is_null()
                && let Some(c) = (*(*inner).pMethods).xClose
            {
                c(inner);
            }
            return rc;
        }
        std::ptr::addr_of_mut!((*wal).real).write(inner);
        std::ptr::addr_of_mut!((*wal).pending).write(Vec::new());
        std::ptr::addr_of_mut!((*wal).at).write(0);
        (*wal).base.pMethods = &raw const WAL_METHODS;
        rc
    }
}

/// The WAL file behind `file`.
///
/// # Safety
/// `file` is a file `open` set `WAL_METHODS` on, not yet closed, used by one thread at a time (SQLite
/// never uses one connection's file from two threads at once).
unsafe fn wal<'a>(file: *mut ffi::sqlite3_file) -> &'a mut WalFile {
    // SAFETY: per this function's contract.
    unsafe { &mut *file.cast::<WalFile>() }
}

/// The default VFS's methods of the wrapped file.
///
/// # Safety
/// As [`wal`].
unsafe fn methods(w: &WalFile) -> &ffi::sqlite3_io_methods {
    // SAFETY: the default VFS set its methods when `open` succeeded; they live for the process.
    unsafe { &*(*w.real).pMethods }
}

/// Passes the buffered bytes on.
///
/// # Safety
/// As [`wal`].
unsafe fn flush(w: &mut WalFile) -> c_int {
    if w.pending.is_empty() {
        return ffi::SQLITE_OK;
    }
    // SAFETY: as `wal`; each chunk is at most WRITE_CHUNK bytes of the buffer.
    unsafe {
        let Some(x) = methods(w).xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let mut at = w.at;
        for chunk in w.pending.chunks(WRITE_CHUNK) {
            let Ok(n) = c_int::try_from(chunk.len()) else {
                return ffi::SQLITE_IOERR_WRITE;
            };
            let rc = x(w.real, chunk.as_ptr().cast::<c_void>(), n, at);
            if rc != ffi::SQLITE_OK {
                w.pending.clear();
                return rc;
            }
            at += i64::from(n);
        }
        w.pending.clear();
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file once; after this nothing touches it, and the buffer is dropped here.
    unsafe {
        let w = wal(file);
        let flushed = flush(w);
        let closed = methods(w).xClose.map_or(ffi::SQLITE_OK, |c| c(w.real));
        std::ptr::drop_in_place(&raw mut w.pending);
        if flushed == ffi::SQLITE_OK {
            closed
        } else {
            flushed
        }
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: `buf` holds `amount` bytes (SQLite's contract); the rest as `wal`.
    unsafe {
        let w = wal(file);
        let Ok(len) = usize::try_from(amount) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let end = i64::try_from(w.pending.len()).map_or(-1, |n| w.at + n);
        if w.pending.is_empty() || offset != end || w.pending.len() >= MAX_BUFFER {
            let rc = flush(w);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            w.at = offset;
        }
        w.pending
            .extend_from_slice(std::slice::from_raw_parts(buf.cast::<u8>(), len));
        ffi::SQLITE_OK
    }
}

/// Passes the buffer on, then calls `f` with the default VFS's methods and file (the methods that
/// observe the file: read, size, truncate, sync, file control).
///
/// # Safety
/// As [`wal`].
unsafe fn flushed(
    file: *mut ffi::sqlite3_file,
    f: impl FnOnce(&ffi::sqlite3_io_methods, *mut ffi::sqlite3_file) -> c_int,
) -> c_int {
    // SAFETY: as `wal`.
    unsafe {
        let w = wal(file);
        let rc = flush(w);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        f(methods(w), w.real)
    }
}

/// Calls `f` with the default VFS's methods and file (the methods the buffer does not concern).
///
/// # Safety
/// As [`wal`].
unsafe fn passed(
    file: *mut ffi::sqlite3_file,
    f: impl FnOnce(&ffi::sqlite3_io_methods, *mut ffi::sqlite3_file) -> c_int,
) -> c_int {
    // SAFETY: as `wal`.
    unsafe {
        let w = wal(file);
        f(methods(w), w.real)
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: `file` is a WAL file of ours (SQLite calls these methods only on files `open` set them
    // on); `buf` holds `amount` bytes (SQLite's contract for `xRead`).
    unsafe {
        flushed(file, |m, real| {
            m.xRead
                .map_or(ffi::SQLITE_IOERR_READ, |x| x(real, buf, amount, offset))
        })
    }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: as in `read`.
    unsafe {
        flushed(file, |m, real| {
            m.xTruncate
                .map_or(ffi::SQLITE_IOERR_TRUNCATE, |x| x(real, size))
        })
    }
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: as in `read`.
    unsafe {
        flushed(file, |m, real| {
            let Some(x) = m.xSync else {
                return ffi::SQLITE_IOERR_FSYNC;
            };
            let started = Instant::now();
            let rc = x(real, flags);
            let took = started.elapsed();
            SYNCS.with(|s| {
                let (n, t) = s.get();
                s.set((n + 1, t + took));
            });
            metrics::histogram!(tamma_core::metric_names::EVENTS_WAL_SYNC_SECONDS)
                .record(took.as_secs_f64());
            rc
        })
    }
}

thread_local! {
    /// Syncs of WAL files made on this thread, and their time (the writer thread takes them after
    /// each commit: a connection's files are only used by the thread running its statements).
    static SYNCS: Cell<(u64, Duration)> = const { Cell::new((0, Duration::ZERO)) };
}

/// The syncs of WAL files this thread made since the last call, and their total time.
pub(crate) fn take_syncs() -> (u64, Duration) {
    SYNCS.with(|s| s.replace((0, Duration::ZERO)))
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: as in `read`; `size` is SQLite's out-parameter.
    unsafe {
        flushed(file, |m, real| {
            m.xFileSize
                .map_or(ffi::SQLITE_IOERR_FSTAT, |x| x(real, size))
        })
    }
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: as in `read`; `arg` is what SQLite passes for `op`.
    unsafe {
        flushed(file, |m, real| {
            m.xFileControl
                .map_or(ffi::SQLITE_NOTFOUND, |x| x(real, op, arg))
        })
    }
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: as in `read`.
    unsafe {
        passed(file, |m, real| {
            m.xLock.map_or(ffi::SQLITE_OK, |x| x(real, level))
        })
    }
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: as in `read`.
    unsafe {
        passed(file, |m, real| {
            m.xUnlock.map_or(ffi::SQLITE_OK, |x| x(real, level))
        })
    }
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: as in `read`; `out` is SQLite's out-parameter.
    unsafe {
        passed(file, |m, real| {
            m.xCheckReservedLock
                .map_or(ffi::SQLITE_OK, |x| x(real, out))
        })
    }
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: as in `read`.
    unsafe { passed(file, |m, real| m.xSectorSize.map_or(4096, |x| x(real))) }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: as in `read`.
    unsafe {
        passed(file, |m, real| {
            m.xDeviceCharacteristics.map_or(0, |x| x(real))
        })
    }
}
