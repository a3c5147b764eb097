//! Retention: old segments are removed only once a signed checkpoint
//! covers their last record, oldest first, never leaving a gap; what was
//! removed is said in a `prune` record.

use std::{collections::HashSet, fs, path::Path};

use super::{
    checkpoint,
    record::{kind, Record},
    repair::closed_segment_last_seq,
    segment::segments,
};

/// Removes the oldest segments of `dir` beyond the newest `keep` that a
/// checkpoint covers and whose records a witness holds (`shipped_through`),
/// and returns the note to chain, if any were removed. Runs outside the
/// writer's lock: it lists, reads and unlinks files.
pub(super) fn prune(dir: &Path, keep: usize, shipped_through: u64) -> Option<Record> {
    let keep = keep.max(1);
    let files = segments(dir).ok()?;
    if files.len() <= keep {
        return None;
    }
    let covered: HashSet<u64> =
        checkpoint::read_checkpoints(&dir.join(checkpoint::CHECKPOINT_FILE))
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.seq)
            .collect();
    let mut removed = Vec::new();
    let mut through_seq = 0;
    for (_, path) in &files[..files.len() - keep] {
        let Some(last_seq) = closed_segment_last_seq(path) else {
            break;
        };
        if !covered.contains(&last_seq) || last_seq > shipped_through {
            break;
        }
        if fs::remove_file(path).is_err() {
            break;
        }
        through_seq = last_seq;
        removed.push(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
    }
    if removed.is_empty() {
        return None;
    }
    let mut note = Record::new(kind::PRUNE);
    note.reason = Some(format!(
        "retention removed {} segment(s); a signed checkpoint covers seq 1..={through_seq}",
        removed.len()
    ));
    note.detail =
        Some(serde_json::json!({ "removed": removed, "through_seq": through_seq }).into());
    Some(note)
}
