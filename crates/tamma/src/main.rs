//! The `tamma` binary: a thin CLI over `tamma-runtime`.
//!
//! `tamma serve` runs a node; `tamma config show|check|schema|get|docs`, `tamma events
//! append|read|get|tail|export|backup|restore` and `tamma health` operate one.
//! Exit codes: 0 success, 1 a failed check or start-up, 2 bad usage.

#![allow(clippy::print_stdout, clippy::print_stderr)] // A CLI prints.

mod copy_cli;
mod events_cli;

/// mimalloc instead of the system allocator: a node allocates and frees many small objects per event
/// (building, encoding and answering appends), where glibc malloc cost ~10% of the CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tamma_config::{CliSetting, ConfigError, ConfigManager, Env};
use tamma_runtime::{ConfigArgs, Node, TammaConfig};

/// Tamma runtime node and operator CLI.
#[derive(Parser, Debug)]
#[command(name = "tamma", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Config layers from the command line. None of these has a clap default, so a flag that is not
/// given never overrides a file or environment value.
#[derive(Args, Debug, Clone)]
struct Global {
    /// Config file (TOML, YAML or JSON). Default: $TAMMA_CONFIG, else ./tamma.toml when present.
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Set any config value: --set logging.level=debug (repeatable; later wins).
    #[arg(long = "set", global = true, value_name = "PATH=VALUE")]
    set: Vec<String>,
    /// Shorthand for --set logging.level=LEVEL.
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Shorthand for --set server.listen=ADDR.
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<String>,
    /// Shorthand for --set dataDir=DIR.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<String>,
    /// Shorthand for --set mode=MODE (standalone, orchestrator, worker).
    #[arg(long, global = true, value_name = "MODE")]
    mode: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node in the configured mode until SIGINT/SIGTERM.
    Serve,
    /// Inspect and validate configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Probe a running node's health (exit 0 healthy, 1 not): for container HEALTHCHECK.
    Health(HealthArgs),
    /// Append, read, get, tail, export, back up and restore a node's events.
    Events(events_cli::EventsArgs),
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print the effective config, each value with its source; secret fields redacted.
    Show {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate the config (optionally FILE instead of the usual one); list every problem.
    Check {
        /// The file to check.
        file: Option<PathBuf>,
    },
    /// Print the JSON Schema of the whole config.
    Schema,
    /// Print the Markdown reference of every key (docs/configuration.md embeds it).
    Docs,
    /// Print one value by dotted path (secrets redacted).
    Get {
        /// Dotted path, e.g. logging.level or resilience.operations."events.append".
        path: String,
    },
}

#[derive(Args, Debug)]
struct HealthArgs {
    /// Base URL of the node (default: http://<server.listen> from the config).
    #[arg(long)]
    url: Option<String>,
    /// Probe readiness (`monitoring.healthChecks.readyEndpoint`, /health/ready by default).
    #[arg(long, conflicts_with = "live")]
    ready: bool,
    /// Probe liveness (`monitoring.healthChecks.liveEndpoint`, /health/live by default).
    #[arg(long)]
    live: bool,
}

/// `println!` to stdout that fails (`?`) instead of panicking when the reader went away
/// (`tamma config show | head`); [`main`] ends such a run quietly.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// `print!` to stdout, failing like [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        write!(stdout, $($arg)*)?;
        stdout.flush()?
    }};
}

/// Whether `e` is a write to a pipe whose reader is gone.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // The reader of our output went away (`| head`): its business, not an error.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn config_args(g: &Global, file_override: Option<PathBuf>) -> Result<ConfigArgs, String> {
    let mut settings = Vec::new();
    for s in &g.set {
        settings.push(CliSetting::parse_set(s)?);
    }
    let flags = [
        ("--log-level", "logging.level", &g.log_level),
        ("--listen", "server.listen", &g.listen),
        ("--data-dir", "dataDir", &g.data_dir),
        ("--mode", "mode", &g.mode),
    ];
    for (flag, path, value) in flags {
        if let Some(v) = value {
            settings.push(CliSetting::flag(flag, path, v.clone()));
        }
    }
    Ok(ConfigArgs {
        file: file_override.or_else(|| g.config.clone()),
        settings,
    })
}

/// Prints the one-line summary first, then every problem.
fn report_config_error(e: &ConfigError) {
    eprintln!("{}", e.summary());
    for p in e.problems() {
        eprintln!("  - {p}");
    }
    if e.problems().is_empty() {
        eprintln!("  {e}");
    }
}

