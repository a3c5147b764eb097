//! The writer under concurrent appends in every sync mode.

use std::{fs, path::Path};

use super::*;
use crate::audit::{record, verify::verify_dir};

fn open(dir: &Path, sync: SyncMode, rotate_bytes: u64) -> AuditLog {
    let mut options = AuditOptions::new(dir, sync);
    options.rotate_bytes = rotate_bytes;
    options.retain_segments = Some(2);
    AuditLog::open(
        options,
        SigningKey::from_bytes(&[7; 32]),
        Record::new(kind::STARTUP),
    )
    .unwrap()
    .0
}

fn decision(n: usize) -> Record {
    let mut record = Record::new(kind::DECISION);
    record.sub = Some(format!("user{n}"));
    record.allowed = Some(n.is_multiple_of(2));
    record
}

/// Concurrent appends in every mode, across rotations and pruning: each
/// receipt is a distinct seq whose hash is the one on disk, and the
/// chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_chain_in_every_mode() {
    for sync in [SyncMode::Batch, SyncMode::Always, SyncMode::Off] {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), sync, 16 << 10);
        let mut tasks = Vec::new();
        for writer in 0..16 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut receipts = Vec::new();
                for i in 0..40 {
                    if i % 10 == 0 {
                        let batch = (0..3).map(|j| decision(writer * 100 + j)).collect();
                        receipts.extend(log.append(batch).await.unwrap());
                    } else {
                        receipts.push(log.append_one(decision(writer)).await.unwrap());
                    }
                }
                receipts
            }));
        }
        let mut receipts = Vec::new();
        for task in tasks {
            receipts.extend(task.await.unwrap());
        }
        log.close(Record::new(kind::SHUTDOWN)).await.unwrap();
        assert!(matches!(
            log.append_one(decision(0)).await,
            Err(AuditError::Closed)
        ));

        let mut seqs: Vec<u64> = receipts.iter().map(|r| r.seq()).collect();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(
            seqs.len(),
            16 * 48,
            "{sync:?}: receipts must not share a seq"
        );
        let report = verify_dir(dir.path(), &[], None)
            .unwrap_or_else(|e| panic!("{sync:?}: the chain must verify: {e}"));
        assert!(report.pruned_through.is_some(), "{sync:?}: pruning ran");
        let on_disk: std::collections::HashMap<u64, Hash> = segments(dir.path())
            .unwrap()
            .iter()
            .flat_map(|(_, path)| {
                fs::read_to_string(path)
                    .unwrap()
                    .lines()
                    .map(|line| {
                        let fields = record::check(line.as_bytes()).unwrap();
                        (fields.seq, fields.hash)
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        // Pruning may have removed the oldest segments, never a receipt
        // from the segments that remain.
        let first_kept = on_disk.keys().min().copied().unwrap();
        for receipt in receipts.iter().filter(|r| r.seq() >= first_kept) {
            assert_eq!(
                on_disk.get(&receipt.seq()),
                Some(receipt.hash()),
                "{sync:?}"
            );
        }
    }
}
