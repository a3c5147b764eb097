//! The audit writer.
//!
//! A handler chains its records under a short lock: it assigns `seq` and
//! `prev`, encodes and hashes them into the open *batch* (bytes in memory,
//! never a syscall, never an await) and gets its receipts. In `batch` mode
//! the sync thread takes the whole batch, writes it with one `write`,
//! fdatasyncs once and wakes every call in it with one notification (group
//! commit): while it syncs, the next batch fills. In `always` mode every
//! call is a batch of its own, written and synced alone. In `off` mode
//! nobody waits for the disk, only for the `write` (so a killed process
//! loses nothing answered): a quiet log's handler writes its record itself;
//! under load calls join a batch that a flusher task on their runtime
//! writes once. The sync thread fdatasyncs in the background.
//!
//! Under the same lock the writer notices an active file that was deleted
//! or replaced (one `fstat` per batch) and switches to a new segment when
//! the active one is due to rotate. Everything slow happens outside it, on
//! the sync thread: fdatasync, signing checkpoints (after syncing what they
//! cover), syncing the directory after a rotation, pruning old segments
//! ([`super::retention`]) and probing a failing disk.
//!
//! The other seams of the writer live beside it: segment files
//! ([`super::segment`]), crash repair ([`super::repair`]), retention, and
//! the [`Receipt`] only this module mints.
//!
//! Architecture invariant: a receipt is returned only for a record that is
//! on disk (and synced, unless sync is `off`). A failed write rolls the file
//! and the head back and fails every call chained onto the lost bytes; a
//! failed sync fails every call waiting on it (their records may still
//! surface after a crash, as decisions that were never answered, which is
//! the safe direction).

use std::{
    collections::VecDeque,
    fs::File,
    io::Write,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Condvar, Mutex, MutexGuard, OnceLock,
    },
    time::{Duration, Instant},
};

use ed25519_dalek::SigningKey;
use tokio::sync::Notify;

mod batch;
mod sync;

use batch::{Batch, Outcome, Written};
pub use sync::OFF_FLUSH_EVERY;
use sync::{flush_when_asked, run_sync, OFF_COALESCE_WITHIN};

mod head;
mod lost;
use head::*;
use lost::*;

pub use super::error::AuditError;
pub use super::receipt::Receipt;
use super::{
    checkpoint::{self, CheckpointWriter},
    files,
    options::{AuditOptions, SyncMode},
    record::{self, kind, Hash, Record},
    repair::open_tail,
    retention,
    segment::{links, segment_name, segments, sync_dir, Tail},
};
use crate::metrics::{AuditMetrics, AuditState};

/// Handle to the audit log. Cloning is shallow.
#[derive(Debug, Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    core: Mutex<Core>,
    /// Signed outside `core`'s lock, by whoever finds a checkpoint due. Lock
    /// order: `core` before `checkpoints`, never the other way.
    checkpoints: Mutex<CheckpointWriter>,
    /// This writer's hold on the directory; let go by `close`.
    lock: Mutex<Option<files::DirLock>>,
    /// Held for a whole [`Inner::housekeeping`], so `close` returns only
    /// after the sync thread's pruning has finished.
    housekeeping: Mutex<()>,
    /// Wakes the sync thread when a batch is queued while it sleeps.
    batch_queued: Condvar,
    /// The runtime the appending handlers run on, where the sync thread
    /// sends its wake-ups.
    runtime: OnceLock<tokio::runtime::Handle>,
    durability: Durability,
    healthy: Arc<AtomicBool>,
    /// What the writer counts; the server registers them (see
    /// [`AuditLog::metrics`]).
    metrics: AuditMetrics,
    /// How long an append retries a failed write (`None`: fail at once).
    retry_for: Option<Duration>,
    dir: PathBuf,
    retain_segments: Option<usize>,
    /// With shipping on: the highest seq the witness holds. Retention
    /// never prunes past it (`u64::MAX`: no witness, no limit).
    shipped_through: Arc<std::sync::atomic::AtomicU64>,
}

