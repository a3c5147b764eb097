//! The audit witness: every sidecar's chain shipped to PostgreSQL, off the
//! host, where a history rewrite by whoever holds the host (and its signing
//! key) is refused and recorded as a fork instead of overwriting anything.
//!
//! [`store`] is the schema (created and migrated by vigil, versioned) and
//! the transactions that accept records; [`ship`] tails the local
//! segments and ships them in the background (never on a decision's path);
//! [`check`] verifies a local directory against the witness, the central
//! copy on its own, and the whole fleet.
//!
//! The store only ever appends: a record is accepted when its `seq` is the
//! next one and its `prev` the stored head's hash; a seq already stored
//! is accepted again only with identical bytes; a checkpoint must agree
//! with the records stored. Anything else is a fork.

pub mod check;
pub mod ship;
pub mod store;

pub use ship::{ShipSettings, ShipState, Shipper};
pub use store::{Store, WitnessError};

/// The chain id a sidecar ships under unless configured: the host name and
/// the audit directory, which together name one writer.
pub fn default_chain_id(audit_dir: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let dir = std::fs::canonicalize(audit_dir).unwrap_or_else(|_| audit_dir.to_owned());
    format!("{host}:{}", dir.display())
}
