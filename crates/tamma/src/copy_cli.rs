//! `tamma events copy`: moves a store's events to another store (SQLite to PostgreSQL, or back), keeping
//! positions, ids and commit times, and resuming where an earlier copy stopped.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use futures::TryStreamExt as _;
use tamma_events::{EventStorageConfig, EventStore, Query, ReadOptions, SequencedEvent};
use tamma_events_postgres::{PostgresConfig, PostgresStore};
use tamma_events_sqlite::{SqliteOptions, SqliteStore};
use tamma_runtime::TammaConfig;

/// Events per read of the source and per import into the target.
const PAGE: u64 = 1000;

/// `tamma events copy`.
#[derive(Args, Debug)]
pub(crate) struct CopyArgs {
    /// The store to copy from: a SQLite file (`./tamma-data/events.db`) or a PostgreSQL URL
    /// (`postgres://…`). Default: the configured store.
    #[arg(long, value_name = "FILE|URL")]
    pub(crate) from: Option<String>,
    /// The store to copy into: a SQLite file (created when absent) or a PostgreSQL URL. Default: the
    /// configured store.
    #[arg(long, value_name = "FILE|URL")]
    pub(crate) to: Option<String>,
}

/// Where a store is.
#[derive(Debug, PartialEq)]
enum Location {
    Sqlite(PathBuf),
    Postgres(String),
    Memory,
}

impl Location {
    /// A `--from`/`--to` value: a PostgreSQL URL (`postgres://`, `postgresql://`) or key=value string
    /// (`host=… dbname=…`), else a file.
    fn parse(s: &str) -> Self {
        let pg_url = s.starts_with("postgres://") || s.starts_with("postgresql://");
        let pg_keywords = s.split_whitespace().any(|w| {
            ["host=", "dbname=", "hostaddr="]
                .iter()
                .any(|k| w.starts_with(k))
        });
        if pg_url || pg_keywords {
            Self::Postgres(s.to_owned())
        } else {
            Self::Sqlite(PathBuf::from(s))
        }
    }

    /// The configured store.
    fn configured(config: &TammaConfig) -> Self {
        match &config.events.storage {
            EventStorageConfig::Sqlite(s) => Self::Sqlite(s.resolve_path(&config.data_dir())),
            EventStorageConfig::Postgres(_) => Self::Postgres(
                config
                    .database
                    .as_ref()
                    .map(|d| d.url.expose().to_owned())
                    .unwrap_or_default(),
            ),
            EventStorageConfig::Memory(_) => Self::Memory,
        }
    }

    /// How the store is named in messages: a file's path; a PostgreSQL URL without its password.
    fn label(&self) -> String {
        match self {
            Self::Sqlite(p) => p.display().to_string(),
            Self::Postgres(url) => postgres_label(url),
            Self::Memory => "the in-memory store".into(),
        }
    }

    /// The same store as `other`, as far as their names tell.
    fn same_as(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Sqlite(a), Self::Sqlite(b)) => {
                a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
            }
            (Self::Postgres(a), Self::Postgres(b)) => a == b,
            _ => false,
        }
    }
}

