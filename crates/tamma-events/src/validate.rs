//! Checks every backend runs on an append: shape and size of the events, and idempotency by id.

use std::collections::HashSet;

use chrono::Datelike;

use crate::event::{MAX_TAG_LEN, MAX_TYPE_LEN, TIMESTAMP_YEARS};
use crate::{AppendCondition, Error, Event, Limits, Result, SequencedEvent};

/// Checks an append before it reaches the store: at least one event; each type 1 to 256 bytes; each tag
/// 1 to 1,024 bytes ([`MAX_TAG_LEN`](crate::MAX_TAG_LEN)); no U+0000 in a type, tag or metadata string (no
/// backend's text can hold it everywhere); a timestamp in the years 0000 to 9999; each event within
/// `limits.max_event_size`; no id twice; a valid condition query. Errors name the field
/// (`events[0].type`, `events[2].metadata.userId`, `condition.failIfEventsMatch.items[0]`).
///
/// ```
/// use tamma_events::{Event, Limits, validate_append};
///
/// let err = validate_append(&[Event::new("A"), Event::new("")], None, &Limits::default()).unwrap_err();
/// assert_eq!(err.path(), Some("events[1].type"));
/// ```
///
/// # Errors
/// [`Error::EmptyAppend`], [`Error::InvalidEvent`], [`Error::EventTooLarge`], [`Error::DuplicateEventId`],
/// [`Error::InvalidQuery`].
pub fn validate_append(
    events: &[Event],
    condition: Option<&AppendCondition>,
    limits: &Limits,
) -> Result<()> {
    validate_append_sized(events, condition, limits, |_, e| e.encoded_size())
}

/// [`validate_append`] with each event's size (its JSON length, see [`Event::encoded_size`]) given by
/// `size(index, event)`, for a backend that has encoded the events already and can use
/// [`Event::encoded_size_with`].
///
/// # Errors
/// As [`validate_append`].
pub fn validate_append_sized(
    events: &[Event],
    condition: Option<&AppendCondition>,
    limits: &Limits,
    mut size: impl FnMut(usize, &Event) -> u64,
) -> Result<()> {
    if events.is_empty() {
        return Err(Error::EmptyAppend);
    }
    for (i, e) in events.iter().enumerate() {
        if e.event_type.is_empty() {
            return Err(Error::invalid_event(
                format!("events[{i}].type"),
                "must not be empty",
            ));
        }
        if e.event_type.len() > MAX_TYPE_LEN {
            return Err(Error::invalid_event(
                format!("events[{i}].type"),
                format!("is {} bytes, more than {MAX_TYPE_LEN}", e.event_type.len()),
            ));
        }
        if e.event_type.contains('\0') {
            return Err(Error::invalid_event(format!("events[{i}].type"), NUL));
        }
        // Tags are a set (sorted, without duplicates): the message names the tag, not its index.
        for tag in e.tags.iter() {
            if let Some(problem) = tag_problem(tag) {
                return Err(Error::invalid_event(format!("events[{i}].tags"), problem));
            }
        }
        if let Some((key, _)) = e.metadata.strings().find(|(_, v)| v.contains('\0')) {
            return Err(Error::invalid_event(
                format!("events[{i}].metadata{key}"),
                NUL,
            ));
        }
        if let Some(t) = e.timestamp
            && !TIMESTAMP_YEARS.contains(&t.year())
        {
            return Err(Error::invalid_event(
                format!("events[{i}].timestamp"),
                format!(
                    "{} is outside the years {:04} to {:04}",
                    t.to_rfc3339(),
                    TIMESTAMP_YEARS.start(),
                    TIMESTAMP_YEARS.end()
                ),
            ));
        }
        let size = size(i, e);
        if size > limits.max_event_size {
            return Err(Error::EventTooLarge {
                path: format!("events[{i}]"),
                size,
                limit: limits.max_event_size,
            });
        }
    }
    // Ids in increasing order (UUIDv7s made one after another) cannot repeat: the set is built only
    // when they are not.
    if events.len() > 1 && !events.windows(2).all(|w| w[0].id < w[1].id) {
        let mut seen = HashSet::with_capacity(events.len());
        let repeated: Vec<_> = events
            .iter()
            .filter(|e| !seen.insert(e.id))
            .map(|e| e.id)
            .collect();
        if !repeated.is_empty() {
            return Err(Error::DuplicateEventId { ids: repeated });
        }
    }
    if let Some(c) = condition {
        c.fail_if_events_match
            .validate("condition.failIfEventsMatch")?;
    }
    Ok(())
}

