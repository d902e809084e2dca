//! Events as producers send them and as the store hands them back.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::{EventData, Tags};

/// Where an event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventSource {
    /// Tamma itself.
    System,
    /// A person, through the CLI or the API.
    User,
    /// A plugin.
    Plugin,
}

/// Who and what caused an event: the standard keys plus free string keys.
///
/// `correlationId` groups every event of one piece of work (a workflow run, a request and all it caused);
/// `causationId` is the id of the event (or request) that directly caused this one.
// `Serialize` and `Deserialize` are written by hand below: the derived ones go through serde's
// `flatten` machinery (the derived `Deserialize` buffers every entry), which costs more than the rest of
// encoding an event. The `serde` attributes still describe the JSON form to `schemars`.
#[derive(Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventMetadata {
    /// Version of the workflow definition that produced the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_version: Option<String>,
    /// Who produced the event: `system`, `user` or `plugin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_source: Option<EventSource>,
    /// The acting user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The user's session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The request that produced the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Groups every event of one piece of work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The id of the event or request that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// Free string keys.
    #[serde(flatten)]
    pub extra: BTreeMap<String, String>,
}

impl EventMetadata {
    /// Every string of the metadata with where it is: `.userId` for a named field, `.<key>` for the
    /// value of a free key, and `` (the metadata itself) for a free key's name.
    pub(crate) fn strings(&self) -> impl Iterator<Item = (std::borrow::Cow<'_, str>, &str)> {
        use std::borrow::Cow;
        let named = [
            (".workflowVersion", &self.workflow_version),
            (".userId", &self.user_id),
            (".sessionId", &self.session_id),
            (".requestId", &self.request_id),
            (".correlationId", &self.correlation_id),
            (".causationId", &self.causation_id),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (Cow::Borrowed(k), v)));
        let free = self.extra.iter().flat_map(|(k, v)| {
            [
                (Cow::Borrowed(""), k.as_str()),
                (Cow::Owned(format!(".{k}")), v.as_str()),
            ]
        });
        named.chain(free)
    }
}

impl Serialize for EventMetadata {
    /// The named keys that are set, in declaration order, then the free keys in key order: what the
    /// derived implementation with `flatten` wrote.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        if let Some(v) = &self.workflow_version {
            m.serialize_entry("workflowVersion", v)?;
        }
        if let Some(v) = &self.event_source {
            m.serialize_entry("eventSource", v)?;
        }
        let named = [
            ("userId", &self.user_id),
            ("sessionId", &self.session_id),
            ("requestId", &self.request_id),
            ("correlationId", &self.correlation_id),
            ("causationId", &self.causation_id),
        ];
        for (k, v) in named {
            if let Some(v) = v {
                m.serialize_entry(k, v)?;
            }
        }
        for (k, v) in &self.extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for EventMetadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use std::borrow::Cow;

        use serde::de::{MapAccess, Visitor};

        /// A key, borrowed from the input when it can be.
        struct Key<'de>(Cow<'de, str>);
        impl<'de> Deserialize<'de> for Key<'de> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct K;
                impl<'de> Visitor<'de> for K {
                    type Value = Key<'de>;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a metadata key")
                    }
                    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                        Ok(Key(Cow::Borrowed(v)))
                    }
                    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                        Ok(Key(Cow::Owned(v.to_owned())))
                    }
                    fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                        Ok(Key(Cow::Owned(v)))
                    }
                }
                d.deserialize_str(K)
            }
        }

        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EventMetadata;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EventMetadata, A::Error> {
                let mut m = EventMetadata::default();
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    let slot = match &*key {
                        "workflowVersion" => &mut m.workflow_version,
                        "userId" => &mut m.user_id,
                        "sessionId" => &mut m.session_id,
                        "requestId" => &mut m.request_id,
                        "correlationId" => &mut m.correlation_id,
                        "causationId" => &mut m.causation_id,
                        "eventSource" => {
                            m.event_source = map.next_value()?;
                            continue;
                        }
                        _ => {
                            let value: String = map.next_value()?;
                            m.extra.insert(key.into_owned(), value);
                            continue;
                        }
                    };
                    *slot = map.next_value()?;
                }
                Ok(m)
            }
        }
        d.deserialize_map(V)
    }
}

