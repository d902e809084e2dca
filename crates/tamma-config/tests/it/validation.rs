//! Every problem reported at once, with paths and sources.

use std::io::Write as _;

use tamma_config::{ConfigManager, Env};

use crate::fixture::Root;

fn toml(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn unknown_key_wrong_type_and_cross_field_in_one_report() {
    let f = toml(
        "[logging.rotation]\nmaxFile = 3\n[monitoring]\nlabels = 5\n[monitoring.healthChecks]\ninterval = 3000\n",
    );
    let e = ConfigManager::<Root>::builder()
        .file(Some(f.path().to_owned()))
        .build()
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("invalid configuration: 3 problems"),
        "{text}"
    );
    assert!(
        text.contains(
            "monitoring.healthChecks.timeout: must be less than interval (5s ≥ 3s) [file"
        ),
        "{text}"
    );
    assert!(
        text.contains("logging.rotation.maxFile: unknown key (did you mean \"maxFiles\"?) [file"),
        "{text}"
    );
    assert!(
        text.contains("monitoring.labels: expected object, found number 5 [file"),
        "{text}"
    );
    // Cross-field rules run once the shape is right.
    let f = toml("[monitoring.healthChecks]\ninterval = 3000\n");
    let e = ConfigManager::<Root>::builder()
        .file(Some(f.path().to_owned()))
        .build()
        .unwrap_err();
    assert!(
        e.to_string().contains(
            "monitoring.healthChecks.timeout: must be less than interval (5s ≥ 3s) [file"
        ),
        "{e}"
    );
}

#[test]
fn problem_from_environment_names_the_variable() {
    let f = toml("[logging.rotation]\nmaxFile = 3\n");
    let env = Env::from_pairs([("TAMMA_LOGGING__ROTATION__MAX_SIZE", "ten parsecs")]);
    let e = ConfigManager::<Root>::builder()
        .file(Some(f.path().to_owned()))
        .env(env)
        .build()
        .unwrap_err();
    let text = e.to_string();
    assert_eq!(e.problems().len(), 2, "{text}");
    assert!(
        text.contains("logging.rotation.maxSize:")
            && text.contains("[env TAMMA_LOGGING__ROTATION__MAX_SIZE]"),
        "{text}"
    );
}

#[test]
fn syntax_errors_name_the_file_and_line() {
    let f = toml("[logging\nlevel = 1\n");
    let e = ConfigManager::<Root>::builder()
        .file(Some(f.path().to_owned()))
        .build()
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("not valid TOML") && text.contains("line 1"),
        "{text}"
    );
}

#[test]
fn tagged_unions_report_unknown_types_and_bad_fields() {
    let f = toml(
        "[[logging.outputs]]\ntype = \"fil\"\n[[logging.outputs]]\ntype = \"file\"\nconfig = { pth = \"x\" }\n",
    );
    let e = ConfigManager::<Root>::builder()
        .file(Some(f.path().to_owned()))
        .build()
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("logging.outputs[0].type: unknown type \"fil\" (did you mean \"file\"?)"),
        "{text}"
    );
    assert!(
        text.contains("logging.outputs[1].config.pth: unknown key (did you mean \"path\"?)"),
        "{text}"
    );
}

#[test]
fn custom_validators_run() {
    let e = ConfigManager::<Root>::builder()
        .validator(|c: &Root, out| {
            if c.data_dir.starts_with("./") {
                out.push(tamma_core::Problem::new(
                    "dataDir",
                    "must be absolute in production",
                ));
            }
        })
        .build()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("dataDir: must be absolute in production [default]"),
        "{e}"
    );
}

#[test]
fn a_badly_typed_secret_is_reported_without_its_value() {
    let f = toml("[auth]\njwtSecret = 98765432123\n");
    let e = ConfigManager::<Root>::builder()
        .file(Some(f.path().to_owned()))
        .build()
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("auth.jwtSecret: expected a string (the secret's value is not shown)"),
        "{text}"
    );
    assert!(!text.contains("98765432123"), "{text}");
}
