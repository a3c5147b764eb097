//! `google.protobuf.Struct`, `Value` and `ListValue` as vigil holds them:
//! the same wire format as prost-types, with a record's fields in a `Vec`,
//! in the order the caller sent them, instead of a `BTreeMap`.
//!
//! Why: decoding a one-record Mask into prost-types' maps, encoding the
//! answer back out of them and dropping them cost ~13% of the call (node
//! allocations and key comparisons for a 20-field record); a `Vec` of
//! pairs is pushed, walked and freed in one piece. Masked records also
//! come back with their fields in the order they were sent.
//!
//! A map may repeat a key on the wire (the last one wins for a reader).
//! Repeats are kept as sent: the masker treats every entry, so no clear
//! copy survives, and whoever decodes the answer resolves them as it would
//! have resolved the request.

use prost::{
    bytes::{Buf, BufMut},
    encoding::{self, DecodeContext, WireType},
    DecodeError, Message,
};

use self::value::Kind;

/// A JSON object: a record, or an object nested in one.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct Struct {
    pub fields: Vec<(String, Value)>,
}

impl Struct {
    /// The value of the last entry named `key` (a reader's view of a map).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields
            .iter()
            .rev()
            .find_map(|(name, value)| (name == key).then_some(value))
    }
}

/// A JSON value; `kind: None` reads as null.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct Value {
    pub kind: Option<Kind>,
}

pub mod value {
    /// The kinds of a [`super::Value`], as in prost-types.
    #[derive(Clone, PartialEq, Debug)]
    pub enum Kind {
        NullValue(i32),
        NumberValue(f64),
        StringValue(String),
        BoolValue(bool),
        StructValue(super::Struct),
        ListValue(super::ListValue),
    }
}

/// A JSON array.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct ListValue {
    pub values: Vec<Value>,
}

/// `Struct.fields` (a map: each entry a message of key = 1, value = 2).
const FIELDS: u32 = 1;
const ENTRY_KEY: u32 = 1;
const ENTRY_VALUE: u32 = 2;

/// An entry's length; default key and value are left out, as prost does.
fn entry_len(key: &String, value: &Value) -> usize {
    let key_len = if key.is_empty() {
        0
    } else {
        encoding::string::encoded_len(ENTRY_KEY, key)
    };
    let value_len = if value.kind.is_none() {
        0
    } else {
        encoding::message::encoded_len(ENTRY_VALUE, value)
    };
    key_len + value_len
}

impl Message for Struct {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for (key, value) in &self.fields {
            encoding::encode_key(FIELDS, WireType::LengthDelimited, buf);
            encoding::encode_varint(entry_len(key, value) as u64, buf);
            if !key.is_empty() {
                encoding::string::encode(ENTRY_KEY, key, buf);
            }
            if value.kind.is_some() {
                encoding::message::encode(ENTRY_VALUE, value, buf);
            }
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if tag != FIELDS {
            return encoding::skip_field(wire_type, tag, buf, ctx);
        }
        let mut entry = Entry::default();
        encoding::message::merge(wire_type, &mut entry, buf, ctx)?;
        self.fields.push((entry.key, entry.value));
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.fields
            .iter()
            .map(|(key, value)| {
                let len = entry_len(key, value);
                encoding::key_len(FIELDS) + encoding::encoded_len_varint(len as u64) + len
            })
            .sum()
    }

    fn clear(&mut self) {
        self.fields.clear();
    }
}

/// One map entry while it is decoded.
#[derive(Default, Debug)]
struct Entry {
    key: String,
    value: Value,
}

impl Message for Entry {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if !self.key.is_empty() {
            encoding::string::encode(ENTRY_KEY, &self.key, buf);
        }
        if self.value.kind.is_some() {
            encoding::message::encode(ENTRY_VALUE, &self.value, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            ENTRY_KEY => encoding::string::merge(wire_type, &mut self.key, buf, ctx),
            ENTRY_VALUE => encoding::message::merge(wire_type, &mut self.value, buf, ctx)
                .map_err(|error| nested_at(error, &key_segment(&self.key))),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        entry_len(&self.key, &self.value)
    }

    fn clear(&mut self) {
        self.key.clear();
        self.value.kind = None;
    }
}

impl Message for Value {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match &self.kind {
            None => {}
            Some(Kind::NullValue(null)) => encoding::int32::encode(1, null, buf),
            Some(Kind::NumberValue(number)) => encoding::double::encode(2, number, buf),
            Some(Kind::StringValue(text)) => encoding::string::encode(3, text, buf),
            Some(Kind::BoolValue(flag)) => encoding::bool::encode(4, flag, buf),
            Some(Kind::StructValue(object)) => encoding::message::encode(5, object, buf),
            Some(Kind::ListValue(list)) => encoding::message::encode(6, list, buf),
        }
    }