impl EventMetadata {
    /// Whether no key is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        // Destructured, so a new field cannot be forgotten here.
        let Self {
            workflow_version,
            event_source,
            user_id,
            session_id,
            request_id,
            correlation_id,
            causation_id,
            extra,
        } = self;
        workflow_version.is_none()
            && event_source.is_none()
            && user_id.is_none()
            && session_id.is_none()
            && request_id.is_none()
            && correlation_id.is_none()
            && causation_id.is_none()
            && extra.is_empty()
    }
}

/// One event, as a producer appends it.
///
/// `id` is the key of idempotency: a retry of the same append with the same ids succeeds without writing.
/// It is assigned (UUIDv7) by [`Event::new`] and when missing from JSON input. `timestamp` is when the
/// event happened on the producer's clock; `None` lets the store stamp it at append. Stored events always
/// carry a timestamp, truncated to microseconds.
///
/// ```
/// use tamma_events::{Event, EventSource};
///
/// let event = Event::new("TASK.STARTED")
///     .tag("workflow:wf-1")
///     .data(serde_json::json!({"attempt": 1}));
/// assert_eq!(event.id.get_version_num(), 7);
///
/// let wire: Event = serde_json::from_str(
///     r#"{"type": "TASK.STARTED", "tags": {"workflow": "wf-1"}, "metadata": {"eventSource": "user", "team": "a"}}"#,
/// ).unwrap();
/// assert_eq!(wire.metadata.event_source, Some(EventSource::User));
/// assert_eq!(wire.metadata.extra["team"], "a");
/// assert!(wire.timestamp.is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Event {
    /// Unique in the store; UUIDv7 assigned when missing.
    #[serde(default = "Uuid::now_v7")]
    pub id: Uuid,
    /// The event type, `SUBJECT.VERB` (`TASK.STARTED`); 1 to 256 bytes.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the event happened (RFC 3339); stamped by the store when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
    /// The tags (`key:value`).
    #[serde(default)]
    pub tags: Tags,
    /// Who and what caused the event.
    #[serde(default)]
    pub metadata: EventMetadata,
    /// The payload: any JSON value, opaque to the store (kept as JSON text, see [`EventData`]).
    #[serde(default)]
    pub data: EventData,
}

/// The longest event type, in bytes.
pub const MAX_TYPE_LEN: usize = 256;

/// The longest tag, in bytes. Tags are index keys (PostgreSQL's B-tree entries hold at most about
/// 2,700 bytes); a tag names what an event is about, not its content.
pub const MAX_TAG_LEN: usize = 1024;

/// The earliest and latest year of an event's timestamp: the years RFC 3339 (the timestamp's form on
/// the wire) can write, all of which every backend can store.
pub const TIMESTAMP_YEARS: std::ops::RangeInclusive<i32> = 0..=9999;

impl Event {
    /// A new event of type `event_type` with a fresh UUIDv7 id, no timestamp (the store stamps it), no
    /// tags, empty metadata and `null` data.
    pub fn new(event_type: impl Into<String>) -> Self {
        Self {
            id: Uuid::now_v7(),
            event_type: event_type.into(),
            timestamp: None,
            tags: Tags::new(),
            metadata: EventMetadata::default(),
            data: EventData::null(),
        }
    }

