//! Compact JSON of the parts of an event a store keeps as text, written straight into a buffer and read
//! back without the general parser.
//!
//! The output is byte for byte what `serde_json` writes for the same value (tested against it); this is
//! only faster: a string without a character JSON must escape (almost every tag and metadata value) is
//! copied whole after one scan, and the keys of the standard metadata are literals. Reading back, text in
//! exactly that compact form with no escape is split at its quotes; anything else is left to
//! `serde_json` (what both return for the same text is tested to agree).

use crate::{EventMetadata, EventSource, Tags};

/// Appends `s` as a JSON string, as `serde_json` writes it.
pub fn write_json_str(buf: &mut Vec<u8>, s: &str) {
    // No short-circuit: the fold compiles to a vectorized scan.
    let plain = s
        .bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        buf.reserve(s.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        // Writing a string into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *buf, s);
    }
}

impl Tags {
    /// Appends the tags as a compact JSON array, as `serde_json` writes it.
    ///
    /// ```
    /// let tags: tamma_events::Tags = ["b:2", "a:1"].into_iter().collect();
    /// let mut buf = Vec::new();
    /// tags.write_json(&mut buf);
    /// assert_eq!(buf, serde_json::to_vec(&tags).unwrap());
    /// assert_eq!(buf, br#"["a:1","b:2"]"#);
    /// ```
    pub fn write_json(&self, buf: &mut Vec<u8>) {
        buf.push(b'[');
        for (i, tag) in self.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            write_json_str(buf, tag);
        }
        buf.push(b']');
    }
}

