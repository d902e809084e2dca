//! Queries, append conditions and read options.

use serde::{Deserialize, Serialize};

use crate::{Error, Event, Result, Tags, event::MAX_TYPE_LEN};

/// The most items a query (or an append condition) may have.
pub const MAX_QUERY_ITEMS: usize = 100;

/// The most types and tags a query may name across its items. Each becomes an index scan or a test of
/// the query the store runs; the limits keep every valid query within what every backend executes
/// (SQLite refuses a statement of more than 500 scans or 32,766 parameters).
pub const MAX_QUERY_TERMS: usize = 256;

/// One query item: matches an event whose type is one of `types` (none = any type) AND that carries all
/// of `tags` (none = no constraint). An item with neither is invalid.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryItem {
    /// Event types, any of which matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Tags, all of which must be present.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
}

impl QueryItem {
    /// An item matching any of `types`.
    pub fn types<S: Into<String>>(types: impl IntoIterator<Item = S>) -> Self {
        Self {
            types: types.into_iter().map(Into::into).collect(),
            tags: Tags::new(),
        }
    }

    /// An item matching events carrying all of `tags`.
    pub fn tags(tags: impl Into<Tags>) -> Self {
        Self {
            types: Vec::new(),
            tags: tags.into(),
        }
    }

    /// Adds a type constraint.
    #[must_use]
    pub fn with_type(mut self, event_type: impl Into<String>) -> Self {
        self.types.push(event_type.into());
        self
    }

    /// Adds a tag constraint.
    #[must_use]
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.insert(tag);
        self
    }

    /// Whether `event` matches this item.
    #[must_use]
    pub fn matches(&self, event: &Event) -> bool {
        (self.types.is_empty() || self.types.contains(&event.event_type))
            && event.tags.contains_all(&self.tags)
    }
}

/// A query: items OR'd together. The empty query matches every event.
///
/// On the wire: `{"items": [{"types": ["A", "B"], "tags": ["k:v"]}]}`; `{}` or `{"items": []}` is all.
///
/// ```
/// use tamma_events::{Event, Query, QueryItem};
///
/// let q = Query::from_items([
///     QueryItem::types(["TASK.STARTED"]).with_tag("workflow:wf-1"),
///     QueryItem::tags(["workflow:wf-2"]),
/// ]);
/// assert!(q.matches(&Event::new("TASK.STARTED").tag("workflow:wf-1")));
/// assert!(q.matches(&Event::new("TASK.FAILED").tag("workflow:wf-2")));
/// assert!(!q.matches(&Event::new("TASK.FAILED").tag("workflow:wf-1")));
/// assert!(Query::all().matches(&Event::new("ANYTHING")));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Query {
    /// The items, OR'd; none = every event.
    #[serde(default)]
    pub items: Vec<QueryItem>,
}

impl Query {
    /// The query matching every event.
    #[must_use]
    pub fn all() -> Self {
        Self::default()
    }

    /// A query of the given items.
    pub fn from_items(items: impl IntoIterator<Item = QueryItem>) -> Self {
        Self {
            items: items.into_iter().collect(),
        }
    }

    /// A query of one item.
    #[must_use]
    pub fn item(item: QueryItem) -> Self {
        Self { items: vec![item] }
    }

