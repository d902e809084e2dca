//! The seed's convenience filter (`getEvents(filter)`), mapped onto a DCB query.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Deserializer, Serialize};

use crate::{Error, EventStore, Query, QueryItem, ReadOptions, Result, SequencedEvent, Tags};

/// The seed's event filter: `type` (one or several), `typePattern` (a glob such as `TASK.*`), `tags`, a
/// `timestamp` range (`start`, `end`, both inclusive, on the producer's timestamp), `limit`, `offset`.
///
/// Types and tags become one query item, so the store's indexes do the selection; the pattern and the
/// time range are applied to what that query returns (see [`read_filtered`]).
///
/// ```
/// use tamma_events::{EventFilter, Query, QueryItem};
///
/// let f: EventFilter = serde_json::from_str(
///     r#"{"type": "TASK.STARTED", "tags": {"workflow": "wf-1"}, "limit": 10}"#,
/// ).unwrap();
/// assert_eq!(f.to_query(), Query::item(QueryItem::types(["TASK.STARTED"]).with_tag("workflow:wf-1")));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventFilter {
    /// Event types, any of which matches (`type` on the wire: one string or an array).
    #[serde(
        rename = "type",
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub types: Vec<String>,
    /// A glob over the type: `*` is any run of characters, `?` one character (`TASK.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_pattern: Option<String>,
    /// Tags the events must all carry.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    /// Earliest event timestamp (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    /// Latest event timestamp (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    /// The most events to return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Matching events to skip first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl EventFilter {
    /// The DCB query for the types and tags (the empty query when there are neither).
    #[must_use]
    pub fn to_query(&self) -> Query {
        if self.types.is_empty() && self.tags.is_empty() {
            Query::all()
        } else {
            Query::item(QueryItem {
                types: self.types.clone(),
                tags: self.tags.clone(),
            })
        }
    }

    /// Checks the filter; errors name the field (`typePattern`, `end`).
    ///
    /// # Errors
    /// [`Error::InvalidQuery`] for an empty pattern, `end` before `start`, or an invalid type or tag.
    pub fn validate(&self) -> Result<()> {
        self.to_query().validate("filter")?;
        if self.type_pattern.as_deref() == Some("") {
            return Err(Error::invalid_query("typePattern", "must not be empty"));
        }
        if let (Some(s), Some(e)) = (self.start, self.end)
            && e < s
        {
            return Err(Error::invalid_query("end", "must not be before start"));
        }
        Ok(())
    }

    /// Whether a stored event passes the parts the query cannot express (pattern and time range).
    #[must_use]
    pub fn admits(&self, e: &SequencedEvent) -> bool {
        let ts = e.timestamp();
        self.type_pattern
            .as_deref()
            .is_none_or(|p| glob_match(p, &e.event.event_type))
            && self.start.is_none_or(|s| ts >= s)
            && self.end.is_none_or(|end| ts <= end)
    }
}

/// Reads the events passing `filter`, in position order, skipping `offset` and returning at most `limit`.
///
/// # Errors
/// [`Error::InvalidQuery`] for a bad filter; the store's read errors.
pub async fn read_filtered(
    store: &dyn EventStore,
    filter: &EventFilter,
) -> Result<Vec<SequencedEvent>> {
    filter.validate()?;
    let limit = filter
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let mut skip = filter.offset.unwrap_or(0);
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let mut stream = store.read(filter.to_query(), ReadOptions::forwards());
    while let Some(e) = stream.try_next().await? {
        if !filter.admits(&e) {
            continue;
        }
        if skip > 0 {
            skip -= 1;
            continue;
        }
        out.push(e);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// Glob match: `*` matches any run of characters (also none), `?` exactly one.
#[must_use]
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, EventStore, MemoryStore};

    #[test]
    fn globs() {
        assert!(glob_match("TASK.*", "TASK.STARTED"));
        assert!(glob_match("TASK.*", "TASK."));
        assert!(!glob_match("TASK.*", "TASKS.STARTED"));
        assert!(glob_match("*.FAILED", "TASK.FAILED"));
        assert!(glob_match("T?SK.*D", "TASK.STARTED"));
        assert!(!glob_match("T?SK.*D", "TASK.STARTING"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
    }

    #[test]
    fn wire() {
        let f: EventFilter =
            serde_json::from_str(r#"{"type": ["A", "B"], "typePattern": "A*"}"#).unwrap();
        assert_eq!(f.types, vec!["A", "B"]);
        assert!(serde_json::from_str::<EventFilter>(r#"{"types": "A"}"#).is_err());
        let bad = EventFilter {
            type_pattern: Some(String::new()),
            ..EventFilter::default()
        };
        assert_eq!(bad.validate().unwrap_err().path(), Some("typePattern"));
        assert_eq!(EventFilter::default().to_query(), Query::all());
    }

    #[tokio::test]
    async fn reads_with_pattern_range_offset_and_limit() {
        let store = MemoryStore::new();
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut events = Vec::new();
        for i in 0..10i64 {
            let ty = if i % 2 == 0 {
                "TASK.STARTED"
            } else {
                "USER.LOGIN"
            };
            events.push(
                Event::new(ty)
                    .tag("w:1")
                    .timestamp(t0 + chrono::Duration::minutes(i)),
            );
        }
        store.append(events, None).await.unwrap();
        let f = EventFilter {
            type_pattern: Some("TASK.*".into()),
            tags: Tags::from(["w:1"]),
            start: Some(t0 + chrono::Duration::minutes(2)),
            end: Some(t0 + chrono::Duration::minutes(8)),
            offset: Some(1),
            limit: Some(2),
            ..EventFilter::default()
        };
        let got: Vec<u64> = read_filtered(&store, &f)
            .await
            .unwrap()
            .iter()
            .map(|e| e.position)
            .collect();
        // TASK.* at minutes 2, 4, 6, 8 = positions 3, 5, 7, 9; skip one, take two.
        assert_eq!(got, vec![5, 7]);
    }
}
