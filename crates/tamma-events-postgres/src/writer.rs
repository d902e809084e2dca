//! The group-commit writer: one task, one connection, one transaction per batch of queued appends.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use tamma_events::{
    AppendCondition, AppendResult, Error, Event, IdCheck, LastPositions, Result, key_runs,
    resolve_ids,
};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};
use uuid::Uuid;

use crate::error::{PgErrorClass, classify, describe, to_store_error};
use crate::schema::{APPEND_GROUP_SQL, APPEND_SQL, FoundRow, to_i64, to_u64};
use crate::store::{Shared, connect_client};
use crate::tls::Target;

/// Most events one transaction carries; a batch stops growing here (appends are never split).
const MAX_BATCH_EVENTS: usize = 10_000;
/// Most appends one transaction carries.
const MAX_BATCH_APPENDS: usize = 1_000;
/// Longest a batch waits for appenders the previous commit answered (or that queued during it). It
/// only waits while fewer appends are queued than were active, so a lone appender never waits.
const GROUP_WAIT: Duration = Duration::from_micros(250);

/// One append waiting for the writer, encoded by the caller's task.
pub(crate) struct Request {
    pub(crate) events: Vec<Event>,
    /// The condition, or `None`.
    pub(crate) condition: Option<AppendCondition>,
    /// `metadata` per event as JSON text, `None` when empty.
    pub(crate) metadata: Vec<Option<String>>,
    /// `data` per event as JSON text.
    pub(crate) data: Vec<String>,
    /// The tags per event as a `text[]` literal (see [`tags_literal`]).
    pub(crate) tags: Vec<String>,
    /// How long to hold the commit (test hook).
    pub(crate) delay: Option<Duration>,
    pub(crate) reply: oneshot::Sender<Result<AppendResult>>,
}

impl Request {
    /// Encodes an append (already validated) for the writer.
    pub(crate) fn new(
        events: Vec<Event>,
        condition: Option<AppendCondition>,
        delay: Option<Duration>,
    ) -> Result<(Self, oneshot::Receiver<Result<AppendResult>>)> {
        let mut metadata = Vec::with_capacity(events.len());
        let mut data = Vec::with_capacity(events.len());
        let mut tags = Vec::with_capacity(events.len());
        // U+0000 in a type, tag or metadata string (which text and jsonb cannot hold) was rejected by
        // `validate_append`, naming the field.
        for e in &events {
            metadata.push(if e.metadata.is_empty() {
                None
            } else {
                let mut buf = Vec::with_capacity(128);
                e.metadata.write_json(&mut buf);
                Some(String::from_utf8(buf).map_err(|e| Error::backend(e, false))?)
            });
            data.push(e.data.as_json().to_owned());
            tags.push(tags_literal(&e.tags));
        }
        let (reply, rx) = oneshot::channel();
        Ok((
            Self {
                events,
                condition,
                metadata,
                data,
                tags,
                delay,
                reply,
            },
            rx,
        ))
    }
}

