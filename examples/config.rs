//! Loading, watching and reloading configuration as a library user.
//!
//! Run with `cargo run -p tamma-examples --example config`. It writes a `tamma.toml` into a temporary
//! directory, loads the node's config from it (plus environment and command-line layers), watches
//! `logging`, edits the file twice (a valid change, then an invalid one that is rolled back) and prints
//! what happened at each step.

#![allow(clippy::print_stdout)] // An example prints what it does.

use std::time::{Duration, Instant};

use tamma_config::{CliSetting, Env, ReloadEvent};
use tamma_runtime::{ConfigArgs, builder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("tamma.toml");
    std::fs::write(
        &file,
        "[logging]\nlevel = \"info\"\n\n[monitoring.healthChecks]\ninterval = \"30s\"\n",
    )?;

    // Layers: the file, an environment variable, and a command-line value.
    let args = ConfigArgs {
        file: Some(file.clone()),
        settings: vec![CliSetting::parse_set("server.listen=127.0.0.1:7400")?],
    };
    let env = Env::from_pairs([("TAMMA_MONITORING__HEALTH_CHECKS__TIMEOUT", "2s")]);
    let config = builder(&args, env).build()?;

    let now = config.current();
    println!(
        "level {:?}, listen {}, health timeout {}",
        now.logging.level, now.server.listen, now.monitoring.health_checks.timeout
    );
    for path in [
        "logging.level",
        "server.listen",
        "monitoring.healthChecks.timeout",
        "mode",
    ] {
        let source = now
            .provenance()
            .source_of(path)
            .map(ToString::to_string)
            .unwrap_or_default();
        println!("  {path:<32} from {source}");
    }

    // Watch a section, hear about every reload, and start watching the file.
    let _logging = config.watch("logging", |change| {
        println!(
            "watcher: {:?} changed, logging is now {}",
            change.changed, change.new
        );
    })?;
    let _reloads = config.on_reload(|event| match event {
        ReloadEvent::Applied { generation, .. } => {
            println!("reload applied: generation {generation}");
        }
        ReloadEvent::Failed { problems } => {
            println!("reload rejected, previous config kept:");
            for p in problems {
                println!("  - {p}");
            }
        }
        _ => {}
    });
    let _watcher = config.watch_file(Duration::from_millis(100))?;

    // A valid edit, saved the way editors do: write a temporary file, rename it over.
    let tmp = dir.path().join("tamma.toml.tmp");
    std::fs::write(
        &tmp,
        "[logging]\nlevel = \"debug\"\n\n[monitoring.healthChecks]\ninterval = \"30s\"\n",
    )?;
    std::fs::rename(&tmp, &file)?;
    wait(|| config.current().logging.level.to_string() == "debug");

    // An invalid edit: the timeout (2s from the environment) is fine, but the interval is now shorter.
    std::fs::write(
        &file,
        "[logging]\nlevel = \"debug\"\n\n[monitoring.healthChecks]\ninterval = \"1s\"\n",
    )?;
    wait(|| config.reload_status().failures > 0);
    println!(
        "still in force: interval {} (generation {}); status: {:?}",
        config.current().monitoring.health_checks.interval,
        config.current().generation(),
        config.reload_status().last_error
    );
    Ok(())
}

fn wait(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}
