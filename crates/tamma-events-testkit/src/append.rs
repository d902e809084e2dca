//! Appending: atomicity, validation, conditions, idempotency, round trips.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tamma_events::{
    AppendCondition, Error, Event, EventMetadata, EventSource, EventStore, Query, QueryItem,
    ReadOptions,
};

use crate::support::{positions, put, read, seed_ten, tags, types};

/// An append of no events is rejected and writes nothing.
pub async fn empty_append_rejected(store: &dyn EventStore) {
    let r = store.append(Vec::new(), None).await;
    assert!(matches!(r, Err(Error::EmptyAppend)), "{r:?}");
    let r = store
        .append(Vec::new(), Some(AppendCondition::new(types(&["A"]))))
        .await;
    assert!(matches!(r, Err(Error::EmptyAppend)), "{r:?}");
    assert_eq!(store.head().await.unwrap(), 0);
}

/// Bad events (empty or oversize type, empty tag, oversize event, repeated id, invalid condition query)
/// are rejected with the field named, and the store is unchanged: no event of the append is written.
pub async fn invalid_events_rejected_and_store_unchanged(store: &dyn EventStore) {
    put(store, vec![Event::new("A")]).await;
    let cases: Vec<(Vec<Event>, Option<AppendCondition>, &str)> = vec![
        (
            vec![Event::new("OK"), Event::new("")],
            None,
            "events[1].type",
        ),
        (vec![Event::new("T".repeat(257))], None, "events[0].type"),
        (vec![Event::new("OK").tag("")], None, "events[0].tags"),
        (
            vec![Event::new("OK").data(serde_json::json!("x".repeat(1024 * 1024 + 1)))],
            None,
            "events[0]",
        ),
        (
            vec![Event::new("OK")],
            Some(AppendCondition::new(Query::item(QueryItem::default()))),
            "condition.failIfEventsMatch.items[0]",
        ),
        // U+0000 (no backend's text can hold it everywhere), over-long tags, timestamps RFC 3339
        // cannot write: named, never a database error.
        (vec![Event::new("O\0K")], None, "events[0].type"),
        (
            vec![Event::new("OK").tag("a").tag("b\0")],
            None,
            "events[0].tags",
        ),
        (
            vec![Event::new("OK").tag("t".repeat(1025))],
            None,
            "events[0].tags",
        ),
        (
            vec![with_metadata("userId", "u\0")],
            None,
            "events[0].metadata.userId",
        ),
        (
            vec![with_metadata("shard", "\0")],
            None,
            "events[0].metadata.shard",
        ),
        (
            vec![with_metadata("sh\0ard", "1")],
            None,
            "events[0].metadata",
        ),
        (vec![at(year_start(-5000))], None, "events[0].timestamp"),
        (vec![at(year_start(10_000))], None, "events[0].timestamp"),
        (
            vec![Event::new("OK")],
            Some(AppendCondition::new(tags(&["x\0"]))),
            "condition.failIfEventsMatch.items[0].tags",
        ),
        (
            vec![Event::new("OK")],
            Some(AppendCondition::new(Query::from_items(
                (0..101).map(|i| QueryItem::tags([format!("t:{i}")])),
            ))),
            "condition.failIfEventsMatch.items",
        ),
    ];
    for (events, cond, path) in cases {
        let err = store.append(events, cond).await.expect_err(path);
        assert_eq!(err.path(), Some(path), "{err}");
        assert_eq!(err.category(), "invalid_input", "{err}");
    }
    let big = store
        .append(
            vec![Event::new("OK").data(serde_json::json!("x".repeat(1024 * 1024 + 1)))],
            None,
        )
        .await;
    assert!(matches!(big, Err(Error::EventTooLarge { .. })), "{big:?}");
    let e = Event::new("OK");
    let twice = store.append(vec![e.clone(), e.clone()], None).await;
    assert!(
        matches!(&twice, Err(Error::DuplicateEventId { ids }) if *ids == vec![e.id]),
        "{twice:?}"
    );
    assert_eq!(store.head().await.unwrap(), 1);
    assert_eq!(
        positions(store, Query::all(), ReadOptions::forwards()).await,
        vec![1]
    );
    // A type of exactly 256 bytes, a tag of exactly 1,024, the escape `\u0000` spelled out in metadata
    // (six characters, no U+0000) and the first and last instants of the years 0000 to 9999 are fine.
    put(store, vec![Event::new("T".repeat(256))]).await;
    put(store, vec![Event::new("OK").tag("t".repeat(1024))]).await;
    put(store, vec![with_metadata("path", "C:\\u0000dir")]).await;
    put(
        store,
        vec![
            at(year_start(0)),
            at(year_start(10_000) - chrono::Duration::microseconds(1)),
        ],
    )
    .await;
}

