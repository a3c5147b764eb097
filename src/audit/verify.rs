//! Independent verification of an audit directory: every line against its
//! own hash, every `prev` against the line before, `seq` without gaps across
//! segments, signed checkpoints (a pruned prefix, a cut or rolled-back
//! tail), and anchors held elsewhere (`SEQ:HASH` receipts).
//!
//! Nothing in the directory is skipped: a file vigil did not write there is
//! an error.

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
};

use ed25519_dalek::VerifyingKey;

use super::{
    checkpoint::{self, Checkpoint, CHECKPOINT_FILE, PUBLIC_KEY_FILE},
    files::LOCK_FILE,
    record::{self, ChainFields, Hash, GENESIS},
    segment::{segment_index, segment_name, FILE_PREFIX, FILE_SUFFIX},
};

/// `SEQ:HASH`: this record must be in the log with this hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub hash: Hash,
    /// What the caller called it (`--anchor`, `--receipt`), for messages.
    pub label: &'static str,
}

impl Anchor {
    pub fn receipt(mut self) -> Anchor {
        self.label = "receipt";
        self
    }
}

impl std::fmt::Display for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}:{}", self.label, self.seq, hex::encode(self.hash))
    }
}

impl std::str::FromStr for Anchor {
    type Err = String;

    fn from_str(s: &str) -> Result<Anchor, String> {
        let (seq, hash) = s
            .split_once(':')
            .ok_or_else(|| format!("anchor {s:?} is not SEQ:HASH"))?;
        let seq = seq
            .parse()
            .map_err(|_| format!("anchor {s:?}: {seq:?} is not a sequence number"))?;
        let hash = record::parse_hash(hash).ok_or_else(|| {
            format!("anchor {s:?}: the hash is neither 64 hex digits nor 43 base64url characters")
        })?;
        Ok(Anchor {
            seq,
            hash,
            label: "anchor",
        })
    }
}

/// Which key checks checkpoint signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTrust {
    /// A key the caller supplied.
    Supplied,
    /// The copy kept in the audit directory: proves consistency, not origin.
    FoundInDirectory,
    /// No key: signatures were not checked.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub files: usize,
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub head: Hash,
    pub bytes: u64,
    pub checkpoints: usize,
    pub key: KeyTrust,
    /// Seq covered by the checkpoint that summarizes a pruned prefix.
    pub pruned_through: Option<u64>,
    /// Anchors below the first record still present: they cannot be
    /// checked, and are never reported present.
    pub unverifiable: Vec<Anchor>,
    /// `gap` records: history the operator acknowledged as lost (seq,
    /// what the record says).
    pub gaps: Vec<(u64, String)>,
}

impl VerifyError {
    /// The exit code `vigil audit verify` reports: 1 for tampering or a
    /// gap found, 2 for what kept it from checking (a missing directory,
    /// an unreadable file).
    pub fn exit_code(&self) -> u8 {
        match self {
            VerifyError::Io { .. } | VerifyError::Empty(_) => 2,
            _ => 1,
        }
    }
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
    Broken {
        file: PathBuf,
        line: u64,
        offset: u64,
        seq: Option<u64>,
        message: String,
    },
    #[error("{0}")]
    Checkpoint(String),
    #[error("{0}")]
    Anchor(String),
    #[error("{0}")]
    Directory(String),
    #[error("no audit files ({FILE_PREFIX}NNNNNN{FILE_SUFFIX}) in {}", .0.display())]
    Empty(PathBuf),
}

/// The segments of `dir` in order, refusing foreign files and gaps.
pub fn audit_files(dir: &Path) -> Result<Vec<PathBuf>, VerifyError> {
    let io = |source| VerifyError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut indexes = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(index) = segment_index(&name) {
            indexes.push(index);
            continue;
        }
        let torn = name.split_once(".torn-").is_some_and(|(base, offset)| {
            segment_index(base).is_some() && offset.bytes().all(|b| b.is_ascii_digit())
        });
        if name == CHECKPOINT_FILE || name == PUBLIC_KEY_FILE || name == LOCK_FILE || torn {
            continue;
        }
        return Err(VerifyError::Directory(format!(
            "{}: a file vigil did not write is in the audit directory; nothing is skipped, so move it out",
            entry.path().display()
        )));
    }
    indexes.sort_unstable();
    for pair in indexes.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(VerifyError::Directory(format!(
                "{}: segment missing between {} and {}",
                dir.join(segment_name(pair[0] + 1)).display(),
                segment_name(pair[0]),
                segment_name(pair[1])
            )));
        }
    }
    Ok(indexes
        .into_iter()
        .map(|i| dir.join(segment_name(i)))
        .collect())
}

/// Calls `visit` with every line of every segment, in order, after checking
/// the line against its own hash. Stops at the first broken line.
pub fn walk<F>(files: &[PathBuf], mut visit: F) -> Result<u64, VerifyError>
where
    F: FnMut(&Path, u64, u64, &[u8], ChainFields) -> Result<(), String>,
{
    let mut bytes = 0;
    for path in files {
        let io = |source| VerifyError::Io {
            path: path.clone(),
            source,
        };
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
            let broken = |seq, message| VerifyError::Broken {
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
            let body = &line[..line.len() - 1];
            let fields = record::check(body).map_err(|e| broken(None, e.to_string()))?;
            visit(path, number, offset, body, fields)
                .map_err(|message| broken(Some(fields.seq), message))?;
            offset += read as u64;
        }
        bytes += offset;
    }
    Ok(bytes)
}

