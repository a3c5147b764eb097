//! Records as JSON text, for every door that speaks JSON (the HTTP API,
//! `vigil mask`, policy mask cases): read and written as gRPC carries them,
//! so a record is masked the same way whichever door it came through.
//!
//! - Keys keep the order they were sent in, and a repeated key keeps each
//!   copy (JSON allows it; each is masked, as on gRPC). `serde_json::Value`
//!   would sort the keys and keep only the last copy.
//! - Numbers are never rounded on the way through: an integer beyond what a
//!   double holds exactly (2^53, an 18-digit resident ID, say) is kept as
//!   its digit string, so detectors see every digit and the masked answer
//!   holds none in clear. A number beyond 64 bits has already lost digits
//!   when it is read, so it is refused: send it as a string.
//! - Nesting is bounded by `max_depth`, the limit the gRPC door has.

use std::fmt;

use serde::{
    de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor},
    ser::{SerializeMap, SerializeSeq},
    Serialize, Serializer,
};

use super::json::{value::Kind, ListValue, Struct, Value};

/// Integers up to this magnitude are exact as doubles.
const EXACT_IN_DOUBLE: u64 = 1 << 53;

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.kind {
            None | Some(Kind::NullValue(_)) => serializer.serialize_unit(),
            Some(Kind::BoolValue(b)) => serializer.serialize_bool(*b),
            Some(Kind::NumberValue(n)) if !n.is_finite() => serializer.serialize_unit(),
            Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9e15 => {
                serializer.serialize_i64(*n as i64)
            }
            Some(Kind::NumberValue(n)) => serializer.serialize_f64(*n),
            Some(Kind::StringValue(s)) => serializer.serialize_str(s),
            Some(Kind::ListValue(list)) => {
                let mut seq = serializer.serialize_seq(Some(list.values.len()))?;
                for value in &list.values {
                    seq.serialize_element(value)?;
                }
                seq.end()
            }
            Some(Kind::StructValue(record)) => record.serialize(serializer),
        }
    }
}

impl Serialize for Struct {
    /// Every entry, in order, repeated keys included.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (key, value) in &self.fields {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Reads one JSON value as a record value, at most `max_depth` objects and
/// lists deep.
#[derive(Debug, Clone, Copy)]
pub struct ValueSeed {
    pub max_depth: usize,
}

impl ValueSeed {
    fn deeper<E: de::Error>(self) -> Result<ValueSeed, E> {
        match self.max_depth.checked_sub(1) {
            Some(max_depth) => Ok(ValueSeed { max_depth }),
            None => Err(E::custom(
                "a record nests deeper than max_depth allows; flatten it or raise max_depth",
            )),
        }
    }
}

fn value(kind: Kind) -> Value {
    Value { kind: Some(kind) }
}

/// An integer as records hold it: a number while a double holds it
/// exactly, else its digits (the one rule of every JSON reader of records).
pub fn exact_integer(magnitude: u64, text: impl FnOnce() -> String, as_double: f64) -> Value {
    if magnitude <= EXACT_IN_DOUBLE {
        value(Kind::NumberValue(as_double))
    } else {
        // Kept whole: a double would round it, and the rounded digits
        // would go back to the caller unmasked.
        value(Kind::StringValue(text()))
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(value(Kind::NullValue(0)))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(value(Kind::NullValue(0)))
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(value(Kind::BoolValue(b)))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(exact_integer(n, || n.to_string(), n as f64))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(exact_integer(n.unsigned_abs(), || n.to_string(), n as f64))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        // serde_json reads an integer past 64 bits as a double, its low
        // digits already gone: nothing exact is left to keep or mask.
        if n.fract() == 0.0 && n.abs() >= 18_446_744_073_709_551_616.0 {
            return Err(E::custom(
                "a number too large to hold exactly (past 64 bits); send it as a string",
            ));
        }
        Ok(value(Kind::NumberValue(n)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(value(Kind::StringValue(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(value(Kind::StringValue(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.deeper()?;
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(inner)? {
            values.push(item);
        }
        Ok(value(Kind::ListValue(ListValue { values })))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.deeper()?;
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(0).min(1024));
        while let Some(key) = map.next_key::<String>()? {
            fields.push((key, map.next_value_seed(inner)?));
        }
        Ok(value(Kind::StructValue(Struct { fields })))
    }
}

/// Reads a list of records (JSON objects) at most `max_depth` deep.
#[derive(Debug, Clone, Copy)]
pub struct RecordsSeed {
    pub max_depth: usize,
}

impl<'de> DeserializeSeed<'de> for RecordsSeed {
    type Value = Vec<Struct>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Vec<Struct>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed {
    type Value = Vec<Struct>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of JSON objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Struct>, A::Error> {
        let mut records = Vec::new();
        while let Some(record) = seq.next_element_seed(RecordSeed {
            max_depth: self.max_depth,
        })? {
            records.push(record);
        }
        Ok(records)
    }
}

/// Reads one record: a JSON object at most `max_depth` deep.
#[derive(Debug, Clone, Copy)]
pub struct RecordSeed {
    pub max_depth: usize,
}

impl<'de> DeserializeSeed<'de> for RecordSeed {
    type Value = Struct;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Struct, D::Error> {
        match (ValueSeed {
            max_depth: self.max_depth,
        })
        .deserialize(deserializer)?
        .kind
        {
            Some(Kind::StructValue(record)) => Ok(record),
            _ => Err(de::Error::custom("a record must be a JSON object")),
        }
    }
}