impl EventMetadata {
    /// Appends the metadata as a compact JSON object, as `serde_json` writes it (`{}` when empty).
    ///
    /// ```
    /// use tamma_events::EventMetadata;
    ///
    /// let m = EventMetadata {
    ///     correlation_id: Some("run-1".into()),
    ///     ..EventMetadata::default()
    /// };
    /// let mut buf = Vec::new();
    /// m.write_json(&mut buf);
    /// assert_eq!(buf, serde_json::to_vec(&m).unwrap());
    /// assert_eq!(buf, br#"{"correlationId":"run-1"}"#);
    /// ```
    pub fn write_json(&self, buf: &mut Vec<u8>) {
        let mut first = true;
        let mut key = |buf: &mut Vec<u8>, literal: &[u8]| {
            buf.push(if first { b'{' } else { b',' });
            first = false;
            buf.extend_from_slice(literal);
        };
        if let Some(v) = &self.workflow_version {
            key(buf, br#""workflowVersion":"#);
            write_json_str(buf, v);
        }
        if let Some(v) = self.event_source {
            key(buf, br#""eventSource":"#);
            buf.extend_from_slice(match v {
                EventSource::System => br#""system""#,
                EventSource::User => br#""user""#,
                EventSource::Plugin => br#""plugin""#,
            });
        }
        let named: [(&[u8], &Option<String>); 5] = [
            (br#""userId":"#, &self.user_id),
            (br#""sessionId":"#, &self.session_id),
            (br#""requestId":"#, &self.request_id),
            (br#""correlationId":"#, &self.correlation_id),
            (br#""causationId":"#, &self.causation_id),
        ];
        for (literal, v) in named {
            if let Some(v) = v {
                key(buf, literal);
                write_json_str(buf, v);
            }
        }
        for (k, v) in &self.extra {
            key(buf, b"");
            write_json_str(buf, k);
            buf.push(b':');
            write_json_str(buf, v);
        }
        if first {
            buf.push(b'{');
        }
        buf.push(b'}');
    }
}

impl EventMetadata {
    /// Reads the metadata back from the compact JSON [`write_json`](Self::write_json) writes, when no
    /// string in it holds an escape (almost every stored event's): `None` for anything else — another
    /// layout, an escape, a non-string value, an unknown `eventSource` — which `serde_json` then reads
    /// (or refuses) as usual. What it returns is what `serde_json` returns for the same text; it only
    /// skips the general parser: with no backslash, no string can hold a quote, so the quotes alone
    /// delimit every key and value.
    ///
    /// ```
    /// use tamma_events::{EventMetadata, EventSource};
    ///
    /// let m = EventMetadata::from_plain_json(r#"{"eventSource":"user","correlationId":"run-1","k":"v"}"#)
    ///     .unwrap();
    /// assert_eq!(m.event_source, Some(EventSource::User));
    /// assert_eq!(m.correlation_id.as_deref(), Some("run-1"));
    /// assert_eq!(m.extra["k"], "v");
    /// assert_eq!(EventMetadata::from_plain_json("{}"), Some(EventMetadata::default()));
    /// assert_eq!(EventMetadata::from_plain_json(r#"{"userId": "spaced"}"#), None);
    /// assert_eq!(EventMetadata::from_plain_json(r#"{"userId":"a\"b"}"#), None);
    /// ```
    #[must_use]
    pub fn from_plain_json(text: &str) -> Option<Self> {
        let mut m = Self::default();
        if text == "{}" {
            return Some(m);
        }
        // `{"k":"v","k2":"v2"}` is `{`, then `k`, `:`, `v`, `,` … with `}` last.
        let pieces = plain_pieces(text)?;
        let (&open, mut rest) = pieces.split_first()?;
        if open != "{" {
            return None;
        }
        loop {
            let [key, colon, value, after, tail @ ..] = rest else {
                return None;
            };
            if *colon != ":" {
                return None;
            }
            let text = || Some((*value).to_owned());
            match *key {
                "workflowVersion" => m.workflow_version = text(),
                "userId" => m.user_id = text(),
                "sessionId" => m.session_id = text(),
                "requestId" => m.request_id = text(),
                "correlationId" => m.correlation_id = text(),
                "causationId" => m.causation_id = text(),
                "eventSource" => {
                    m.event_source = Some(match *value {
                        "system" => EventSource::System,
                        "user" => EventSource::User,
                        "plugin" => EventSource::Plugin,
                        _ => return None,
                    });
                }
                _ => {
                    m.extra.insert((*key).to_owned(), (*value).to_owned());
                }
            }
            match (*after, tail) {
                (",", _) => rest = tail,
                ("}", []) => return Some(m),
                _ => return None,
            }
        }
    }
}

impl Tags {
    /// Reads tags back from the compact JSON array [`write_json`](Self::write_json) writes, when no
    /// tag in it holds an escape: `None` for anything else, which `serde_json` then reads (or refuses).
    /// What it returns is what `serde_json` returns for the same text.
    ///
    /// ```
    /// use tamma_events::Tags;
    ///
    /// assert_eq!(Tags::from_plain_json(r#"["a:1","b:2"]"#), Some(Tags::from(["a:1", "b:2"])));
    /// assert_eq!(Tags::from_plain_json("[]"), Some(Tags::new()));
    /// assert_eq!(Tags::from_plain_json(r#"["a:1", "b:2"]"#), None);
    /// ```
    #[must_use]
    pub fn from_plain_json(text: &str) -> Option<Self> {
        if text == "[]" {
            return Some(Self::new());
        }
        // `["a","b"]` is `[`, then `a`, `,`, `b` with `]` last.
        let pieces = plain_pieces(text)?;
        let (&open, mut rest) = pieces.split_first()?;
        if open != "[" {
            return None;
        }
        let mut tags = Vec::with_capacity(pieces.len() / 2);
        loop {
            let [tag, after, tail @ ..] = rest else {
                return None;
            };
            tags.push(*tag);
            match (*after, tail) {
                (",", _) => rest = tail,
                ("]", []) => return Some(tags.into_iter().collect()),
                _ => return None,
            }
        }
    }
}

/// The pieces of `text` between its quotes, in one pass over its bytes; `None` when it holds a
/// backslash or a control character (JSON that needs the general parser, or not JSON at all). With
/// neither, no JSON string in it can hold a quote, so the quotes alone delimit its strings. (A byte
/// loop: `split('"')` runs a `memchr` per piece, whose setup costs more than it saves on pieces this
/// short.)
fn plain_pieces(text: &str) -> Option<Vec<&str>> {
    let bytes = text.as_bytes();
    // No short-circuit: the fold compiles to a vectorized scan.
    if !bytes
        .iter()
        .fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'\\'))
    {
        return None;
    }
    let mut pieces = Vec::with_capacity(16);
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'"' {
            // Both ends are next to an ASCII quote: character boundaries.
            pieces.push(text.get(start..i)?);
            start = i + 1;
        }
    }
    pieces.push(text.get(start..)?);
    Some(pieces)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Plain text, and every kind of character JSON escapes (quote, backslash, controls, DEL).
    pub(crate) fn text() -> impl Strategy<Value = String> {
        "[a-z0-9:é\\u{1F600}\"\\\\\\n\\t\\u{0}\\u{1f}\\u{7f} ]{0,12}"
    }

    /// Text around the shapes `from_plain_json` reads: objects of strings, with escapes, spaces,
    /// non-string values, unknown sources and trailing bytes mixed in.
    fn near_metadata_json() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("userId".to_owned()),
            Just("eventSource".to_owned()),
            Just("correlationId".to_owned()),
            text(),
        ];
        let value = prop_oneof![
            Just("\"system\"".to_owned()),
            Just("\"plugin\"".to_owned()),
            Just("\"robot\"".to_owned()),
            Just("null".to_owned()),
            Just("1".to_owned()),
            text().prop_map(|t| serde_json::to_string(&t).unwrap()),
            text().prop_map(|t| format!("\"{t}\"")),
        ];
        let sep = prop_oneof![Just(","), Just(", "), Just(",,")];
        (
            proptest::collection::vec((key, value, sep), 0..4),
            prop_oneof![Just(""), Just(" "), Just("x")],
        )
            .prop_map(|(entries, tail)| {
                let mut out = String::from("{");
                for (i, (k, v, sep)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(sep);
                    }
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push(':');
                    out.push_str(v);
                }
                out.push('}');
                out.push_str(tail);
                out
            })
    }

    proptest! {
        /// Whatever `from_plain_json` reads, `serde_json` reads the same way; and it reads every
        /// metadata `write_json` writes without an escape.
        #[test]
        fn plain_metadata_json_reads_as_serde_json_reads_it(text in near_metadata_json()) {
            if let Some(m) = EventMetadata::from_plain_json(&text) {
                let serde: EventMetadata = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(&m, &serde, "{}", text);
                let mut buf = Vec::new();
                m.write_json(&mut buf);
                let written = String::from_utf8(buf).unwrap();
                prop_assert_eq!(EventMetadata::from_plain_json(&written), Some(m));
            } else if let Ok(serde) = serde_json::from_str::<EventMetadata>(&text) {
                // Declined: only text with an escape, a non-compact layout or a non-string value.
                let mut buf = Vec::new();
                serde.write_json(&mut buf);
                let compact = String::from_utf8(buf).unwrap();
                prop_assert!(
                    compact != text || compact.contains('\\'),
                    "declined its own compact form {}",
                    text
                );
            }
        }

        /// Whatever `Tags::from_plain_json` reads, `serde_json` reads the same way; it reads every
        /// array `write_json` writes without an escape.
        #[test]
        fn plain_tags_json_reads_as_serde_json_reads_it(
            tags in proptest::collection::vec(text(), 0..4),
            sep in prop_oneof![Just(","), Just(", "), Just(",,")],
            raw in any::<bool>(),
            tail in prop_oneof![Just(""), Just(" "), Just("]")],
        ) {
            let items: Vec<String> = tags
                .iter()
                .map(|t| if raw { format!("\"{t}\"") } else { serde_json::to_string(t).unwrap() })
                .collect();
            let text = format!("[{}]{tail}", items.join(sep));
            if let Some(read) = Tags::from_plain_json(&text) {
                let serde: Tags = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(&read, &serde, "{}", text);
            }
            let tags: Tags = tags.into_iter().collect();
            let mut buf = Vec::new();
            tags.write_json(&mut buf);
            let written = String::from_utf8(buf).unwrap();
            if !written.contains('\\') {
                prop_assert_eq!(Tags::from_plain_json(&written), Some(tags));
            }
        }

        #[test]
        fn strings_and_tags_are_written_as_serde_json_writes_them(
            tags in proptest::collection::vec(text(), 0..4),
        ) {
            for t in &tags {
                let mut buf = Vec::new();
                write_json_str(&mut buf, t);
                prop_assert_eq!(&buf, &serde_json::to_vec(t).unwrap());
            }
            let tags: Tags = tags.into_iter().collect();
            let mut buf = b"x".to_vec();
            tags.write_json(&mut buf);
            prop_assert_eq!(&buf[1..], &serde_json::to_vec(&tags).unwrap()[..]);
        }
    }
}