/// A timestamp with sub-microsecond digits (a parsed event keeps them) is stored truncated to the
/// microsecond — also before 2000, where a conversion rounding toward 2000-01-01 would round it up — and
/// a retry of the event is answered as a duplicate.
pub async fn sub_microsecond_timestamps_are_truncated_and_retries_match(store: &dyn EventStore) {
    use chrono::SubsecRound;
    for t in [
        "1999-12-31T23:59:59.000000500Z",
        "1969-07-20T20:17:40.999999999Z",
        "2024-05-06T07:08:09.123456789Z",
    ] {
        let when = DateTime::parse_from_rfc3339(t)
            .unwrap_or_else(|err| panic!("{t}: {err}"))
            .to_utc();
        let e = at(when);
        let first = store.append(vec![e.clone()], None).await.unwrap();
        let again = store.append(vec![e.clone()], None).await.unwrap();
        assert!(again.duplicate, "{t}: {again:?}");
        assert_eq!(again.positions, first.positions, "{t}");
        let got = store.get(e.id).await.unwrap().expect("stored");
        assert_eq!(got.event.timestamp, Some(when.trunc_subsecs(6)), "{t}");
    }
}

/// Tags holding quotes, backslashes, commas, braces, spaces, `NULL`, `%`, `_` and non-ASCII letters come
/// back exactly and each finds its event, alone and with another tag.
pub async fn tags_with_special_characters_round_trip_and_match(store: &dyn EventStore) {
    let special = [
        "quote:a\"b",
        "backslash:c\\d",
        "comma:e,f",
        "braces:{g}",
        "NULL",
        " spaced ",
        "like:%_",
        "ünïcødé:日本",
        "'single'",
        "trailing\\",
    ];
    put(store, vec![Event::new("PLAIN").tag("other")]).await;
    let e = special
        .iter()
        .fold(Event::new("SPECIAL"), |e, t| e.tag(*t))
        .tag("other");
    put(store, vec![e.clone()]).await;
    let got = store.get(e.id).await.unwrap().expect("stored");
    assert_eq!(got.event.tags, e.tags);
    for t in special {
        assert_eq!(
            positions(store, tags(&[t]), ReadOptions::forwards()).await,
            vec![2],
            "{t}"
        );
        assert_eq!(
            positions(store, tags(&[t, "other"]), ReadOptions::forwards()).await,
            vec![2],
            "{t} and other"
        );
    }
}

/// An event with one metadata string: the named `userId`, or a free key.
fn with_metadata(key: &str, value: &str) -> Event {
    let mut e = Event::new("OK");
    if key == "userId" {
        e.metadata.user_id = Some(value.into());
    } else {
        e.metadata.extra.insert(key.into(), value.into());
    }
    e
}

/// An event whose timestamp is `t` as given (not truncated, as a parsed event's is not).
fn at(t: DateTime<Utc>) -> Event {
    let mut e = Event::new("OK");
    e.timestamp = Some(t);
    e
}

/// The first instant of `year`.
fn year_start(year: i32) -> DateTime<Utc> {
    use chrono::TimeZone;
    Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_else(|| panic!("year {year}"))
}