    /// Sets the id.
    #[must_use]
    pub fn id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    /// Adds a tag.
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.insert(tag);
        self
    }

    /// Replaces the tags.
    #[must_use]
    pub fn tags(mut self, tags: impl Into<Tags>) -> Self {
        self.tags = tags.into();
        self
    }

    /// Sets the payload (a `serde_json::Value`, e.g. from `json!`, or an [`EventData`]).
    #[must_use]
    pub fn data(mut self, data: impl Into<EventData>) -> Self {
        self.data = data.into();
        self
    }

    /// Sets the metadata.
    #[must_use]
    pub fn metadata(mut self, metadata: EventMetadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the timestamp (truncated to microseconds, the precision every backend keeps).
    #[must_use]
    pub fn timestamp(mut self, at: DateTime<Utc>) -> Self {
        self.timestamp = Some(at.trunc_subsecs(6));
        self
    }

    /// The event's size as counted against `events.maxEventSize`: the length of its JSON encoding.
    #[must_use]
    pub fn encoded_size(&self) -> u64 {
        // Serializing an Event into memory cannot fail: every field is a plain value with string keys.
        serde_json::to_vec(self).map_or(u64::MAX, |v| v.len() as u64)
    }

    /// [`Event::encoded_size`] from the lengths of the compact JSON encodings of the tags, the metadata
    /// and the data, which a backend storing those encodings already has: only the id, type and timestamp
    /// are measured here, without serializing the payload a second time.
    ///
    /// ```
    /// use tamma_events::Event;
    ///
    /// let e = Event::new("A").tag("k:v").data(serde_json::json!({"x": 1}));
    /// let len = |v: String| v.len();
    /// let size = e.encoded_size_with(
    ///     len(serde_json::to_string(&e.tags).unwrap()),
    ///     len(serde_json::to_string(&e.metadata).unwrap()),
    ///     len(serde_json::to_string(&e.data).unwrap()),
    /// );
    /// assert_eq!(size, e.encoded_size());
    /// ```
    #[must_use]
    pub fn encoded_size_with(
        &self,
        tags_json: usize,
        metadata_json: usize,
        data_json: usize,
    ) -> u64 {
        /// Counts the bytes written to it.
        struct Count(u64);
        impl std::io::Write for Count {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 += buf.len() as u64;
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        // `{"id":"<36>"` + `,"type":` + type + [`,"timestamp":` + time] + `,"tags":` + tags +
        // `,"metadata":` + metadata + `,"data":` + data + `}`, as the derived `Serialize` writes it.
        let mut n = Count(6 + 38 + 8 + 8 + 12 + 8 + 1);
        // Writing a string or a time into a counter cannot fail.
        let _ = serde_json::to_writer(&mut n, &self.event_type);
        if let Some(t) = &self.timestamp {
            n.0 += 13;
            let _ = serde_json::to_writer(&mut n, t);
        }
        n.0 + (tags_json + metadata_json + data_json) as u64
    }

    /// Whether `retry` carries the same content as this stored event: the same type, tags, metadata and
    /// data, and the same timestamp when the retry carries one (compared at microsecond precision).
    /// Ids are not compared.
    #[must_use]
    pub fn same_content(&self, retry: &Event) -> bool {
        self.event_type == retry.event_type
            && self.tags == retry.tags
            && self.metadata == retry.metadata
            && self.data == retry.data
            && retry.timestamp.is_none_or(|t| {
                Some(t.trunc_subsecs(6)) == self.timestamp.map(|s| s.trunc_subsecs(6))
            })
    }

    /// The event as the store keeps it: the timestamp set to `now` when absent, and truncated to
    /// microseconds.
    #[must_use]
    pub fn stamped(mut self, now: DateTime<Utc>) -> Self {
        self.timestamp = Some(self.timestamp.unwrap_or(now).trunc_subsecs(6));
        self
    }
}

/// A stored event: its position in the log, the time the store committed it, and the event.
///
/// On the wire: `{"position": 7, "event": {"id": …, "type": …, "timestamp": …, "recordedAt": …, "tags": […],
/// "metadata": {…}, "data": …}}`.
#[derive(Clone, Debug, PartialEq)]
pub struct SequencedEvent {
    /// The position: from 1, gapless, in commit order.
    pub position: u64,
    /// When the store committed the event (store's clock, microsecond precision).
    pub recorded_at: DateTime<Utc>,
    /// The event; its `timestamp` is always set.
    pub event: Event,
}

impl SequencedEvent {
    /// The event's timestamp (always set on stored events; falls back to `recorded_at`).
    #[must_use]
    pub fn timestamp(&self) -> DateTime<Utc> {
        self.event.timestamp.unwrap_or(self.recorded_at)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireOut<'a> {
    position: u64,
    event: WireEventOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireEventOut<'a> {
    id: &'a Uuid,
    #[serde(rename = "type")]
    event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: &'a Option<DateTime<Utc>>,
    recorded_at: &'a DateTime<Utc>,
    tags: &'a Tags,
    metadata: &'a EventMetadata,
    data: &'a EventData,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireIn {
    position: u64,
    event: WireEventIn,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireEventIn {
    id: Uuid,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    timestamp: Option<DateTime<Utc>>,
    recorded_at: DateTime<Utc>,
    #[serde(default)]
    tags: Tags,
    #[serde(default)]
    metadata: EventMetadata,
    #[serde(default)]
    data: EventData,
}

impl Serialize for SequencedEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = &self.event;
        WireOut {
            position: self.position,
            event: WireEventOut {
                id: &e.id,
                event_type: &e.event_type,
                timestamp: &e.timestamp,
                recorded_at: &self.recorded_at,
                tags: &e.tags,
                metadata: &e.metadata,
                data: &e.data,
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SequencedEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = WireIn::deserialize(d)?;
        let e = w.event;
        Ok(Self {
            position: w.position,
            recorded_at: e.recorded_at,
            event: Event {
                id: e.id,
                event_type: e.event_type,
                timestamp: e.timestamp,
                tags: e.tags,
                metadata: e.metadata,
                data: e.data,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// `EventMetadata` as it was declared with derived `Serialize` (and `flatten`), the reference
    /// for the hand-written implementation.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct DerivedMetadata<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        workflow_version: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        event_source: &'a Option<EventSource>,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        session_id: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        correlation_id: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        causation_id: &'a Option<String>,
        #[serde(flatten)]
        extra: &'a BTreeMap<String, String>,
    }

    fn text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(crate::json::tests::text())
    }

    proptest! {
        #[test]
        fn metadata_serializes_as_the_derived_implementation_did_and_write_json_agrees(
            workflow_version in text(),
            source in proptest::option::of(prop_oneof![
                Just(EventSource::System), Just(EventSource::User), Just(EventSource::Plugin)
            ]),
            user_id in text(),
            session_id in text(),
            request_id in text(),
            correlation_id in text(),
            causation_id in text(),
            extra in proptest::collection::btree_map(crate::json::tests::text(), crate::json::tests::text(), 0..4),
        ) {
            let m = EventMetadata {
                workflow_version,
                event_source: source,
                user_id,
                session_id,
                request_id,
                correlation_id,
                causation_id,
                extra,
            };
            let derived = DerivedMetadata {
                workflow_version: &m.workflow_version,
                event_source: &m.event_source,
                user_id: &m.user_id,
                session_id: &m.session_id,
                request_id: &m.request_id,
                correlation_id: &m.correlation_id,
                causation_id: &m.causation_id,
                extra: &m.extra,
            };
            let ours = serde_json::to_string(&m).unwrap();
            prop_assert_eq!(&ours, &serde_json::to_string(&derived).unwrap());
            let mut written = Vec::new();
            m.write_json(&mut written);
            prop_assert_eq!(&String::from_utf8(written).unwrap(), &ours);
            prop_assert_eq!(serde_json::from_str::<EventMetadata>(&ours).unwrap(), m);
        }
    }

    #[test]
    fn wire_round_trip() {
        let at: DateTime<Utc> = "2026-01-02T03:04:05.123456Z".parse().unwrap();
        let s = SequencedEvent {
            position: 7,
            recorded_at: at,
            event: Event::new("TASK.STARTED")
                .tag("a:b")
                .timestamp(at)
                .data(json!({"x": [1, 2.5, null]})),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["position"], 7);
        assert_eq!(v["event"]["recordedAt"], "2026-01-02T03:04:05.123456Z");
        assert_eq!(v["event"]["tags"], json!(["a:b"]));
        let back: SequencedEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn producer_cannot_set_recorded_at_and_bad_fields_are_named() {
        let e =
            serde_json::from_str::<Event>(r#"{"type": "A", "recordedAt": "2026-01-01T00:00:00Z"}"#)
                .unwrap_err();
        assert!(e.to_string().contains("recordedAt"), "{e}");
        let e = serde_json::from_str::<Event>(r#"{"type": "A", "id": "nope"}"#).unwrap_err();
        assert!(
            e.to_string().contains("UUID") || e.to_string().contains("invalid"),
            "{e}"
        );
        let e = serde_json::from_str::<Event>(r#"{"type": "A", "timestamp": "yesterday"}"#)
            .unwrap_err();
        assert!(e.to_string().contains("input"), "{e}");
        let e =
            serde_json::from_str::<Event>(r#"{"type": "A", "metadata": {"eventSource": "robot"}}"#)
                .unwrap_err();
        assert!(e.to_string().contains("robot"), "{e}");
    }

    #[test]
    fn same_content_ignores_missing_timestamp_on_retry() {
        let now = Utc::now();
        let original = Event::new("A").tag("t:1").data(json!({"k": 1}));
        let stored = original.clone().stamped(now);
        assert!(stored.same_content(&original));
        assert!(stored.same_content(&stored.clone()));
        let other_time = original
            .clone()
            .timestamp(now - chrono::Duration::seconds(5));
        assert!(!stored.same_content(&other_time));
        assert!(!stored.same_content(&original.clone().data(json!({"k": 2}))));
        assert!(!stored.same_content(&original.clone().tag("t:2")));
        let mut md = original.clone();
        md.metadata.user_id = Some("u".into());
        assert!(!stored.same_content(&md));
    }

    #[test]
    fn id_is_assigned_when_missing() {
        let a: Event = serde_json::from_str(r#"{"type": "A"}"#).unwrap();
        let b: Event = serde_json::from_str(r#"{"type": "A"}"#).unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(a.id.get_version_num(), 7);
        assert!(a.metadata.is_empty());
        assert!(a.encoded_size() > 10);
    }

    #[test]
    fn encoded_size_from_parts_matches_the_full_encoding() {
        let at: DateTime<Utc> = "2026-01-02T03:04:05.123456Z".parse().unwrap();
        let events = [
            Event::new("A"),
            Event::new("TASK.\"QUOTED\"\u{e9}\n").timestamp(at),
            Event::new("B")
                .tag("a:1")
                .tag("b:\"2\"")
                .data(json!({"x": [1, "é\t", null], "y": 2.5})),
            Event::new("C")
                .timestamp(Utc::now())
                .metadata(EventMetadata {
                    event_source: Some(EventSource::User),
                    user_id: Some("u\"1".into()),
                    extra: [("team".to_owned(), "a".to_owned())].into(),
                    ..EventMetadata::default()
                }),
        ];
        for e in events {
            let len = |v: String| v.len();
            let parts = e.encoded_size_with(
                len(serde_json::to_string(&e.tags).unwrap()),
                len(serde_json::to_string(&e.metadata).unwrap()),
                len(serde_json::to_string(&e.data).unwrap()),
            );
            assert_eq!(parts, e.encoded_size(), "{e:?}");
        }
    }

    #[test]
    fn metadata_reads_standard_and_free_keys() {
        let m: EventMetadata = serde_json::from_str(
            r#"{"workflowVersion":"3","eventSource":"plugin","userId":"u","sessionId":"s",
                "requestId":"r","correlationId":"c","causationId":null,"te\u0061m":"a","zone":"eu"}"#,
        )
        .unwrap();
        assert_eq!(m.workflow_version.as_deref(), Some("3"));
        assert_eq!(m.event_source, Some(EventSource::Plugin));
        assert_eq!(
            (m.user_id.as_deref(), m.session_id.as_deref()),
            (Some("u"), Some("s"))
        );
        assert_eq!(m.request_id.as_deref(), Some("r"));
        assert_eq!(m.correlation_id.as_deref(), Some("c"));
        assert_eq!(m.causation_id, None);
        assert_eq!(m.extra.len(), 2);
        assert_eq!(m.extra["team"], "a");
        // Round trip through the serialized form.
        let again: EventMetadata =
            serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(again, m);
        // Free keys hold strings; a standard key holds its type.
        let e = serde_json::from_str::<EventMetadata>(r#"{"team": 7}"#).unwrap_err();
        assert!(e.to_string().contains("invalid type: integer `7`"), "{e}");
        let e = serde_json::from_str::<EventMetadata>(r#"{"eventSource": "robot"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown variant `robot`"), "{e}");
        assert!(serde_json::from_str::<EventMetadata>("[]").is_err());
    }
}