/// Tags as a PostgreSQL `text[]` literal: `{"order:1","kind:x"}`. Every element is quoted (so `NULL`, spaces,
/// commas and braces are plain text) with `"` and `\` escaped by a backslash; a tag never holds U+0000
/// (validation rejects it). One literal per event is cast per row by `tamma_append`, which keeps an append's
/// cost linear in its size (a slice of one flat array per event was not).
pub(crate) fn tags_literal(tags: &tamma_events::Tags) -> String {
    let mut out = String::with_capacity(2 + tags.iter().map(|t| t.len() + 3).sum::<usize>());
    out.push('{');
    for (i, tag) in tags.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in tag.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// The writer's connection and its prepared append statements.
struct Conn {
    client: Client,
    /// `tamma_append`: one append, or a group whose conflicts [`group_conflicts`] gave up on.
    append: Statement,
    /// `tamma_append_group`: a group of appends, inserted by one statement.
    group: Statement,
}

/// Runs until every sender is dropped (the store closed): takes the first queued append, then every
/// append queued behind it (up to the batch limits), and commits them in one transaction.
///
/// `answer_within` bounds each commit on the client side: the server's `statement_timeout` cannot fire
/// when the server is cut off (a network partition leaves the socket open), and one writer per process
/// means every append would wait behind that commit.
pub(crate) async fn run(
    mut rx: mpsc::Receiver<Request>,
    pg: Target,
    shared: Arc<Shared>,
    answer_within: Option<Duration>,
) {
    let mut conn: Option<Conn> = None;
    let mut batch = Vec::new();
    let mut held: Option<Request> = None;
    let mut ids = HashSet::new();
    // What this writer wrote last of each tag and type: conditions it rules out are not checked again
    // by the server, as long as nobody else wrote since (see `tamma_append`'s `p_skip`).
    let mut last = LastPositions::default();
    // Appenders active at the end of the last commit: those it answered plus those that queued
    // meanwhile. Answered appenders usually come straight back, so the next batch waits up to
    // `GROUP_WAIT` for them instead of splitting the appenders into two halves that take turns.
    let mut active = 0usize;
    loop {
        let first = match held.take() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => break,
            },
        };
        let mut events = first.events.len();
        ids.clear();
        ids.extend(first.events.iter().map(|e| e.id));
        batch.push(first);
        let deadline = Instant::now() + GROUP_WAIT;
        while events < MAX_BATCH_EVENTS && batch.len() < MAX_BATCH_APPENDS {
            let r = match rx.try_recv() {
                Ok(r) => r,
                Err(mpsc::error::TryRecvError::Empty)
                    if batch.len() < active && Instant::now() < deadline =>
                {
                    // Lets the appenders' tasks on this runtime run and queue.
                    tokio::task::yield_now().await;
                    continue;
                }
                Err(_) => break,
            };
            if r.events.iter().any(|e| ids.contains(&e.id)) {
                // A retry racing its original: it must see the original committed, so it waits for the
                // next batch (tamma_append checks stored ids once per batch).
                held = Some(r);
                break;
            }
            ids.extend(r.events.iter().map(|e| e.id));
            events += r.events.len();
            batch.push(r);
        }
        shared.queued.fetch_sub(batch.len(), Ordering::Relaxed);
        let answered = batch.len();
        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            conn = match open(&pg).await {
                Ok(c) => Some(c),
                Err(e) => {
                    *shared.last_commit_error.lock() = Some(e.to_string());
                    fail_all(std::mem::take(&mut batch), &e);
                    continue;
                }
            };
        }
        // The connection was just checked or opened.
        let Some(c) = conn.as_ref() else { continue };
        let started = Instant::now();
        let committed = match answer_within {
            None => commit(c, &batch, &mut last).await,
            Some(limit) => match tokio::time::timeout(limit, commit(c, &batch, &mut last)).await {
                Ok(committed) => committed,
                Err(_) => {
                    // The connection's state is unknown, so it is dropped; so is the commit's outcome:
                    // the callers retry with the same event ids, which is idempotent.
                    let message = format!(
                        "PostgreSQL did not answer a commit within {limit:?} (the server or the network \
                         to it is stuck); the connection was dropped and the append's outcome is unknown: \
                         retry it with the same event ids"
                    );
                    tracing::warn!(appends = batch.len(), "{message}");
                    *shared.last_commit_error.lock() = Some(message.clone());
                    conn = None;
                    fail_all(std::mem::take(&mut batch), &Error::unavailable(message));
                    active = shared.queued.load(Ordering::Relaxed);
                    continue;
                }
            },
        };
        // Counted before anyone of this batch is answered: other appenders, not ones already back.
        let others = shared.queued.load(Ordering::Relaxed);
        match committed {
            Ok(rows) => {
                record(&shared, &batch, started);
                answer(std::mem::take(&mut batch), rows, &shared);
            }
            Err(e) if classify(&e) == PgErrorClass::Permanent && batch.len() > 1 => {
                // One append the database refuses must not fail the others: commit them one by one.
                tracing::warn!(error = %e, appends = batch.len(), "group commit failed; retrying its appends one by one");
                for r in std::mem::take(&mut batch) {
                    let one = vec![r];
                    let started = Instant::now();
                    match commit(c, &one, &mut last).await {
                        Ok(rows) => {
                            record(&shared, &one, started);
                            answer(one, rows, &shared);
                        }
                        Err(e) => fail_all(one, &to_store_error(e)),
                    }
                }
            }
            Err(e) => {
                let class = classify(&e);
                if class == PgErrorClass::Unavailable {
                    conn = None;
                }
                // A store that cannot commit (a lost connection, a timeout), not one refused append.
                if class != PgErrorClass::Permanent {
                    *shared.last_commit_error.lock() = Some(describe(&e));
                }
                // The outcome of a commit cut off by a lost connection is unknown: the callers retry
                // with the same event ids, which is idempotent.
                fail_all(std::mem::take(&mut batch), &to_store_error(e));
            }
        }
        active = answered + others;
    }
}

