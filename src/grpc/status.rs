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