/// Checks an import ([`EventStore::import`](crate::EventStore::import)) into a store whose head is
/// `head`: at least one event; each event as [`validate_append`] checks it; positions consecutive, the
/// first right after `head` — or, when `head` is 0 (the store never held an event), any position from 1.
/// Errors name the field (`events[2].position`).
///
/// ```
/// use chrono::Utc;
/// use tamma_events::{Event, Limits, SequencedEvent, validate_import};
///
/// let at = |position| SequencedEvent { position, recorded_at: Utc::now(), event: Event::new("A") };
/// assert!(validate_import(&[at(1_001), at(1_002)], 0, &Limits::default()).is_ok());
/// let err = validate_import(&[at(12)], 10, &Limits::default()).unwrap_err();
/// assert_eq!(err.path(), Some("events[0].position"));
/// assert!(validate_import(&[at(u64::MAX)], 0, &Limits::default()).is_err());
/// ```
///
/// # Errors
/// [`Error::EmptyAppend`], [`Error::InvalidEvent`], [`Error::EventTooLarge`], [`Error::DuplicateEventId`].
pub fn validate_import(events: &[SequencedEvent], head: u64, limits: &Limits) -> Result<()> {
    let Some(first) = events.first() else {
        return Err(Error::EmptyAppend);
    };
    if first.position == 0 {
        return Err(Error::invalid_event(
            "events[0].position",
            "is 0; positions start at 1",
        ));
    }
    // Every backend stores positions as signed 64-bit integers.
    let top = u64::try_from(i64::MAX).unwrap_or(u64::MAX);
    if first.position - 1 > top - events.len() as u64 {
        return Err(Error::invalid_event(
            "events[0].position",
            format!(
                "is {}; with {} events from there positions would pass {top}, the highest a store keeps",
                first.position,
                events.len()
            ),
        ));
    }
    if head > 0 && first.position != head + 1 {
        return Err(Error::invalid_event(
            "events[0].position",
            format!(
                "is {}; this store's head is {head}, so the next position is {}",
                first.position,
                head + 1
            ),
        ));
    }
    for (i, w) in events.windows(2).enumerate() {
        if w[1].position != w[0].position + 1 {
            return Err(Error::invalid_event(
                format!("events[{}].position", i + 1),
                format!(
                    "is {}; positions must follow on (the event before is at {})",
                    w[1].position, w[0].position
                ),
            ));
        }
    }
    let plain: Vec<Event> = events.iter().map(|e| e.event.clone()).collect();
    validate_append(&plain, None, limits)
}

/// Why a tag (of an event or a query) is invalid, if it is, naming the tag (its start, when long).
pub(crate) fn tag_problem(tag: &str) -> Option<String> {
    let named = || {
        let start: String = tag.chars().take(40).collect();
        let more = if start.len() < tag.len() { "…" } else { "" };
        format!("{start:?}{more}")
    };
    if tag.is_empty() {
        Some("a tag must not be empty".into())
    } else if tag.len() > MAX_TAG_LEN {
        Some(format!(
            "the tag {} is {} bytes, more than {MAX_TAG_LEN}",
            named(),
            tag.len()
        ))
    } else if tag.contains('\0') {
        Some(format!("the tag {} {NUL}", named()))
    } else {
        None
    }
}

/// The message for a string holding U+0000.
pub(crate) const NUL: &str = "must not contain the character U+0000";

/// The outcome of looking up an append's ids in the store (see [`resolve_ids`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdCheck {
    /// No id is stored: write the events.
    New,
    /// Every event is stored with the same content: write nothing, answer these positions.
    Duplicate(Vec<u64>),
}

