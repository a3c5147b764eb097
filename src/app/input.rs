//! Checks of a call's fields before anything is decided: sizes and the
//! fields each use case requires, named as the caller wrote them.

/// Longest subject, object, action, domain or attribute accepted.
pub const MAX_FIELD_BYTES: usize = 4096;

/// Input problems found before deciding.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    #[error("{field} must not be empty")]
    Empty { field: String },
    #[error("{field} is {len} bytes; the limit is {limit}")]
    TooLong {
        field: String,
        len: usize,
        limit: usize,
    },
    #[error("batch has {count} requests; the limit is {limit} (max_batch_items); split it into smaller batches")]
    TooManyItems { count: usize, limit: usize },
    #[error(
        "{count} records in one call; the limit is {limit} (max_batch_items); send smaller batches"
    )]
    TooManyRecords { count: usize, limit: usize },
    #[error("{field} has {count} attributes; the limit is {limit} (max_attributes)")]
    TooManyAttributes {
        field: String,
        count: usize,
        limit: usize,
    },
}

/// Checks request fields: `(name, value, required)`. Names are reported
/// with `prefix` (`requests[3].object`).
pub fn check_fields(prefix: &str, fields: &[(&str, &str, bool)]) -> Result<(), InputError> {
    for &(name, value, required) in fields {
        if required && value.is_empty() {
            return Err(InputError::Empty {
                field: format!("{prefix}{name}"),
            });
        }
        if value.len() > MAX_FIELD_BYTES {
            return Err(InputError::TooLong {
                field: format!("{prefix}{name}"),
                len: value.len(),
                limit: MAX_FIELD_BYTES,
            });
        }
    }
    Ok(())
}

/// Checks a request's attributes: at most `limit` of them, each key and
/// value within [`MAX_FIELD_BYTES`](MAX_FIELD_BYTES) together.
/// Names are reported with `prefix`.
pub fn check_attributes(
    prefix: &str,
    attributes: &std::collections::HashMap<String, String>,
    limit: usize,
) -> Result<(), InputError> {
    if attributes.len() > limit {
        return Err(InputError::TooManyAttributes {
            field: format!("{prefix}attributes"),
            count: attributes.len(),
            limit,
        });
    }
    for (key, value) in attributes {
        if key.len() + value.len() > MAX_FIELD_BYTES {
            return Err(InputError::TooLong {
                field: format!("{prefix}attributes[{key:?}]"),
                len: key.len() + value.len(),
                limit: MAX_FIELD_BYTES,
            });
        }
    }
    Ok(())
}
