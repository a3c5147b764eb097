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

/// A fresh decision id: a random UUID (version 4 layout).
pub fn decision_id() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

fn authorization<T>(request: &tonic::Request<T>) -> Option<&str> {
    request.metadata().get("authorization").and_then(|value| value.to_str().ok())
}
