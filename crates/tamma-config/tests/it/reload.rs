//! Hot reload on a real file: applied and notified, rolled back when invalid, atomic renames seen.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tamma_config::{ConfigCheck, ConfigManager, ReloadEvent};
use tamma_core::{Check, CheckStatus};

use crate::fixture::Root;

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn atomic_write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn reload_applies_valid_changes_and_keeps_old_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tamma.toml");
    std::fs::write(&path, "[logging]\nlevel = \"info\"\n").unwrap();
    let c = ConfigManager::<Root>::builder()
        .file(Some(path.clone()))
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    let _guard = c
        .watch("logging", move |ch| {
            s2.lock()
                .push((ch.changed.clone(), ch.new["level"].clone()));
        })
        .unwrap();
    let unrelated = Arc::new(AtomicUsize::new(0));
    let u2 = Arc::clone(&unrelated);
    let _g2 = c.watch("monitoring", move |_| {
        u2.fetch_add(1, Ordering::SeqCst);
    });
    let events = Arc::new(Mutex::new(Vec::new()));
    let e2 = Arc::clone(&events);
    let _g3 = c.on_reload(move |e| e2.lock().push(matches!(e, ReloadEvent::Applied { .. })));
    let _w = c.watch_file(Duration::from_millis(100)).unwrap();

    std::fs::write(&path, "[logging]\nlevel = \"debug\"\n").unwrap();
    wait_for("the change", || c.current().logging.level == "debug");
    wait_for("the watcher", || !seen.lock().is_empty());
    assert_eq!(
        seen.lock()[0],
        (vec!["logging.level".to_owned()], serde_json::json!("debug"))
    );
    assert_eq!(unrelated.load(Ordering::SeqCst), 0);

    // Invalid: old config kept, status and check degraded.
    std::fs::write(&path, "[logging]\nlevel = \"debug\"\nbogus = 1\n").unwrap();
    wait_for("the failure", || c.reload_status().failures >= 1);
    assert_eq!(c.current().logging.level, "debug");
    let st = c.reload_status();
    assert!(
        st.last_error.as_ref().unwrap()[0].contains("logging.bogus: unknown key"),
        "{st:?}"
    );
    let check = ConfigCheck::new(c.clone());
    let r = futures_lite_block(check.check());
    assert_eq!(r.status, CheckStatus::Degraded);

    // Fixed with an editor-style atomic rename.
    atomic_write(&path, "[logging]\nlevel = \"warn\"\n");
    wait_for("the atomic save", || c.current().logging.level == "warn");
    assert!(c.reload_status().last_error.is_none());
    assert_eq!(
        futures_lite_block(check.check()).status,
        CheckStatus::Healthy
    );
    assert!(events.lock().contains(&false) && events.lock().contains(&true));
}

/// A manager over a file holding `first`, after the file was saved as `second` and reloaded.
fn reloaded(first: &str, second: &str) -> (ConfigManager<Root>, tamma_config::Result<Vec<String>>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tamma.toml");
    std::fs::write(&path, first).unwrap();
    let c = ConfigManager::<Root>::builder()
        .file(Some(path.clone()))
        .build()
        .unwrap();
    std::fs::write(&path, second).unwrap();
    let reload = c.reload();
    (c, reload)
}

#[test]
fn restart_required_fields_are_not_half_applied() {
    let (c, reload) = reloaded(
        "dataDir = \"/a\"\n",
        "dataDir = \"/b\"\n[logging]\nlevel = \"debug\"\n",
    );
    reload.unwrap();
    assert_eq!(c.current().data_dir, "/a");
    assert_eq!(c.current().logging.level, "debug");
    assert_eq!(c.reload_status().restart_required, ["dataDir"]);
}

#[test]
fn a_bad_value_of_a_restart_only_key_is_refused_not_deferred() {
    // A wrong type for the restart-only key, beside a valid live change: the whole reload is refused,
    // as it would be at the next start.
    let (c, reload) = reloaded(
        "dataDir = \"/a\"\n",
        "dataDir = 5\n[logging]\nlevel = \"debug\"\n",
    );
    let err = reload.unwrap_err().to_string();
    assert!(err.contains("dataDir"), "{err}");
    assert_eq!(c.current().logging.level, "info");
    let status = c.reload_status();
    assert_eq!(status.failures, 1);
    assert!(status.restart_required.is_empty(), "{status:?}");
    assert!(
        status
            .last_error
            .is_some_and(|e| e.iter().any(|p| p.contains("dataDir")))
    );
}

#[test]
fn unsubscribe_by_drop_and_by_handle() {
    let c = ConfigManager::<Root>::builder().build().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    let guard = c
        .watch("", move |_| {
            h.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    c.set("logging.level", serde_json::json!("debug")).unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    guard.unsubscribe();
    c.set("logging.level", serde_json::json!("warn")).unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}
