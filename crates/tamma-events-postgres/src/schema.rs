//! The database layout: versioned migrations, the SQL a query becomes, and rows to and from events.

use chrono::{DateTime, Utc};
use tamma_events::{Event, EventData, EventMetadata, Query, SequencedEvent, Tags};
use tokio_postgres::Row;
use tokio_postgres::types::{Json, ToSql};
use uuid::Uuid;

use crate::error::{Error, PgError};

/// The migrations, in order: `(version, name, SQL)`. Each runs once, in its own transaction.
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "events", include_str!("../migrations/0001_events.sql")),
    (2, "cursors", include_str!("../migrations/0002_cursors.sql")),
    (
        3,
        "append_on_conflict",
        include_str!("../migrations/0003_append_on_conflict.sql"),
    ),
    (
        4,
        "append_tags_literal",
        include_str!("../migrations/0004_append_tags_literal.sql"),
    ),
    (5, "runs", include_str!("../migrations/0005_runs.sql")),
    (
        6,
        "append_plain_insert",
        include_str!("../migrations/0006_append_plain_insert.sql"),
    ),
    (
        7,
        "append_group",
        include_str!("../migrations/0007_append_group.sql"),
    ),
];

/// Advisory-lock key held (transaction-scoped) by every append (inside `tamma_append`) and import:
/// "TAMMA" + 1.
pub(crate) const APPEND_LOCK: i64 = 0x5441_4D4D_4100_0001;
/// Advisory-lock key held while migrations run, so concurrent starts apply each migration once.
pub(crate) const MIGRATE_LOCK: i64 = 0x5441_4D4D_4100_0002;
/// Advisory-lock key held (session-scoped) while retention runs, so it never runs twice at once.
pub(crate) const RETENTION_LOCK: i64 = 0x5441_4D4D_4100_0003;

/// The `NOTIFY` channel appends announce their new head on.
pub(crate) const CHANNEL: &str = "tamma_events";

/// The group-commit statement: one call appends a whole batch (see
/// `migrations/0004_append_tags_literal.sql`).
pub(crate) const APPEND_SQL: &str = "SELECT o_status, o_first, o_conflict, o_found, o_head \
     FROM tamma_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     $19, $20)";

/// The group statement: a group of several appends checked first and inserted by one statement (see
/// `migrations/0007_append_group.sql`); its arguments are [`APPEND_SQL`]'s and six more.
pub(crate) const APPEND_GROUP_SQL: &str = "SELECT o_status, o_first, o_conflict, o_found, o_head \
     FROM tamma_append_group($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
     $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)";

/// The committed head.
pub(crate) const HEAD_SQL: &str = "SELECT tamma_head()";

/// The columns every event read selects, in the order [`decode`] expects.
const COLUMNS: &str =
    "e.position, e.id, e.type, e.timestamp, e.recorded_at, e.tags, e.metadata, e.data::text";

/// Applies every pending migration, serialised across processes by an advisory lock, all in one
/// transaction (PostgreSQL DDL is transactional: a failed start leaves the schema as it was).
pub(crate) async fn migrate(client: &mut tokio_postgres::Client) -> Result<i32, Error> {
    let latest = MIGRATIONS.last().map_or(0, |m| m.0);
    let connect = |e| Error::connect(PgError(e));
    let tx = client.transaction().await.map_err(connect)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(connect)?;
    // Created only when missing: on a migrated database a role with data rights alone (no CREATE on
    // the schema) may run the store.
    let exists: bool = tx
        .query_one(
            "SELECT to_regclass('tamma_schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(connect)?
        .get(0);
    if !exists {
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS tamma_schema_migrations (
                version    integer     PRIMARY KEY,
                name       text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(connect)?;
    }
    let found: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM tamma_schema_migrations",
            &[],
        )
        .await
        .map_err(connect)?
        .get(0);
    if found > latest {
        return Err(Error::SchemaTooNew {
            found,
            supported: latest,
        });
    }
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
        let step = async {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO tamma_schema_migrations (version, name) VALUES ($1, $2)",
                &[&version, &name],
            )
            .await
        };
        step.await.map_err(|source| Error::Migrate {
            version,
            name,
            source,
        })?;
        tracing::info!(version, name, "applied event store migration");
    }
    tx.commit().await.map_err(connect)?;
    Ok(latest)
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Decodes a row selected with [`COLUMNS`].
pub(crate) fn decode(row: &Row) -> Result<SequencedEvent, tokio_postgres::Error> {
    let metadata: Option<Json<EventMetadata>> = row.try_get(6)?;
    let tags: Vec<String> = row.try_get(5)?;
    Ok(SequencedEvent {
        position: to_u64(row.try_get(0)?),
        recorded_at: row.try_get(4)?,
        event: Event {
            id: row.try_get(1)?,
            event_type: row.try_get(2)?,
            timestamp: Some(row.try_get(3)?),
            tags: tags.into_iter().collect(),
            metadata: metadata.map(|m| m.0).unwrap_or_default(),
            // The `json` column keeps the compact text the writer sent (PostgreSQL checked it on
            // insert): taken as it is, never parsed.
            data: EventData::from_trusted(row.try_get(7)?),
        },
    })
}