async fn open(pg: &Target) -> Result<Conn> {
    let client = connect_client(pg).await?;
    let append = client.prepare(APPEND_SQL).await.map_err(to_store_error)?;
    let group = client
        .prepare(APPEND_GROUP_SQL)
        .await
        .map_err(to_store_error)?;
    Ok(Conn {
        client,
        append,
        group,
    })
}

/// Runs `(key, first, last)` of one append's tags or types, numbered from 1 (its first event).
type Runs<'e> = Vec<(&'e str, i64, i64)>;

/// One row of `tamma_append` per append: status, first position, conflict, stored rows.
type Row = (i16, Option<i64>, Option<i64>, Option<serde_json::Value>);

/// A [`Row`] with the head `tamma_append` found under the lock.
type RowWithHead = (
    i16,
    Option<i64>,
    Option<i64>,
    Option<serde_json::Value>,
    Option<i64>,
);

/// Commits `batch` as one call of `tamma_append`, telling it which conditions `last` rules out, and
/// keeps `last` up to date with what the call wrote.
async fn commit(
    c: &Conn,
    batch: &[Request],
    last: &mut LastPositions,
) -> Result<Vec<Row>, tokio_postgres::Error> {
    // Conditions ruled out by what this writer knows, valid if the head under the lock is still the
    // one it committed last. Each append's events are counted as written (at the positions they get if
    // every append before them is written: upper bounds, which is all a bound must be).
    // Each append's tag and type runs, numbered from 1 (its first event): sent with it, and noted in
    // `last` at the positions it gets.
    let runs: Vec<_> = batch
        .iter()
        .map(|r| {
            let numbered = || r.events.iter().zip(1i64..).map(|(e, p)| (p, e));
            (
                key_runs(numbered(), |e| e.tags.iter()),
                key_runs(numbered(), |e| std::iter::once(e.event_type.as_str())),
            )
        })
        .collect();
    let skip_head = last.committed_head();
    let mut skip: Vec<bool> = Vec::with_capacity(batch.len());
    if let Some(mut head) = skip_head {
        last.begin(head);
        for (r, (tags, types)) in batch.iter().zip(&runs) {
            skip.push(
                r.condition
                    .as_ref()
                    .is_some_and(|cond| last.rules_out(cond, head)),
            );
            last.wrote_runs(tags, types, to_i64(head));
            head += r.events.len() as u64;
        }
    } else {
        skip.resize(batch.len(), false);
    }
    let rows = call(c, batch, &runs, skip_head, &skip).await?;
    // The head the call found under the lock: when it is not the one this writer knew, someone else
    // wrote and what this writer knows starts over from it.
    let locked = rows.first().and_then(|r| r.4).map_or(0, to_u64);
    if skip_head != Some(locked) {
        last.begin(locked);
    }
    let mut head = locked;
    for ((r, (tags, types)), row) in batch.iter().zip(&runs).zip(&rows) {
        if let (0, Some(first)) = (row.0, row.1) {
            last.wrote_runs(tags, types, first - 1);
            head = head.max(to_u64(first) + r.events.len() as u64 - 1);
        }
    }
    last.committed(head);
    Ok(rows
        .into_iter()
        .map(|(s, f, c, o, _)| (s, f, c, o))
        .collect())
}