/// When a call's records count as durable, with what each mode needs.
#[derive(Debug)]
enum Durability {
    /// Every call is its own batch, written and synced alone.
    Always,
    /// Group commit: the sync thread writes and syncs whole batches.
    Batch,
    /// Calls wait for the `write` only; the sync thread syncs in the
    /// background.
    Off(OffFlusher),
}

/// With sync `off`, under load, the task that writes joined batches (see
/// [`flush_when_asked`]); started once, when first needed.
#[derive(Debug, Default)]
struct OffFlusher {
    requested: Notify,
    /// False if it could not be started (no runtime): callers then write.
    started: OnceLock<bool>,
}

impl Durability {
    fn new(sync: SyncMode) -> Durability {
        match sync {
            SyncMode::Always => Durability::Always,
            SyncMode::Batch => Durability::Batch,
            SyncMode::Off => Durability::Off(OffFlusher::default()),
        }
    }

    fn is_off(&self) -> bool {
        matches!(self, Durability::Off(_))
    }
}

/// A checkpoint to sign: the head it covers and the segment to sync first
/// (a checkpoint ahead of the data would look like tampering after a
/// crash).
#[derive(Debug)]
struct CheckpointDue {
    seq: u64,
    hash: Hash,
    file: Arc<File>,
}

/// Whether housekeeping signs a checkpoint of the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checkpoint {
    /// Once `checkpoint_every` has passed since the last.
    WhenDue,
    /// Now (closing the log).
    Now,
}

impl Inner {
    fn core(&self) -> MutexGuard<'_, Core> {
        // A panic while writing leaves the file rolled back or ahead by
        // whole lines; the state stays usable.
        self.core
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn checkpoints(&self) -> MutexGuard<'_, CheckpointWriter> {
        self.checkpoints
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Syncs what `due` covers, then signs it. Called without `core`.
    fn sign(&self, due: CheckpointDue) {
        if let Err(e) = due.file.sync_data() {
            tracing::error!(error = %e, "cannot sync before an audit checkpoint");
            return;
        }
        let mut checkpoints = self.checkpoints();
        if due.seq <= checkpoints.last_seq {
            return;
        }
        if let Err(e) = checkpoints.write(due.seq, &due.hash) {
            tracing::error!(error = %e, "cannot write an audit checkpoint");
        }
    }

    /// The slow work the writer owes after appends, done without `core`:
    /// finish a rotation, sign a checkpoint (when due, or `Now`), prune.
    fn housekeeping(&self, checkpoint: Checkpoint) {
        let _one_at_a_time = self.housekeeping_turn();
        self.housekeeping_in_turn(checkpoint);
    }

    fn housekeeping_turn(&self) -> MutexGuard<'_, ()> {
        self.housekeeping
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// [`Inner::housekeeping`] for a caller that holds the turn. Nothing to
    /// do once the log is closed: `close` did it.
    fn housekeeping_in_turn(&self, checkpoint: Checkpoint) {
        let (rotated, due) = {
            let mut core = self.core();
            if core.closed {
                return;
            }
            if core.rotated.is_empty()
                && checkpoint == Checkpoint::WhenDue
                && !core.checkpoint_is_due()
            {
                return;
            }
            let rotated = std::mem::take(&mut core.rotated);
            let due = core.checkpoint_due(checkpoint);
            (rotated, due)
        };
        if !rotated.is_empty() {
            // Each closed segment's end, oldest first: retention prunes
            // only segments whose last record a checkpoint covers.
            for closed in rotated {
                self.sign(closed);
            }
            if let Err(e) = sync_dir(&self.dir) {
                tracing::error!(error = %e, "cannot sync the audit directory after rotating");
            }
            let shipped = self.shipped_through.load(Ordering::Acquire);
            if let Some(note) = self
                .retain_segments
                .and_then(|keep| retention::prune(&self.dir, keep, shipped))
            {
                // Written with the next batch.
                self.core().chain(&mut [note], true);
            }
        }
        if let Some(due) = due {
            self.sign(due);
        }
    }
}

