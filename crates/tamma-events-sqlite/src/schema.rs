//! The database layout, the SQL a query becomes, and rows to and from events.

use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{Connection, Row};
use tamma_events::{Event, EventData, EventMetadata, Query, ReadOptions, SequencedEvent, Tags};
use uuid::Uuid;

/// The newest schema version this build writes (`PRAGMA user_version`).
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// Version 1. `position` is the rowid. Tags are kept twice: as a JSON array on the event (read back with
/// it) and one row per tag in `event_tags`, a `(tag, position)` B-tree, so a tag query is an ordered scan
/// of only the matching entries that stops at its limit. `meta.removed_through` remembers the last
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

/// The position saved under the cursor `name`, if any.
pub(crate) fn load_cursor(conn: &Connection, name: &str) -> rusqlite::Result<Option<u64>> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached("SELECT position FROM cursors WHERE name = ?1")?
        .query_row([name], |r| r.get::<_, i64>(0))
        .optional()
        .map(|p| p.map(to_u64))
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

/// Appends `value` as compact JSON to `buf`, returning where it is; `fallback` when it cannot be
/// written (it always can: string keys only).
fn json_into<T: serde::Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    value: &T,
    fallback: &str,
) -> std::ops::Range<usize> {
    let start = buf.len();
    if serde_json::to_writer(&mut *buf, value).is_err() {
        buf.truncate(start);
        buf.extend_from_slice(fallback.as_bytes());
    }
    start..buf.len()
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
            tags: json_into(&mut buf, &e.tags, "[]"),
            metadata: if e.metadata.is_empty() {
                0..0
            } else {
                json_into(&mut buf, &e.metadata, "{}")
            },
            // Already JSON text: copied, not serialized (which would check it again).
            data: {
                let start = buf.len();
                buf.extend_from_slice(e.data.as_json().as_bytes());
                start..buf.len()
            },
        })
        .collect();
    // serde_json writes only valid UTF-8, so this never takes the fallback.
    let buf = String::from_utf8(buf).unwrap_or_default();
    Encoded { buf, rows }
}

/// Tags from the JSON array the writer stored. A compact array of strings without a backslash (the
/// tags of almost every event) is split without a JSON parser: with no escapes, no string can hold a
/// quote, so `","` only ever separates two tags. Anything else goes through `serde_json`.
fn tags_from_json(text: &str) -> serde_json::Result<Tags> {
    if text == "[]" {
        return Ok(Tags::new());
    }
    if !text.contains('\\')
        && let Some(inner) = text.strip_prefix("[\"").and_then(|t| t.strip_suffix("\"]"))
    {
        return Ok(inner.split("\",\"").collect());
    }
    serde_json::from_str(text)
}

/// Reads one row selected with [`COLUMNS`].
pub(crate) fn decode(r: &Row<'_>) -> rusqlite::Result<SequencedEvent> {
    let conv = |i: usize, e: serde_json::Error| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    };
    let id: [u8; 16] = r.get(1)?;
    let tags = tags_from_json(r.get_ref(5)?.as_str()?).map_err(|e| conv(5, e))?;
    let metadata: EventMetadata = match r.get_ref(6)?.as_str_or_null()? {
        Some(s) => serde_json::from_str(s).map_err(|e| conv(6, e))?,
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
            Some(m) => serde_json::from_str(&buf[m.clone()]).map_err(|e| damaged("metadata", e))?,
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
/// One item becomes one ordered index scan (`event_tags` on its first tag, or `events` on its type);
/// several items become a `UNION` of per-item scans, each capped at the limit, joined back to `events`.
pub(crate) fn select(query: &Query, options: ReadOptions, limit: u64) -> Sql {
    select_columns(query, options, limit, COLUMNS, false)
}

/// Like [`select`], selecting only `e.position`, and reading only the tag index for items of tags alone
/// (what an append condition needs).
pub(crate) fn select_positions(query: &Query, options: ReadOptions, limit: u64) -> Sql {
    select_columns(query, options, limit, "e.position", true)
}

/// What the text of a [`select`] depends on: per item the number of tags and of types, the direction,
/// the limit and the columns. The values only become parameters.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Shape {
    items: Vec<(usize, usize)>,
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
    let shape = Shape {
        items: query
            .items
            .iter()
            .map(|i| (i.tags.len(), i.types.len()))
            .collect(),
        backwards: options.backwards,
        limit,
        positions_only,
    };
    let cached = TEXTS.with_borrow(|t| t.get(&shape).cloned());
    if let Some(text) = cached {
        return Sql {
            text,
            params: params(query, options),
            limit,
        };
    }
    let sql = build_sql(query, options, limit, columns, positions_only);
    TEXTS.with_borrow_mut(|t| {
        if t.len() >= MAX_CACHED_TEXTS {
            t.clear();
        }
        t.insert(shape, sql.text.clone());
    });
    sql
}

/// The parameters of a [`select`], in the order [`build_sql`] numbers them.
fn params(query: &Query, options: ReadOptions) -> Vec<Value> {
    let bound = Value::Integer(to_i64(options.from.unwrap_or(if options.backwards {
        u64::MAX
    } else {
        1
    })));
    let mut params = Vec::new();
    if query.items.is_empty() {
        params.push(bound);
        return params;
    }
    for item in &query.items {
        let mut tags = item.tags.iter();
        if let Some(first) = tags.next() {
            params.push(Value::Text(first.to_owned()));
            params.push(bound.clone());
            params.extend(tags.map(|t| Value::Text(t.to_owned())));
        } else {
            params.push(bound.clone());
        }
        params.extend(item.types.iter().map(|t| Value::Text(t.clone())));
    }
    params
}