/// A stored event as `tamma_append` returns it when an append reuses stored ids.
#[derive(serde::Deserialize)]
pub(crate) struct FoundRow {
    pub(crate) position: i64,
    pub(crate) id: Uuid,
    #[serde(rename = "type")]
    pub(crate) event_type: String,
    /// Microseconds since the Unix epoch.
    pub(crate) timestamp: i64,
    pub(crate) tags: Tags,
    pub(crate) metadata: Option<EventMetadata>,
    pub(crate) data: tamma_events::EventData,
}

impl FoundRow {
    pub(crate) fn into_event(self) -> (u64, Event) {
        let event = Event {
            id: self.id,
            event_type: self.event_type,
            timestamp: Some(
                DateTime::<Utc>::from_timestamp_micros(self.timestamp).unwrap_or_default(),
            ),
            tags: self.tags,
            metadata: self.metadata.unwrap_or_default(),
            data: self.data,
        };
        (to_u64(self.position), event)
    }
}

/// One page of a read: SQL and its parameters.
pub(crate) struct PageSql {
    pub(crate) sql: String,
    pub(crate) params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl PageSql {
    pub(crate) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| &**p as &(dyn ToSql + Sync))
            .collect()
    }
}

/// The SQL of one page: events matching `query` from `from` (inclusive; the highest position when
/// `backwards`), at most `limit`, in position order.
///
/// Each item becomes ordered branches that stop at the limit: an item with tags walks the runs of its
/// first tag and reads the events each covers, checking the other tags and the types on the event row;
/// an item with types only walks the runs of each type the same way. Runs of one key never overlap, so
/// runs in order of their last position (the `(key, last)` primary key) and each one's events in order
/// of position come out in position order. Several branches are merged and deduplicated by position.
pub(crate) fn page_sql(query: &Query, from: u64, backwards: bool, limit: u64) -> PageSql {
    let (cmp, dir) = if backwards {
        ("<=", "DESC")
    } else {
        (">=", "ASC")
    };
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> =
        vec![Box::new(to_i64(from)), Box::new(to_i64(limit))];
    if query.is_all() {
        let sql = format!(
            "SELECT {COLUMNS} FROM tamma_events e WHERE e.position {cmp} $1 ORDER BY e.position {dir} LIMIT $2"
        );
        return PageSql { sql, params };
    }
    let mut branches = Vec::new();
    let push = |p: Box<dyn ToSql + Sync + Send>, params: &mut Vec<_>| {
        params.push(p);
        params.len()
    };
    for item in &query.items {
        if let Some(first) = item.tags.iter().next() {
            let key = push(Box::new(first.to_owned()), &mut params);
            let mut cond = runs_cond("tamma_tag_runs", "tag", key, backwards);
            if item.tags.len() > 1 {
                let all: Vec<String> = item.tags.iter().map(str::to_owned).collect();
                cond += &format!(" AND e.tags @> ${}", push(Box::new(all), &mut params));
            }
            if !item.types.is_empty() {
                cond += &format!(
                    " AND e.type = ANY (${})",
                    push(Box::new(item.types.clone()), &mut params)
                );
            }
            branches.push(("tamma_tag_runs", cond));
        } else {
            for ty in &item.types {
                let key = push(Box::new(ty.clone()), &mut params);
                branches.push((
                    "tamma_type_runs",
                    runs_cond("tamma_type_runs", "type", key, backwards),
                ));
            }
        }
    }
    let order = format!("r.last {dir}, e.position {dir}");
    let sql = if let [(table, cond)] = branches.as_slice() {
        format!(
            "SELECT {COLUMNS} FROM {table} r JOIN tamma_events e ON {} WHERE {cond} ORDER BY {order} LIMIT $2",
            range(backwards)
        )
    } else {
        let union = branches
            .iter()
            .map(|(table, cond)| {
                format!(
                    "(SELECT e.position FROM {table} r JOIN tamma_events e ON {} WHERE {cond} ORDER BY {order} LIMIT $2)",
                    range(backwards)
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        format!(
            "SELECT {COLUMNS} FROM tamma_events e WHERE e.position IN (SELECT u.position FROM ({union}) u) \
             ORDER BY e.position {dir} LIMIT $2"
        )
    };
    PageSql { sql, params }
}

/// The events a run `r` covers from the bound `$1` on (down from it, `backwards`). Each side is one
/// expression, so the events' primary key is searched by one range per run.
fn range(backwards: bool) -> &'static str {
    if backwards {
        "e.position >= r.first AND e.position <= least(r.last, $1)"
    } else {
        "e.position >= greatest(r.first, $1) AND e.position <= r.last"
    }
}

/// The runs of key `$key` in `table` a scan from the bound `$1` needs: forwards, every run ending at or
/// after the bound (the first may cover it); backwards, every run starting at or before it, the scan
/// starting at the first run ending at or after the bound (the one covering it, or the next, which the
/// `first` test drops).
fn runs_cond(table: &str, col: &str, key: usize, backwards: bool) -> String {
    if backwards {
        format!(
            "r.{col} = ${key} AND r.first <= $1 AND r.last <= coalesce((SELECT s.last FROM {table} s \
             WHERE s.{col} = ${key} AND s.last >= $1 ORDER BY s.last LIMIT 1), $1)"
        )
    } else {
        format!("r.{col} = ${key} AND r.last >= $1")
    }
}

/// `SELECT` of one event by id.
pub(crate) fn get_sql() -> String {
    format!("SELECT {COLUMNS} FROM tamma_events e WHERE e.id = $1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tamma_events::QueryItem;

    #[test]
    fn page_sql_shapes() {
        let all = page_sql(&Query::all(), 1, false, 10);
        assert!(all.sql.contains("e.position >= $1 ORDER BY e.position ASC"));
        assert_eq!(all.params.len(), 2);
        let one_tag = page_sql(&Query::item(QueryItem::tags(["a:1"])), 5, true, 10);
        assert!(
            one_tag.sql.contains("r.tag = $3 AND r.first <= $1"),
            "{}",
            one_tag.sql
        );
        assert!(
            one_tag
                .sql
                .contains("ORDER BY r.last DESC, e.position DESC"),
            "{}",
            one_tag.sql
        );
        assert!(!one_tag.sql.contains("UNION"));
        let mixed = page_sql(
            &Query::from_items([
                QueryItem::types(["A", "B"]),
                QueryItem::tags(["x:1", "y:2"]).with_type("C"),
            ]),
            1,
            false,
            10,
        );
        assert_eq!(mixed.sql.matches("UNION").count(), 2, "{}", mixed.sql);
        assert!(mixed.sql.contains("e.tags @> $6"), "{}", mixed.sql);
        assert!(mixed.sql.contains("e.type = ANY ($7)"), "{}", mixed.sql);
        assert_eq!(mixed.params.len(), 7);
        assert_eq!(MIGRATIONS[0].0, 1);
        assert_eq!(APPEND_LOCK, 6_071_218_766_870_478_849);
        assert!(MIGRATIONS[0].2.contains("6071218766870478849"));
        assert!(MIGRATIONS[0].2.contains("p_data         text[]"));
        assert!(APPEND_SQL.contains("$20)"));
    }
}