/// One call of `tamma_append`: its rows with the head it found under the lock.
async fn call(
    c: &Conn,
    batch: &[Request],
    runs: &[(Runs<'_>, Runs<'_>)],
    skip_head: Option<u64>,
    skip: &[bool],
) -> Result<Vec<RowWithHead>, tokio_postgres::Error> {
    let n: usize = batch.iter().map(|r| r.events.len()).sum();
    let a = batch.len();
    let mut counts: Vec<i32> = Vec::with_capacity(a);
    let mut after: Vec<Option<i64>> = Vec::with_capacity(a);
    let mut items: Vec<i32> = Vec::with_capacity(a);
    let mut item_ntypes: Vec<i32> = Vec::new();
    let mut item_ntags: Vec<i32> = Vec::new();
    let mut item_types: Vec<&str> = Vec::new();
    let mut item_tags: Vec<&str> = Vec::new();
    let mut ids: Vec<Uuid> = Vec::with_capacity(n);
    let mut types: Vec<&str> = Vec::with_capacity(n);
    let mut ts: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(n);
    let mut tags: Vec<&str> = Vec::with_capacity(n);
    let mut meta: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut data: Vec<&str> = Vec::with_capacity(n);
    let mut run_counts: Vec<i32> = Vec::with_capacity(a);
    let mut run_keys: Vec<&str> = Vec::new();
    let mut run_first: Vec<i32> = Vec::new();
    let mut run_last: Vec<i32> = Vec::new();
    let mut run_type: Vec<bool> = Vec::new();
    let int = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    for (r, (tag_runs, type_runs)) in batch.iter().zip(runs) {
        counts.push(int(r.events.len()));
        // The append's runs, numbered from 1. An append holds far fewer than i32::MAX events (each is
        // a row in memory here).
        run_counts.push(int(tag_runs.len() + type_runs.len()));
        for (runs, is_type) in [(tag_runs, false), (type_runs, true)] {
            for &(key, first, last) in runs {
                run_keys.push(key);
                run_first.push(i32::try_from(first).unwrap_or(i32::MAX));
                run_last.push(i32::try_from(last).unwrap_or(i32::MAX));
                run_type.push(is_type);
            }
        }
        match &r.condition {
            None => {
                after.push(None);
                items.push(0);
            }
            Some(cond) => {
                after.push(Some(cond.after.map_or(0, to_i64)));
                items.push(int(cond.fail_if_events_match.items.len()));
                for item in &cond.fail_if_events_match.items {
                    item_ntypes.push(int(item.types.len()));
                    item_ntags.push(int(item.tags.len()));
                    item_types.extend(item.types.iter().map(String::as_str));
                    item_tags.extend(item.tags.iter());
                }
            }
        }
        for (i, e) in r.events.iter().enumerate() {
            ids.push(e.id);
            types.push(&e.event_type);
            // Truncated here, as every backend keeps microseconds: the driver rounds sub-microsecond
            // digits toward zero from 2000-01-01, which rounds times before 2000 up.
            ts.push(e.timestamp.map(|t| t.trunc_subsecs(6)));
            tags.push(&r.tags[i]);
            meta.push(r.metadata[i].as_deref());
            data.push(&r.data[i]);
        }
    }
    let skip_head = skip_head.map(to_i64);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
        &counts,
        &after,
        &items,
        &item_ntypes,
        &item_ntags,
        &item_types,
        &item_tags,
        &ids,
        &types,
        &ts,
        &tags,
        &meta,
        &data,
        &run_counts,
        &run_keys,
        &run_first,
        &run_last,
        &run_type,
        &skip_head,
        &skip,
    ];
    // A group is inserted by one statement when the writer can say where its conditions meet its own
    // appends; otherwise (and for a single append) `tamma_append` takes the appends one by one.
    let group = if batch.len() > 1 {
        group_conflicts(batch).map(|conflicts| GroupArgs::new(batch, runs, &conflicts))
    } else {
        None
    };
    let statement = match &group {
        Some(g) => {
            params.extend(g.params());
            &c.group
        }
        None => &c.append,
    };
    let delay = batch.iter().filter_map(|r| r.delay).max();
    let rows = if let Some(delay) = delay {
        // Test hook: hold the commit (and with it the append lock) after positions are assigned.
        c.client.batch_execute("BEGIN").await?;
        let rows = match c.client.query(statement, &params).await {
            Ok(rows) => rows,
            Err(e) => {
                // The transaction is aborted; end it so the connection can be used again.
                let _ = c.client.batch_execute("ROLLBACK").await;
                return Err(e);
            }
        };
        tokio::time::sleep(delay).await;
        c.client.batch_execute("COMMIT").await?;
        rows
    } else {
        // One statement, one implicit transaction, one round trip: the lock is released after COMMIT.
        c.client.query(statement, &params).await?
    };
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
            ))
        })
        .collect()
}