impl AuditLog {
    /// Opens (or creates) the log, repairs a torn tail left by a crash, and
    /// starts the writer. `startup` is the first record written.
    pub fn open(
        options: AuditOptions,
        signing_key: SigningKey,
        startup: Record,
    ) -> Result<(AuditLog, Receipt), AuditError> {
        let open_error = |message: String| AuditError::Open {
            dir: options.dir.clone(),
            message,
        };
        files::create_dir(&options.dir)
            .map_err(|e| open_error(format!("cannot create the directory: {e}")))?;
        let lock = files::lock(&options.dir).map_err(open_error)?;
        let files = segments(&options.dir)
            .map_err(|e| open_error(format!("cannot list the directory: {e}")))?;
        let (index, path) = files
            .last()
            .cloned()
            .unwrap_or_else(|| (1, options.dir.join(segment_name(1))));
        let (mut tail, recovery) = open_tail(index, &path)?;
        if tail.len == 0 && tail.seq == 0 && files.len() > 1 {
            // An empty newest segment after a crash right after rotation:
            // the head is at the end of the one before it.
            let (prev_index, prev_path) = &files[files.len() - 2];
            let (previous, _) = open_tail(*prev_index, prev_path)?;
            tail.seq = previous.seq;
            tail.hash = previous.hash;
        }
        let lost = lost_history(&options.dir, &files, tail.seq);
        if !lost.gaps.is_empty() {
            if !options.accept_gap {
                return Err(AuditError::Gap {
                    dir: options.dir.clone(),
                    gaps: lost.gaps,
                });
            }
            // The checkpoints past the head would contradict every record
            // written from here on: they leave the file, and their
            // content goes into the gap record.
            lost.drop_stale_checkpoints(&options.dir, tail.seq)
                .map_err(|e| {
                    open_error(format!(
                        "cannot rewrite {}: {e}",
                        checkpoint::CHECKPOINT_FILE
                    ))
                })?;
            tracing::warn!(gaps = ?lost.gaps, "starting on an audit log that lost history (--audit-accept-gap): recorded in a gap record");
        }
        let mut checkpoints = CheckpointWriter::open(&options.dir, signing_key)
            .map_err(|e| open_error(format!("cannot open {}: {e}", checkpoint::CHECKPOINT_FILE)))?;
        let checkpointed_seq = checkpoints.last_seq;

        let healthy = Arc::new(AtomicBool::new(true));
        let mut core = Core {
            head: (tail.seq, tail.hash),
            tail,
            queue: VecDeque::new(),
            queued_records: 0,
            spare: Vec::with_capacity(1 << 16),
            syncer_asleep: false,
            flush_requested: false,
            last_append: Instant::now(),
            rotated: Vec::new(),
            checkpointed_seq,
            healthy: healthy.clone(),
            failed_since: None,
            last_checkpoint: Instant::now(),
            options: options.clone(),
            closed: false,
            metrics: AuditMetrics::default(),
        };

        // Written and synced before anything else: the repair note and the
        // startup record, so a broken disk stops start-up rather than the
        // first request.
        let mut first = Vec::new();
        let gap_accepted = !lost.gaps.is_empty();
        if gap_accepted {
            first.push(lost.record());
        }
        if let Some(recovery) = recovery {
            first.push(recovery);
        }
        first.push(startup);
        let (receipts, _) = core.chain(&mut first, false);
        core.write_queued(None)?;
        core.tail
            .file
            .sync_data()
            .map_err(|e| open_error(format!("cannot sync the audit log: {e}")))?;
        let startup_receipt = *receipts.last().expect("one receipt per record");
        if gap_accepted {
            // Signed at once: the acknowledgement cannot be dropped quietly.
            checkpoints
                .write(core.head.0, &core.head.1)
                .map_err(|e| open_error(format!("cannot sign a checkpoint: {e}")))?;
        }

        let metrics = core.metrics.clone();
        let inner = Arc::new(Inner {
            metrics,
            core: Mutex::new(core),
            checkpoints: Mutex::new(checkpoints),
            lock: Mutex::new(Some(lock)),
            housekeeping: Mutex::new(()),
            batch_queued: Condvar::new(),
            runtime: OnceLock::new(),
            durability: Durability::new(options.sync),
            healthy,
            retry_for: options.retry_for(),
            dir: options.dir.clone(),
            retain_segments: options.retain_segments,
            shipped_through: Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)),
        });
        // A rotation during start-up (a full segment) is finished here.
        inner.housekeeping(Checkpoint::WhenDue);
        let syncer = inner.clone();
        std::thread::Builder::new()
            .name("vigil-audit-sync".into())
            .spawn(move || run_sync(syncer))
            .map_err(|e| open_error(format!("cannot start the sync thread: {e}")))?;
        Ok((AuditLog { inner }, startup_receipt))
    }

    /// Holds retention back to what a witness has received: segments
    /// whose last record is above the returned counter's value are never
    /// pruned. The shipper stores into it as the witness acknowledges.
    pub fn hold_pruning_until_shipped(&self) -> Arc<std::sync::atomic::AtomicU64> {
        let shipped = &self.inner.shipped_through;
        shipped.store(0, Ordering::Release);
        shipped.clone()
    }

    /// The directory this log writes.
    pub fn dir(&self) -> &std::path::Path {
        &self.inner.dir
    }

    /// Appends records in order and returns once they are durable.
    pub async fn append(&self, mut records: Vec<Record>) -> Result<Vec<Receipt>, AuditError> {
        let inner = &self.inner;
        let deadline = inner
            .retry_for
            .map(|limit| tokio::time::Instant::now() + limit);
        loop {
            let attempt = self.append_once(&mut records).await;
            match attempt {
                Err(AuditError::Write(_))
                    if deadline.is_some_and(|d| tokio::time::Instant::now() < d) =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                attempt => return attempt,
            }
        }
    }

    async fn append_once(&self, records: &mut [Record]) -> Result<Vec<Receipt>, AuditError> {
        let inner = &self.inner;
        if inner.runtime.get().is_none() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let _ = inner.runtime.set(runtime);
            }
        }
        let (receipts, outcome) = {
            let mut core = inner.core();
            if core.closed {
                return Err(AuditError::Closed);
            }
            if core.queued_records >= core.options.queue_depth {
                return Err(AuditError::Overloaded(core.queued_records));
            }
            if let Durability::Off(flusher) = &inner.durability {
                // Into the kernel before the answer: a killed process
                // loses nothing it answered. A quiet log writes at once; a
                // busy one leaves the write to the flusher task, which runs
                // after the calls already runnable have joined the batch.
                let now = Instant::now();
                let busy = now.duration_since(core.last_append) < OFF_COALESCE_WITHIN;
                core.last_append = now;
                let coalesce = busy && self.start_flusher(flusher);
                let (receipts, outcome) = core.chain(records, coalesce);
                if !coalesce {
                    core.write_queued(None)?;
                    return Ok(receipts);
                }
                let wake_flusher = !std::mem::replace(&mut core.flush_requested, true);
                drop(core);
                if wake_flusher {
                    flusher.requested.notify_one();
                }
                (receipts, outcome)
            } else {
                let join = matches!(inner.durability, Durability::Batch);
                let (receipts, outcome) = core.chain(records, join);
                let wake_syncer = std::mem::take(&mut core.syncer_asleep);
                drop(core);
                // After unlocking: woken under the lock, the sync thread
                // would only block on it.
                if wake_syncer {
                    inner.batch_queued.notify_one();
                }
                (receipts, outcome)
            }
        };
        outcome.wait().await?;
        Ok(receipts)
    }

    /// Starts the `off` mode's flusher on the caller's runtime, once.
    /// False without a runtime: the caller then writes itself. Should the
    /// runtime go away, the sync thread still writes what is queued at its
    /// next wake-up.
    fn start_flusher(&self, flusher: &OffFlusher) -> bool {
        *flusher.started.get_or_init(|| {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return false;
            };
            runtime.spawn(flush_when_asked(self.inner.clone()));
            true
        })
    }

    pub async fn append_one(&self, record: Record) -> Result<Receipt, AuditError> {
        let receipts = self.append(vec![record]).await?;
        Ok(receipts[0])
    }

    /// Writes `last` (the shutdown record) after everything still queued,
    /// syncs, signs a final checkpoint and stops the sync thread. Appends
    /// after this fail with [`AuditError::Closed`].
    pub async fn close(&self, last: Record) -> Result<Receipt, AuditError> {
        let inner = &self.inner;
        // The sync thread's housekeeping is finished (and no new one
        // starts) before the last record: a prune note is never left
        // behind it, and nothing is pruned after `close` returns.
        let _turn = inner.housekeeping_turn();
        inner.housekeeping_in_turn(Checkpoint::WhenDue);
        let (receipt, unsettled, written, file, rotated, due) = {
            let mut core = inner.core();
            if core.closed {
                return Err(AuditError::Closed);
            }
            let (receipts, _) = core.chain(&mut [last], true);
            // Whatever the sync thread had not yet taken is written here
            // and answered once synced.
            let mut unsettled = Vec::new();
            let written = core.write_queued(Some(&mut unsettled));
            core.closed = true;
            let rotated = std::mem::take(&mut core.rotated);
            let due = core.checkpoint_due(Checkpoint::Now);
            let file = core.tail.file.clone();
            (receipts[0], unsettled, written, file, rotated, due)
        };
        let result = written.and_then(|()| {
            file.sync_data()
                .map_err(|e| AuditError::Write(format!("fdatasync: {e}")))
        });
        if result.is_ok() {
            let rotated_now = !rotated.is_empty();
            for closed in rotated.into_iter().chain(due) {
                inner.sign(closed);
            }
            if rotated_now {
                if let Err(e) = sync_dir(&inner.dir) {
                    tracing::error!(error = %e, "cannot sync the audit directory after rotating");
                }
            }
        }
        for batch in unsettled {
            batch.settle(result.clone());
        }
        inner.batch_queued.notify_one();
        if let Durability::Off(flusher) = &inner.durability {
            flusher.requested.notify_one();
        }
        // Closed for good: another writer may take the directory now.
        inner
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        result.map(|()| receipt)
    }

    /// False while the log cannot be written.
    pub fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }

    /// Appends, batch sizes, fdatasync latency and write failures, for the
    /// server to register with its metrics.
    pub fn metrics(&self) -> &AuditMetrics {
        &self.inner.metrics
    }

    /// The highest seq written to the file (what a reader of the segments
    /// can see).
    pub fn written_seq(&self) -> u64 {
        self.inner.core().tail.seq
    }

    /// What a metrics scrape reports of the log's state: health, segment
    /// files and their bytes, the age of the newest signed checkpoint.
    pub fn scrape_state(&self) -> AuditState {
        // Since the last checkpoint was taken (or the log opened, which
        // signs one as soon as it is due).
        let checkpoint_age = Some(self.inner.core().last_checkpoint.elapsed().as_secs_f64());
        let (mut count, mut bytes) = (0, 0);
        if let Ok(files) = segments(&self.inner.dir) {
            for (_, path) in files {
                count += 1;
                bytes += std::fs::symlink_metadata(&path)
                    .map(|m| m.len())
                    .unwrap_or(0);
            }
        }
        AuditState {
            writable: self.is_healthy(),
            segments: count,
            bytes,
            checkpoint_age,
        }
    }
}

#[cfg(test)]
mod tests;