/// Decides idempotency for an append: `stored[i]` is what the store holds under `events[i].id`
/// (its position and event), if anything.
///
/// ```
/// use tamma_events::{Event, IdCheck, resolve_ids};
///
/// let e = Event::new("A");
/// let stored = e.clone().stamped(chrono::Utc::now());
/// assert_eq!(resolve_ids(&[e.clone()], &[None]).unwrap(), IdCheck::New);
/// assert_eq!(resolve_ids(&[e.clone()], &[Some((7, &stored))]).unwrap(), IdCheck::Duplicate(vec![7]));
/// ```
///
/// # Errors
/// [`Error::DuplicateEventId`] naming the ids when a stored id carries other content, or when stored and
/// new ids are mixed in one append.
pub fn resolve_ids(events: &[Event], stored: &[Option<(u64, &Event)>]) -> Result<IdCheck> {
    debug_assert_eq!(events.len(), stored.len());
    if stored.iter().all(Option::is_none) {
        return Ok(IdCheck::New);
    }
    let mut positions = Vec::with_capacity(events.len());
    let mut changed = Vec::new();
    for (e, s) in events.iter().zip(stored) {
        match s {
            Some((pos, stored)) if stored.same_content(e) => positions.push(*pos),
            Some(_) => changed.push(e.id),
            None => {}
        }
    }
    if !changed.is_empty() {
        return Err(Error::DuplicateEventId { ids: changed });
    }
    if positions.len() < events.len() {
        // A mix of stored and new ids: name the stored ones.
        let ids = events
            .iter()
            .zip(stored)
            .filter(|(_, s)| s.is_some())
            .map(|(e, _)| e.id)
            .collect();
        return Err(Error::DuplicateEventId { ids });
    }
    Ok(IdCheck::Duplicate(positions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Query, QueryItem};

    #[test]
    fn names_the_field() {
        let l = Limits::default();
        assert!(matches!(
            validate_append(&[], None, &l),
            Err(Error::EmptyAppend)
        ));
        let long = "A".repeat(257);
        assert_eq!(
            validate_append(&[Event::new(long)], None, &l)
                .unwrap_err()
                .path(),
            Some("events[0].type")
        );
        assert!(validate_append(&[Event::new("A".repeat(256))], None, &l).is_ok());
        let e = Event::new("A").tag("");
        assert_eq!(
            validate_append(&[e], None, &l).unwrap_err().path(),
            Some("events[0].tags")
        );
        let big = Event::new("A").data(serde_json::json!("x".repeat(2000)));
        let err = validate_append(
            &[big],
            None,
            &Limits {
                max_event_size: 1000,
            },
        )
        .unwrap_err();
        assert!(matches!(err, Error::EventTooLarge { size, limit: 1000, .. } if size > 2000));
        let e = Event::new("A");
        let err = validate_append(&[e.clone(), e.clone()], None, &l).unwrap_err();
        assert!(matches!(err, Error::DuplicateEventId { ids } if ids == vec![e.id]));
        // Increasing ids pass without the set; a repeat after them is still found.
        let (a, b) = (Event::new("A"), Event::new("B"));
        assert!(a.id < b.id);
        validate_append(&[a.clone(), b.clone()], None, &l).unwrap();
        let err = validate_append(&[a.clone(), b.clone(), a.clone()], None, &l).unwrap_err();
        assert!(matches!(err, Error::DuplicateEventId { ids } if ids == vec![a.id]));
        let c = AppendCondition::new(Query::item(QueryItem::default()));
        let err = validate_append(&[Event::new("A")], Some(&c), &l).unwrap_err();
        assert_eq!(err.path(), Some("condition.failIfEventsMatch.items[0]"));
    }

    #[test]
    fn idempotency() {
        let now = chrono::Utc::now();
        let a = Event::new("A");
        let b = Event::new("B");
        let sa = a.clone().stamped(now);
        let sb_changed = b.clone().data(serde_json::json!(1)).stamped(now);
        let sb = b.clone().stamped(now);
        assert_eq!(
            resolve_ids(&[a.clone(), b.clone()], &[Some((1, &sa)), Some((2, &sb))]).unwrap(),
            IdCheck::Duplicate(vec![1, 2])
        );
        let err = resolve_ids(&[a.clone(), b.clone()], &[Some((1, &sa)), None]).unwrap_err();
        assert!(matches!(err, Error::DuplicateEventId { ids } if ids == vec![a.id]));
        let err =
            resolve_ids(&[a.clone(), b.clone()], &[None, Some((2, &sb_changed))]).unwrap_err();
        assert!(matches!(err, Error::DuplicateEventId { ids } if ids == vec![b.id]));
    }
}
