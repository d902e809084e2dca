//! The store in a hostile environment: a full disk, a file it may not write, two openers of one new
//! file at the same moment.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};

use futures::TryStreamExt;
use tamma_core::{Check, CheckStatus};
use tamma_events::{Event, EventStore, Query, ReadOptions, StoreCheck};
use tamma_events_sqlite::{Error, SqliteOptions, SqliteStore};

/// A tmpfs of its own, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (`mount -t tmpfs -o size=…`); `None` when this machine does not let the
    /// tests mount one (not root) and CI is not set — under `CI=true` that fails the test instead.
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        let refused = match out {
            Ok(o) if o.status.success() => return Some(Self { dir }),
            Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(e) => e.to_string(),
        };
        #[allow(clippy::disallowed_methods)] // Tests decide how loudly a missing facility fails.
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "cannot mount a tmpfs for the disk-full test: {refused} (run the tests as root)"
        );
        eprintln!("SKIPPED: cannot mount a tmpfs for the disk-full test: {refused}");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Events of about 1 KiB each.
fn batch(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            Event::new("DISK.FILLED")
                .tag("fill")
                .data(serde_json::json!({"i": i, "pad": "x".repeat(1000)}))
        })
        .collect()
}

async fn positions(store: &SqliteStore) -> Vec<u64> {
    store
        .read(Query::all(), ReadOptions::forwards())
        .map_ok(|e| e.position)
        .try_collect()
        .await
        .expect("read")
}

/// With the disk full, an append is refused as `unavailable` (retry later), naming the file and the
/// full disk; nothing acknowledged is lost and reads go on; once space is freed the next append
/// succeeds without reopening, and a reopened store holds every acknowledged event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_appends_clearly_and_recovers_when_space_is_freed() {
    let Some(disk) = SmallDisk::mount("6m") else {
        return;
    };
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![7u8; 3 << 20]).expect("filler");
    let path = disk.path().join("events.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).expect("open");
    let mut acknowledged = 0u64;
    let err = loop {
        match store.append(batch(50), None).await {
            Ok(r) => {
                acknowledged += 50;
                assert_eq!(r.last_position(), acknowledged);
            }
            Err(e) => break e,
        }
        assert!(acknowledged < 100_000, "the disk never filled");
    };
    assert!(acknowledged > 0, "nothing fitted before the disk was full");
    assert_eq!(err.category(), "unavailable", "{err}");
    assert!(err.is_transient(), "{err}");
    let text = err.to_string();
    assert!(text.contains("is full"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    // Still full: refused again, reads unaffected; the health check says why appends fail.
    assert!(store.append(batch(50), None).await.is_err());
    let check = StoreCheck::new(Arc::new(store.clone()));
    let r = check.check().await;
    assert_eq!(r.status, CheckStatus::Degraded, "{r:?}");
    let said = r.output.clone().unwrap_or_default();
    assert!(
        said.contains("last commit failed") && said.contains("full"),
        "{said}"
    );
    assert_eq!(store.head().await.expect("head"), acknowledged);
    assert_eq!(
        positions(&store).await,
        (1..=acknowledged).collect::<Vec<_>>()
    );
    std::fs::remove_file(&filler).expect("free space");
    let r = store
        .append(batch(50), None)
        .await
        .expect("append after freeing");
    assert_eq!(r.positions.first(), Some(&(acknowledged + 1)));
    assert_eq!(check.check().await.status, CheckStatus::Healthy);
    drop(check);
    drop(store);
    let store = SqliteStore::open(&path, SqliteOptions::default()).expect("reopen");
    assert_eq!(
        positions(&store).await,
        (1..=acknowledged + 50).collect::<Vec<_>>()
    );
}

/// Makes `file` unwritable for this process, even as root (the permission bits, then the immutable
/// attribute when the bits are not enough); undone when dropped.
struct Unwritable {
    file: PathBuf,
    immutable: bool,
}

impl Unwritable {
    fn make(file: &Path) -> Self {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o444)).expect("chmod");
        let writable = std::fs::OpenOptions::new().write(true).open(file).is_ok();
        if writable {
            let ok = Command::new("chattr")
                .arg("+i")
                .arg(file)
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "root writes a 0444 file and `chattr +i` failed on {}",
                file.display()
            );
        }
        Self {
            file: file.to_path_buf(),
            immutable: writable,
        }
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.immutable {
            let _ = Command::new("chattr").arg("-i").arg(&self.file).status();
        }
        let _ = std::fs::set_permissions(&self.file, std::fs::Permissions::from_mode(0o644));
    }
}

/// A database file the store may not write is refused when the store opens, naming the file and what
/// to check — not opened read-only to fail every append later; once writable it opens with its events.
#[tokio::test]
async fn a_file_the_store_may_not_write_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).expect("open");
    store
        .append(vec![Event::new("A")], None)
        .await
        .expect("append");
    drop(store);
    let guard = Unwritable::make(&path);
    let err = SqliteStore::open(&path, SqliteOptions::default())
        .err()
        .expect("an unwritable store must not open");
    assert!(matches!(err, Error::ReadOnly { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("read-only"), "{text}");
    drop(guard);
    let store = SqliteStore::open(&path, SqliteOptions::default()).expect("writable again");
    assert_eq!(store.head().await.expect("head"), 1);
}

/// Two openers of one new file at the same moment (two processes starting on one data directory) both
/// open it: the switch to WAL waits for the other's lock, and only one of them creates the schema.
#[test]
fn two_openers_of_a_new_file_at_once_both_open() {
    for round in 0..30 {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = Arc::new(dir.path().join("events.db"));
        let start = Arc::new(Barrier::new(2));
        let openers: Vec<_> = (0..2)
            .map(|_| {
                let (path, start) = (path.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    SqliteStore::open(&*path, SqliteOptions::default())
                })
            })
            .collect();
        let stores: Vec<SqliteStore> = openers
            .into_iter()
            .map(|t| {
                t.join()
                    .expect("opener thread")
                    .unwrap_or_else(|e| panic!("round {round}: {e}"))
            })
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let a = stores[0].append(vec![Event::new("A")], None).await;
            let b = stores[1].append(vec![Event::new("B")], None).await;
            let mut got = vec![
                a.expect("append through the first").last_position(),
                b.expect("append through the second").last_position(),
            ];
            got.sort_unstable();
            assert_eq!(got, vec![1, 2], "round {round}");
        });
    }
}