    /// Whether this query matches every event.
    #[must_use]
    pub fn is_all(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether `event` matches any item (or the query is empty).
    #[must_use]
    pub fn matches(&self, event: &Event) -> bool {
        self.items.is_empty() || self.items.iter().any(|i| i.matches(event))
    }

    /// Checks the query; `path` names it in errors (`query`, `condition.failIfEventsMatch`).
    ///
    /// # Errors
    /// [`Error::InvalidQuery`] for more than [`MAX_QUERY_ITEMS`] items or [`MAX_QUERY_TERMS`] types and
    /// tags in all, an item with neither types nor tags, or an empty or oversize type or tag.
    pub fn validate(&self, path: &str) -> Result<()> {
        if self.items.len() > MAX_QUERY_ITEMS {
            return Err(Error::invalid_query(
                format!("{path}.items"),
                format!(
                    "has {} items, more than {MAX_QUERY_ITEMS}",
                    self.items.len()
                ),
            ));
        }
        let terms: usize = self
            .items
            .iter()
            .map(|i| i.types.len() + i.tags.len())
            .sum();
        if terms > MAX_QUERY_TERMS {
            return Err(Error::invalid_query(
                path.to_owned(),
                format!("names {terms} types and tags in all, more than {MAX_QUERY_TERMS}"),
            ));
        }
        for (i, item) in self.items.iter().enumerate() {
            // Built only for an error: a query is checked on every read and conditional append.
            let item_path = || format!("{path}.items[{i}]");
            if item.types.is_empty() && item.tags.is_empty() {
                return Err(Error::invalid_query(
                    item_path(),
                    "an item needs types or tags (use the empty query to match every event)",
                ));
            }
            for (j, t) in item.types.iter().enumerate() {
                if t.is_empty() || t.len() > MAX_TYPE_LEN {
                    return Err(Error::invalid_query(
                        format!("{}.types[{j}]", item_path()),
                        format!("a type must be 1 to {MAX_TYPE_LEN} bytes"),
                    ));
                }
                if t.contains('\0') {
                    return Err(Error::invalid_query(
                        format!("{}.types[{j}]", item_path()),
                        crate::validate::NUL,
                    ));
                }
            }
            // Tags are a set (sorted, without duplicates): the message names the tag, not its index.
            for t in item.tags.iter() {
                if let Some(problem) = crate::validate::tag_problem(t) {
                    return Err(Error::invalid_query(
                        format!("{}.tags", item_path()),
                        problem,
                    ));
                }
            }
        }
        Ok(())
    }
}

impl From<QueryItem> for Query {
    fn from(item: QueryItem) -> Self {
        Self::item(item)
    }
}

/// The condition of a conditional append: fail if any event after `after` (or any event at all, when
/// `after` is `None`) matches `fail_if_events_match`.
///
/// ```
/// use tamma_events::{AppendCondition, Query, QueryItem};
///
/// let c: AppendCondition = serde_json::from_str(
///     r#"{"failIfEventsMatch": {"items": [{"tags": ["workflow:wf-1"]}]}, "after": 41}"#,
/// ).unwrap();
/// assert_eq!(c, AppendCondition::new(Query::item(QueryItem::tags(["workflow:wf-1"]))).after(41));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppendCondition {
    /// The query no event after `after` may match.
    pub fail_if_events_match: Query,
    /// The last position the decision was based on; `None` = the whole log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
}

impl AppendCondition {
    /// Fail if any event at all matches `query`.
    #[must_use]
    pub fn new(query: Query) -> Self {
        Self {
            fail_if_events_match: query,
            after: None,
        }
    }

    /// Only events at positions above `position` count.
    #[must_use]
    pub fn after(mut self, position: u64) -> Self {
        self.after = Some(position);
        self
    }

    /// Whether the stored event at `position` violates this condition.
    #[must_use]
    pub fn is_violated_by(&self, position: u64, event: &Event) -> bool {
        self.after.is_none_or(|a| position > a) && self.fail_if_events_match.matches(event)
    }
}

/// How to read: `from` (inclusive: the lowest position forwards, the highest backwards), direction, and
/// the most events to return (`Some(0)` returns nothing; `None` = no limit).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadOptions {
    /// The first position to consider (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// Read from the highest position down.
    #[serde(default)]
    pub backwards: bool,
    /// The most events to return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

impl ReadOptions {
    /// Forwards from the start, no limit.
    #[must_use]
    pub fn forwards() -> Self {
        Self::default()
    }

    /// Backwards from the head, no limit.
    #[must_use]
    pub fn backwards() -> Self {
        Self {
            backwards: true,
            ..Self::default()
        }
    }

    /// Starts at `position` (inclusive).
    #[must_use]
    pub fn from(mut self, position: u64) -> Self {
        self.from = Some(position);
        self
    }

    /// Returns at most `n` events.
    #[must_use]
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// Whether `position` is inside the range these options describe (ignoring the limit).
    #[must_use]
    pub fn admits(&self, position: u64) -> bool {
        match (self.from, self.backwards) {
            (None, _) => true,
            (Some(f), false) => position >= f,
            (Some(f), true) => position <= f,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_item() {
        let q: Query = serde_json::from_str(r#"{"items": [{"types": ["A"]}, {}]}"#).unwrap();
        let e = q.validate("query").unwrap_err();
        assert_eq!(e.path(), Some("query.items[1]"));
        let q = Query::item(QueryItem::types([""]));
        assert_eq!(
            q.validate("condition.failIfEventsMatch")
                .unwrap_err()
                .path(),
            Some("condition.failIfEventsMatch.items[0].types[0]")
        );
        assert!(Query::all().validate("query").is_ok());
        let q: Query = serde_json::from_str("{}").unwrap();
        assert!(q.is_all());
        assert!(serde_json::from_str::<Query>(r#"{"itemz": []}"#).is_err());
    }

    #[test]
    fn condition_and_options() {
        let c = AppendCondition::new(Query::item(QueryItem::types(["A"]))).after(3);
        assert!(!c.is_violated_by(3, &Event::new("A")));
        assert!(c.is_violated_by(4, &Event::new("A")));
        assert!(!c.is_violated_by(4, &Event::new("B")));
        assert!(ReadOptions::forwards().from(3).admits(3));
        assert!(!ReadOptions::forwards().from(3).admits(2));
        assert!(ReadOptions::backwards().from(3).admits(2));
        assert!(!ReadOptions::backwards().from(3).admits(4));
    }
}
