//! `tamma config …` through the binary.

use crate::{tamma, text};

const BAD: &str = "[logging.rotation]\nmaxFile = 3\n[server]\nmaxBodySize = true\n[monitoring.healthChecks]\ninterval = 3000\n";

#[test]
fn config_check_lists_three_path_named_problems_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), BAD).unwrap();
    let o = tamma(dir.path(), &["config", "check", "bad.toml"], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines[0], "invalid configuration: 3 problems", "{err}");
    assert!(
        err.contains(
            "logging.rotation.maxFile: unknown key (did you mean \"maxFiles\"?) [file bad.toml]"
        ),
        "{err}"
    );
    assert!(
        err.contains("server.maxBodySize: ") && err.contains("[file bad.toml]"),
        "{err}"
    );
    assert!(
        err.contains(
            "monitoring.healthChecks.timeout: must be less than interval (5s ≥ 3s) [file bad.toml]"
        ),
        "{err}"
    );
}

#[test]
fn config_check_names_the_environment_variable_that_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[logging.rotation]\nmaxFile = 3\n[monitoring.healthChecks]\ninterval = 3000\n",
    )
    .unwrap();
    let o = tamma(
        dir.path(),
        &["config", "check", "bad.toml"],
        &[("TAMMA_SERVER__MAX_BODY_SIZE", "lots")],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.starts_with("invalid configuration: 3 problems"),
        "{err}"
    );
    assert!(
        err.contains("server.maxBodySize: ") && err.contains("[env TAMMA_SERVER__MAX_BODY_SIZE]"),
        "{err}"
    );
}

#[test]
fn config_check_passes_on_a_good_file_and_warns_on_unknown_variables() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tamma.toml"),
        "[logging]\nlevel = \"debug\"\n",
    )
    .unwrap();
    let o = tamma(
        dir.path(),
        &["config", "check"],
        &[("TAMMA_LOGING__LEVEL", "x")],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(
        out.contains("configuration is valid (./tamma.toml)"),
        "{out}"
    );
    assert!(
        err.contains("warning: ignoring environment variable TAMMA_LOGING__LEVEL")
            && err.contains("logging.level"),
        "{err}"
    );
}

#[test]
fn show_prints_every_value_with_its_source_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tamma.toml"),
        "[logging]\nlevel = \"warn\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("jwt"),
        "file-secret-abcdefghijklmnopqrstuvwxyz\n",
    )
    .unwrap();
    let o = tamma(
        dir.path(),
        &[
            "--set",
            "monitoring.metrics.labels={\"region\":\"eu\"}",
            "config",
            "show",
        ],
        &[
            ("TAMMA_SECURITY__AUTHENTICATION__JWT__SECRET_FILE", "jwt"),
            (
                "TAMMA_SECURITY__AUTHENTICATION__OAUTH__PROVIDERS",
                r#"[{"name":"gh","clientSecret":"oauth-secret-value"}]"#,
            ),
            (
                "TAMMA_PROVIDERS",
                r#"[{"name":"openai","model":"gpt-x","apiKey":"sk-provider-secret","auth":{"access_token":"tok-secret"}}]"#,
            ),
        ],
    );
    let (out, err) = text(&o);
    // Credentials inside the opaque provider tables are redacted too; the rest shows.
    assert!(out.contains("gpt-x"), "{out}");
    assert!(
        !out.contains("sk-provider-secret") && !out.contains("tok-secret"),
        "{out}"
    );
    assert_eq!(o.status.code(), Some(0), "{err}");
    let line = |p: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{p} ")))
            .unwrap_or_else(|| panic!("no {p} in {out}"))
            .to_owned()
    };
    assert!(
        line("logging.level").contains("\"warn\"")
            && line("logging.level").ends_with("# file ./tamma.toml")
    );
    assert!(line("server.listen").ends_with("# default"));
    assert!(
        line("monitoring.metrics.labels.region").ends_with("# cli --set monitoring.metrics.labels"),
        "{out}"
    );
    assert!(line("security.authentication.jwt.secret").contains("[REDACTED]"));
    assert!(
        line("security.authentication.jwt.secret")
            .ends_with("# env TAMMA_SECURITY__AUTHENTICATION__JWT__SECRET_FILE")
    );
    assert!(
        !out.contains("file-secret") && !out.contains("oauth-secret-value"),
        "{out}"
    );
    let o = tamma(
        dir.path(),
        &["config", "show", "--json"],
        &[(
            "TAMMA_SECURITY__AUTHENTICATION__JWT__SECRET",
            "json-secret-value",
        )],
    );
    let (out, _) = text(&o);
    assert!(!out.contains("json-secret-value"));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["sources"]["logging.level"], "file ./tamma.toml");
}

#[test]
fn a_flag_that_is_not_given_never_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tamma.toml"),
        "[server]\nlisten = \"127.0.0.1:9999\"\n",
    )
    .unwrap();
    let o = tamma(dir.path(), &["config", "get", "server.listen"], &[]);
    assert_eq!(text(&o).0.trim(), "\"127.0.0.1:9999\"");
    let o = tamma(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:8888",
            "config",
            "get",
            "server.listen",
        ],
        &[],
    );
    assert_eq!(text(&o).0.trim(), "\"127.0.0.1:8888\"");
    let o = tamma(
        dir.path(),
        &["config", "get", "server.listen"],
        &[("TAMMA_SERVER__LISTEN", "127.0.0.1:7777")],
    );
    assert_eq!(text(&o).0.trim(), "\"127.0.0.1:7777\"");
}

#[test]
fn schema_is_json_schema_of_everything() {
    let dir = tempfile::tempdir().unwrap();
    let o = tamma(dir.path(), &["config", "schema"], &[]);
    let schema: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(schema["properties"]["monitoring"].is_object());
    assert!(
        schema["$schema"]
            .as_str()
            .unwrap()
            .contains("json-schema.org")
    );
}

#[test]
fn docs_configuration_md_embeds_the_current_reference() {
    let dir = tempfile::tempdir().unwrap();
    let o = tamma(dir.path(), &["config", "docs"], &[]);
    let reference = String::from_utf8(o.stdout).unwrap();
    assert!(reference.contains("`TAMMA_LOGGING__ROTATION__MAX_SIZE`"));
    let doc_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let begin = "<!-- BEGIN GENERATED REFERENCE (tamma config docs) -->\n";
    let end = "<!-- END GENERATED REFERENCE -->";
    let start = doc.find(begin).expect("begin marker") + begin.len();
    let stop = doc.find(end).expect("end marker");
    assert!(
        doc[start..stop] == reference,
        "docs/configuration.md is out of date: regenerate it with scripts/regen-config-docs.sh"
    );
}

#[test]
fn output_cut_short_by_its_reader_ends_quietly() {
    use std::io::{BufRead as _, BufReader};
    let dir = tempfile::tempdir().unwrap();
    // The schema is about 100 KiB, more than a pipe holds, so the writer meets the closed pipe.
    let args = ["config", "schema"];
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tamma"))
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then go away, as `| head -1` does.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{args:?}: {:?} {err}", o.status);
    assert!(err.is_empty(), "{args:?}: {err}");
}