    /// A oneof: a field of another kind replaces the current one; a
    /// message of the same kind merges into it.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let kind = &mut self.kind;
        match tag {
            1 => {
                let mut null = 0;
                encoding::int32::merge(wire_type, &mut null, buf, ctx)?;
                *kind = Some(Kind::NullValue(null));
            }
            2 => {
                let mut number = 0.0;
                encoding::double::merge(wire_type, &mut number, buf, ctx)?;
                *kind = Some(Kind::NumberValue(number));
            }
            3 => {
                let mut text = String::new();
                encoding::string::merge(wire_type, &mut text, buf, ctx)?;
                *kind = Some(Kind::StringValue(text));
            }
            4 => {
                let mut flag = false;
                encoding::bool::merge(wire_type, &mut flag, buf, ctx)?;
                *kind = Some(Kind::BoolValue(flag));
            }
            5 => match kind {
                Some(Kind::StructValue(object)) => {
                    encoding::message::merge(wire_type, object, buf, ctx)?;
                }
                _ => *kind = Some(Kind::StructValue(decoded(wire_type, buf, ctx)?)),
            },
            6 => match kind {
                Some(Kind::ListValue(list)) => encoding::message::merge(wire_type, list, buf, ctx)?,
                _ => *kind = Some(Kind::ListValue(decoded(wire_type, buf, ctx)?)),
            },
            _ => encoding::skip_field(wire_type, tag, buf, ctx)?,
        }
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        match &self.kind {
            None => 0,
            Some(Kind::NullValue(null)) => encoding::int32::encoded_len(1, null),
            Some(Kind::NumberValue(number)) => encoding::double::encoded_len(2, number),
            Some(Kind::StringValue(text)) => encoding::string::encoded_len(3, text),
            Some(Kind::BoolValue(flag)) => encoding::bool::encoded_len(4, flag),
            Some(Kind::StructValue(object)) => encoding::message::encoded_len(5, object),
            Some(Kind::ListValue(list)) => encoding::message::encoded_len(6, list),
        }
    }

    fn clear(&mut self) {
        self.kind = None;
    }
}

/// How a decode error says a record nests past prost's recursion limit,
/// followed by the path where it did.
pub const NESTED_TOO_DEEP: &str = "nested too deep at ";

/// A record's decode error, told where in the record it happened: prost's
/// recursion limit becomes [`NESTED_TOO_DEEP`] and the path it was hit at,
/// built outward as the error unwinds. Other errors pass unchanged.
#[allow(deprecated)] // prost has no other constructor for a description of our own
fn nested_at(error: DecodeError, segment: &str) -> DecodeError {
    let text = error.to_string();
    let inner = match text.split_once(NESTED_TOO_DEEP) {
        Some((_, path)) => path.to_owned(),
        None if text.ends_with("recursion limit reached") => String::new(),
        None => return error,
    };
    let joiner = if inner.is_empty() || inner.starts_with('[') {
        ""
    } else {
        "."
    };
    DecodeError::new(format!("{NESTED_TOO_DEEP}{segment}{joiner}{inner}"))
}

/// A key as a path names it: a key that could be a value (it holds a
/// digit or an `@`) is shown as `*`, so an error never quotes one.
fn key_segment(key: &str) -> String {
    if key.bytes().any(|b| b.is_ascii_digit() || b == b'@') {
        "*".to_owned()
    } else {
        key.to_owned()
    }
}