/// Most steps (an event indexed or compared) [`group_conflicts`] takes before it leaves a group to
/// `tamma_append`, which checks appends one by one on the server: a few milliseconds of the writer's
/// time at most. A group of 10,000 events whose appends are conditioned on tags of their own takes
/// about 10,000; one whose every append matches every event before it grows with the square.
const GROUP_CONFLICT_STEPS: usize = 50_000;

/// Where each append's condition meets the appends before it in `batch`: per append, the earlier
/// appends (by index) holding an event its query matches, each with the place (from 1) of the first such
/// event. Whether those earlier appends are written is decided under the lock, so all of them are
/// listed. `None` past [`GROUP_CONFLICT_STEPS`].
fn group_conflicts(batch: &[Request]) -> Option<Vec<Vec<(usize, usize)>>> {
    let conditions = || {
        batch
            .iter()
            .enumerate()
            .skip(1)
            .filter_map(|(k, r)| r.condition.as_ref().map(|c| (k, c)))
    };
    // The group's events under each tag and type a later condition names, in the group's order.
    let mut wanted_tags: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
    let mut wanted_types: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
    for (_, c) in conditions() {
        for item in &c.fail_if_events_match.items {
            for tag in item.tags.iter() {
                wanted_tags.entry(tag).or_default();
            }
            for ty in &item.types {
                wanted_types.entry(ty.as_str()).or_default();
            }
        }
    }
    let mut steps = 0usize;
    if !wanted_tags.is_empty() || !wanted_types.is_empty() {
        for (j, r) in batch.iter().enumerate() {
            for (p, e) in r.events.iter().enumerate() {
                for tag in e.tags.iter() {
                    if let Some(at) = wanted_tags.get_mut(tag) {
                        at.push((j, p + 1));
                    }
                }
                if let Some(at) = wanted_types.get_mut(e.event_type.as_str()) {
                    at.push((j, p + 1));
                }
            }
            steps += r.events.len();
        }
    }
    let mut out = vec![Vec::new(); batch.len()];
    for (k, c) in conditions() {
        let mut first: BTreeMap<usize, usize> = BTreeMap::new();
        let items = &c.fail_if_events_match.items;
        if items.is_empty() {
            // The empty query matches every event: the first of each earlier append.
            first.extend((0..k).map(|j| (j, 1)));
            steps += k;
        }
        for item in items {
            let lists: Vec<&[(usize, usize)]> = if item.tags.is_empty() {
                item.types
                    .iter()
                    .map(|t| wanted_types.get(t.as_str()).map_or(&[][..], Vec::as_slice))
                    .collect()
            } else {
                // An event must hold every tag of the item: the shortest list has them all.
                let shortest = item
                    .tags
                    .iter()
                    .map(|t| wanted_tags.get(t).map_or(&[][..], Vec::as_slice))
                    .min_by_key(|l| l.len())
                    .unwrap_or(&[]);
                vec![shortest]
            };
            for list in lists {
                for &(j, p) in list.iter().take_while(|(j, _)| *j < k) {
                    steps += 1;
                    if steps > GROUP_CONFLICT_STEPS {
                        return None;
                    }
                    if first.get(&j).is_some_and(|&q| q <= p) {
                        continue;
                    }
                    if item.matches(&batch[j].events[p - 1]) {
                        first.insert(j, p);
                    }
                }
            }
        }
        out[k] = first.into_iter().collect();
    }
    Some(out)
}

/// `tamma_append_group`'s arguments after `tamma_append`'s: per event its append (from 1) and place
/// (from 1), per run its append, per append the earlier appends its condition meets.
struct GroupArgs {
    ev_app: Vec<i32>,
    ev_place: Vec<i32>,
    run_app: Vec<i32>,
    dep_counts: Vec<i32>,
    dep_apps: Vec<i32>,
    dep_places: Vec<i32>,
}

