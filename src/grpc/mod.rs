//! The gRPC surface: the only code that knows prost types. Each handler
//! decodes, authenticates, calls the core on one policy snapshot, audits,
//! and encodes.

mod access;
pub mod status;

use std::sync::Arc;

pub use access::AccessControlService;

use crate::{audit::AuditLog, authn::Authenticator, config::Limits, policy::PolicyStore};

/// What every handler shares. Cloning the `Arc` around it is shallow.
#[derive(Debug)]
pub struct Shared {
    pub policies: Arc<PolicyStore>,
    pub audit: AuditLog,
    pub authn: Authenticator,
    pub limits: Limits,
}

/// Longest subject, object, action, domain or attribute accepted.
pub const MAX_FIELD_BYTES: usize = 4096;

/// A fresh decision id: 128 random bits in unpadded base64url (22
/// characters; compact because every audit record carries one).
pub fn decision_id() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

fn authorization<T>(request: &tonic::Request<T>) -> Option<&str> {
    request.metadata().get("authorization").and_then(|value| value.to_str().ok())
}
