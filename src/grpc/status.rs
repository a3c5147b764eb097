//! The one place where vigil's errors become gRPC statuses. Messages say
//! what to change; internal details are logged, not returned.

use tonic::Status;

use crate::{audit::AuditError, authn::AuthnError, authz::RequestError};

impl From<AuthnError> for Status {
    fn from(error: AuthnError) -> Status {
        match error {
            AuthnError::SubjectMismatch { .. } => Status::permission_denied(error.to_string()),
            _ => Status::unauthenticated(error.to_string()),
        }
    }
}

impl From<RequestError> for Status {
    fn from(error: RequestError) -> Status {
        Status::invalid_argument(error.to_string())
    }
}

impl From<AuditError> for Status {
    fn from(error: AuditError) -> Status {
        // The decision was made but cannot be recorded: never answer it.
        Status::unavailable(format!("{error}; no decision was returned, retry later"))
    }
}

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
}

impl From<InputError> for Status {
    fn from(error: InputError) -> Status {
        match error {
            InputError::TooManyItems { .. } => Status::resource_exhausted(error.to_string()),
            _ => Status::invalid_argument(error.to_string()),
        }
    }
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
        if value.len() > crate::grpc::MAX_FIELD_BYTES {
            return Err(InputError::TooLong {
                field: format!("{prefix}{name}"),
                len: value.len(),
                limit: crate::grpc::MAX_FIELD_BYTES,
            });
        }
    }
    Ok(())
}

/// tonic reports an oversize request as OUT_OF_RANGE; vigil's contract is
/// RESOURCE_EXHAUSTED with the limit named. tonic decides this status while
/// decoding, before any handler runs, so it is rewritten in the response
/// headers rather than built here.
pub fn oversize_as_resource_exhausted(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let headers = response.headers_mut();
    let out_of_range = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"11");
    let too_large = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| {
            m.contains("message%20length%20too%20large") || m.contains("message length too large")
        });
    if out_of_range && too_large {
        let message = headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let decoded = percent_decode(message);
        let friendly = format!(
            "request too large ({decoded}); raise max_message_bytes or send smaller requests"
        );
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
        if let Ok(value) = http::HeaderValue::from_str(&percent_encode(&friendly)) {
            headers.insert("grpc-message", value);
        }
    }
    response
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
