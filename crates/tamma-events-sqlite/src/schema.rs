//! The database layout, the SQL a query becomes, and rows to and from events.

use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{Connection, Row};
use tamma_events::{Event, EventData, EventMetadata, Query, ReadOptions, SequencedEvent, Tags};
use uuid::Uuid;

/// The newest schema version this build writes (`PRAGMA user_version`).
pub(crate) const SCHEMA_VERSION: i64 = 3;

/// Version 1. `position` is the rowid. Tags are kept twice: as a JSON array on the event (read back with
/// it) and one row per tag in `event_tags`, a `(tag, position)` B-tree, so a tag query is an ordered scan
/// of only the matching entries that stops at its limit (replaced by runs in [`SCHEMA_V3`]). `meta.removed_through` remembers the last
/// position retention removed, so the head never goes down.
pub(crate) const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS events (
    position    INTEGER PRIMARY KEY,
    id          BLOB    NOT NULL UNIQUE,
    type        TEXT    NOT NULL,
    timestamp   INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    tags        TEXT    NOT NULL,
    metadata    TEXT,
    data        TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS events_type_position ON events (type, position);
CREATE TABLE IF NOT EXISTS event_tags (
    tag      TEXT    NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (tag, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Version 2: named consumer cursors (routes, forwarders) kept next to the events they point into.
pub(crate) const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS cursors (
    name     TEXT    PRIMARY KEY,
    position INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Version 3: tags and types indexed by runs. A run `(key, first, last)` says every event from `first`
/// to `last` carries the tag (or has the type); runs of one key never overlap. An append of 100 events
/// of one type sharing two tags writes three runs instead of 300 index entries (version 2 kept one
/// `(tag, position)` row per tag of every event and a `(type, position)` index entry per event), which
/// was most of the writer's work in large appends. A query walks the runs of its key in order and reads
/// the range of `events` each covers, so it still touches only matching events. The old index rows
/// become runs of consecutive positions (gaps-and-islands over each key's positions).
pub(crate) const SCHEMA_V3: &str = "
CREATE TABLE IF NOT EXISTS tag_runs (
    tag   TEXT    NOT NULL,
    first INTEGER NOT NULL,
    last  INTEGER NOT NULL,
    PRIMARY KEY (tag, first)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS type_runs (
    type  TEXT    NOT NULL,
    first INTEGER NOT NULL,
    last  INTEGER NOT NULL,
    PRIMARY KEY (type, first)
) WITHOUT ROWID;
INSERT INTO tag_runs (tag, first, last)
    SELECT tag, min(position), max(position)
      FROM (SELECT tag, position,
                   position - row_number() OVER (PARTITION BY tag ORDER BY position) AS island
              FROM event_tags)
     GROUP BY tag, island;
INSERT INTO type_runs (type, first, last)
    SELECT type, min(position), max(position)
      FROM (SELECT type, position,
                   position - row_number() OVER (PARTITION BY type ORDER BY position) AS island
              FROM events)
     GROUP BY type, island;
DROP TABLE event_tags;
DROP INDEX events_type_position;
";

/// The position saved under the cursor `name`, if any.
pub(crate) fn load_cursor(conn: &Connection, name: &str) -> rusqlite::Result<Option<u64>> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached("SELECT position FROM cursors WHERE name = ?1")?
        .query_row([name], |r| r.get::<_, i64>(0))
        .optional()
        .map(|p| p.map(to_u64))
}

/// Every saved cursor and its position, by name.
pub(crate) fn cursors(conn: &Connection) -> rusqlite::Result<Vec<(String, u64)>> {
    conn.prepare_cached("SELECT name, position FROM cursors ORDER BY name")?
        .query_map([], |r| Ok((r.get(0)?, to_u64(r.get(1)?))))?
        .collect()
}

/// The columns every event read selects, in the order [`decode`] expects.
const COLUMNS: &str =
    "e.position, e.id, e.type, e.timestamp, e.recorded_at, e.tags, e.metadata, e.data";

/// The committed head: the last position, or what retention removed if it removed everything.
pub(crate) fn head(conn: &Connection) -> rusqlite::Result<u64> {
    conn.prepare_cached(
        "SELECT max(coalesce((SELECT max(position) FROM events), 0),
                    coalesce((SELECT value FROM meta WHERE key = 'removed_through'), 0))",
    )?
    .query_row([], |r| r.get::<_, i64>(0))
    .map(to_u64)
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(v).unwrap_or_default()
}

/// The events of one append encoded for insertion (done by the caller's task, so the writer thread
/// only runs SQL): every JSON text in one buffer, so an append of any size allocates twice.
pub(crate) struct Encoded {
    buf: String,
    rows: Vec<EncodedRow>,
}

/// Where one event's encoded parts are in [`Encoded::buf`].
pub(crate) struct EncodedRow {
    pub(crate) id: [u8; 16],
    pub(crate) timestamp: Option<i64>,
    event_type: std::ops::Range<usize>,
    tags: std::ops::Range<usize>,
    /// Empty when the event has no metadata (stored as NULL).
    metadata: std::ops::Range<usize>,
    data: std::ops::Range<usize>,
}

impl Encoded {
    /// The encoded rows, in append order.
    pub(crate) fn rows(&self) -> &[EncodedRow] {
        &self.rows
    }

    /// How many events.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// The type of `row`.
    pub(crate) fn event_type(&self, row: &EncodedRow) -> &str {
        &self.buf[row.event_type.clone()]
    }

    /// The tags of `row` as a JSON array.
    pub(crate) fn tags(&self, row: &EncodedRow) -> &str {
        &self.buf[row.tags.clone()]
    }

    /// The metadata of `row` as a JSON object, `None` when empty.
    pub(crate) fn metadata(&self, row: &EncodedRow) -> Option<&str> {
        (!row.metadata.is_empty()).then(|| &self.buf[row.metadata.clone()])
    }

    /// The data of `row` as JSON.
    pub(crate) fn data(&self, row: &EncodedRow) -> &str {
        &self.buf[row.data.clone()]
    }
}

/// Encodes the events of one append.
pub(crate) fn encode(events: &[Event]) -> Encoded {
    let mut buf = Vec::with_capacity(events.len() * 512);
    let rows = events
        .iter()
        .map(|e| EncodedRow {
            id: *e.id.as_bytes(),
            timestamp: e.timestamp.map(micros),
            event_type: {
                let start = buf.len();
                buf.extend_from_slice(e.event_type.as_bytes());
                start..buf.len()
            },
            tags: {
                let start = buf.len();
                e.tags.write_json(&mut buf);
                start..buf.len()
            },
            metadata: if e.metadata.is_empty() {
                0..0
            } else {
                let start = buf.len();
                e.metadata.write_json(&mut buf);
                start..buf.len()
            },
            // Already JSON text: copied, not serialized (which would check it again).
            data: {
                let start = buf.len();
                buf.extend_from_slice(e.data.as_json().as_bytes());
                start..buf.len()
            },
        })
        .collect();
    // Made of `&str`s and ASCII punctuation (or serde_json's output), so valid UTF-8: this never takes
    // the fallback.
    let buf = String::from_utf8(buf).unwrap_or_default();
    Encoded { buf, rows }
}

/// Tags from the JSON array the writer stored: [`Tags::from_plain_json`] for the compact form without
/// escapes the writer writes (the tags of almost every event), `serde_json` for anything else.
fn tags_from_json(text: &str) -> serde_json::Result<Tags> {
    Tags::from_plain_json(text).map_or_else(|| serde_json::from_str(text), Ok)
}

/// Metadata from the JSON the writer stored: [`EventMetadata::from_plain_json`] for the compact form
/// without escapes the writer writes, `serde_json` for anything else.
fn metadata_from_json(text: &str) -> serde_json::Result<EventMetadata> {
    EventMetadata::from_plain_json(text).map_or_else(|| serde_json::from_str(text), Ok)
}

/// Reads one row selected with [`COLUMNS`].
pub(crate) fn decode(r: &Row<'_>) -> rusqlite::Result<SequencedEvent> {
    let conv = |i: usize, e: serde_json::Error| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    };
    let id: [u8; 16] = r.get(1)?;
    let tags = tags_from_json(r.get_ref(5)?.as_str()?).map_err(|e| conv(5, e))?;
    let metadata: EventMetadata = match r.get_ref(6)?.as_str_or_null()? {
        Some(s) => metadata_from_json(s).map_err(|e| conv(6, e))?,
        None => EventMetadata::default(),
    };
    // The text the writer stored from a checked payload: copied, never parsed.
    let data = EventData::from_trusted(r.get_ref(7)?.as_str()?.to_owned());
    Ok(SequencedEvent {
        position: to_u64(r.get(0)?),
        recorded_at: from_micros(r.get(4)?),
        event: Event {
            id: Uuid::from_bytes(id),
            event_type: r.get(2)?,
            timestamp: Some(from_micros(r.get(3)?)),
            tags,
            metadata,
            data,
        },
    })
}

/// One page of rows copied out of SQLite on the blocking pool: every text column in one buffer. The
/// reader's task decodes the events from it as it takes them ([`RawPage::into_events`]), so the
/// allocations of an event happen on the thread that later frees it, and the blocking thread only
/// steps SQLite and copies bytes (two threads allocating and freeing each other's memory contend on
/// the allocator's locks).
pub(crate) struct RawPage {
    buf: String,
    rows: Vec<RawRow>,
}

/// Where one row's columns are.
struct RawRow {
    position: i64,
    id: [u8; 16],
    timestamp: i64,
    recorded_at: i64,
    event_type: std::ops::Range<usize>,
    tags: std::ops::Range<usize>,
    metadata: Option<std::ops::Range<usize>>,
    data: std::ops::Range<usize>,
}

impl RawPage {
    /// How many rows.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// The position of the last row.
    pub(crate) fn last_position(&self) -> Option<u64> {
        self.rows.last().map(|r| to_u64(r.position))
    }

    /// The events, decoded one by one as they are taken.
    pub(crate) fn into_events(self) -> impl Iterator<Item = tamma_events::Result<SequencedEvent>> {
        let Self { buf, rows } = self;
        rows.into_iter().map(move |r| r.decode(&buf))
    }
}

impl RawRow {
    fn decode(self, buf: &str) -> tamma_events::Result<SequencedEvent> {
        let damaged = |column: &str, e: serde_json::Error| {
            tamma_events::Error::backend(
                format!(
                    "the stored event at position {} has damaged {column}: {e}",
                    self.position
                ),
                false,
            )
        };
        let tags = tags_from_json(&buf[self.tags.clone()]).map_err(|e| damaged("tags", e))?;
        let metadata: EventMetadata = match &self.metadata {
            Some(m) => metadata_from_json(&buf[m.clone()]).map_err(|e| damaged("metadata", e))?,
            None => EventMetadata::default(),
        };
        Ok(SequencedEvent {
            position: to_u64(self.position),
            recorded_at: from_micros(self.recorded_at),
            event: Event {
                id: Uuid::from_bytes(self.id),
                event_type: buf[self.event_type.clone()].to_owned(),
                timestamp: Some(from_micros(self.timestamp)),
                tags,
                metadata,
                // The text the writer stored from a checked payload: copied, never parsed.
                data: EventData::from_trusted(buf[self.data.clone()].to_owned()),
            },
        })
    }
}

/// Copies `s` to the end of `buf`, returning where it is.
fn push(buf: &mut String, s: &str) -> std::ops::Range<usize> {
    let start = buf.len();
    buf.push_str(s);
    start..buf.len()
}

/// Runs a [`select`], copying the rows into a [`RawPage`].
pub(crate) fn run_raw(conn: &Connection, sql: &Sql) -> rusqlite::Result<RawPage> {
    let mut stmt = conn.prepare_cached(&sql.text)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(sql.params.iter()))?;
    let cap = usize::try_from(sql.limit.min(1024)).unwrap_or(1024);
    let mut page = RawPage {
        buf: String::with_capacity(cap * 384),
        rows: Vec::with_capacity(cap),
    };
    while let Some(r) = rows.next()? {
        let buf = &mut page.buf;
        page.rows.push(RawRow {
            position: r.get(0)?,
            id: r.get(1)?,
            event_type: push(buf, r.get_ref(2)?.as_str()?),
            timestamp: r.get(3)?,
            recorded_at: r.get(4)?,
            tags: push(buf, r.get_ref(5)?.as_str()?),
            metadata: r.get_ref(6)?.as_str_or_null()?.map(|m| push(buf, m)),
            data: push(buf, r.get_ref(7)?.as_str()?),
        });
    }
    Ok(page)
}

/// A query as SQL with its parameters.
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) params: Vec<Value>,
    /// The most rows it selects.
    pub(crate) limit: u64,
}

