//! Verification with the witness: a local directory against what the
//! store holds (a rollback, rewrite or cut tail is caught even when done
//! with the signing key), the central copy on its own, and the fleet.

use std::path::Path;

use super::store::{FleetRow, Store, WitnessError};
use crate::audit::{
    checkpoint::Checkpoint,
    record::{self, hash_text, GENESIS},
    verify::{audit_files, walk},
};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Witness(#[from] WitnessError),
    /// The local log or the central copy disagrees: tampering or a gap.
    #[error("{0}")]
    Mismatch(String),
    #[error("{0}")]
    Local(String),
}

/// What a check found, when it found nothing wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessReport {
    /// Records the store holds for the chain.
    pub stored: u64,
    pub first_seq: u64,
    pub head_seq: u64,
    /// Records compared with a local copy.
    pub compared: u64,
    pub checkpoints: usize,
}

/// Checks that the local log in `dir` holds, byte for byte, everything the
/// store holds of `chain`: a record the store has and the directory lacks
/// at its end is a cut or rolled-back tail, one with another hash a
/// rewrite. Records pruned locally (below the first present) are not
/// compared; the rest of local verification is `verify_dir`'s.
pub async fn against_witness(
    dir: &Path,
    store: &Store,
    chain: &str,
) -> Result<WitnessReport, CheckError> {
    // A chain the store does not know is no pass with 0 records compared:
    // a mistyped or mis-derived name would otherwise check nothing.
    store.head(chain).await?;
    // The stored lines themselves, not only their hashes: a line edited in
    // the store without re-hashing it differs byte for byte.
    let stored = store.lines(chain).await?;
    let files = audit_files(dir).map_err(|e| CheckError::Local(e.to_string()))?;
    let mut at = 0usize;
    let mut compared = 0u64;
    let mut local_head = 0u64;
    let mut problem: Option<String> = None;
    walk(&files, |_, _, _, body, fields| {
        local_head = fields.seq;
        while at < stored.len() && stored[at].0 < fields.seq {
            at += 1;
        }
        if let Some((seq, hash, line)) = stored.get(at) {
            if *seq == fields.seq {
                if *hash != hash_text(&fields.hash) {
                    problem.get_or_insert_with(|| {
                        format!(
                            "seq {seq}: the local record's hash {} differs from the one the witness holds ({hash}): \
                             the local log was rewritten after shipping",
                            hash_text(&fields.hash)
                        )
                    });
                } else if line.as_bytes() != body {
                    problem.get_or_insert_with(|| {
                        format!(
                            "seq {seq}: the witness's copy of the record differs from the local one byte \
                             for byte though their hashes agree: the stored line was edited at the witness"
                        )
                    });
                }
                compared += 1;
                at += 1;
            }
        }
        Ok(())
    })
    .map_err(|e| CheckError::Local(e.to_string()))?;
    if let Some(problem) = problem {
        return Err(CheckError::Mismatch(problem));
    }
    if let Some((seq, _, _)) = stored.iter().find(|(seq, _, _)| *seq > local_head) {
        let last = stored.last().map_or(0, |(s, _, _)| *s);
        return Err(CheckError::Mismatch(format!(
            "the local log ends at seq {local_head} but the witness holds seq {seq}..={last}: \
             the tail was cut or rolled back after shipping"
        )));
    }
    Ok(WitnessReport {
        stored: stored.len() as u64,
        first_seq: stored.first().map_or(0, |(s, _, _)| *s),
        head_seq: stored.last().map_or(0, |(s, _, _)| *s),
        compared,
        checkpoints: 0,
    })
}

/// Verifies the central copy of `chain` on its own: every line against its
/// hash and the one before it, no gaps, every checkpoint signed by the
/// chain's registered key and agreeing with the stored record.
pub async fn central(store: &Store, chain: &str) -> Result<WitnessReport, CheckError> {
    let key_hex = store.public_key(chain).await?;
    let key = crate::audit::checkpoint::parse_public_key(&key_hex).map_err(|e| {
        CheckError::Mismatch(format!(
            "chain {chain}: the registered public key is unusable: {e}"
        ))
    })?;
    let lines = store.lines(chain).await?;
    let mut previous: Option<(u64, record::Hash)> = None;
    for (seq, stored_hash, line) in &lines {
        let fields = record::check(line.as_bytes())
            .map_err(|e| CheckError::Mismatch(format!("seq {seq}: {e}")))?;
        if fields.seq != *seq || hash_text(&fields.hash) != *stored_hash {
            return Err(CheckError::Mismatch(format!(
                "seq {seq}: the stored columns disagree with the stored line"
            )));
        }
        match previous {
            Some((prev_seq, prev_hash)) => {
                if *seq != prev_seq + 1 {
                    return Err(CheckError::Mismatch(format!(
                        "gap: seq {}..={} missing from the witness",
                        prev_seq + 1,
                        seq - 1
                    )));
                }
                if fields.prev != prev_hash {
                    return Err(CheckError::Mismatch(format!(
                        "seq {seq}: prev does not match the hash of seq {prev_seq}"
                    )));
                }
            }
            None if *seq == 1 && fields.prev != GENESIS => {
                return Err(CheckError::Mismatch(
                    "seq 1 does not start from the genesis hash".into(),
                ));
            }
            None => {}
        }
        previous = Some((*seq, fields.hash));
    }
    let checkpoints = store.checkpoints(chain).await?;
    for text in &checkpoints {
        let checkpoint: Checkpoint = serde_json::from_str(text)
            .map_err(|e| CheckError::Mismatch(format!("a stored checkpoint is unreadable: {e}")))?;
        checkpoint.verify(&key).map_err(|e| {
            CheckError::Mismatch(format!(
                "checkpoint at seq {}: {e} (registered key)",
                checkpoint.seq
            ))
        })?;
        let record = lines.iter().find(|(seq, _, _)| *seq == checkpoint.seq);
        if let Some((_, hash, _)) = record {
            if *hash != checkpoint.head {
                return Err(CheckError::Mismatch(format!(
                    "checkpoint at seq {} names another hash than the stored record",
                    checkpoint.seq
                )));
            }
        }
    }
    Ok(WitnessReport {
        stored: lines.len() as u64,
        first_seq: lines.first().map_or(0, |(s, _, _)| *s),
        head_seq: lines.last().map_or(0, |(s, _, _)| *s),
        compared: 0,
        checkpoints: checkpoints.len(),
    })
}

/// Every chain in the store, and whether any has a fork or a gap.
pub async fn fleet(store: &Store) -> Result<(Vec<FleetRow>, bool), CheckError> {
    let rows = store.fleet().await?;
    let troubled = rows
        .iter()
        .any(|row| row.forks > 0 || row.stopped.is_some() || row.gaps() > 0);
    Ok((rows, troubled))
}
