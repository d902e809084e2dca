//! `tamma serve` as a real process: starts, answers, stops on SIGTERM; clear start-up failures.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{tamma, text};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_live(url: &str, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::blocking::get(url)
            && r.status().is_success()
        {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "tamma serve exited early"
        );
        assert!(Instant::now() < deadline, "no answer on {url}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_answers_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tamma"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-level",
            "trace",
            "serve",
        ])
        .current_dir(dir.path())
        .env_clear()
        .env(
            "TAMMA_SECURITY__AUTHENTICATION__JWT__SECRET",
            "jwt-secret-never-logged-0123456789",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_live(&format!("{base}/health/live"), &mut child);
    let cfg: serde_json::Value = reqwest::blocking::get(format!("{base}/v1/config"))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(cfg["config"]["mode"], "standalone");
    assert!(
        dir.path().join("tamma-data").is_dir(),
        "the data directory is created under the working directory"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tamma-data"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "the data directory is private");
    }
    // SIGTERM: a clean exit with status 0.
    let pid = i32::try_from(child.id()).unwrap();
    assert_eq!(unsafe_free_kill(pid), 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "tamma serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "{status:?} {out}");
    assert!(out.contains("\"message\":\"node started\""), "{out}");
    assert!(out.contains("SIGTERM received"), "{out}");
    assert!(
        !out.contains("jwt-secret-never-logged"),
        "a secret reached the log: {out}"
    );
}

/// Runs `tamma --listen <ip>:0 serve` in `dir` until it logs that it started and answers on the port
/// it bound (read from that line: no port picked in advance that another test could take), stops it
/// with SIGTERM and returns its whole log (stdout) once it exited cleanly.
fn serve_log(dir: &std::path::Path, ip: &str) -> String {
    use std::io::BufRead as _;
    let mut child = crate::spawn_tamma(
        dir,
        &["--listen", &format!("{ip}:0"), "serve"],
        Stdio::piped(),
    );
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    let started = loop {
        let mut line = String::new();
        let n = stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "tamma serve ended before it started: {out}");
        out.push_str(&line);
        if line.contains("\"message\":\"node started\"") {
            break line;
        }
    };
    let log: serde_json::Value = serde_json::from_str(&started).unwrap();
    let listen = log["meta"]["listen"].as_str().unwrap().to_owned();
    let port = listen.rsplit(':').next().unwrap();
    wait_live(&format!("http://127.0.0.1:{port}/health/live"), &mut child);
    assert_eq!(unsafe_free_kill(i32::try_from(child.id()).unwrap()), 0);
    stdout.read_to_string(&mut out).unwrap();
    assert!(child.wait().unwrap().success(), "{out}");
    out
}

#[test]
fn listening_beyond_loopback_warns_that_the_api_does_not_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    let out = serve_log(dir.path(), "0.0.0.0");
    let warning = out
        .lines()
        .find(|l| l.contains("does not authenticate callers"))
        .unwrap_or_else(|| panic!("no warning in {out}"));
    assert!(warning.contains("\"level\":\"warn\""), "{warning}");
    assert!(warning.contains("\"listen\":\"0.0.0.0:"), "{warning}");

    // On loopback (the default) there is nothing to warn about.
    let out = serve_log(dir.path(), "127.0.0.1");
    assert!(out.contains("SIGTERM received"), "{out}");
    assert!(!out.contains("does not authenticate callers"), "{out}");
}

/// Sends SIGTERM with the `kill` command (no unsafe code in tests either).
fn unsafe_free_kill(pid: i32) -> i32 {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .code()
        .unwrap_or(-1)
}

#[test]
fn address_in_use_exits_1_with_a_one_line_summary() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let o = tamma(dir.path(), &["--listen", &addr, "serve"], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert_eq!(
        err.lines().next().unwrap(),
        format!("address {addr} already in use"),
        "{err}"
    );
}

#[test]
fn invalid_config_exits_1_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tamma.toml"), "mode = \"leader\"\n").unwrap();
    let o = tamma(dir.path(), &["serve"], &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.starts_with("invalid configuration: 1 problem\n"),
        "{err}"
    );
    assert!(err.contains("mode: \"leader\" is not one of \"standalone\", \"orchestrator\", \"worker\" [file ./tamma.toml]"), "{err}");
}

#[test]
fn serve_refuses_authentication_it_would_not_enforce() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let o = tamma(
        dir.path(),
        &["--listen", &format!("127.0.0.1:{port}"), "serve"],
        &[
            ("TAMMA_SECURITY__AUTHENTICATION__ENABLED", "true"),
            (
                "TAMMA_SECURITY__AUTHENTICATION__METHODS",
                r#"[{"type":"api_key","config":{"keys":["k-0123456789"]}}]"#,
            ),
        ],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("invalid configuration: 1 problem\n"),
        "{err}"
    );
    assert!(
        err.contains("security.authentication.enabled: authentication is not enforced by this version of tamma")
            && err.contains("[env TAMMA_SECURITY__AUTHENTICATION__ENABLED]"),
        "{err}"
    );
    assert!(
        reqwest::blocking::get(format!("http://127.0.0.1:{port}/health/live")).is_err(),
        "nothing listens"
    );
}

#[test]
fn health_probe_exits_0_against_a_live_node_and_1_when_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = crate::spawn_tamma(
        dir.path(),
        &["--listen", &format!("127.0.0.1:{port}"), "serve"],
        Stdio::null(),
    );
    wait_live(&format!("http://127.0.0.1:{port}/health/live"), &mut child);
    let o = tamma(
        dir.path(),
        &["--listen", &format!("127.0.0.1:{port}"), "health", "--live"],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let o = tamma(
        dir.path(),
        &["health", "--url", &format!("http://127.0.0.1:{port}")],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(
        text(&o).0.contains("status: pass") || text(&o).0.contains("status: warn"),
        "{:?}",
        text(&o)
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let o = tamma(
        dir.path(),
        &[
            "health",
            "--ready",
            "--url",
            &format!("http://127.0.0.1:{port}"),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).0.starts_with("unreachable"), "{:?}", text(&o));
}

#[test]
fn health_probe_follows_the_configured_endpoint_paths() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("tamma.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[monitoring.healthChecks]\nliveEndpoint = \"/livez\"\nreadyEndpoint = \"/readyz\"\n"
        ),
    )
    .unwrap();
    let mut child = crate::spawn_tamma(dir.path(), &["serve"], Stdio::null());
    wait_live(&format!("http://127.0.0.1:{port}/livez"), &mut child);
    for (flag, path) in [("--live", "/livez"), ("--ready", "/readyz")] {
        let o = tamma(dir.path(), &["health", flag], &[]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{flag}: {out}{err}");
        assert!(
            out.contains(&format!("127.0.0.1:{port}{path}")),
            "{flag}: {out}"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
