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
    format!("{host}:{}", canonical_even_if_missing(audit_dir).display())
}

/// The canonical form of `path`, also before it exists: `serve` names its
/// chain before the audit directory is created, `verify` after, and both
/// must name the same chain (`data/audit` typed at serve was once
/// registered as typed, and verify looked it up canonical: found nothing).
fn canonical_even_if_missing(path: &std::path::Path) -> std::path::PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut existing = absolute.as_path();
    let mut missing = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_owned());
                existing = parent;
            }
            _ => break,
        }
    }
    let mut canonical = std::fs::canonicalize(existing).unwrap_or_else(|_| existing.to_owned());
    for name in missing.iter().rev() {
        canonical.push(name);
    }
    canonical
}
