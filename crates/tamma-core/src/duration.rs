//! Durations in config: milliseconds on the wire (the seed's unit), human strings accepted.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration in a config file: an integer number of **milliseconds** (the seed's unit), or a string
/// with units such as `"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"1d"` or combined (`"1m30s"`).
///
/// It serializes back as integer milliseconds, so exported configs stay seed-compatible.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationMs(u64);

/// Why a duration string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: {reason} (use milliseconds, or a string such as \"500ms\", \"30s\", \"5m\", \"1h\")"
)]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

impl DurationMs {
    /// A duration of `ms` milliseconds.
    #[must_use]
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// A duration of `s` seconds.
    #[must_use]
    pub const fn from_secs(s: u64) -> Self {
        Self(s.saturating_mul(1000))
    }

    /// The duration in milliseconds.
    #[must_use]
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The duration as a [`std::time::Duration`].
    #[must_use]
    pub const fn as_duration(self) -> Duration {
        Duration::from_millis(self.0)
    }

    /// Whether the duration is zero.
    #[must_use]
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl From<DurationMs> for Duration {
    fn from(d: DurationMs) -> Self {
        d.as_duration()
    }
}

impl From<Duration> for DurationMs {
    fn from(d: Duration) -> Self {
        Self(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

impl fmt::Display for DurationMs {
    /// Prints the shortest exact human form: `1h`, `30s`, `1500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl FromStr for DurationMs {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseDurationError {
            input: input.to_owned(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        if let Ok(ms) = s.parse::<u64>() {
            return Ok(Self(ms));
        }
        let mut total: u64 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(err("expected a number"));
            }
            let number: f64 = rest[..digits].parse().map_err(|_| err("bad number"))?;
            rest = rest[digits..].trim_start();
            let unit_len = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = rest[unit_len..].trim_start();
            let factor: f64 = match unit {
                "ms" => 1.0,
                "s" | "sec" | "secs" => 1000.0,
                "m" | "min" | "mins" => 60_000.0,
                "h" | "hr" | "hrs" => 3_600_000.0,
                "d" | "day" | "days" => 86_400_000.0,
                "" => return Err(err("missing unit after a number")),
                _ => return Err(err("unknown unit")),
            };
            let part = number * factor;
            if !part.is_finite() || !(0.0..=1.0e18).contains(&part) {
                return Err(err("out of range"));
            }
            // The range check above keeps the value inside u64.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let part = part.round() as u64;
            total = total.checked_add(part).ok_or_else(|| err("out of range"))?;
        }
        Ok(Self(total))
    }
}

impl Serialize for DurationMs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for DurationMs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = DurationMs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("milliseconds, or a duration string such as \"30s\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<DurationMs, E> {
                Ok(DurationMs(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<DurationMs, E> {
                u64::try_from(v)
                    .map(DurationMs)
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<DurationMs, E> {
                if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 1.0e18 {
                    // Checked above: a whole, non-negative number inside u64.
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    Ok(DurationMs(v as u64))
                } else {
                    Err(E::custom(
                        "a duration must be a whole, non-negative number of milliseconds",
                    ))
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DurationMs, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for DurationMs {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Milliseconds, or a string with units: \"500ms\", \"30s\", \"5m\", \"1h\", \"1d\".",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^\\s*(\\d+(\\.\\d+)?\\s*(ms|s|sec|secs|m|min|mins|h|hr|hrs|d|day|days)\\s*)+$|^\\d+$"}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!("30s".parse::<DurationMs>().unwrap().as_millis(), 30_000);
        assert_eq!("1m30s".parse::<DurationMs>().unwrap().as_millis(), 90_000);
        assert_eq!("250ms".parse::<DurationMs>().unwrap().as_millis(), 250);
        assert_eq!("1.5s".parse::<DurationMs>().unwrap().as_millis(), 1500);
        assert_eq!("2h".parse::<DurationMs>().unwrap().as_millis(), 7_200_000);
        assert_eq!("1500".parse::<DurationMs>().unwrap().as_millis(), 1500);
    }

    #[test]
    fn rejects_garbage_with_reason() {
        let e = "30 parsecs".parse::<DurationMs>().unwrap_err();
        assert!(e.to_string().contains("unknown unit"), "{e}");
        assert!("s".parse::<DurationMs>().is_err());
        assert!("".parse::<DurationMs>().is_err());
        assert!(serde_json::from_str::<DurationMs>("-5").is_err());
    }

    #[test]
    fn serializes_as_millis_and_displays_human() {
        let d = DurationMs::from_secs(30);
        assert_eq!(serde_json::to_string(&d).unwrap(), "30000");
        assert_eq!(d.to_string(), "30s");
        assert_eq!(DurationMs::from_millis(1500).to_string(), "1500ms");
    }

    proptest::proptest! {
        #[test]
        fn display_round_trips(ms in 0u64..10_000_000_000) {
            let d = DurationMs::from_millis(ms);
            proptest::prop_assert_eq!(d.to_string().parse::<DurationMs>().unwrap(), d);
        }
    }
}
