//! The one refusal table: for each way the core can refuse a call, the
//! gRPC code, the HTTP status, the message a person can act on, and when
//! to retry — in one place, for every front door (linkerd2-proxy's
//! `errors/respond.rs` is the model). gRPC renders `code`, the HTTP API and
//! `/v1/check` render `http`, ext_authz both. Internal details (paths, OS
//! errors, engine internals) are logged here, never returned.

use crate::{
    audit::{verify::VerifyError, AuditError},
    authn::AuthnError,
    authz::RequestError,
    keys::CipherError,
    mask::MaskError,
    policy::{reading::ReadingError, PolicyError},
};

use super::InputError;

/// Why a call was not answered.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
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
    /// A request field that does not parse (an export filter, an anchor,
    /// a body that is not the JSON an endpoint takes).
    #[error("{0}")]
    BadField(String),
    /// A gateway request whose path or headers cannot be mapped
    /// unambiguously (audited before it is returned).
    #[error("{0}")]
    Unmappable(String),
    /// A request body past `max_message_bytes`.
    #[error("request too large: the limit is {limit} bytes (max_message_bytes); raise it or send smaller requests")]
    TooLarge { limit: usize },
    /// An HTTP API body that is not declared `application/json`.
    #[error("send the body as JSON with `Content-Type: application/json`")]
    NotJson,
    /// A browser page of another origin (CSRF); `[http] origins` lists the
    /// ones allowed.
    #[error("requests from origin {0:?} are refused; list it in [http] origins to allow it")]
    ForeignOrigin(String),
    /// A `Host` the listener does not answer to (DNS rebinding); `[http]
    /// hosts` lists names besides addresses and localhost.
    #[error("host {0:?} is not a name of this listener; list it in [http] hosts to serve it")]
    ForeignHost(String),
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

impl From<ReadingError> for AppError {
    fn from(error: ReadingError) -> AppError {
        match error {
            ReadingError::Request(e) => AppError::Request(e),
            ReadingError::Unclassified(why) => AppError::Unclassified(why),
        }
    }
}

impl AppError {
    /// The same error about one item of a batch.
    pub fn in_item(self, index: usize) -> AppError {
        match self {
            AppError::Request(e) => AppError::BadField(format!("requests[{index}]: {e}")),
            other => other,
        }
    }
}

/// The canonical gRPC status codes a refusal can carry (google.rpc.Code),
/// without naming tonic: adapters convert by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Code {
    InvalidArgument = 3,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl Code {
    /// The name google.rpc.Code gives it (JSON error bodies carry it).
    pub fn name(self) -> &'static str {
        match self {
            Code::InvalidArgument => "InvalidArgument",
            Code::PermissionDenied => "PermissionDenied",
            Code::ResourceExhausted => "ResourceExhausted",
            Code::FailedPrecondition => "FailedPrecondition",
            Code::Internal => "Internal",
            Code::Unavailable => "Unavailable",
            Code::DataLoss => "DataLoss",
            Code::Unauthenticated => "Unauthenticated",
        }
    }
}

/// A refusal as every protocol answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub code: Code,
    /// The HTTP status google.api's HTTP mapping gives `code`.
    pub http: u16,
    pub message: String,
    /// Milliseconds until a limit allows again (0: no advice).
    pub retry_after_ms: u64,
}

impl Response {
    fn new(code: Code, message: String) -> Response {
        let http = match code {
            Code::InvalidArgument | Code::FailedPrecondition => 400,
            Code::Unauthenticated => 401,
            Code::PermissionDenied => 403,
            Code::ResourceExhausted => 429,
            Code::Unavailable => 503,
            Code::Internal | Code::DataLoss => 500,
        };
        Response {
            code,
            http,
            message,
            retry_after_ms: 0,
        }
    }
}