fn build_sql(
    query: &Query,
    options: ReadOptions,
    limit: u64,
    columns: &str,
    positions_only: bool,
) -> Sql {
    let mut params = Vec::new();
    let (cmp, order) = if options.backwards {
        ("<=", "DESC")
    } else {
        (">=", "ASC")
    };
    let bound = options
        .from
        .unwrap_or(if options.backwards { u64::MAX } else { 1 });
    let text = if query.items.is_empty() {
        params.push(Value::Integer(to_i64(bound)));
        format!(
            "SELECT {columns} FROM events e WHERE e.position {cmp} ?1 ORDER BY e.position {order} LIMIT {limit}"
        )
    } else if query.items.len() == 1 {
        let (from, wher, pos) = item_sql(&query.items[0], cmp, bound, positions_only, &mut params);
        if positions_only && pos == "t.position" && !from.contains("JOIN") {
            format!("SELECT {pos} FROM {from} WHERE {wher} ORDER BY {pos} {order} LIMIT {limit}")
        } else {
            format!(
                "SELECT {columns} FROM {from} WHERE {wher} ORDER BY {pos} {order} LIMIT {limit}"
            )
        }
    } else {
        let parts: Vec<String> = query
            .items
            .iter()
            .map(|item| {
                let (from, wher, pos) = item_sql(item, cmp, bound, positions_only, &mut params);
                format!("SELECT position FROM (SELECT {pos} AS position FROM {from} WHERE {wher} ORDER BY {pos} {order} LIMIT {limit})")
            })
            .collect();
        format!(
            "SELECT {columns} FROM events e WHERE e.position IN ({}) ORDER BY e.position {order} LIMIT {limit}",
            parts.join(" UNION ")
        )
    };
    Sql {
        text,
        params,
        limit,
    }
}

/// `FROM`, `WHERE` and the position column to order by, of one item; the event table is aliased `e`.
fn item_sql(
    item: &tamma_events::QueryItem,
    cmp: &str,
    bound: u64,
    tags_only: bool,
    params: &mut Vec<Value>,
) -> (String, String, &'static str) {
    let mut p = |v: Value| {
        params.push(v);
        format!("?{}", params.len())
    };
    let mut wher = Vec::new();
    let (from, pos) = if let Some(first) = item.tags.iter().next() {
        wher.push(format!("t.tag = {}", p(Value::Text(first.to_owned()))));
        wher.push(format!(
            "t.position {cmp} {}",
            p(Value::Integer(to_i64(bound)))
        ));
        for tag in item.tags.iter().skip(1) {
            wher.push(format!(
                "EXISTS (SELECT 1 FROM event_tags t2 WHERE t2.tag = {} AND t2.position = t.position)",
                p(Value::Text(tag.to_owned()))
            ));
        }
        let from = if tags_only && item.types.is_empty() {
            // The tag index alone answers (its rows are written and removed with their events).
            "event_tags t"
        } else {
            "event_tags t JOIN events e ON e.position = t.position"
        };
        (from.to_owned(), "t.position")
    } else {
        wher.push(format!(
            "e.position {cmp} {}",
            p(Value::Integer(to_i64(bound)))
        ));
        ("events e".to_owned(), "e.position")
    };
    if !item.types.is_empty() {
        let list: Vec<String> = item
            .types
            .iter()
            .map(|t| p(Value::Text(t.clone())))
            .collect();
        wher.push(format!("e.type IN ({})", list.join(", ")));
    }
    (from, wher.join(" AND "), pos)
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
                    let built = build_sql(q, options, 10, COLUMNS, positions_only);
                    assert_eq!(params(q, options), built.params, "{}", built.text);
                    let first = select_columns(q, options, 10, COLUMNS, positions_only);
                    let again = select_columns(q, options, 10, COLUMNS, positions_only);
                    assert_eq!(first.text, built.text);
                    assert_eq!(again.text, built.text);
                    assert_eq!(again.params, built.params);
                }
            }
        }
    }

    /// A tag query is a range search of the (tag, position) key, in order, with no scan and no sort.
    #[test]
    fn tag_query_searches_only_matching_index_entries() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        let q = Query::item(QueryItem::tags(["workflow:wf-1"]));
        let p = plan(&conn, &select(&q, ReadOptions::forwards().from(10), 100));
        assert!(
            p.contains("SEARCH t USING PRIMARY KEY (tag=? AND position>?)"),
            "{p}"
        );
        assert!(!p.contains("SCAN") && !p.contains("TEMP B-TREE"), "{p}");
        let p = plan(&conn, &select(&q, ReadOptions::backwards().from(10), 100));
        assert!(
            p.contains("SEARCH t USING PRIMARY KEY (tag=? AND position<?)"),
            "{p}"
        );
        assert!(!p.contains("TEMP B-TREE"), "{p}");
        let q = Query::item(QueryItem::types(["A"]));
        let p = plan(&conn, &select(&q, ReadOptions::forwards(), 100));
        assert!(
            p.contains("events_type_position (type=? AND position>?)"),
            "{p}"
        );
    }
}
