//! Layers and precedence, provenance, secrets.

use std::io::Write as _;

use serde_json::json;
use tamma_config::{CliSetting, ConfigManager, Env, ShortVar, Source, StandardVar};
use tamma_core::ByteSize;

use crate::fixture::{Output, Root};

fn file(ext: &str, text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(ext).tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn defaults_alone() {
    let c = ConfigManager::<Root>::builder().build().unwrap();
    assert_eq!(*c.current().config(), Root::default());
    assert_eq!(
        c.current().provenance().source_of("logging.level"),
        Some(&Source::Default)
    );
}

#[test]
fn precedence_default_file_env_cli() {
    let f = file(
        ".toml",
        "[logging]\nlevel = \"warn\"\n[logging.rotation]\nmaxSize = \"5MiB\"\nmaxFiles = 3\n",
    );
    let env = Env::from_pairs([
        ("TAMMA_LOGGING__ROTATION__MAX_FILES", "7"),
        ("TAMMA_LOGGING__LEVEL", "error"),
    ]);
    let c = ConfigManager::<Root>::builder()
        .file(Some(f.path().to_owned()))
        .env(env)
        .cli(CliSetting::parse_set("logging.level=debug").unwrap())
        .build()
        .unwrap();
    let s = c.current();
    assert_eq!(s.logging.level, "debug");
    assert_eq!(s.logging.rotation.max_files, 7);
    assert_eq!(s.logging.rotation.max_size, ByteSize::mib(5));
    let p = s.provenance();
    assert_eq!(
        p.source_of("logging.level").unwrap().to_string(),
        "cli --set logging.level"
    );
    assert_eq!(
        p.source_of("logging.rotation.maxFiles")
            .unwrap()
            .to_string(),
        "env TAMMA_LOGGING__ROTATION__MAX_FILES"
    );
    assert_eq!(
        p.source_of("logging.rotation.maxSize"),
        Some(&Source::File {
            path: f.path().to_owned()
        })
    );
    assert_eq!(p.source_of("dataDir"), Some(&Source::Default));
}

#[test]
fn yaml_and_json_files() {
    let y = file(
        ".yaml",
        "logging:\n  level: warn\nmonitoring:\n  labels: {region: eu}\n",
    );
    let c = ConfigManager::<Root>::builder()
        .file(Some(y.path().to_owned()))
        .build()
        .unwrap();
    assert_eq!(c.current().logging.level, "warn");
    assert_eq!(c.current().monitoring.labels["region"], "eu");
    let j = file(
        ".json",
        r#"{"logging": {"outputs": [{"type": "file", "config": {"path": "x.log"}}]}}"#,
    );
    let c = ConfigManager::<Root>::builder()
        .file(Some(j.path().to_owned()))
        .build()
        .unwrap();
    assert!(matches!(&c.current().logging.outputs[0], Output::File(f) if f.path == "x.log"));
}

#[test]
fn tamma_config_env_and_default_file_discovery() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tamma.toml"), "mode = \"worker\"\n").unwrap();
    let c = ConfigManager::<Root>::builder()
        .cwd(dir.path())
        .build()
        .unwrap();
    assert_eq!(c.current().mode, crate::fixture::Mode::Worker);
    let other = file(".toml", "mode = \"orchestrator\"\n");
    let env = Env::from_pairs([("TAMMA_CONFIG", other.path().to_str().unwrap())]);
    let c = ConfigManager::<Root>::builder()
        .cwd(dir.path())
        .env(env)
        .build()
        .unwrap();
    assert_eq!(c.current().mode, crate::fixture::Mode::Orchestrator);
}

#[test]
fn relaxed_env_binding_maps_and_short_forms() {
    let env = Env::from_pairs([
        (
            "TAMMA_MONITORING__LABELS",
            r#"{"region":"eu","tier":"gold"}"#,
        ),
        ("TAMMA_LOG_LEVEL", "warn"),
        ("tamma_ignored_lowercase", "x"),
        ("TAMMA_MONITORING__HEALTHCHECKS__INTERVAL", "1m"),
    ]);
    let c = ConfigManager::<Root>::builder()
        .env(env)
        .short_var(ShortVar {
            var: "TAMMA_LOG_LEVEL",
            path: "logging.level",
        })
        .build()
        .unwrap();
    let s = c.current();
    assert_eq!(s.monitoring.labels.len(), 2);
    assert_eq!(s.logging.level, "warn");
    assert_eq!(s.monitoring.health_checks.interval.as_millis(), 60_000);
    assert!(s.warnings().is_empty(), "{:?}", s.warnings());
}

#[test]
fn short_form_loses_to_long_form() {
    let env = Env::from_pairs([
        ("TAMMA_LOG_LEVEL", "warn"),
        ("TAMMA_LOGGING__LEVEL", "error"),
    ]);
    let c = ConfigManager::<Root>::builder()
        .env(env)
        .short_var(ShortVar {
            var: "TAMMA_LOG_LEVEL",
            path: "logging.level",
        })
        .build()
        .unwrap();
    assert_eq!(c.current().logging.level, "error");
}

