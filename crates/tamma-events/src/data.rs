//! An event's payload, kept as JSON text.

use std::borrow::Cow;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// An event's payload: any JSON value, kept as its compact JSON text.
///
/// The store never looks inside a payload, so it keeps the text: reading an event back costs a copy of
/// the text instead of building a tree of maps and strings, and the payload is
/// written out (to HTTP clients, exports, subscribers) as it was stored, keys in their order. Build one from a [`serde_json::Value`] (`json!` works with [`crate::Event::data`]) or from
/// anything serializable; read it with [`EventData::parse`] into your own type, or
/// [`EventData::to_value`].
///
/// Equality is equality of the JSON values: two payloads with the same text are equal at once; with
/// different texts both are parsed and compared (so `{"a":1,"b":2}` equals `{"b":2,"a":1}`).
///
/// It serializes as the JSON value through `serde_json` (`to_string`, `to_writer`, `to_value`); other
/// serde formats should serialize [`EventData::to_value`] instead.
///
/// ```
/// use tamma_events::EventData;
/// use serde_json::json;
///
/// let data = EventData::from(json!({"step": 3, "status": "running"}));
/// assert_eq!(data.as_json(), r#"{"step":3,"status":"running"}"#);
/// assert_eq!(data, json!({"status": "running", "step": 3}));
///
/// #[derive(serde::Deserialize)]
/// struct Progress { step: u32 }
/// assert_eq!(data.parse::<Progress>().unwrap().step, 3);
/// ```
#[derive(Clone)]
pub struct EventData(Box<str>);

/// `null`, as a compact JSON text.
const NULL: &str = "null";

impl EventData {
    /// The payload `null`.
    #[must_use]
    pub fn null() -> Self {
        Self(NULL.into())
    }

    /// The payload `value` serializes to.
    ///
    /// # Errors
    /// When `value` cannot be represented as JSON (a map with non-string keys, a failing `Serialize`).
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Self> {
        serde_json::to_string(value).map(|s| Self(s.into_boxed_str()))
    }

    /// A payload from its JSON text, as a store wrote it: the text is checked to be one JSON value, and
    /// kept as it is (a store writes the compact text [`EventData::as_json`] gave it). Text from anywhere
    /// else should go through [`EventData::from_json`], which makes it compact.
    ///
    /// # Errors
    /// When `json` is not one valid JSON value.
    pub fn from_stored(json: String) -> serde_json::Result<Self> {
        serde_json::from_str::<&RawValue>(&json)?;
        Ok(Self(json.into_boxed_str()))
    }

    /// A payload from JSON text a store wrote itself from [`EventData::as_json`], taken without
    /// checking it again (reading a large store back is then a copy, not a parse). Text that is not
    /// valid JSON is not caught here: writing such a payload out with `serde_json` fails, and
    /// [`EventData::to_value`] gives `null`. Anything not written by a store goes through
    /// [`EventData::from_stored`] or [`EventData::from_json`].
    #[must_use]
    pub fn from_trusted(json: String) -> Self {
        Self(json.into_boxed_str())
    }

    /// A payload from any JSON text, made compact (whitespace outside strings removed, key order kept,
    /// numbers as `serde_json` writes them: `2.50` becomes `2.5`).
    ///
    /// # Errors
    /// When `json` is not one valid JSON value.
    pub fn from_json(json: &str) -> serde_json::Result<Self> {
        let value: Value = serde_json::from_str(json)?;
        Ok(Self::from(value))
    }

    /// The compact JSON text.
    #[must_use]
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// Whether the payload is `null`.
    #[must_use]
    pub fn is_null(&self) -> bool {
        self.as_json() == NULL
    }

    /// The payload parsed into `T`.
    ///
    /// # Errors
    /// When the payload does not have the shape of `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_str(self.as_json())
    }

    /// The payload as a [`serde_json::Value`].
    #[must_use]
    pub fn to_value(&self) -> Value {
        // The text is valid JSON (checked when the payload was made, or written by a store from such
        // a payload), so parsing cannot fail; `Null` only stands in for a damaged store.
        self.parse().unwrap_or(Value::Null)
    }
}

impl Default for EventData {
    fn default() -> Self {
        Self::null()
    }
}

impl From<Value> for EventData {
    fn from(value: Value) -> Self {
        Self::from(&value)
    }
}

impl From<&Value> for EventData {
    fn from(value: &Value) -> Self {
        // A `Value` always serializes: its map keys are strings.
        Self::from_serialize(value).unwrap_or_else(|_| Self::null())
    }
}

impl PartialEq for EventData {
    fn eq(&self, other: &Self) -> bool {
        self.as_json() == other.as_json() || self.to_value() == other.to_value()
    }
}

impl PartialEq<Value> for EventData {
    fn eq(&self, other: &Value) -> bool {
        self.to_value() == *other
    }
}

impl fmt::Debug for EventData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_json())
    }
}

impl fmt::Display for EventData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_json())
    }
}

impl Serialize for EventData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // serde_json (text, `to_value`, `to_writer`) writes the kept text as it is, checked on the way.
        let raw: &RawValue = serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for EventData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Through a `Value`, so that the kept text is compact whatever the input's spacing.
        Value::deserialize(d).map(Self::from)
    }
}

impl schemars::JsonSchema for EventData {
    fn schema_name() -> Cow<'static, str> {
        "AnyValue".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::Schema::from(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compact_text_kept_and_written_raw() {
        let d = EventData::from_json("{ \"b\" : [1, 2.50, \"x y\"], \"a\": null }").unwrap();
        assert_eq!(d.as_json(), r#"{"b":[1,2.5,"x y"],"a":null}"#);
        assert_eq!(serde_json::to_string(&d).unwrap(), d.as_json());
        assert_eq!(
            serde_json::to_string(&json!({"data": d.to_value()})).unwrap(),
            r#"{"data":{"b":[1,2.5,"x y"],"a":null}}"#
        );
    }

    #[test]
    fn equality_is_of_values() {
        let a = EventData::from(json!({"a": 1, "b": 2}));
        let b = EventData::from_json(r#"{"b":2,"a":1}"#).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, EventData::from(json!({"a": 1})));
        assert_eq!(a, json!({"b": 2, "a": 1}));
    }

    #[test]
    fn stored_text_is_checked() {
        assert!(EventData::from_stored("{\"a\":1}".into()).is_ok());
        // Trusted text is checked only when written out.
        let damaged = EventData::from_trusted("{\"a\":".into());
        assert!(serde_json::to_string(&damaged).is_err());
        assert_eq!(damaged.to_value(), Value::Null);
        let e = EventData::from_stored("{\"a\":".into()).unwrap_err();
        assert!(e.to_string().contains("EOF"), "{e}");
        assert!(EventData::from_json("nope").is_err());
    }

    #[test]
    fn null_default_and_other_formats() {
        assert!(EventData::default().is_null());
        assert_eq!(EventData::null(), json!(null));
        let d: EventData = serde_json::from_str("[1,{\"k\":\"v\"}]").unwrap();
        assert_eq!(d.parse::<(u8, Value)>().unwrap().0, 1);
        // serde_json's value serializer reads the text back into a value.
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v, json!([1, {"k": "v"}]));
        assert_eq!(format!("{d:?}"), "[1,{\"k\":\"v\"}]");
    }
}