/// The SQL selecting events of `query` as `options` say, capped at `limit` rows.
///
/// One item becomes one ordered scan of the runs of its first tag (or of its type), each run joined to
/// the range of `events` it covers; several items (and an item of several types alone, which is the
/// same as one item per type) become a `UNION` of such scans, each capped at the limit, joined back to
/// `events`.
pub(crate) fn select(query: &Query, options: ReadOptions, limit: u64) -> Sql {
    select_columns(query, options, limit, COLUMNS, false)
}

/// Like [`select`], selecting only `e.position`; the first match of one tag or one type alone is read
/// from its runs without touching `events` (what most append conditions ask).
pub(crate) fn select_positions(query: &Query, options: ReadOptions, limit: u64) -> Sql {
    select_columns(query, options, limit, "e.position", true)
}

/// One scan of a query: the runs of one key (the item's first tag, or one type), narrowed by the
/// item's other tags and its types.
struct Part<'q> {
    /// `tag_runs` or `type_runs`.
    table: &'static str,
    key: &'q str,
    other_tags: Vec<&'q str>,
    /// Types the event must have one of (only when the scan follows a tag).
    types: Vec<&'q str>,
}

/// The scans of `query`: one per item with tags; one per type of an item of types alone.
fn parts(query: &Query) -> Vec<Part<'_>> {
    let mut parts = Vec::new();
    for item in &query.items {
        let mut tags = item.tags.iter();
        if let Some(first) = tags.next() {
            parts.push(Part {
                table: "tag_runs",
                key: first,
                other_tags: tags.collect(),
                types: item.types.iter().map(String::as_str).collect(),
            });
        } else {
            parts.extend(item.types.iter().map(|t| Part {
                table: "type_runs",
                key: t,
                other_tags: Vec::new(),
                types: Vec::new(),
            }));
        }
    }
    parts
}

