//! Segment files: `audit-NNNNNN.jsonl`, numbered in chain order, and the
//! active one the writer appends to.

use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use super::record::Hash;

pub const FILE_PREFIX: &str = "audit-";
pub const FILE_SUFFIX: &str = ".jsonl";

pub fn segment_name(index: u64) -> String {
    format!("{FILE_PREFIX}{index:06}{FILE_SUFFIX}")
}

/// The index of a segment file name, if it is one.
pub fn segment_index(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(FILE_PREFIX)?.strip_suffix(FILE_SUFFIX)?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segment files in `dir`, in chain order, with their indexes.
pub fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut files: Vec<(u64, PathBuf)> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let index = segment_index(entry.file_name().to_str()?)?;
            Some((index, entry.path()))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The active segment and the chain head at its end.
#[derive(Debug)]
pub(super) struct Tail {
    pub(super) index: u64,
    pub(super) path: PathBuf,
    pub(super) file: Arc<File>,
    pub(super) len: u64,
    pub(super) seq: u64,
    pub(super) hash: Hash,
    pub(super) opened: Instant,
}

impl Tail {
    /// A new, empty segment `index` in `dir`, continuing the chain at
    /// (`seq`, `hash`). Its directory entry is not yet synced: see
    /// [`sync_dir`].
    pub(super) fn create(dir: &Path, index: u64, seq: u64, hash: Hash) -> std::io::Result<Tail> {
        let path = dir.join(segment_name(index));
        let file = super::files::open_append(&path)?;
        Ok(Tail {
            index,
            path,
            file: Arc::new(file),
            len: 0,
            seq,
            hash,
            opened: Instant::now(),
        })
    }

    /// The file name, for notes and logs.
    pub(super) fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// Makes new directory entries durable (a segment created by rotation).
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir).and_then(|dir| dir.sync_all())
}

#[cfg(unix)]
pub(super) fn links(meta: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.nlink()
}

#[cfg(not(unix))]
pub(super) fn links(_: &fs::Metadata) -> u64 {
    1
}