/// A PostgreSQL URL or key=value string without its password (and, for a URL, its parameters).
fn postgres_label(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let rest = rest.split('?').next().unwrap_or(rest);
        let rest = match rest.rsplit_once('@') {
            Some((user, host)) => {
                let user = user.split(':').next().unwrap_or(user);
                format!("{user}@{host}")
            }
            None => rest.to_owned(),
        };
        format!("{scheme}://{rest}")
    } else {
        url.split_whitespace()
            .filter(|w| !w.starts_with("password="))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Opens the store at `at` with the configured limits (and, for PostgreSQL, the `database` section's
/// pool and timeouts). A source SQLite file must exist.
async fn open(
    config: &TammaConfig,
    at: &Location,
    source: bool,
) -> anyhow::Result<Arc<dyn EventStore>> {
    let limits = config.events.limits();
    Ok(match at {
        Location::Sqlite(path) => {
            if source && !path.is_file() {
                anyhow::bail!("there is no event store at {}", path.display());
            }
            let options = SqliteOptions {
                limits,
                ..SqliteOptions::default()
            };
            Arc::new(SqliteStore::open(path, options)?)
        }
        Location::Postgres(url) => {
            let db = PostgresConfig {
                url: tamma_core::Secret::new(url.clone()),
                ..config.database.clone().unwrap_or_default()
            };
            Arc::new(PostgresStore::connect(&db, limits).await?)
        }
        Location::Memory => anyhow::bail!(
            "events.storage is memory: its events do not outlive a process; name a store with --from/--to"
        ),
    })
}

/// The last event a store holds, if any.
async fn last_event(store: &dyn EventStore) -> anyhow::Result<Option<SequencedEvent>> {
    let mut last: Vec<SequencedEvent> = store
        .read(Query::all(), ReadOptions::backwards().limit(1))
        .try_collect()
        .await?;
    Ok(last.pop())
}

/// Where the copy starts: after the target's head, when the target holds a prefix of the source
/// (nothing, or the source's events up to its last one, the same ids at the same positions).
async fn resume_after(source: &dyn EventStore, target: &dyn EventStore) -> anyhow::Result<u64> {
    let head = target.head().await?;
    if head == 0 {
        return Ok(0);
    }
    let Some(last) = last_event(target).await? else {
        anyhow::bail!(
            "the target's head is {head} but it holds no events (retention removed them): copy into an empty store"
        );
    };
    let there: Vec<SequencedEvent> = source
        .read(
            Query::all(),
            ReadOptions::forwards().from(last.position).limit(1),
        )
        .try_collect()
        .await?;
    match there.first() {
        Some(e) if e.position == last.position && e.event.id == last.event.id => Ok(head),
        Some(e) if e.position == last.position => anyhow::bail!(
            "the target is not a copy of this source: position {} holds event {} there and {} in the source",
            last.position,
            last.event.id,
            e.event.id
        ),
        _ => anyhow::bail!(
            "the target is not a copy of this source: it holds position {} (event {}), which the source does not \
             (the source's head is {})",
            last.position,
            last.event.id,
            source.head().await?
        ),
    }
}

/// Up to [`PAGE`] events of `source` from position `from`.
async fn read_page(source: &dyn EventStore, from: u64) -> anyhow::Result<Vec<SequencedEvent>> {
    Ok(source
        .read(Query::all(), ReadOptions::forwards().from(from).limit(PAGE))
        .try_collect()
        .await?)
}

/// What a copy did.
struct Copied {
    events: u64,
    first: Option<u64>,
    head: u64,
    cursors: usize,
}

async fn copy(
    source: &dyn EventStore,
    target: &dyn EventStore,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Copied> {
    let after = resume_after(source, target).await?;
    let mut copied = Copied {
        events: 0,
        first: None,
        head: after,
        cursors: 0,
    };
    bar.set_length(source.head().await?);
    bar.set_position(after);
    // The next page is read while this one is imported.
    let mut page = read_page(source, after + 1).await?;
    while let Some(first) = page.first().map(|e| e.position) {
        if copied.head > 0 && first != copied.head + 1 {
            anyhow::bail!(
                "the source no longer holds positions {} to {} (its retention removed them), which the \
                 target lacks: copy into an empty store",
                copied.head + 1,
                first - 1
            );
        }
        let n = page.len() as u64;
        let last = first + n - 1;
        let (imported, next) = futures::join!(target.import(page), read_page(source, last + 1));
        copied.head =
            imported.map_err(|e| anyhow::anyhow!("importing positions {first} to {last}: {e}"))?;
        copied.first.get_or_insert(first);
        copied.events += n;
        bar.set_length(bar.length().unwrap_or(0).max(copied.head));
        bar.set_position(copied.head);
        page = next?;
    }
    // Consumers' cursors (routes, forwarders) point into these positions: they go along.
    let cursors = match source.cursors().await {
        Ok(c) => c,
        Err(tamma_events::Error::Unavailable { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    for (name, position) in &cursors {
        // A cursor past what was copied (the source took appends meanwhile) would make its consumer
        // skip the events the target stores at those positions next: it is kept at the copied head.
        let position = if *position > copied.head {
            eprintln!(
                "warning: cursor {name} is at {position}, past the last copied position {}: saved as {}; \
                 the source took appends during the copy — stop its node and copy again",
                copied.head, copied.head
            );
            copied.head
        } else {
            *position
        };
        target.save_cursor(name, position).await?;
    }
    copied.cursors = cursors.len();
    Ok(copied)
}

/// `tamma events copy [--from FILE|URL] [--to FILE|URL]`.
pub(crate) async fn run(config: &TammaConfig, args: &CopyArgs) -> ExitCode {
    let configured = Location::configured(config);
    let (from, to) = match (&args.from, &args.to) {
        (None, None) => {
            eprintln!(
                "error: name the other store: --to FILE|URL (copy the configured store there) or --from \
                 FILE|URL (copy it into the configured store)"
            );
            return ExitCode::from(2);
        }
        (Some(f), None) => (Location::parse(f), configured),
        (None, Some(t)) => (configured, Location::parse(t)),
        (Some(f), Some(t)) => (Location::parse(f), Location::parse(t)),
    };
    if from.same_as(&to) {
        eprintln!(
            "error: --from and --to are the same store ({}); name another",
            from.label()
        );
        return ExitCode::from(2);
    }
    let started = Instant::now();
    let result = async {
        let source = open(config, &from, true)
            .await
            .map_err(|e| anyhow::anyhow!("opening the source {}: {e}", from.label()))?;
        let target = open(config, &to, false)
            .await
            .map_err(|e| anyhow::anyhow!("opening the target {}: {e}", to.label()))?;
        let bar = crate::events_cli::positions_bar(std::io::stderr().is_terminal(), 0)?;
        let copied = copy(&*source, &*target, &bar).await;
        bar.finish_and_clear();
        copied
    }
    .await;
    match result {
        Ok(c) => {
            let secs = started.elapsed().as_secs_f64();
            match c.first {
                Some(first) => println!(
                    "copied {} events (positions {first} to {}) and {} cursors from {} to {} in {secs:.2} s; \
                     the target's head is {}",
                    c.events,
                    c.head,
                    c.cursors,
                    from.label(),
                    to.label(),
                    c.head
                ),
                None => println!(
                    "nothing to copy: {} holds every event of {} (head {}); {} cursors copied",
                    to.label(),
                    from.label(),
                    c.head,
                    c.cursors
                ),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_their_labels() {
        assert_eq!(
            Location::parse("./tamma-data/events.db"),
            Location::Sqlite(PathBuf::from("./tamma-data/events.db"))
        );
        let url = "postgres://tamma:s3cret@db.internal:5432/events?sslmode=verify-full";
        assert_eq!(Location::parse(url), Location::Postgres(url.into()));
        assert_eq!(
            Location::parse(url).label(),
            "postgres://tamma@db.internal:5432/events"
        );
        let kv = "host=db.internal dbname=events user=tamma password=s3cret";
        assert_eq!(Location::parse(kv), Location::Postgres(kv.into()));
        assert_eq!(
            Location::parse(kv).label(),
            "host=db.internal dbname=events user=tamma"
        );
        assert!(Location::parse("a.db").same_as(&Location::parse("a.db")));
        assert!(!Location::parse("a.db").same_as(&Location::parse(url)));
    }
}
