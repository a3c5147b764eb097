//! The hash-chained audit log: record format ([`record`]), the group-commit
//! writer with segments and retention ([`log`]), signed checkpoints
//! ([`checkpoint`]), keyed digests for sensitive values ([`privacy`]),
//! verification ([`verify`]) and export ([`export`]).
//!
//! This module knows nothing of decisions beyond the record it is handed.

pub mod checkpoint;
mod error;
pub mod export;
pub mod files;
pub mod log;
pub mod options;
pub mod privacy;
mod receipt;
pub mod record;
mod repair;
mod retention;
mod segment;
pub mod verify;

pub use error::AuditError;
pub use log::{AuditLog, Receipt};
pub use options::{AuditOptions, OnFailure, SyncMode};
pub use privacy::{RedactionOptions, Redactor};
pub use record::{kind, Detail, Record};
pub use segment::{segment_index, segment_name, segments, FILE_PREFIX, FILE_SUFFIX};