/// A message of a kind the oneof did not hold: decoded fresh.
fn decoded<M: Message + Default>(
    wire_type: WireType,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<M, DecodeError> {
    let mut message = M::default();
    encoding::message::merge(wire_type, &mut message, buf, ctx)?;
    Ok(message)
}

impl Message for ListValue {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        encoding::message::encode_repeated(1, &self.values, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if tag == 1 {
            // One by one, so a nesting error can say at which index.
            let mut value = Value::default();
            encoding::message::merge(wire_type, &mut value, buf, ctx)
                .map_err(|error| nested_at(error, &format!("[{}]", self.values.len())))?;
            self.values.push(value);
            Ok(())
        } else {
            encoding::skip_field(wire_type, tag, buf, ctx)
        }
    }

    fn encoded_len(&self) -> usize {
        encoding::message::encoded_len_repeated(1, &self.values)
    }

    fn clear(&mut self) {
        self.values.clear();
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::{value::Kind, ListValue, Struct, Value};

    fn text(s: &str) -> Value {
        Value {
            kind: Some(Kind::StringValue(s.into())),
        }
    }

    /// Every kind, nesting, an empty key and a null, in the order sent.
    fn sample() -> Struct {
        let nested = Struct {
            fields: vec![
                // Already in key order: prost-types sorts, and the test
                // compares nested objects as they are.
                (String::new(), Value::default()),
                ("inner".into(), text("x")),
            ],
        };
        Struct {
            fields: vec![
                ("z".into(), text("last letter, first field")),
                (
                    "n".into(),
                    Value {
                        kind: Some(Kind::NumberValue(-1.5)),
                    },
                ),
                (
                    "b".into(),
                    Value {
                        kind: Some(Kind::BoolValue(true)),
                    },
                ),
                (
                    "null".into(),
                    Value {
                        kind: Some(Kind::NullValue(0)),
                    },
                ),
                (
                    "o".into(),
                    Value {
                        kind: Some(Kind::StructValue(nested)),
                    },
                ),
                (
                    "l".into(),
                    Value {
                        kind: Some(Kind::ListValue(ListValue {
                            values: vec![
                                text("a"),
                                Value {
                                    kind: Some(Kind::NumberValue(2.0)),
                                },
                            ],
                        })),
                    },
                ),
            ],
        }
    }

    /// prost-types' encoding of the same object, built field by field.
    fn sample_as_prost_types() -> prost_types::Struct {
        use prost_types::value::Kind as K;
        let text = |s: &str| prost_types::Value {
            kind: Some(K::StringValue(s.into())),
        };
        let nested = prost_types::Struct {
            fields: [
                ("inner".to_owned(), text("x")),
                (String::new(), prost_types::Value::default()),
            ]
            .into_iter()
            .collect(),
        };
        prost_types::Struct {
            fields: [
                ("z".to_owned(), text("last letter, first field")),
                (
                    "n".to_owned(),
                    prost_types::Value {
                        kind: Some(K::NumberValue(-1.5)),
                    },
                ),
                (
                    "b".to_owned(),
                    prost_types::Value {
                        kind: Some(K::BoolValue(true)),
                    },
                ),
                (
                    "null".to_owned(),
                    prost_types::Value {
                        kind: Some(K::NullValue(0)),
                    },
                ),
                (
                    "o".to_owned(),
                    prost_types::Value {
                        kind: Some(K::StructValue(nested)),
                    },
                ),
                (
                    "l".to_owned(),
                    prost_types::Value {
                        kind: Some(K::ListValue(prost_types::ListValue {
                            values: vec![
                                text("a"),
                                prost_types::Value {
                                    kind: Some(K::NumberValue(2.0)),
                                },
                            ],
                        })),
                    },
                ),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn round_trips_in_the_order_sent_and_reads_what_prost_types_writes() {
        let ours = sample();
        let bytes = ours.encode_to_vec();
        assert_eq!(bytes.len(), ours.encoded_len());
        assert_eq!(Struct::decode(bytes.as_slice()).unwrap(), ours);

        // Both sides read each other: same entries, only the order differs.
        let theirs = sample_as_prost_types();
        let from_theirs = Struct::decode(theirs.encode_to_vec().as_slice()).unwrap();
        let mut expected = ours.fields.clone();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(from_theirs.fields, expected);
        assert_eq!(
            prost_types::Struct::decode(bytes.as_slice()).unwrap(),
            theirs
        );
    }

    #[test]
    fn repeated_keys_are_kept_and_the_last_one_is_read() {
        let object = Struct {
            fields: vec![("k".into(), text("first")), ("k".into(), text("second"))],
        };
        let decoded = Struct::decode(object.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.fields.len(), 2);
        assert_eq!(decoded.get("k"), Some(&text("second")));
    }

    #[test]
    fn hostile_input_is_an_error_not_a_crash() {
        // Nesting past prost's recursion limit.
        let mut value = text("deep");
        for _ in 0..200 {
            value = Value {
                kind: Some(Kind::ListValue(ListValue {
                    values: vec![value],
                })),
            };
        }
        let deep = Struct {
            fields: vec![("v".into(), value)],
        };
        let error = Struct::decode(deep.encode_to_vec().as_slice()).unwrap_err();
        // The error says where: the key, then list indexes.
        assert!(
            error.to_string().contains("nested too deep at v[0][0][0]"),
            "{error}"
        );
        // A key that could be a value is not quoted.
        let mut object = text("deep");
        for _ in 0..60 {
            object = Value {
                kind: Some(Kind::StructValue(Struct {
                    fields: vec![("13912345678".into(), object)],
                })),
            };
        }
        let error = Struct::decode(
            Struct {
                fields: vec![("a".into(), object)],
            }
            .encode_to_vec()
            .as_slice(),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("nested too deep at a.*.*"),
            "{error}"
        );
        assert!(!error.to_string().contains("1391234"), "{error}");
        // Invalid UTF-8 in a key, and a length past the end.
        assert!(Struct::decode(&[0x0a, 0x03, 0x0a, 0x01, 0xff][..]).is_err());
        assert!(Struct::decode(&[0x0a, 0x09, 0x0a, 0x01][..]).is_err());
    }
}
