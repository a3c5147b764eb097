//! Unmask: every vigil ciphertext inside a record opened in place, each
//! envelope allowed (or refused, failing the call) by the caller.

use super::*;

/// Every vigil ciphertext inside a record is opened in place; `allow`
/// decides per envelope (label, and what it was sealed for) and fails the
/// whole call when it refuses one.
pub fn unmask_record<E>(
    record: &mut Struct,
    keys: &Keyring,
    allow: &mut dyn FnMut(&Opened) -> Result<(), E>,
    opened: &mut Vec<String>,
) -> Result<(), UnmaskError<E>> {
    for (_, value) in &mut record.fields {
        unmask_value(value, keys, allow, opened)?;
    }
    Ok(())
}

#[derive(Debug)]
pub enum UnmaskError<E> {
    Cipher(crate::keys::CipherError),
    Refused(E),
}

pub(super) fn unmask_value<E>(
    value: &mut Value,
    keys: &Keyring,
    allow: &mut dyn FnMut(&Opened) -> Result<(), E>,
    opened: &mut Vec<String>,
) -> Result<(), UnmaskError<E>> {
    match value.kind.as_mut() {
        Some(Kind::StringValue(text)) if text.contains("vigil:v") => {
            *text = unmask_text(text, keys, allow, opened)?;
        }
        Some(Kind::StructValue(inner)) => unmask_record(inner, keys, allow, opened)?,
        Some(Kind::ListValue(list)) => {
            for item in &mut list.values {
                unmask_value(item, keys, allow, opened)?;
            }
        }
        _ => {}
    }
    Ok(())
}

pub(super) static ENVELOPE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"vigil:v[12]d?:[A-Za-z0-9_-]+:[A-Za-z0-9_-]+").expect("valid regex")
});

/// Opens every envelope in `text` (a whole value or spans in free text).
pub fn unmask_text<E>(
    text: &str,
    keys: &Keyring,
    allow: &mut dyn FnMut(&Opened) -> Result<(), E>,
    opened: &mut Vec<String>,
) -> Result<String, UnmaskError<E>> {
    let mut out = String::with_capacity(text.len());
    let mut cursor = 0;
    for m in ENVELOPE.find_iter(text) {
        let envelope = keys.decrypt(m.as_str()).map_err(UnmaskError::Cipher)?;
        allow(&envelope).map_err(UnmaskError::Refused)?;
        let Opened { label, value, .. } = envelope;
        opened.push(label);
        out.push_str(&text[cursor..m.start()]);
        out.push_str(&value);
        cursor = m.end();
    }
    out.push_str(&text[cursor..]);
    Ok(out)
}