#[test]
fn unknown_tamma_variable_is_a_warning_naming_the_closest_key() {
    let env = Env::from_pairs([("TAMMA_LOGING__LEVEL", "debug")]);
    let c = ConfigManager::<Root>::builder().env(env).build().unwrap();
    let w = c.current().warnings().join("\n");
    assert!(
        w.contains("TAMMA_LOGING__LEVEL") && w.contains("did you mean logging"),
        "{w}"
    );
}

#[test]
fn standard_variables_lose_to_explicit_settings() {
    fn level(raw: &str) -> Option<serde_json::Value> {
        Some(json!(raw))
    }
    let sv = StandardVar {
        var: "RUST_LOG",
        path: "logging.level",
        map: level,
    };
    let c = ConfigManager::<Root>::builder()
        .env(Env::from_pairs([("RUST_LOG", "trace")]))
        .standard_var(sv.clone())
        .build()
        .unwrap();
    assert_eq!(c.current().logging.level, "trace");
    assert_eq!(
        c.current()
            .provenance()
            .source_of("logging.level")
            .unwrap()
            .to_string(),
        "env RUST_LOG"
    );
    let f = file(".toml", "[logging]\nlevel = \"warn\"\n");
    let c = ConfigManager::<Root>::builder()
        .env(Env::from_pairs([("RUST_LOG", "trace")]))
        .standard_var(sv)
        .file(Some(f.path().to_owned()))
        .build()
        .unwrap();
    assert_eq!(c.current().logging.level, "warn");
}

#[test]
fn secrets_never_print_and_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("jwt");
    std::fs::write(&secret_file, "s3cr3t-from-file\n").unwrap();
    let env = Env::from_pairs([("TAMMA_AUTH__JWT_SECRET_FILE", secret_file.to_str().unwrap())]);
    let c = ConfigManager::<Root>::builder().env(env).build().unwrap();
    let s = c.current();
    assert_eq!(s.auth.jwt_secret.expose(), "s3cr3t-from-file");
    let everything = format!("{:?} {} {:?}", s.config(), c.export(), s.entries());
    assert!(!everything.contains("s3cr3t"), "{everything}");
    assert!(everything.contains("[REDACTED]"));

    let f_secret = dir.path().join("jwt2");
    std::fs::write(&f_secret, "other-secret").unwrap();
    let f = file(
        ".toml",
        &format!("[auth]\njwtSecretFile = {:?}\n", f_secret.to_str().unwrap()),
    );
    let c = ConfigManager::<Root>::builder()
        .file(Some(f.path().to_owned()))
        .build()
        .unwrap();
    assert_eq!(c.current().auth.jwt_secret.expose(), "other-secret");
    assert_eq!(c.get("auth.jwtSecret").unwrap(), Some(json!("[REDACTED]")));
}

#[test]
fn cli_flag_provenance_and_unknown_path() {
    let c = ConfigManager::<Root>::builder()
        .cli(CliSetting::flag("--data-dir", "dataDir", "/srv/tamma"))
        .build()
        .unwrap();
    assert_eq!(c.current().data_dir, "/srv/tamma");
    assert_eq!(
        c.current()
            .provenance()
            .source_of("dataDir")
            .unwrap()
            .to_string(),
        "cli --data-dir"
    );
    let e = ConfigManager::<Root>::builder()
        .cli(CliSetting::parse_set("loging.level=x").unwrap())
        .build()
        .unwrap_err();
    assert!(
        e.to_string().contains(
            "loging.level: unknown key (did you mean logging.level?) [cli --set loging.level]"
        ),
        "{e}"
    );
}

#[test]
fn get_set_and_quoted_map_keys() {
    let c = ConfigManager::<Root>::builder().build().unwrap();
    c.set("breakers.\"events.append\".failureRate", json!(40))
        .unwrap();
    assert_eq!(c.current().breakers["events.append"].failure_rate, 40);
    assert_eq!(
        c.get("breakers.\"events.append\".failureRate").unwrap(),
        Some(json!(40))
    );
    assert_eq!(c.get_or("monitoring.healthChecks.timeout", 0u64), 5000);
    assert_eq!(c.get_or("no.such.thing", 7u64), 7);
    let entries = c.current().entries();
    let e = entries
        .iter()
        .find(|e| e.path == "breakers.\"events.append\".failureRate")
        .unwrap();
    assert_eq!(e.source, "runtime");
    // An invalid set changes nothing and names the problem.
    let err = c
        .set("monitoring.healthChecks.timeout", json!("1h"))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("must be less than interval (1h ≥ 30s) [runtime]"),
        "{err}"
    );
    assert_eq!(
        c.current().monitoring.health_checks.timeout.as_millis(),
        5000
    );
    assert!(c.set("nope", json!(1)).is_err());
}
