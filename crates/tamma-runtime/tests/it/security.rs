//! A security feature this version does not carry out cannot be switched on: at start, in `config
//! check` and on reload, each key that switches one on is named with its source.

use tamma_config::Env;
use tamma_runtime::{ConfigArgs, builder};

const ALL_ON: &str = r#"
[security.authentication]
enabled = true
methods = [{ type = "api_key", config = { keys = ["k-0123456789"] } }]
[security.authorization]
enabled = true
[security.authorization.rbac]
enabled = true
[security.authorization.abac]
enabled = true
[security.encryption]
enabled = true
"#;

#[test]
fn each_unenforced_feature_switched_on_is_refused_by_its_key_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tamma.toml");
    std::fs::write(&file, ALL_ON).unwrap();
    let args = ConfigArgs {
        file: Some(file),
        settings: vec![],
    };
    let err = builder(&args, Env::default()).build().unwrap_err();
    let refused: Vec<&str> = err
        .problems()
        .iter()
        .filter(|p| {
            p.message
                .contains("is not enforced by this version of tamma")
        })
        .map(|p| p.path.as_str())
        .collect();
    assert_eq!(
        refused,
        [
            "security.authentication.enabled",
            "security.authorization.enabled",
            "security.authorization.rbac.enabled",
            "security.authorization.abac.enabled",
            "security.encryption.enabled",
        ],
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("security.authentication.enabled: authentication is not enforced by this version of tamma: a node started with it would answer unauthenticated requests"),
        "{text}"
    );
    assert!(
        text.contains("encrypt the volume that holds dataDir"),
        "{text}"
    );
    assert!(
        text.contains("[file "),
        "every problem names its layer: {text}"
    );
}

#[test]
fn switched_on_from_the_environment_the_variable_is_named() {
    let env = Env::from_pairs([("TAMMA_SECURITY__ENCRYPTION__ENABLED", "true")]);
    let err = builder(&ConfigArgs::default(), env).build().unwrap_err();
    let p = &err.problems()[0];
    assert_eq!(err.problems().len(), 1, "{err}");
    assert_eq!(p.path, "security.encryption.enabled");
    assert!(
        p.to_string()
            .ends_with("[env TAMMA_SECURITY__ENCRYPTION__ENABLED]"),
        "{p}"
    );
}

#[test]
fn a_reload_that_switches_authentication_on_is_rejected_and_the_old_config_stays() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tamma.toml");
    std::fs::write(&file, "[logging]\nlevel = \"info\"\n").unwrap();
    let args = ConfigArgs {
        file: Some(file.clone()),
        settings: vec![],
    };
    let config = builder(&args, Env::default()).build().unwrap();
    std::fs::write(
        &file,
        "[logging]\nlevel = \"debug\"\n[security.authentication]\nenabled = true\nmethods = [{ type = \"basic\", config = {} }]\n",
    )
    .unwrap();
    let err = config.reload().unwrap_err();
    assert!(
        err.problems()
            .iter()
            .any(|p| p.path == "security.authentication.enabled"),
        "{err}"
    );
    let now = config.current();
    assert!(!now.security.authentication.enabled);
    assert_eq!(now.logging.level.to_string(), "info");
}