/// A condition without `after` fails when any stored event matches its query, and passes otherwise.
pub async fn condition_without_after_fails_when_anything_matches(store: &dyn EventStore) {
    seed_ten(store).await;
    let r = store
        .append(
            vec![Event::new("C")],
            Some(AppendCondition::new(tags(&["n:3"]))),
        )
        .await;
    assert!(
        matches!(r, Err(Error::AppendConditionFailed { position: 3 })),
        "{r:?}"
    );
    let r = store
        .append(
            vec![Event::new("C")],
            Some(AppendCondition::new(types(&["A"]))),
        )
        .await;
    assert!(
        matches!(r, Err(Error::AppendConditionFailed { .. })),
        "{r:?}"
    );
    assert_eq!(
        store.head().await.unwrap(),
        10,
        "a failed condition writes nothing"
    );
    let ok = store
        .append(
            vec![Event::new("C")],
            Some(AppendCondition::new(types(&["C"]))),
        )
        .await
        .unwrap();
    assert_eq!(ok.positions, vec![11]);
    let r = store
        .append(
            vec![Event::new("C")],
            Some(AppendCondition::new(types(&["C"]))),
        )
        .await;
    assert!(
        matches!(r, Err(Error::AppendConditionFailed { position: 11 })),
        "{r:?}"
    );
}

/// `after` equal to the last matching position passes; a match after `after` fails.
pub async fn condition_after_last_match(store: &dyn EventStore) {
    seed_ten(store).await;
    // Last "third" is at 9.
    let ok = store
        .append(
            vec![Event::new("C").tag("third")],
            Some(AppendCondition::new(tags(&["third"])).after(9)),
        )
        .await;
    assert_eq!(ok.unwrap().positions, vec![11]);
    // An intervening match (11) makes a decision based on 9 fail.
    let r = store
        .append(
            vec![Event::new("C")],
            Some(AppendCondition::new(tags(&["third"])).after(9)),
        )
        .await;
    assert!(
        matches!(r, Err(Error::AppendConditionFailed { position: 11 })),
        "{r:?}"
    );
    let r = store
        .append(
            vec![Event::new("C")],
            Some(AppendCondition::new(tags(&["third"])).after(8)),
        )
        .await;
    assert!(
        matches!(r, Err(Error::AppendConditionFailed { .. })),
        "{r:?}"
    );
    // Non-matching events after `after` do not count.
    let ok = store
        .append(
            vec![Event::new("C")],
            Some(AppendCondition::new(tags(&["n:1"])).after(1)),
        )
        .await;
    assert!(ok.is_ok(), "{ok:?}");
}

/// `after` above the head passes (nothing can be after it).
pub async fn condition_after_above_head_passes(store: &dyn EventStore) {
    seed_ten(store).await;
    let ok = store
        .append(
            vec![Event::new("C")],
            Some(AppendCondition::new(Query::item(QueryItem::types(["A"]))).after(1_000)),
        )
        .await;
    assert_eq!(ok.unwrap().positions, vec![11]);
    let ok = store
        .append(
            vec![Event::new("C")],
            Some(AppendCondition::new(types(&["A"])).after(u64::MAX)),
        )
        .await;
    assert_eq!(ok.unwrap().positions, vec![12]);
}

/// A condition on the empty query (every event) fails on a non-empty store and passes on an empty one.
pub async fn condition_on_everything(store: &dyn EventStore) {
    let ok = store
        .append(
            vec![Event::new("FIRST")],
            Some(AppendCondition::new(Query::all())),
        )
        .await;
    assert_eq!(ok.unwrap().positions, vec![1]);
    let r = store
        .append(
            vec![Event::new("SECOND")],
            Some(AppendCondition::new(Query::all())),
        )
        .await;
    assert!(
        matches!(r, Err(Error::AppendConditionFailed { position: 1 })),
        "{r:?}"
    );
    let ok = store
        .append(
            vec![Event::new("SECOND")],
            Some(AppendCondition::new(Query::all()).after(1)),
        )
        .await;
    assert_eq!(ok.unwrap().positions, vec![2]);
}

