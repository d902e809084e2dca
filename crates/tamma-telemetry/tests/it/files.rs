//! File output: rotation on a real directory, gzip of rotated files, a full disk.

use std::io::Read;
use std::time::Duration;

use tamma_core::ByteSize;
use tamma_telemetry::{FileOutputConfig, LoggingConfig, OutputConfig};

fn file_output(path: &str, max_size: Option<ByteSize>, max_files: u32) -> OutputConfig {
    OutputConfig::File(FileOutputConfig {
        path: path.into(),
        max_size,
        max_files: Some(max_files),
        compress: Some(true),
        ..FileOutputConfig::default()
    })
}

fn seqs(text: &str) -> Vec<u64> {
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("each line is JSON"))
        .filter(|v| v["message"] == "rotation test line")
        .map(|v| v["meta"]["seq"].as_u64().expect("seq"))
        .collect()
}

#[test]
fn rotates_by_size_keeps_max_files_and_gzips_them() {
    let dir = tempfile::tempdir().unwrap();
    let logging = LoggingConfig {
        outputs: vec![file_output("logs/app.log", Some(ByteSize::new(4000)), 3)],
        ..LoggingConfig::default()
    };
    let t = crate::builder(&logging, dir.path()).build().unwrap();
    tracing::dispatcher::with_default(t.dispatch(), || {
        for seq in 0..200u64 {
            tracing::info!(seq, padding = "x".repeat(100), "rotation test line");
        }
    });
    assert!(t.handle().shutdown(Duration::from_secs(10)).is_clean());

    let logs = dir.path().join("logs");
    let mut names: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["app.log", "app.log.1.gz", "app.log.2.gz", "app.log.3.gz"]
    );

    // Oldest first: .3, .2, .1, active; each within the size limit; sequence numbers contiguous.
    let mut all = Vec::new();
    for n in [3, 2, 1] {
        let mut text = String::new();
        let f = std::fs::File::open(logs.join(format!("app.log.{n}.gz"))).unwrap();
        flate2::read::GzDecoder::new(f)
            .read_to_string(&mut text)
            .unwrap();
        assert!(
            text.len() <= 4000,
            "rotated file {n} has {} bytes",
            text.len()
        );
        assert!(!text.is_empty());
        all.extend(seqs(&text));
    }
    let active = std::fs::read_to_string(logs.join("app.log")).unwrap();
    assert!(active.len() <= 4000);
    all.extend(seqs(&active));
    assert_eq!(*all.last().unwrap(), 199);
    let first = all[0];
    assert!(first > 0, "older files must have been deleted");
    assert_eq!(all, (first..200).collect::<Vec<_>>());
}

#[test]
fn a_full_disk_surfaces_in_health_and_the_process_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    // /dev/full accepts opens and fails every write with ENOSPC.
    let logging = LoggingConfig {
        outputs: vec![
            file_output("/dev/full", None, 1),
            file_output("ok.log", None, 1),
        ],
        ..LoggingConfig::default()
    };
    let t = crate::builder(&logging, dir.path()).build().unwrap();
    let h = t.handle().clone();
    tracing::dispatcher::with_default(t.dispatch(), || {
        for i in 0..20 {
            tracing::warn!(i, "written while the disk is full");
        }
    });
    assert!(crate::wait_until(Duration::from_secs(5), || h
        .output_health()[0]
        .errors
        > 0));
    let health = h.output_health();
    assert_eq!(health[0].name, "file");
    assert!(health[0].failing);
    assert!(
        health[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("No space left"),
        "{health:?}"
    );
    // The other output is unaffected.
    assert_eq!(health[1].name, "file#2");
    let checks = h.checks();
    let rt = crate::runtime();
    let r = rt.block_on(checks[0].check());
    assert_eq!(checks[0].name(), "logging:file");
    assert_eq!(r.status, tamma_core::CheckStatus::Unhealthy);
    let report = h.shutdown(Duration::from_secs(5));
    assert!(report.undelivered["file"] > 0);
    assert_eq!(report.undelivered["file#2"], 0);
    let ok = std::fs::read_to_string(dir.path().join("ok.log")).unwrap();
    assert_eq!(ok.lines().count(), 20);
}
