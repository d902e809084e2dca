//! Byte sizes in config: `"100MB"` (decimal), `"100MiB"` (binary) or a number of bytes.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes. Config accepts a number of bytes or a string with a unit: decimal `B`, `KB`, `MB`,
/// `GB`, `TB` (powers of 1000) or binary `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024). Units are
/// case-insensitive (`100mb` = `100MB`); `K`, `M`, `G` alone are decimal.
///
/// It serializes back as the shortest exact string (`"100MB"`, `"64KiB"`, `"123B"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

/// Why a byte-size string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {input:?}: {reason} (use bytes, or a string such as \"100MB\" or \"64MiB\")")]
pub struct ParseByteSizeError {
    input: String,
    reason: &'static str,
}

const UNITS: [(&str, u64); 9] = [
    ("tib", 1 << 40),
    ("gib", 1 << 30),
    ("mib", 1 << 20),
    ("kib", 1 << 10),
    ("tb", 1_000_000_000_000),
    ("gb", 1_000_000_000),
    ("mb", 1_000_000),
    ("kb", 1_000),
    ("b", 1),
];

impl ByteSize {
    /// `n` bytes.
    #[must_use]
    pub const fn new(n: u64) -> Self {
        Self(n)
    }

    /// `n` decimal megabytes (`n * 1_000_000`).
    #[must_use]
    pub const fn mb(n: u64) -> Self {
        Self(n * 1_000_000)
    }

    /// `n` binary mebibytes (`n * 1_048_576`).
    #[must_use]
    pub const fn mib(n: u64) -> Self {
        Self(n * 1_048_576)
    }

    /// The size in bytes.
    #[must_use]
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n == 0 {
            return f.write_str("0B");
        }
        let names = ["TiB", "GiB", "MiB", "KiB", "TB", "GB", "MB", "KB"];
        let mut best: Option<(u64, &str)> = None;
        for ((_, size), name) in UNITS.iter().zip(names) {
            if n.is_multiple_of(*size) && best.is_none_or(|(v, _)| n / size < v) {
                best = Some((n / size, name));
            }
        }
        match best {
            Some((v, name)) => write!(f, "{v}{name}"),
            None => write!(f, "{n}B"),
        }
    }
}

impl FromStr for ByteSize {
    type Err = ParseByteSizeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseByteSizeError {
            input: input.to_owned(),
            reason,
        };
        let s = input.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len());
        if split == 0 {
            return Err(err("expected a number"));
        }
        let number: f64 = s[..split].parse().map_err(|_| err("bad number"))?;
        let unit = s[split..].trim().to_ascii_lowercase();
        let factor = match unit.as_str() {
            "" => 1,
            "k" => 1_000,
            "m" => 1_000_000,
            "g" => 1_000_000_000,
            "t" => 1_000_000_000_000,
            u => UNITS
                .iter()
                .find(|(name, _)| *name == u)
                .map(|(_, f)| *f)
                .ok_or_else(|| err("unknown unit"))?,
        };
        if let Ok(whole) = s[..split].parse::<u64>() {
            return whole
                .checked_mul(factor)
                .map(Self)
                .ok_or_else(|| err("out of range"));
        }
        // A fractional number: f64 is exact for every factor above (all below 2^53).
        #[allow(clippy::cast_precision_loss)]
        let value = number * factor as f64;
        if !value.is_finite() || value > 1.0e19 {
            return Err(err("out of range"));
        }
        // Checked above: finite, non-negative (no sign accepted) and inside u64.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(Self(value.round() as u64))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of bytes, or a size string such as \"100MB\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Bytes, or a string with a unit: KB/MB/GB/TB (powers of 1000) or KiB/MiB/GiB/TiB (powers of 1024).",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^\\s*\\d+(\\.\\d+)?\\s*([kKmMgGtT]([iI]?[bB])?|[bB])?\\s*$"}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_binary_units() {
        assert_eq!("100MB".parse::<ByteSize>().unwrap().bytes(), 100_000_000);
        assert_eq!(
            "100MiB".parse::<ByteSize>().unwrap().bytes(),
            100 * 1024 * 1024
        );
        assert_eq!("1.5KiB".parse::<ByteSize>().unwrap().bytes(), 1536);
        assert_eq!("42".parse::<ByteSize>().unwrap().bytes(), 42);
        assert_eq!("10 kb".parse::<ByteSize>().unwrap().bytes(), 10_000);
    }

    #[test]
    fn rejects_unknown_units() {
        let e = "10 parsecs".parse::<ByteSize>().unwrap_err();
        assert!(e.to_string().contains("unknown unit"));
        assert!("-5MB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn display_is_shortest_exact() {
        assert_eq!(ByteSize::mb(100).to_string(), "100MB");
        assert_eq!(ByteSize::mib(64).to_string(), "64MiB");
        assert_eq!(ByteSize::new(123).to_string(), "123B");
    }

    proptest::proptest! {
        #[test]
        fn display_round_trips(n in 0u64..u64::MAX / 2) {
            let b = ByteSize::new(n);
            proptest::prop_assert_eq!(b.to_string().parse::<ByteSize>().unwrap(), b);
        }
    }
}
