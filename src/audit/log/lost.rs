//! History a directory lost before this start (a missing segment or
//! checkpoints file, signed checkpoints past the head), found at open.

use super::*;

/// History a directory lost before this start: what start-up refuses to
/// serve on without `--audit-accept-gap`.
#[derive(Debug, Default)]
pub(super) struct LostHistory {
    pub(super) gaps: Vec<String>,
    /// Signed checkpoints beyond the log's head (seq, hash): a cut or
    /// rolled-back tail.
    pub(super) stale_checkpoints: Vec<(u64, String)>,
    pub(super) missing_segments: Vec<String>,
    pub(super) missing_checkpoint_file: bool,
}

pub(super) fn lost_history(
    dir: &std::path::Path,
    files: &[(u64, PathBuf)],
    head_seq: u64,
) -> LostHistory {
    let mut lost = LostHistory::default();
    for pair in files.windows(2) {
        for index in pair[0].0 + 1..pair[1].0 {
            lost.missing_segments.push(segment_name(index));
        }
    }
    if !lost.missing_segments.is_empty() {
        lost.gaps.push(format!(
            "segment(s) missing between the ones present: {}",
            lost.missing_segments.join(", ")
        ));
    }
    let checkpoint_path = dir.join(checkpoint::CHECKPOINT_FILE);
    if head_seq > 0 && !checkpoint_path.exists() {
        lost.missing_checkpoint_file = true;
        lost.gaps.push(format!(
            "{} is missing while the log holds records up to seq {head_seq}",
            checkpoint::CHECKPOINT_FILE
        ));
    }
    let checkpoints = checkpoint::read_checkpoints(&checkpoint_path).unwrap_or_default();
    for beyond in checkpoints.iter().filter(|c| c.seq > head_seq) {
        lost.stale_checkpoints
            .push((beyond.seq, beyond.head.clone()));
    }
    if let Some((seq, _)) = lost.stale_checkpoints.iter().max_by_key(|(seq, _)| *seq) {
        lost.gaps.push(format!(
            "the log ends at seq {head_seq} but a signed checkpoint reaches seq {seq}: its tail was cut or rolled back"
        ));
    }
    lost
}

impl LostHistory {
    pub(super) fn drop_stale_checkpoints(
        &self,
        dir: &std::path::Path,
        head_seq: u64,
    ) -> std::io::Result<()> {
        if self.stale_checkpoints.is_empty() {
            return Ok(());
        }
        let path = dir.join(checkpoint::CHECKPOINT_FILE);
        let text = std::fs::read_to_string(&path)?;
        let kept: String = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|c| c["seq"].as_u64())
                    .is_some_and(|seq| seq <= head_seq)
            })
            .map(|line| format!("{line}\n"))
            .collect();
        files::write_whole(&path, kept.as_bytes())
    }

    pub(super) fn record(&self) -> Record {
        let mut gap = Record::new(kind::GAP);
        gap.reason = Some(format!(
            "started with --audit-accept-gap on lost history: {}",
            self.gaps.join("; ")
        ));
        gap.detail = Some(
            serde_json::json!({
                "missing_segments": self.missing_segments,
                "missing_checkpoint_file": self.missing_checkpoint_file,
                "checkpoints_beyond_head": self
                    .stale_checkpoints
                    .iter()
                    .map(|(seq, head)| serde_json::json!({ "seq": seq, "head": head }))
                    .collect::<Vec<_>>(),
            })
            .into(),
        );
        gap
    }
}