impl GroupArgs {
    fn new(
        batch: &[Request],
        runs: &[(Runs<'_>, Runs<'_>)],
        conflicts: &[Vec<(usize, usize)>],
    ) -> Self {
        // A group holds at most MAX_BATCH_APPENDS appends and MAX_BATCH_EVENTS events plus one
        // append's: every number here fits an i32 (saturated all the same, never wrapped).
        let int = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
        let n: usize = batch.iter().map(|r| r.events.len()).sum();
        let mut args = Self {
            ev_app: Vec::with_capacity(n),
            ev_place: Vec::with_capacity(n),
            run_app: Vec::new(),
            dep_counts: Vec::with_capacity(batch.len()),
            dep_apps: Vec::new(),
            dep_places: Vec::new(),
        };
        for (a, ((r, (tag_runs, type_runs)), deps)) in
            batch.iter().zip(runs).zip(conflicts).enumerate()
        {
            for p in 1..=r.events.len() {
                args.ev_app.push(int(a + 1));
                args.ev_place.push(int(p));
            }
            args.run_app.extend(std::iter::repeat_n(
                int(a + 1),
                tag_runs.len() + type_runs.len(),
            ));
            args.dep_counts.push(int(deps.len()));
            for &(j, p) in deps {
                args.dep_apps.push(int(j + 1));
                args.dep_places.push(int(p));
            }
        }
        args
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 6] {
        [
            &self.ev_app,
            &self.ev_place,
            &self.run_app,
            &self.dep_counts,
            &self.dep_apps,
            &self.dep_places,
        ]
    }
}

fn record(shared: &Shared, batch: &[Request], started: Instant) {
    let events: usize = batch.iter().map(|r| r.events.len()).sum();
    metrics::histogram!(tamma_core::metric_names::EVENTS_COMMIT_SECONDS)
        .record(started.elapsed().as_secs_f64());
    // A batch is at most MAX_BATCH_EVENTS plus one append's events: far below f64's exact integers.
    #[allow(clippy::cast_precision_loss)]
    metrics::histogram!(tamma_core::metric_names::EVENTS_BATCH_SIZE).record(events as f64);
    *shared.last_commit.lock() = Some(Instant::now());
    *shared.last_commit_error.lock() = None;
}

fn answer(batch: Vec<Request>, rows: Vec<Row>, shared: &Shared) {
    if rows.len() != batch.len() {
        let e = Error::backend(
            std::io::Error::other(format!(
                "tamma_append answered {} rows for {} appends",
                rows.len(),
                batch.len()
            )),
            false,
        );
        fail_all(batch, &e);
        return;
    }
    let mut head = 0;
    let mut written = 0u64;
    for (r, (status, first, conflict, found)) in batch.into_iter().zip(rows) {
        let result = match (status, first, conflict) {
            (0, Some(first), _) => {
                let first = to_u64(first);
                let n = r.events.len() as u64;
                head = head.max(first + n - 1);
                written += n;
                Ok(AppendResult {
                    positions: (first..first + n).collect(),
                    duplicate: false,
                })
            }
            (1, _, Some(position)) => {
                metrics::counter!(tamma_core::metric_names::EVENTS_APPEND_REJECTED_TOTAL, "reason" => "condition_failed").increment(1);
                Err(Error::AppendConditionFailed {
                    position: to_u64(position),
                })
            }
            (2, _, _) => resolve_stored(&r.events, found),
            other => Err(Error::backend(
                std::io::Error::other(format!("tamma_append answered an unknown row {other:?}")),
                false,
            )),
        };
        // The caller may have given up waiting; the append stands either way.
        let _ = r.reply.send(result);
    }
    if written > 0 {
        metrics::counter!(tamma_core::metric_names::EVENTS_APPENDED_TOTAL).increment(written);
        shared.publish(head);
    }
}