/// What the text of a [`select`] depends on: per scan its table and the number of other tags and of
/// types, the direction, the limit and the columns. The values only become parameters.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Shape {
    parts: Vec<(&'static str, usize, usize)>,
    empty: bool,
    backwards: bool,
    limit: u64,
    positions_only: bool,
}

/// Statement texts per shape kept by each thread at most (the cache is emptied when full).
const MAX_CACHED_TEXTS: usize = 256;

thread_local! {
    /// The statement texts this thread built, by shape: appends and reads repeat a few shapes with
    /// other values, and building the text costs more than running a short query.
    static TEXTS: std::cell::RefCell<std::collections::HashMap<Shape, String>> =
        std::cell::RefCell::default();
}

fn select_columns(
    query: &Query,
    options: ReadOptions,
    limit: u64,
    columns: &str,
    positions_only: bool,
) -> Sql {
    let parts = parts(query);
    let shape = Shape {
        parts: parts
            .iter()
            .map(|p| (p.table, p.other_tags.len(), p.types.len()))
            .collect(),
        empty: query.items.is_empty(),
        backwards: options.backwards,
        limit,
        positions_only,
    };
    let cached = TEXTS.with_borrow(|t| t.get(&shape).cloned());
    if let Some(text) = cached {
        return Sql {
            text,
            params: params(&parts, query.items.is_empty(), options),
            limit,
        };
    }
    let sql = build_sql(
        &parts,
        query.items.is_empty(),
        options,
        limit,
        columns,
        positions_only,
    );
    TEXTS.with_borrow_mut(|t| {
        if t.len() >= MAX_CACHED_TEXTS {
            t.clear();
        }
        t.insert(shape, sql.text.clone());
    });
    sql
}

