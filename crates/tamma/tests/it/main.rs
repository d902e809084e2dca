//! Integration tests of the `tamma` binary, run as a real child process.

mod cli;
mod copy;
mod e2e;
mod events;
mod metrics;
mod serve;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// Runs `tamma` with `args` in `dir`, with a clean environment plus `env`.
pub(crate) fn tamma(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tamma"));
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the tamma binary runs")
}

/// Starts `tamma args…` in `dir` with a clean environment, stdout as given and stderr thrown away.
pub(crate) fn spawn_tamma(dir: &Path, args: &[&str], stdout: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tamma"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .expect("the tamma binary starts")
}

pub(crate) fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
