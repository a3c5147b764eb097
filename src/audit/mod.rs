//! The hash-chained audit log: record format ([`record`]), the group-commit
//! writer ([`log`]) and verification ([`verify`]).
//!
//! This module knows nothing of decisions beyond the record it is handed.

pub mod log;
pub mod record;
pub mod verify;

pub use log::{AuditError, AuditLog, AuditOptions, Receipt};
pub use record::{kind, Record};
