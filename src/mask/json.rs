//! Records as `serde_json` values, for the files that hold them that way
//! (policy mask cases read TOML through it): integers a double would round
//! kept as their digits, as `proto::text` keeps them.

use super::*;
use crate::proto::text::exact_integer;

/// A protobuf Value as JSON (for whole-subtree treatments and the CLI).
pub fn to_json(value: &Value) -> serde_json::Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => (*b).into(),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9e15 {
                (*n as i64).into()
            } else {
                serde_json::Number::from_f64(*n)
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::Null)
            }
        }
        Some(Kind::StringValue(s)) => s.clone().into(),
        Some(Kind::ListValue(list)) => list.values.iter().map(to_json).collect(),
        Some(Kind::StructValue(s)) => struct_to_json(s),
    }
}

pub fn struct_to_json(s: &Struct) -> serde_json::Value {
    serde_json::Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), to_json(v)))
            .collect(),
    )
}

/// A JSON object as a protobuf Struct (a record); `None` for anything that
/// is not an object.
pub fn struct_from_json(value: &serde_json::Value) -> Option<Struct> {
    match from_json(value).kind {
        Some(Kind::StructValue(record)) => Some(record),
        _ => None,
    }
}

/// JSON to a protobuf Value, for records held as `serde_json` values (policy
/// mask cases, tests).
pub fn from_json(value: &serde_json::Value) -> Value {
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        // As proto::text reads numbers: an integer a double would round
        // is kept as its digits.
        serde_json::Value::Number(n) => {
            return match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => exact_integer(u, || u.to_string(), u as f64),
                (_, Some(i)) => exact_integer(i.unsigned_abs(), || i.to_string(), i as f64),
                _ => Value {
                    kind: Some(Kind::NumberValue(n.as_f64().unwrap_or_default())),
                },
            }
        }
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(from_json).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(Struct {
            fields: map.iter().map(|(k, v)| (k.clone(), from_json(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}