/// A retry of a stored append (same ids, same content) returns the original positions without writing,
/// even with a condition that would now fail and even when the original had no timestamp.
pub async fn idempotent_retry_returns_original_positions(store: &dyn EventStore) {
    seed_ten(store).await;
    let events = vec![
        Event::new("C").tag("k:1").data(serde_json::json!({"a": 1})),
        Event::new("D"),
    ];
    let cond = AppendCondition::new(types(&["C"]));
    let first = store
        .append(events.clone(), Some(cond.clone()))
        .await
        .unwrap();
    assert_eq!(
        (first.positions.as_slice(), first.duplicate),
        (&[11, 12][..], false)
    );
    put(store, vec![Event::new("E")]).await;
    let again = store.append(events.clone(), Some(cond)).await.unwrap();
    assert_eq!(
        (again.positions.as_slice(), again.duplicate),
        (&[11, 12][..], true)
    );
    let again = store.append(events, None).await.unwrap();
    assert_eq!(again.positions, vec![11, 12]);
    assert_eq!(store.head().await.unwrap(), 13);
    // A retry carrying the timestamp the store gave is the same content too.
    let stored = store.get(first_id(store, 11).await).await.unwrap().unwrap();
    let with_ts = store
        .append(vec![stored.event.clone()], None)
        .await
        .unwrap();
    assert_eq!(
        (with_ts.positions.as_slice(), with_ts.duplicate),
        (&[11][..], true)
    );
    // A larger append (PostgreSQL inserts appends of eight events or more another way) retried whole.
    let big: Vec<Event> = (0..10)
        .map(|i| Event::new("F").tag(format!("n:{i}")))
        .collect();
    let stored = store.append(big.clone(), None).await.unwrap();
    assert_eq!(stored.positions, (14..=23).collect::<Vec<_>>());
    for cond in [None, Some(AppendCondition::new(types(&["F"])))] {
        let again = store.append(big.clone(), cond).await.unwrap();
        assert_eq!(
            (again.positions, again.duplicate),
            ((14..=23).collect::<Vec<_>>(), true)
        );
    }
    assert_eq!(store.head().await.unwrap(), 23);
}

async fn first_id(store: &dyn EventStore, position: u64) -> uuid::Uuid {
    read(
        store,
        Query::all(),
        ReadOptions::forwards().from(position).limit(1),
    )
    .await[0]
        .event
        .id
}

/// A changed event under a stored id is rejected, and so is a batch mixing stored and new ids; the store
/// is unchanged.
pub async fn changed_event_under_stored_id_rejected(store: &dyn EventStore) {
    let at: DateTime<Utc> = "2026-03-04T05:06:07.000008Z".parse().unwrap();
    let original = Event::new("A")
        .tag("k:1")
        .data(serde_json::json!({"v": 1}))
        .timestamp(at);
    put(store, vec![original.clone()]).await;
    let changes = [
        original.clone().data(serde_json::json!({"v": 2})),
        original.clone().tag("k:2"),
        Event {
            event_type: "B".into(),
            ..original.clone()
        },
        original
            .clone()
            .timestamp(at + chrono::Duration::seconds(1)),
        original.clone().metadata(EventMetadata {
            user_id: Some("u".into()),
            ..EventMetadata::default()
        }),
    ];
    for changed in changes {
        let r = store.append(vec![changed], None).await;
        assert!(
            matches!(&r, Err(Error::DuplicateEventId { ids }) if *ids == vec![original.id]),
            "{r:?}"
        );
    }
    let fresh = Event::new("A");
    let r = store
        .append(vec![fresh.clone(), original.clone()], None)
        .await;
    assert!(
        matches!(&r, Err(Error::DuplicateEventId { ids }) if *ids == vec![original.id]),
        "{r:?}"
    );
    assert_eq!(store.head().await.unwrap(), 1);
    assert!(store.get(fresh.id).await.unwrap().is_none());
    // The same in a larger append: nine new events and the stored one, none of them stored.
    let mut big: Vec<Event> = (0..9).map(|_| Event::new("A")).collect();
    big.push(original.clone());
    let r = store.append(big.clone(), None).await;
    assert!(
        matches!(&r, Err(Error::DuplicateEventId { ids }) if *ids == vec![original.id]),
        "{r:?}"
    );
    assert_eq!(store.head().await.unwrap(), 1);
    assert!(store.get(big[0].id).await.unwrap().is_none());
}

