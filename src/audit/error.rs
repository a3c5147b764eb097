//! How the audit log fails. Its own module, below the writer and crash
//! repair alike, so neither imports the other for it.

use std::path::PathBuf;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit log in {dir}: {message}")]
    Open { dir: PathBuf, message: String },
    #[error("{file}: offset {offset}: {message}")]
    Corrupt {
        file: PathBuf,
        offset: u64,
        message: String,
    },
    #[error("audit log write failed, decision not recorded: {0}")]
    Write(String),
    #[error("audit log cannot keep up: {0} records are already waiting for the disk")]
    Overloaded(usize),
    #[error("audit log is closed")]
    Closed,
    #[error(
        "the audit log in {} has lost history:\n  - {}\ninspect it with `vigil audit verify --audit-dir {}`; \
         to serve anyway, restart with --audit-accept-gap, which writes a `gap` record naming what was lost \
         (and signs a checkpoint over it) before anything else",
        .dir.display(), .gaps.join("\n  - "), .dir.display()
    )]
    Gap { dir: PathBuf, gaps: Vec<String> },
}