/// Decides an append whose ids are (partly) stored: an idempotent retry, or a duplicate id.
fn resolve_stored(events: &[Event], found: Option<serde_json::Value>) -> Result<AppendResult> {
    let rows: Vec<FoundRow> =
        serde_json::from_value(found.unwrap_or_default()).map_err(|e| Error::backend(e, false))?;
    let stored: std::collections::HashMap<Uuid, (u64, Event)> = rows
        .into_iter()
        .map(FoundRow::into_event)
        .map(|(p, e)| (e.id, (p, e)))
        .collect();
    let aligned: Vec<Option<(u64, &Event)>> = events
        .iter()
        .map(|e| stored.get(&e.id).map(|(p, s)| (*p, s)))
        .collect();
    match resolve_ids(events, &aligned) {
        Ok(IdCheck::Duplicate(positions)) => Ok(AppendResult {
            positions,
            duplicate: true,
        }),
        Ok(IdCheck::New) => Err(Error::backend(
            std::io::Error::other("stored ids reported by tamma_append were not found"),
            true,
        )),
        Err(e) => {
            metrics::counter!(tamma_core::metric_names::EVENTS_APPEND_REJECTED_TOTAL, "reason" => "duplicate_event_id").increment(1);
            Err(e)
        }
    }
}

/// Answers every append of a failed batch with an error of the same class.
fn fail_all(batch: Vec<Request>, e: &Error) {
    for r in batch {
        let _ = r.reply.send(Err(same_class(e)));
    }
}

/// A copy of `e` for one caller (errors are not `Clone`): same class, same message.
pub(crate) fn same_class(e: &Error) -> Error {
    match e {
        Error::Unavailable { message, .. } => Error::unavailable(message.clone()),
        Error::Backend { source, transient } => {
            Error::backend(std::io::Error::other(source.to_string()), *transient)
        }
        other => Error::backend(
            std::io::Error::other(other.to_string()),
            other.is_transient(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tamma_events::{Query, QueryItem};

    fn request(events: Vec<Event>, condition: Option<AppendCondition>) -> Request {
        Request::new(events, condition, None).unwrap().0
    }

    #[test]
    fn group_conflicts_name_the_earlier_appends_and_their_first_matching_event() {
        let cond = |item: QueryItem| Some(AppendCondition::new(Query::item(item)).after(7));
        let batch = vec![
            request(
                vec![Event::new("A").tag("k:1"), Event::new("B").tag("k:1")],
                None,
            ),
            request(
                vec![Event::new("B").tag("k:2")],
                cond(QueryItem::tags(["k:1"])),
            ),
            request(vec![Event::new("C")], cond(QueryItem::types(["B"]))),
            request(
                vec![Event::new("D")],
                Some(AppendCondition::new(Query::all())),
            ),
            request(
                vec![Event::new("E")],
                cond(QueryItem::types(["B"]).with_tag("k:3")),
            ),
        ];
        assert_eq!(
            group_conflicts(&batch),
            Some(vec![
                vec![],
                vec![(0, 1)],
                vec![(0, 2), (1, 1)],
                vec![(0, 1), (1, 1), (2, 1)],
                vec![],
            ])
        );
    }

    #[test]
    fn group_conflicts_give_up_where_every_append_meets_every_one_before_it() {
        let all = || Some(AppendCondition::new(Query::item(QueryItem::tags(["t"]))));
        let batch: Vec<Request> = (0..400)
            .map(|_| request(vec![Event::new("A").tag("t")], all()))
            .collect();
        // 400 events indexed, then 0 + 1 + … + 399 = 79,800 comparisons.
        assert_eq!(group_conflicts(&batch), None);
        assert!(group_conflicts(&batch[..200]).is_some());
    }

    #[test]
    fn tags_literal_quotes_every_element_and_escapes_quotes_and_backslashes() {
        let tags: tamma_events::Tags = ["a", "NULL", "x,y", "q\"r", "b\\s", " "]
            .into_iter()
            .collect();
        let lit = tags_literal(&tags);
        assert!(lit.starts_with('{') && lit.ends_with('}'), "{lit}");
        for t in [
            "\"a\"",
            "\"NULL\"",
            "\"x,y\"",
            "\"q\\\"r\"",
            "\"b\\\\s\"",
            "\" \"",
        ] {
            assert!(lit.contains(t), "{t} in {lit}");
        }
        assert_eq!(tags_literal(&tamma_events::Tags::new()), "{}");
    }
}