/// Where a read starts: `from`, or the first (last, backwards) position.
fn bound(options: ReadOptions) -> Value {
    Value::Integer(to_i64(options.from.unwrap_or(if options.backwards {
        u64::MAX
    } else {
        1
    })))
}

/// The parameters of a [`select`], in the order [`build_sql`] numbers them: the bound alone for the
/// empty query (every event), else per scan its key, the bound, its other tags, its types.
fn params(parts: &[Part<'_>], all: bool, options: ReadOptions) -> Vec<Value> {
    let bound = bound(options);
    if all {
        return vec![bound];
    }
    let mut params = Vec::new();
    for part in parts {
        params.push(Value::Text(part.key.to_owned()));
        params.push(bound.clone());
        params.extend(part.other_tags.iter().map(|t| Value::Text((*t).to_owned())));
        params.extend(part.types.iter().map(|t| Value::Text((*t).to_owned())));
    }
    params
}

fn build_sql(
    parts: &[Part<'_>],
    all: bool,
    options: ReadOptions,
    limit: u64,
    columns: &str,
    positions_only: bool,
) -> Sql {
    let params = params(parts, all, options);
    let order = if options.backwards { "DESC" } else { "ASC" };
    let text = if all {
        let cmp = if options.backwards { "<=" } else { ">=" };
        format!(
            "SELECT {columns} FROM events e WHERE e.position {cmp} ?1 ORDER BY e.position {order} LIMIT {limit}"
        )
    } else if parts.is_empty() {
        // Only an item of neither types nor tags gives no scan, and validation refuses those.
        format!("SELECT {columns} FROM events e WHERE 0 LIMIT {limit}")
    } else if let [part] = parts {
        let first_only = positions_only
            && !options.backwards
            && limit == 1
            && part.other_tags.is_empty()
            && part.types.is_empty();
        if first_only {
            // Every position of a run is an event carrying its key: the first match is where the
            // first run reaching the bound starts, or the bound itself when that run covers it.
            let table = part.table;
            let col = key_column(table);
            format!(
                "SELECT max(r.first, ?2) FROM {table} r WHERE r.{col} = ?1 AND r.first >= {seek} \
                 AND r.last >= ?2 ORDER BY r.first LIMIT 1",
                seek = seek(table, 1, 2)
            )
        } else {
            let (from, wher, by) = part_sql(part, 1, options.backwards);
            format!("SELECT {columns} FROM {from} WHERE {wher} ORDER BY {by} LIMIT {limit}")
        }
    } else {
        let mut n = 1;
        let scans: Vec<String> = parts
            .iter()
            .map(|part| {
                let (from, wher, by) = part_sql(part, n, options.backwards);
                n += 2 + part.other_tags.len() + part.types.len();
                format!(
                    "SELECT position FROM (SELECT e.position AS position FROM {from} WHERE {wher} \
                     ORDER BY {by} LIMIT {limit})"
                )
            })
            .collect();
        format!(
            "SELECT {columns} FROM events e WHERE e.position IN ({}) ORDER BY e.position {order} LIMIT {limit}",
            scans.join(" UNION ")
        )
    };
    Sql {
        text,
        params,
        limit,
    }
}

/// The key column of a runs table.
fn key_column(table: &str) -> &'static str {
    if table == "type_runs" { "type" } else { "tag" }
}

/// The first run of key `?{key}` a forward scan from position `?{bound}` needs: the last run starting
/// at or before the bound (it may cover it), or else the runs from the bound on. One index search.
fn seek(table: &str, key: usize, bound: usize) -> String {
    let col = key_column(table);
    format!(
        "coalesce((SELECT s.first FROM {table} s WHERE s.{col} = ?{key} AND s.first <= ?{bound} \
         ORDER BY s.first DESC LIMIT 1), ?{bound})"
    )
}

/// `FROM`, `WHERE` and `ORDER BY` of one scan whose parameters are numbered from `n` (key, bound,
/// other tags, types); the event table is aliased `e`.
///
/// Runs of one key never overlap, so walking them in order of their first position and each one's
/// events in order of position yields the events in position order, with no sort.
fn part_sql(part: &Part<'_>, n: usize, backwards: bool) -> (String, String, String) {
    let table = part.table;
    let col = key_column(table);
    let (key, bound) = (n, n + 1);
    let mut wher = vec![format!("r.{col} = ?{key}")];
    // Each side of the event range is one expression: SQLite bounds a rowid search by one constraint
    // per side, and given `e.position >= r.first AND e.position >= ?` it may pick the constant one and
    // walk every event from there to each run.
    if backwards {
        wher.push(format!("r.first <= ?{bound}"));
        wher.push(format!(
            "e.position >= r.first AND e.position <= min(r.last, ?{bound})"
        ));
    } else {
        wher.push(format!("r.first >= {}", seek(table, key, bound)));
        wher.push(format!(
            "e.position >= max(r.first, ?{bound}) AND e.position <= r.last"
        ));
    }
    let mut p = bound;
    for (i, _) in part.other_tags.iter().enumerate() {
        p += 1;
        // The one run of that tag that could cover the position: the last starting at or before it.
        wher.push(format!(
            "(SELECT x{i}.last FROM tag_runs x{i} WHERE x{i}.tag = ?{p} AND x{i}.first <= e.position \
             ORDER BY x{i}.first DESC LIMIT 1) >= e.position"
        ));
    }
    if !part.types.is_empty() {
        let list: Vec<String> = part
            .types
            .iter()
            .map(|_| {
                p += 1;
                format!("?{p}")
            })
            .collect();
        wher.push(format!("e.type IN ({})", list.join(", ")));
    }
    let order = if backwards { "DESC" } else { "ASC" };
    (
        format!("{table} r JOIN events e"),
        wher.join(" AND "),
        format!("r.first {order}, e.position {order}"),
    )
}

/// The event stored under `id`, if any.
pub(crate) fn get(conn: &Connection, id: &Uuid) -> rusqlite::Result<Option<SequencedEvent>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM events e WHERE e.id = ?1"))?;
    let mut rows = stmt.query_map([&id.as_bytes()[..]], decode)?;
    rows.next().transpose()
}

