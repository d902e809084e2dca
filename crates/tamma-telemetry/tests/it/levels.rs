//! Levels change at runtime, globally (level, directives) and per output, without losing lines.

use std::time::Duration;

use tamma_telemetry::{Error, FileOutputConfig, Level, LoggingConfig, OutputConfig};

fn messages(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["message"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn file(name: &str, level: Option<Level>) -> OutputConfig {
    OutputConfig::File(FileOutputConfig {
        name: Some(name.into()),
        path: format!("{name}.log"),
        level,
        ..FileOutputConfig::default()
    })
}

#[test]
fn global_and_per_output_levels_change_at_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let mut logging = LoggingConfig {
        outputs: vec![file("all", None), file("warn", Some(Level::Warn))],
        ..LoggingConfig::default()
    };
    let t = crate::builder(&logging, dir.path()).build().unwrap();
    let h = t.handle().clone();
    // Changes are made inside the scope: with a scoped (test) dispatcher, tracing rebuilds the
    // callsite interest against the current thread's default dispatcher.
    tracing::dispatcher::with_default(t.dispatch(), || {
        let emit = |tag: &str| {
            tracing::debug!("{tag} debug");
            tracing::info!("{tag} info");
            tracing::warn!("{tag} warn");
            tracing::debug!(target: "special", "{tag} special debug");
        };
        emit("a");
        h.set_level(Level::Debug).unwrap();
        emit("b");
        h.set_level(Level::Info).unwrap();
        h.set_output_level("warn", Some(Level::Info)).unwrap();
        emit("c");
        h.set_directives(vec!["special=debug".into()]).unwrap();
        emit("d");
        logging.level = Level::Warn;
        logging.directives.clear();
        logging.outputs = vec![file("all", None), file("warn", Some(Level::Error))];
        let applied = h.apply(&logging).unwrap();
        assert!(applied.restart_required.is_empty(), "{applied:?}");
        emit("e");
    });
    assert!(matches!(
        h.set_output_level("nope", None),
        Err(Error::UnknownOutput(_))
    ));
    assert!(matches!(
        h.set_directives(vec!["x=loud".into()]),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(h.shutdown(Duration::from_secs(5)).is_clean());

    assert_eq!(
        messages(&dir.path().join("all.log")),
        [
            "a info",
            "a warn",
            "b debug",
            "b info",
            "b warn",
            "b special debug",
            "c info",
            "c warn",
            "d info",
            "d warn",
            "d special debug",
            "e warn",
        ]
    );
    assert_eq!(
        messages(&dir.path().join("warn.log")),
        ["a warn", "b warn", "c info", "c warn", "d info", "d warn"]
    );
}

#[test]
fn a_full_queue_drops_newest_and_reports_it_later() {
    let dir = tempfile::tempdir().unwrap();
    // /dev/full never succeeds quickly enough to matter; use a tiny queue on a real file instead and
    // emit a burst far larger than it.
    let logging = LoggingConfig {
        outputs: vec![OutputConfig::File(FileOutputConfig {
            path: "burst.log".into(),
            capacity: 4,
            ..FileOutputConfig::default()
        })],
        ..LoggingConfig::default()
    };
    let t = crate::builder(&logging, dir.path()).build().unwrap();
    tracing::dispatcher::with_default(t.dispatch(), || {
        for i in 0..20_000 {
            tracing::info!(i, "burst");
        }
        std::thread::sleep(Duration::from_millis(100));
        tracing::info!("after the burst");
    });
    let h = t.handle();
    h.shutdown(Duration::from_secs(5));
    let health = &h.output_health()[0];
    assert!(health.dropped > 0, "{health:?}");
    let text = std::fs::read_to_string(dir.path().join("burst.log")).unwrap();
    let reported: u64 = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["message"] == "log lines dropped: output queue full")
        .map(|v| v["meta"]["dropped"].as_u64().unwrap())
        .sum();
    assert_eq!(
        reported, health.dropped,
        "every drop is reported in a later line"
    );
    let written = text.lines().filter(|l| l.contains("\"burst\"")).count() as u64;
    assert_eq!(written + health.dropped, 20_000);
}