/// Walks the whole chain in `dir`.
pub fn verify_dir(
    dir: &Path,
    anchors: &[Anchor],
    public_key: Option<&VerifyingKey>,
) -> Result<VerifyReport, VerifyError> {
    let files = audit_files(dir)?;
    if files.is_empty() {
        return Err(VerifyError::Empty(dir.to_owned()));
    }
    let checkpoints = checkpoint::read_checkpoints(&dir.join(CHECKPOINT_FILE))
        .map_err(VerifyError::Checkpoint)?;
    let found_key;
    let (key, trust) = match public_key {
        Some(key) => (Some(key), KeyTrust::Supplied),
        None => match checkpoint::load_public_key(&dir.join(PUBLIC_KEY_FILE)) {
            Ok(key) => {
                found_key = key;
                (Some(&found_key), KeyTrust::FoundInDirectory)
            }
            Err(_) => (None, KeyTrust::None),
        },
    };
    if let Some(key) = key {
        for checkpoint in &checkpoints {
            checkpoint.verify(key).map_err(|e| {
                VerifyError::Checkpoint(format!(
                    "{CHECKPOINT_FILE}: checkpoint at seq {}: {e}",
                    checkpoint.seq
                ))
            })?;
        }
    }
    let mut by_seq: Vec<&Checkpoint> = checkpoints.iter().collect();
    by_seq.sort_by_key(|c| c.seq);

    let mut report = VerifyReport {
        files: files.len(),
        records: 0,
        first_seq: 0,
        last_seq: 0,
        head: GENESIS,
        bytes: 0,
        checkpoints: checkpoints.len(),
        key: trust,
        pruned_through: None,
        unverifiable: Vec::new(),
        gaps: Vec::new(),
    };
    // The latest `prune` record: the pruned prefix it names must be the
    // one missing.
    let mut pruned_by_record: Option<u64> = None;
    let mut anchors: Vec<&Anchor> = anchors.iter().collect();
    anchors.sort_by_key(|a| a.seq);
    let (mut next_anchor, mut next_checkpoint) = (0, 0);

    report.bytes = walk(&files, |_, _, _, body, checked| {
        let seq = checked.seq;
        let prev = checked.prev;
        match record::kind_of(body) {
            Some(record::kind::PRUNE) => {
                pruned_by_record = serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|r| r["detail"]["through_seq"].as_u64());
            }
            Some(record::kind::GAP) => {
                let reason = serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|r| r["reason"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                report.gaps.push((seq, reason));
            }
            _ => {}
        }
        if report.records == 0 {
            if seq != 1 || prev != GENESIS {
                // A pruned prefix must be summarized by a checkpoint that
                // ends exactly where the remaining log begins.
                let covering = by_seq
                    .iter()
                    .find(|c| c.seq + 1 == seq && c.head_hash() == Some(prev));
                if covering.is_none() {
                    return Err(format!(
                        "the log starts at seq {seq}, and no checkpoint at seq {} with its prev hash covers the records before it",
                        seq.saturating_sub(1)
                    ));
                }
                report.pruned_through = Some(seq - 1);
            }
            report.first_seq = seq;
            // Receipts for records no longer here cannot be checked.
            while next_anchor < anchors.len() && anchors[next_anchor].seq < seq {
                report.unverifiable.push(anchors[next_anchor].clone());
                next_anchor += 1;
            }
        } else {
            let expected = report.last_seq + 1;
            if seq != expected {
                let how = if seq > expected {
                    "removed or reordered"
                } else {
                    "duplicated or reordered"
                };
                return Err(format!(
                    "expected seq {expected}, found {seq}: record(s) {how}"
                ));
            }
            if prev != report.head {
                return Err(format!(
                    "prev {} does not match the hash of the record before it ({})",
                    record::hash_text(&prev),
                    record::hash_text(&report.head)
                ));
            }
        }
        while next_checkpoint < by_seq.len() && by_seq[next_checkpoint].seq <= seq {
            let checkpoint = by_seq[next_checkpoint];
            if checkpoint.seq == seq && checkpoint.head_hash() != Some(checked.hash) {
                return Err(format!("the signed checkpoint at seq {seq} holds a different hash: the log was rewritten"));
            }
            next_checkpoint += 1;
        }
        while next_anchor < anchors.len() && anchors[next_anchor].seq <= seq {
            let anchor = anchors[next_anchor];
            if anchor.seq == seq && anchor.hash != checked.hash {
                return Err(format!(
                    "hash {} differs from the {} {}",
                    hex::encode(checked.hash),
                    anchor.label,
                    hex::encode(anchor.hash)
                ));
            }
            next_anchor += 1;
        }
        report.records += 1;
        report.last_seq = seq;
        report.head = checked.hash;
        Ok(())
    })?;

    if let Some(latest) = by_seq.last().filter(|c| c.seq > report.last_seq) {
        return Err(VerifyError::Checkpoint(format!(
            "the log ends at seq {} but a signed checkpoint reaches seq {}: the tail was truncated or rolled back",
            report.last_seq, latest.seq
        )));
    }
    if let Some(anchor) = anchors.get(next_anchor) {
        return Err(VerifyError::Anchor(format!(
            "the log ends at seq {} but {anchor} is beyond it: the tail was truncated or rolled back",
            report.last_seq,
        )));
    }
    // Retention says what it removes; a prefix gone without its `prune`
    // record was removed by someone else.
    if let Some(through) = report.pruned_through {
        if pruned_by_record != Some(through) {
            return Err(VerifyError::Directory(format!(
                "the log starts at seq {} but no prune record says retention removed seq 1..={through}{}: \
                 the oldest segments were removed by something other than vigil's retention",
                report.first_seq,
                match pruned_by_record {
                    Some(said) => format!(" (the last one says 1..={said})"),
                    None => String::new(),
                }
            )));
        }
    }
    Ok(report)
}