#[cfg(test)]
mod tests {
    #[test]
    fn stored_tags_split_or_parse() {
        use tamma_events::Tags;
        for tags in [
            Tags::new(),
            Tags::from(["a:1"]),
            Tags::from(["kind:bench", "writer:7", "z"]),
            Tags::from(["quote:\"", "comma:\",\"", "back:\\", "nl:\n", "plain:x"]),
            Tags::from(["unicode:é✓"]),
        ] {
            let text = serde_json::to_string(&tags).unwrap();
            assert_eq!(super::tags_from_json(&text).unwrap(), tags, "{text}");
        }
        assert!(super::tags_from_json("[\"a\"").is_err());
        // Not the compact form: read by serde_json, the same tags or an error.
        assert_eq!(
            super::tags_from_json("[\"a\", \"b\"]").unwrap(),
            Tags::from(["a", "b"])
        );
        assert!(super::tags_from_json("[\"a\"x\"b\"]").is_err());
        assert!(super::tags_from_json("[\"a\",\"b\u{1}\"]").is_err());
        // Metadata: the writer's compact form and anything else read alike.
        for text in [
            r#"{"eventSource":"system","correlationId":"c-1","k":"v"}"#,
            r#"{"eventSource": "system", "correlationId": "c-1", "k": "v"}"#,
            r#"{"k":"\"quoted\""}"#,
        ] {
            assert_eq!(
                super::metadata_from_json(text).unwrap(),
                serde_json::from_str::<EventMetadata>(text).unwrap(),
                "{text}"
            );
        }
        assert!(super::metadata_from_json(r#"{"eventSource":"robot"}"#).is_err());
        assert!(super::tags_from_json("{}").is_ok_and(|t| t.is_empty()));
    }

    use super::*;
    use tamma_events::QueryItem;

    fn plan(conn: &Connection, sql: &Sql) -> String {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", sql.text))
            .unwrap();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(sql.params.iter()), |r| {
                r.get::<_, String>(3)
            })
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    }

    /// A cached statement text gets the same parameters as a freshly built one, for every shape.
    #[test]
    fn cached_texts_get_the_parameters_they_number() {
        let queries = [
            Query::all(),
            Query::item(QueryItem::tags(["a:1"])),
            Query::item(
                QueryItem::tags(["a:1", "b:2", "c:3"])
                    .with_type("X")
                    .with_type("Y"),
            ),
            Query::item(QueryItem::types(["X"])),
            Query {
                items: vec![
                    QueryItem::tags(["a:1"]),
                    QueryItem::types(["X", "Y"]),
                    QueryItem::tags(["b:2", "c:3"]).with_type("Z"),
                ],
            },
        ];
        for q in &queries {
            for options in [ReadOptions::forwards().from(7), ReadOptions::backwards()] {
                for positions_only in [false, true] {
                    let built = build_sql(
                        &parts(q),
                        q.items.is_empty(),
                        options,
                        10,
                        COLUMNS,
                        positions_only,
                    );
                    assert_eq!(
                        params(&parts(q), q.items.is_empty(), options),
                        built.params,
                        "{}",
                        built.text
                    );
                    let first = select_columns(q, options, 10, COLUMNS, positions_only);
                    let again = select_columns(q, options, 10, COLUMNS, positions_only);
                    assert_eq!(first.text, built.text);
                    assert_eq!(again.text, built.text);
                    assert_eq!(again.params, built.params);
                }
            }
        }
    }

    /// A tag query is a range search of the tag's runs, each joined to the range of events it covers,
    /// in order, with no scan and no sort; a one-tag condition reads the runs alone.
    #[test]
    fn tag_query_searches_only_matching_runs() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("{SCHEMA_V1} {SCHEMA_V2} {SCHEMA_V3}"))
            .unwrap();
        let q = Query::item(QueryItem::tags(["workflow:wf-1"]));
        let all = |p: &str| {
            assert!(!p.contains("SCAN") && !p.contains("TEMP B-TREE"), "{p}");
        };
        let p = plan(&conn, &select(&q, ReadOptions::forwards().from(10), 100));
        assert!(
            p.contains("SEARCH r USING PRIMARY KEY (tag=? AND first>?)"),
            "{p}"
        );
        assert!(
            p.contains("SEARCH e USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"),
            "{p}"
        );
        all(&p);
        let p = plan(&conn, &select(&q, ReadOptions::backwards().from(10), 100));
        assert!(
            p.contains("SEARCH r USING PRIMARY KEY (tag=? AND first<?)"),
            "{p}"
        );
        all(&p);
        let p = plan(
            &conn,
            &select_positions(&q, ReadOptions::forwards().from(10), 1),
        );
        assert!(!p.contains(" e "), "{p}");
        all(&p);
        let q = Query::item(
            QueryItem::tags(["a:1", "b:2"])
                .with_type("X")
                .with_type("Y"),
        );
        let p = plan(&conn, &select(&q, ReadOptions::forwards(), 100));
        all(&p);
        let q = Query::item(QueryItem::types(["A", "B"]));
        let p = plan(&conn, &select(&q, ReadOptions::forwards(), 100));
        assert!(
            p.contains("SEARCH r USING PRIMARY KEY (type=? AND first>?)"),
            "{p}"
        );
    }

    /// A query reads only the events of the runs it walks: with a rare tag's runs spread over 50,000
    /// events, a read costs a few hundred virtual-machine steps, not a walk over the events between
    /// (each side of the event range must bound the rowid search; see `part_sql`).
    #[test]
    fn a_query_steps_only_through_the_events_of_its_runs() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!(
            "{SCHEMA_V1} {SCHEMA_V2} {SCHEMA_V3}
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000)
             INSERT INTO events SELECT i, randomblob(16), 'T', 0, 0, '[]', NULL, '{{}}' FROM n;
             INSERT INTO tag_runs VALUES ('rare', 10, 10), ('rare', 25000, 25001), ('rare', 49990, 49990),
                                         ('wide', 1, 50000);
             INSERT INTO type_runs VALUES ('T', 1, 50000);"
        ))
        .unwrap();
        let steps = |q: &Query, options: ReadOptions, limit: u64| {
            let sql = select(q, options, limit);
            let mut stmt = conn.prepare(&sql.text).unwrap();
            let mut rows = stmt
                .query(rusqlite::params_from_iter(sql.params.iter()))
                .unwrap();
            let mut got = Vec::new();
            while let Some(r) = rows.next().unwrap() {
                got.push(r.get::<_, i64>(0).unwrap());
            }
            drop(rows);
            (got, stmt.get_status(rusqlite::StatementStatus::VmStep))
        };
        let rare = Query::item(QueryItem::tags(["rare"]));
        let both = Query::item(QueryItem::tags(["wide", "rare"]));
        let typed = Query::item(QueryItem::types(["T"]));
        for (q, options, limit, want) in [
            (
                &rare,
                ReadOptions::forwards(),
                100,
                vec![10, 25000, 25001, 49990],
            ),
            (
                &rare,
                ReadOptions::forwards().from(25001),
                100,
                vec![25001, 49990],
            ),
            (
                &rare,
                ReadOptions::backwards().from(49989),
                100,
                vec![25001, 25000, 10],
            ),
            (
                &both,
                ReadOptions::forwards().from(11),
                100,
                vec![25000, 25001, 49990],
            ),
            (
                &typed,
                ReadOptions::forwards().from(49998),
                100,
                vec![49998, 49999, 50000],
            ),
            (&typed, ReadOptions::backwards().from(3), 100, vec![3, 2, 1]),
        ] {
            let (got, steps) = steps(q, options, limit);
            assert_eq!(got, want);
            assert!(steps < 1_000, "{steps} steps for {want:?}");
        }
    }
}