/// Metadata, tags, timestamps and arbitrary JSON data come back equal in meaning.
pub async fn round_trip_preserves_content(store: &dyn EventStore) {
    let at: DateTime<Utc> = "2025-12-31T23:59:59.999999Z".parse().unwrap();
    let metadata = EventMetadata {
        workflow_version: Some("3.1.0".into()),
        event_source: Some(EventSource::Plugin),
        user_id: Some("user-ü".into()),
        session_id: Some("s-1".into()),
        request_id: Some("r-1".into()),
        correlation_id: Some("c-1".into()),
        causation_id: Some("e-0".into()),
        extra: BTreeMap::from([
            ("team".into(), "blue".into()),
            ("emptyValue".into(), String::new()),
        ]),
    };
    let data = serde_json::json!({
        "string": "quote \" backslash \\ newline \n tab \t nul-free unicode ✓ 𝄞",
        "ints": [0, -1, i64::MIN, i64::MAX, u64::MAX],
        "floats": [0.5, -1.25e-10, 1.7976931348623157e308],
        "bool": true,
        "null": null,
        "nested": {"z": 1, "a": [{"deep": {"er": []}}], "m": {}},
    });
    let rich = Event::new("ORDER.PLACED")
        .tags(["order:o-1", "customer:c-9", "weird:a:b:c", "space: yes"])
        .metadata(metadata)
        .data(data)
        .timestamp(at);
    let scalars = [
        serde_json::json!(null),
        serde_json::json!(42),
        serde_json::json!("text"),
        serde_json::json!([1, "a"]),
    ];
    let mut events = vec![rich.clone()];
    events.extend(scalars.iter().map(|d| Event::new("SCALAR").data(d.clone())));
    put(store, events).await;
    let got = store.get(rich.id).await.unwrap().expect("stored").event;
    assert_eq!(got, rich);
    let all = read(store, Query::all(), ReadOptions::forwards()).await;
    assert_eq!(all[0].event, rich);
    for (e, d) in all[1..].iter().zip(&scalars) {
        assert_eq!(&e.event.data, d);
        assert!(e.event.metadata.is_empty());
        assert!(e.event.tags.is_empty());
    }
    // Tags with characters that look like query syntax are still exact.
    let q = tags(&["weird:a:b:c"]);
    assert_eq!(positions(store, q, ReadOptions::forwards()).await, vec![1]);
}

/// `recordedAt` is set by the store at commit; a missing timestamp is set to the append time.
pub async fn recorded_at_is_set(store: &dyn EventStore) {
    let old: DateTime<Utc> = "2020-01-01T00:00:00Z".parse().unwrap();
    let before = Utc::now() - chrono::Duration::seconds(5);
    put(store, vec![Event::new("A"), Event::new("B").timestamp(old)]).await;
    let after = Utc::now() + chrono::Duration::seconds(5);
    let all = read(store, Query::all(), ReadOptions::forwards()).await;
    for e in &all {
        assert!(e.recorded_at > before && e.recorded_at < after, "{e:?}");
    }
    let stamped = all[0].event.timestamp.expect("stamped");
    assert!(stamped > before && stamped < after);
    assert_eq!(all[1].event.timestamp, Some(old));
    assert_eq!(all[1].timestamp(), old);
}
