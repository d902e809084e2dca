//! Compact JSON of the parts of an event a store keeps as text, written straight into a buffer.
//!
//! The output is byte for byte what `serde_json` writes for the same value (tested against it); this is
//! only faster: a string without a character JSON must escape (almost every tag and metadata value) is
//! copied whole after one scan, and the keys of the standard metadata are literals.

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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Plain text, and every kind of character JSON escapes (quote, backslash, controls, DEL).
    pub(crate) fn text() -> impl Strategy<Value = String> {
        "[a-z0-9:é\\u{1F600}\"\\\\\\n\\t\\u{0}\\u{1f}\\u{7f} ]{0,12}"
    }

    proptest! {
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