impl From<AppError> for Response {
    fn from(error: AppError) -> Response {
        match error {
            AppError::Input(
                InputError::TooManyItems { .. }
                | InputError::TooManyRecords { .. }
                | InputError::TooManyAttributes { .. },
            ) => Response::new(Code::ResourceExhausted, error.to_string()),
            AppError::Mask(MaskError::OverBudget { .. }) => {
                Response::new(Code::ResourceExhausted, error.to_string())
            }
            AppError::TooLarge { .. } => Response {
                http: 413,
                ..Response::new(Code::ResourceExhausted, error.to_string())
            },
            AppError::NotJson => Response {
                http: 415,
                ..Response::new(Code::InvalidArgument, error.to_string())
            },
            AppError::ForeignOrigin(_) | AppError::ForeignHost(_) => {
                Response::new(Code::PermissionDenied, error.to_string())
            }
            AppError::Input(_)
            | AppError::Request(_)
            | AppError::Mask(_)
            | AppError::BadField(_)
            | AppError::Unmappable(_) => Response::new(Code::InvalidArgument, error.to_string()),
            AppError::Authn(AuthnError::SubjectMismatch { .. }) | AppError::Refused(_) => {
                Response::new(Code::PermissionDenied, error.to_string())
            }
            AppError::Authn(_) => Response::new(Code::Unauthenticated, error.to_string()),
            AppError::Cipher(CipherError::UnknownKey(_)) => Response::new(
                Code::FailedPrecondition,
                format!("{error}; add the key to the keyring"),
            ),
            AppError::Cipher(_) => Response::new(Code::InvalidArgument, error.to_string()),
            AppError::Unaudited(audit) => {
                // The writer has logged what failed where; the caller
                // learns what it can do, not the server's layout.
                tracing::warn!(error = %audit, "call not answered: its audit record could not be written");
                let why = match audit {
                    AuditError::Overloaded(_) => "the audit log cannot keep up",
                    AuditError::Closed => "vigil is shutting down",
                    _ => "the audit log cannot be written",
                };
                Response::new(
                    Code::Unavailable,
                    format!(
                        "{why}, so no decision was returned (vigil never answers unaudited); retry later"
                    ),
                )
            }
            AppError::ReloadRejected(_) | AppError::Unclassified(_) => {
                Response::new(Code::FailedPrecondition, error.to_string())
            }
            AppError::Busy(_) => Response::new(Code::ResourceExhausted, error.to_string()),
            AppError::Limited {
                reason,
                retry_after_ms,
            } => Response {
                retry_after_ms,
                ..Response::new(Code::ResourceExhausted, reason)
            },
            AppError::BrokenLog(_) => Response::new(Code::DataLoss, error.to_string()),
            AppError::Internal(detail) => {
                tracing::error!(%detail, "internal error answering a call");
                Response::new(
                    Code::Internal,
                    "internal error in vigil; the detail is in its log".to_owned(),
                )
            }
        }
    }
}

/// HTTP's `Retry-After` (whole seconds, at least 1) for a wait in ms.
pub fn retry_after_seconds(retry_after_ms: u64) -> String {
    retry_after_ms.div_ceil(1000).max(1).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(error: AppError, code: Code, http: u16) {
        let response = Response::from(error);
        assert_eq!((response.code, response.http), (code, http), "{response:?}");
    }

    #[test]
    fn each_refusal_has_one_code_and_status() {
        check(
            AppError::Authn(AuthnError::MissingToken),
            Code::Unauthenticated,
            401,
        );
        check(AppError::Refused("no".into()), Code::PermissionDenied, 403);
        check(
            AppError::Limited {
                reason: "r".into(),
                retry_after_ms: 5,
            },
            Code::ResourceExhausted,
            429,
        );
        check(
            AppError::TooLarge { limit: 1 },
            Code::ResourceExhausted,
            413,
        );
        check(AppError::NotJson, Code::InvalidArgument, 415);
        check(
            AppError::Unaudited(AuditError::Closed),
            Code::Unavailable,
            503,
        );
        check(AppError::Internal("x".into()), Code::Internal, 500);
        check(AppError::BadField("x".into()), Code::InvalidArgument, 400);
        let limited = Response::from(AppError::Limited {
            reason: "r".into(),
            retry_after_ms: 1500,
        });
        assert_eq!(limited.retry_after_ms, 1500);
        assert_eq!(retry_after_seconds(limited.retry_after_ms), "2");
    }
}
