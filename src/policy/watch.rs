//! Noticing policy changes on disk.
//!
//! vigil polls the policy files' metadata rather than using inotify: polling
//! sees every way a file can change (in-place writes, rename-over, the
//! symlink swap Kubernetes uses for mounted ConfigMaps) on every filesystem,
//! and three `stat`s every 250 ms cost nothing. A change is acted on only
//! once the files have stopped changing (debounce), so an editor writing in
//! several steps is not read half-way.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use super::files::{MODEL_FILE, POLICY_FILE};

/// Files whose change triggers a reload.
pub const WATCHED: [&str; 4] = [
    MODEL_FILE,
    POLICY_FILE,
    "classification.toml",
    crate::limits::LIMITS_FILE,
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(Vec<Option<(u64, SystemTime, u64)>>);

/// Size, modification time and inode of each watched file (following
/// symlinks).
pub fn fingerprint(dir: &Path) -> Fingerprint {
    Fingerprint(
        WATCHED
            .iter()
            .map(|name| {
                let meta = std::fs::metadata(dir.join(name)).ok()?;
                #[cfg(unix)]
                let inode = std::os::unix::fs::MetadataExt::ino(&meta);
                #[cfg(not(unix))]
                let inode = 0;
                Some((meta.len(), meta.modified().ok()?, inode))
            })
            .collect(),
    )
}

/// Watches `dir` and resolves each time its files changed and then held
/// still for `settle`.
pub struct Watcher {
    dir: PathBuf,
    last: Fingerprint,
    poll: Duration,
    settle: Duration,
}

impl Watcher {
    pub fn new(dir: &Path) -> Watcher {
        Watcher {
            dir: dir.to_owned(),
            last: fingerprint(dir),
            poll: Duration::from_millis(250),
            settle: Duration::from_millis(300),
        }
    }

    pub async fn changed(&mut self) {
        loop {
            tokio::time::sleep(self.poll).await;
            let now = fingerprint(&self.dir);
            if now == self.last {
                continue;
            }
            // Wait until two looks `settle` apart agree.
            let mut seen = now;
            loop {
                tokio::time::sleep(self.settle).await;
                let again = fingerprint(&self.dir);
                if again == seen {
                    break;
                }
                seen = again;
            }
            self.last = seen;
            return;
        }
    }
}
