//! The one place where vigil's errors become gRPC statuses: every handler
//! fails with an [`RpcError`], and `From<RpcError> for Status` picks the
//! code and the message. Messages say what to change; internal details
//! (paths, OS errors, engine internals) are logged here, never returned.

use tonic::Status;

use crate::{
    audit::{verify::VerifyError, AuditError},
    authn::AuthnError,
    authz::RequestError,
    keys::CipherError,
    mask::MaskError,
    policy::{reading::ReadingError, PolicyError},
};

/// Why a call was not answered.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Authn(#[from] AuthnError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Mask(#[from] MaskError),
    /// The policy set cannot mask (no classification): fail closed.
    #[error("{0}")]
    Unclassified(String),
    #[error(transparent)]
    Cipher(#[from] CipherError),
    /// The policy refuses the call (Mask/Unmask without `read`, Unmask of
    /// a label without `see:clear`, an admin call without the role). Plain
    /// decisions are answers, not errors.
    #[error("{0}")]
    Refused(String),
    /// Decided, but the record could not be written: never answered.
    #[error(transparent)]
    Unaudited(#[from] AuditError),
    #[error("policy rejected, the previous one keeps serving:\n{0}")]
    ReloadRejected(PolicyError),
    #[error("the audit log does not verify: {0}")]
    BrokenLog(VerifyError),
    /// A request field that does not parse (an export filter, an anchor).
    #[error("{0}")]
    BadField(String),
    /// A limit of limits.toml refused a call the policy allowed.
    #[error("{reason}")]
    Limited { reason: String, retry_after_ms: u64 },
    /// Too many calls of one kind at once (`what`); the caller may retry.
    #[error("too many {0} at once; retry shortly")]
    Busy(&'static str),
    /// A failure inside vigil; the detail is logged, not returned.
    #[error("{0}")]
    Internal(String),
}

impl From<ReadingError> for RpcError {
    fn from(error: ReadingError) -> RpcError {
        match error {
            ReadingError::Request(e) => RpcError::Request(e),
            ReadingError::Unclassified(why) => RpcError::Unclassified(why),
        }
    }
}

impl RpcError {
    /// The same error about one item of a batch.
    pub fn in_item(self, index: usize) -> RpcError {
        match self {
            RpcError::Request(e) => RpcError::BadField(format!("requests[{index}]: {e}")),
            other => other,
        }
    }
}

/// A request body that does not decode is the caller's mistake: tonic's
/// codec says INTERNAL, vigil says INVALID_ARGUMENT. Tonic plumbing: the
/// codec runs before any handler, so this cannot go through [`RpcError`].
pub fn undecodable(status: Status) -> Status {
    if status.code() != tonic::Code::Internal {
        return status;
    }
    let detail = status.message();
    if let Some((_, path)) = detail.split_once(crate::proto::json::NESTED_TOO_DEEP) {
        // A path of keys (values among them starred) and indexes; cut
        // long, it has made its point.
        let path: String = path.chars().take(120).collect();
        return Status::invalid_argument(format!(
            "the request cannot be decoded: a record nests deeper than decoding allows, at {path}… \
             (max_depth, lower still, is the limit to design for)"
        ));
    }
    let why = if detail.contains("recursion limit") {
        "it nests deeper than protobuf decoding allows (max_depth is lower still)"
    } else if detail.contains("UTF-8") {
        "a string field is not valid UTF-8"
    } else {
        "it is not a valid protobuf message of this method's request type"
    };
    Status::invalid_argument(format!("the request cannot be decoded: {why}"))
}

impl From<RpcError> for Status {
    fn from(error: RpcError) -> Status {
        match error {
            RpcError::Input(
                InputError::TooManyItems { .. }
                | InputError::TooManyRecords { .. }
                | InputError::TooManyAttributes { .. },
            ) => Status::resource_exhausted(error.to_string()),
            RpcError::Mask(MaskError::OverBudget { .. }) => {
                Status::resource_exhausted(error.to_string())
            }
            RpcError::Input(_)
            | RpcError::Request(_)
            | RpcError::Mask(_)
            | RpcError::BadField(_) => Status::invalid_argument(error.to_string()),
            RpcError::Authn(AuthnError::SubjectMismatch { .. }) | RpcError::Refused(_) => {
                Status::permission_denied(error.to_string())
            }
            RpcError::Authn(_) => Status::unauthenticated(error.to_string()),
            RpcError::Cipher(CipherError::UnknownKey(_)) => {
                Status::failed_precondition(format!("{error}; add the key to the keyring"))
            }
            RpcError::Cipher(_) => Status::invalid_argument(error.to_string()),
            RpcError::Unaudited(audit) => {
                // The writer has logged what failed where; the caller
                // learns what it can do, not the server's layout.
                tracing::warn!(error = %audit, "call not answered: its audit record could not be written");
                let why = match audit {
                    AuditError::Overloaded(_) => "the audit log cannot keep up",
                    AuditError::Closed => "vigil is shutting down",
                    _ => "the audit log cannot be written",
                };
                Status::unavailable(format!(
                    "{why}, so no decision was returned (vigil never answers unaudited); retry later"
                ))
            }
            RpcError::ReloadRejected(_) | RpcError::Unclassified(_) => {
                Status::failed_precondition(error.to_string())
            }
            RpcError::Busy(_) => Status::resource_exhausted(error.to_string()),
            RpcError::Limited {
                reason,
                retry_after_ms,
            } => {
                let mut status = Status::resource_exhausted(reason);
                if retry_after_ms > 0 {
                    status
                        .metadata_mut()
                        .insert(RETRY_AFTER_MS, retry_after_ms.into());
                }
                status
            }
            RpcError::BrokenLog(_) => Status::data_loss(error.to_string()),
            RpcError::Internal(detail) => {
                tracing::error!(%detail, "internal error answering a call");
                Status::internal("internal error in vigil; the detail is in its log")
            }
        }
    }
}

/// Metadata of a RESOURCE_EXHAUSTED from a limit: milliseconds until it
/// allows again (HTTP answers carry it as `Retry-After`).
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

/// The wait a limit's RESOURCE_EXHAUSTED carries (0: none), for the
/// front-ends that answer it as HTTP's `Retry-After`.
pub fn retry_after_ms(status: &Status) -> u64 {
    status
        .metadata()
        .get(RETRY_AFTER_MS)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0)
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

/// Checks a request's attributes: at most `limit` of them, each key and
/// value within [`MAX_FIELD_BYTES`](crate::grpc::MAX_FIELD_BYTES) together.
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
        if key.len() + value.len() > crate::grpc::MAX_FIELD_BYTES {
            return Err(InputError::TooLong {
                field: format!("{prefix}attributes[{key:?}]"),
                len: key.len() + value.len(),
                limit: crate::grpc::MAX_FIELD_BYTES,
            });
        }
    }
    Ok(())
}

/// The answer to a method a hand-written service does not have, as
/// tonic's generated servers give it.
pub fn unimplemented_method() -> http::Response<tonic::body::Body> {
    Status::unimplemented("no such method").into_http()
}