fn load(
    g: &Global,
    file_override: Option<PathBuf>,
    env: Env,
) -> Result<ConfigManager<TammaConfig>, ExitCode> {
    let args = match config_args(g, file_override) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("invalid command line: {e}");
            return Err(ExitCode::from(2));
        }
    };
    tamma_runtime::builder(&args, env).build().map_err(|e| {
        report_config_error(&e);
        ExitCode::from(1)
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let env = Env::capture();
    match cli.command {
        Command::Serve => serve(&cli.global, &env),
        Command::Config(ConfigCommand::Check { file }) => match load(&cli.global, file, env) {
            Ok(c) => {
                for w in c.current().warnings() {
                    eprintln!("warning: {w}");
                }
                let origin = c.file().map_or_else(
                    || "defaults and environment".to_owned(),
                    |f| f.display().to_string(),
                );
                outln!("configuration is valid ({origin})");
                Ok(ExitCode::SUCCESS)
            }
            Err(code) => Ok(code),
        },
        Command::Config(ConfigCommand::Show { json }) => {
            let c = match load(&cli.global, None, env) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&tamma_runtime::config_document(&c))?
                );
            } else {
                let entries = c.current().entries();
                let width = entries.iter().map(|e| e.path.len()).max().unwrap_or(0);
                for e in entries {
                    outln!(
                        "{:width$} = {:<30} # {}",
                        e.path,
                        e.value.to_string(),
                        e.source
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Schema) => {
            // The schema does not depend on the values: no config is loaded.
            let _ = env;
            outln!("{}", serde_json::to_string_pretty(&schemars_schema())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Docs) => {
            let defaults = serde_json::to_value(TammaConfig::default())?;
            out!(
                "{}",
                tamma_config::reference_markdown(&schemars_schema(), &defaults)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Get { path }) => {
            let c = match load(&cli.global, None, env) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            match c.get(&path)? {
                Some(v) => {
                    outln!("{}", serde_json::to_string_pretty(&v)?);
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("no value at {path}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Health(args) => health(&cli.global, env, &args),
        Command::Events(events_cli::EventsArgs {
            command: events_cli::EventsCommand::Backup(backup),
            ..
        }) => match load(&cli.global, None, env) {
            Ok(c) => Ok(events_cli::backup(&c.current(), &backup)),
            Err(code) => Ok(code),
        },
        Command::Events(events_cli::EventsArgs {
            command: events_cli::EventsCommand::Restore(restore),
            ..
        }) => match load(&cli.global, None, env) {
            Ok(c) => Ok(events_cli::restore(&c.current(), &restore)),
            Err(code) => Ok(code),
        },
        Command::Events(events_cli::EventsArgs {
            command: events_cli::EventsCommand::Copy(copy),
            ..
        }) => match load(&cli.global, None, env) {
            Ok(c) => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                Ok(runtime.block_on(copy_cli::run(&c.current(), &copy)))
            }
            Err(code) => Ok(code),
        },
        Command::Events(args) => {
            let base = match args.url {
                Some(u) => u,
                None => match load(&cli.global, None, env) {
                    Ok(c) => format!("http://{}", c.current().server.listen),
                    Err(code) => return Ok(code),
                },
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(events_cli::run(args.command, base))
        }
    }
}

fn schemars_schema() -> serde_json::Value {
    tamma_runtime::schema()
}

fn serve(g: &Global, env: &Env) -> anyhow::Result<ExitCode> {
    let config = match load(g, None, env.clone()) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let snapshot = config.current();
    let telemetry = match tamma_runtime::telemetry(&snapshot, env) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}", e.summary());
            return Ok(ExitCode::from(1));
        }
    };
    let handle = telemetry.install().context("installing telemetry")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let shutdown_timeout = snapshot.server.shutdown_timeout.as_duration();
    let result = runtime.block_on(async {
        let node = Node::start(config, Some(handle.clone())).await?;
        node.run_until(tamma_server::shutdown_signal()).await
    });
    let report = handle.shutdown(shutdown_timeout);
    if !report.is_clean() {
        eprintln!("logs not fully flushed at shutdown: {report:?}");
    }
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("{}", e.summary());
            if let tamma_runtime::Error::Config(c) = &e {
                for p in c.problems() {
                    eprintln!("  - {p}");
                }
            } else {
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    eprintln!("  caused by: {s}");
                    source = s.source();
                }
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn health(g: &Global, env: Env, args: &HealthArgs) -> anyhow::Result<ExitCode> {
    // The node of the config uses the config's endpoint paths; a node named by --url, the defaults.
    let (base, paths) = match &args.url {
        Some(u) => (
            u.trim_end_matches('/').to_owned(),
            tamma_runtime::TammaConfig::default()
                .monitoring
                .health_checks,
        ),
        None => match load(g, None, env) {
            Ok(c) => {
                let cfg = c.current();
                (
                    format!("http://{}", cfg.server.listen),
                    cfg.monitoring.health_checks.clone(),
                )
            }
            Err(code) => return Ok(code),
        },
    };
    let url = if args.ready {
        format!("{base}{}?verbose", paths.ready_endpoint)
    } else if args.live {
        format!("{base}{}?verbose", paths.live_endpoint)
    } else {
        format!("{base}{}", paths.endpoint)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        let resp = client.get(&url).send().await?;
        let status = resp.status();
        let body = resp.text().await?;
        Ok::<_, reqwest::Error>((status, body))
    });
    match outcome {
        Ok((status, body)) => {
            let text = summarize(&body);
            let tty = std::io::stdout().is_terminal();
            let verdict = if status.is_success() {
                "healthy"
            } else {
                "NOT healthy"
            };
            if tty {
                outln!("{url}: {verdict} (HTTP {})", status.as_u16());
            } else {
                outln!("{verdict} (HTTP {}) {url}", status.as_u16());
            }
            outln!("{text}");
            Ok(if status.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Err(e) => {
            outln!("unreachable: {url}: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// A readable summary of a health answer: health+json as one line per check, anything else as is.
fn summarize(body: &str) -> String {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.trim().to_owned();
    };
    let mut lines = vec![format!("status: {}", doc["status"].as_str().unwrap_or("?"))];
    if let Some(checks) = doc["checks"].as_object() {
        for (name, results) in checks {
            for r in results.as_array().into_iter().flatten() {
                let output = r["output"]
                    .as_str()
                    .map(|o| format!(" — {o}"))
                    .unwrap_or_default();
                lines.push(format!(
                    "  {name}: {}{output}",
                    r["status"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    lines.join("\n")
}
