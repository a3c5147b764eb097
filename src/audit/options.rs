//! What an operator decides about the audit trail: where it lives, when a
//! record counts as durable, what happens while the disk refuses writes,
//! and how segments rotate and are retained. Parsed from flags and the
//! config file by [`crate::config`]; read by the writer ([`super::log`]).

use std::{path::PathBuf, time::Duration};

/// Where `vigil serve` and the audit commands look when not told.
pub const DEFAULT_DIR: &str = "vigil-data/audit";

/// When an appended record counts as durable, and so when its call may be
/// answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// fdatasync after every record.
    Always,
    /// Group commit: one fdatasync covers every record appended since the last.
    Batch,
    /// Answers never wait for a sync; a background fdatasync every 200 ms
    /// bounds what a power failure can lose to the last ~200 ms.
    Off,
}

impl SyncMode {
    pub fn name(self) -> &'static str {
        match self {
            SyncMode::Always => "always",
            SyncMode::Batch => "batch",
            SyncMode::Off => "off",
        }
    }
}

/// What happens to requests while the log cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Answer UNAVAILABLE at once: never an unaudited decision.
    #[serde(alias = "fail-closed")]
    FailClosed,
    /// Retry the write for up to [`AuditOptions::block_timeout`], then fail
    /// closed.
    Block,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditOptions {
    pub dir: PathBuf,
    pub sync: SyncMode,
    pub on_failure: OnFailure,
    /// With [`OnFailure::Block`]: how long a request waits for the disk.
    pub block_timeout: Duration,
    /// Records that may wait for the disk at once; appends beyond fail
    /// closed at once rather than pile up behind a stalled disk.
    pub queue_depth: usize,
    /// Start a new segment once the active one reaches this size (0: never).
    pub rotate_bytes: u64,
    /// Start a new segment once the active one is this old.
    pub rotate_age: Option<Duration>,
    /// Keep at most this many segments; older ones are pruned.
    pub retain_segments: Option<usize>,
    /// Sign a checkpoint this often when the head has moved.
    pub checkpoint_every: Duration,
    /// Ed25519 key that signs checkpoints (created if missing). It lives
    /// beside the directory, never in it.
    pub signing_key_file: PathBuf,
    /// Start on a directory that lost history (`--audit-accept-gap`),
    /// recording what was lost in a `gap` record first.
    pub accept_gap: bool,
}

impl AuditOptions {
    /// The defaults `vigil serve` uses, for a log in `dir`.
    pub fn new(dir: impl Into<PathBuf>, sync: SyncMode) -> AuditOptions {
        let dir = dir.into();
        AuditOptions {
            signing_key_file: key_home(&dir).join("audit-signing.key"),
            dir,
            sync,
            on_failure: OnFailure::FailClosed,
            block_timeout: Duration::from_secs(5),
            queue_depth: 65_536,
            rotate_bytes: 64 << 20,
            rotate_age: None,
            retain_segments: None,
            checkpoint_every: Duration::from_secs(10),
            accept_gap: false,
        }
    }

    /// How long an append keeps retrying a failed write.
    pub(super) fn retry_for(&self) -> Option<Duration> {
        match self.on_failure {
            OnFailure::FailClosed => None,
            OnFailure::Block => Some(self.block_timeout),
        }
    }
}

/// Keys live beside the audit directory, not in it: handing the directory
/// to an auditor must not hand over the keys.
pub fn key_home(dir: &std::path::Path) -> PathBuf {
    dir.parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}
