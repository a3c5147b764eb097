//! Independent verification of an audit directory: every line against its
//! own hash, every `prev` against the line before, `seq` without gaps, and
//! optional anchors (`SEQ:HASH` receipts or checkpoints held elsewhere).

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
};

use super::{
    log::segment_files,
    record::{self, Hash, GENESIS},
};

/// `SEQ:HASH`: this record must be in the log with this hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub hash: Hash,
}

impl std::str::FromStr for Anchor {
    type Err = String;

    fn from_str(s: &str) -> Result<Anchor, String> {
        let (seq, hash) = s.split_once(':').ok_or_else(|| format!("anchor {s:?} is not SEQ:HASH"))?;
        let seq = seq.parse().map_err(|_| format!("anchor {s:?}: {seq:?} is not a sequence number"))?;
        let hash = record::parse_hash(hash)
            .ok_or_else(|| format!("anchor {s:?}: the hash is neither 64 hex digits nor 43 base64url characters"))?;
        Ok(Anchor { seq, hash })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub files: usize,
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub head: Hash,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} line {line} (offset {offset}){}: {message}", .file.display(), .seq.map(|s| format!(", record seq {s}")).unwrap_or_default())]
    Broken { file: PathBuf, line: u64, offset: u64, seq: Option<u64>, message: String },
    #[error("{0}")]
    Anchor(String),
    #[error("no audit files (audit-NNNNNN.jsonl) in {}", .0.display())]
    Empty(PathBuf),
}

/// Walks the whole chain in `dir`.
pub fn verify_dir(dir: &Path, anchors: &[Anchor]) -> Result<VerifyReport, VerifyError> {
    let files = segment_files(dir).map_err(|source| VerifyError::Io { path: dir.to_owned(), source })?;
    if files.is_empty() {
        return Err(VerifyError::Empty(dir.to_owned()));
    }
    let mut report = VerifyReport { files: files.len(), records: 0, first_seq: 0, last_seq: 0, head: GENESIS, bytes: 0 };
    let mut expected_seq = 1;
    let mut anchors: Vec<&Anchor> = anchors.iter().collect();
    anchors.sort_by_key(|a| a.seq);
    let mut next_anchor = 0;

    for path in &files {
        let io = |source| VerifyError::Io { path: path.clone(), source };
        let mut reader = BufReader::with_capacity(1 << 20, File::open(path).map_err(io)?);
        let mut line = Vec::with_capacity(512);
        let mut number = 0u64;
        let mut offset = 0u64;
        loop {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).map_err(io)?;
            if read == 0 {
                break;
            }
            number += 1;
            let broken = |seq: Option<u64>, message: String| VerifyError::Broken {
                file: path.clone(),
                line: number,
                offset,
                seq,
                message,
            };
            if line.last() != Some(&b'\n') {
                return Err(broken(
                    None,
                    "final record is incomplete (torn write); starting vigil on this directory repairs it".into(),
                ));
            }
            let checked = record::decode(&line[..line.len() - 1]).map_err(|e| broken(None, e.to_string()))?;
            let seq = checked.record.seq;
            if seq != expected_seq {
                let message = if seq > expected_seq {
                    format!("expected seq {expected_seq}, found {seq}: record(s) removed or reordered")
                } else {
                    format!("expected seq {expected_seq}, found {seq}: record(s) duplicated or reordered")
                };
                return Err(broken(Some(seq), message));
            }
            let prev = record::hash_text(&report.head);
            if checked.record.prev != prev {
                return Err(broken(
                    Some(seq),
                    format!("prev {} does not match the hash of the record before it ({prev})", checked.record.prev),
                ));
            }
            while next_anchor < anchors.len() && anchors[next_anchor].seq <= seq {
                let anchor = anchors[next_anchor];
                if anchor.seq == seq && anchor.hash != checked.hash {
                    return Err(broken(
                        Some(seq),
                        format!("hash {} differs from the anchor {}", hex::encode(checked.hash), hex::encode(anchor.hash)),
                    ));
                }
                next_anchor += 1;
            }
            if report.records == 0 {
                report.first_seq = seq;
            }
            report.records += 1;
            report.last_seq = seq;
            report.head = checked.hash;
            expected_seq = seq + 1;
            offset += read as u64;
        }
        report.bytes += offset;
    }
    if let Some(anchor) = anchors.get(next_anchor) {
        return Err(VerifyError::Anchor(format!(
            "the log ends at seq {} but anchor {}:{} is beyond it: the tail was truncated or rolled back",
            report.last_seq,
            anchor.seq,
            hex::encode(anchor.hash)
        )));
    }
    Ok(report)
}
