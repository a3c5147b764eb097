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

#[derive(Debug)]
struct Core {
    /// What is in the file: the segment being written and the chain head
    /// at its end.
    tail: Tail,
    /// The chain head including queued batches (`seq`, hash).
    head: (u64, Hash),
    /// Chained but not yet written, oldest first. In `batch` mode at most
    /// one batch waits while the sync thread writes and syncs the one
    /// before; in `always` mode one per call; in `off` mode the batch the
    /// flusher task is about to write.
    queue: VecDeque<Batch>,
    queued_records: usize,
    /// A written batch's buffer, kept for the next batch.
    spare: Vec<u8>,
    /// The sync thread sleeps on `Inner::batch_queued` and must be woken.
    syncer_asleep: bool,
    /// With sync `off`: the flusher task has been asked to write the queue.
    flush_requested: bool,
    /// With sync `off`: when the last call appended (busy or quiet).
    last_append: Instant,
    /// Segments closed by rotation whose slow half (sync, sign the end,
    /// sync the directory, prune) [`Inner::housekeeping`] still owes.
    rotated: Vec<CheckpointDue>,
    /// The newest seq handed to a signer.
    checkpointed_seq: u64,
    healthy: Arc<AtomicBool>,
    /// Set while writes fail: when, and how many attempts failed.
    failed_since: Option<(String, u64)>,
    last_checkpoint: Instant,
    options: AuditOptions,
    closed: bool,
    metrics: AuditMetrics,
}

impl Core {
    /// Chains `records` onto the head: into the open batch when `join`,
    /// else into a new one, which first gets the notes the log owes.
    /// Returns their receipts and the outcome to wait for.
    fn chain(&mut self, records: &mut [Record], join: bool) -> (Vec<Receipt>, Arc<Outcome>) {
        if !join || self.queue.is_empty() {
            let mut notes = self.notes();
            self.queue.push_back(Batch {
                bytes: std::mem::take(&mut self.spare),
                records: 0,
                last_seq: self.head.0,
                last_hash: self.head.1,
                outcome: Arc::default(),
            });
            self.encode(&mut notes, None);
        }
        let mut receipts = Vec::with_capacity(records.len());
        self.encode(records, Some(&mut receipts));
        let outcome = self
            .queue
            .back()
            .expect("a batch was queued")
            .outcome
            .clone();
        (receipts, outcome)
    }

    /// Encodes records into the batch at the back of the queue.
    fn encode(&mut self, records: &mut [Record], mut receipts: Option<&mut Vec<Receipt>>) {
        let batch = self.queue.back_mut().expect("a batch was queued");
        let (mut seq, mut hash) = self.head;
        for record in records.iter_mut() {
            seq += 1;
            record.seq = seq;
            record.prev = record::hash_text(&hash);
            hash = record::encode(record, &mut batch.bytes);
            if let Some(receipts) = receipts.as_mut() {
                receipts.push(Receipt::new(seq, hash));
            }
        }
        batch.records += records.len();
        batch.last_seq = seq;
        batch.last_hash = hash;
        self.queued_records += records.len();
        self.head = (seq, hash);
    }

    /// Writes the oldest queued batch with one `write`, all or nothing.
    /// Returns its outcome (to settle once synced), the segment it went to,
    /// and whether the write worked. A failed write rolls the file and the
    /// head back and fails every batch chained after it.
    fn write_front(&mut self) -> Option<Written> {
        let mut batch = self.queue.pop_front()?;
        self.queued_records -= batch.records;
        let file = self.tail.file.clone();
        match (&*file).write_all(&batch.bytes) {
            Ok(()) => {
                self.metrics.observe_write(batch.records);
                self.tail.seq = batch.last_seq;
                self.tail.hash = batch.last_hash;
                self.tail.len += batch.bytes.len() as u64;
                if let Some((since, failures)) = self.failed_since.take() {
                    tracing::info!(%since, failures, "audit log writable again");
                }
                self.healthy.store(true, Ordering::Relaxed);
                if self.spare.capacity() == 0 {
                    batch.bytes.clear();
                    self.spare = batch.bytes;
                }
                self.maybe_rotate();
                Some(Written {
                    outcome: batch.outcome,
                    file,
                    result: Ok(()),
                })
            }
            Err(e) => {
                let _ = file.set_len(self.tail.len);
                tracing::error!(file = %self.tail.path.display(), error = %e, "audit log write failed; failing the affected requests closed");
                let error = AuditError::Write(format!("{}: {e}", self.tail.path.display()));
                self.healthy.store(false, Ordering::Relaxed);
                self.metrics.write_failures.inc();
                let failures = self
                    .failed_since
                    .get_or_insert_with(|| (record::now_rfc3339(), 0));
                failures.1 += 1;
                // Everything queued behind chains onto the lost bytes.
                for later in self.queue.drain(..) {
                    later.outcome.settle(Err(error.clone()));
                }
                self.queued_records = 0;
                self.head = (self.tail.seq, self.tail.hash);
                Some(Written {
                    outcome: batch.outcome,
                    file,
                    result: Err(error),
                })
            }
        }
    }

    /// Writes everything queued, for callers that need it in the kernel
    /// now (`off` mode, start-up, close). Outcomes are settled at once, or
    /// collected into `unsettled` for a caller that settles them after its
    /// sync.
    fn write_queued(
        &mut self,
        mut unsettled: Option<&mut Vec<Arc<Outcome>>>,
    ) -> Result<(), AuditError> {
        while let Some(written) = self.write_front() {
            match unsettled.as_deref_mut() {
                Some(unsettled) => unsettled.push(written.outcome),
                None => written.outcome.settle(written.result.clone()),
            }
            written.result?;
        }
        Ok(())
    }

    /// Nothing queued and writes failing: chain the probe (the note that
    /// writing works again); the sync loop writes and syncs it.
    fn probe_if_failing(&mut self) {
        if !self.closed && self.failed_since.is_some() {
            self.chain(&mut [], false);
        }
    }

    /// The checkpoint to sign now, if any: the head on disk, when it moved
    /// since the last one and one is due (or asked for). Signing happens
    /// outside the lock ([`Inner::sign`]).
    fn checkpoint_due(&mut self, when: Checkpoint) -> Option<CheckpointDue> {
        if when == Checkpoint::WhenDue && !self.checkpoint_is_due() {
            return None;
        }
        self.last_checkpoint = Instant::now();
        if self.tail.seq == self.checkpointed_seq || self.tail.seq == 0 {
            return None;
        }
        self.checkpointed_seq = self.tail.seq;
        Some(CheckpointDue {
            seq: self.tail.seq,
            hash: self.tail.hash,
            file: self.tail.file.clone(),
        })
    }

    fn checkpoint_is_due(&self) -> bool {
        self.last_checkpoint.elapsed() >= self.options.checkpoint_every
    }

    /// Records the writer itself owes the log at the start of a batch: that
    /// the active file vanished, or (unless a queued batch already says so)
    /// that writing resumed after a failure.
    fn notes(&mut self) -> Vec<Record> {
        let mut notes = Vec::new();
        if let Some(lost) = self.check_active_file() {
            notes.push(lost);
        }
        if let (Some((since, failures)), true) = (&self.failed_since, self.queue.is_empty()) {
            let mut resumed = Record::new(kind::RESUMED);
            resumed.reason = Some("audit log writable again after write failures".to_owned());
            resumed.detail = Some(
                serde_json::json!({ "failing_since": since, "failed_groups": failures }).into(),
            );
            notes.push(resumed);
        }
        notes
    }

    /// A deleted or replaced active file must not swallow records: move to a
    /// fresh segment and say what happened. One `fstat` per batch: a file
    /// deleted or renamed over has no links left.
    fn check_active_file(&mut self) -> Option<Record> {
        let linked = match self.tail.file.metadata() {
            Ok(meta) => links(&meta) > 0,
            Err(_) => false,
        };
        if linked {
            return None;
        }
        let lost = self.tail.name();
        tracing::error!(file = %lost, "the active audit file was deleted or replaced; continuing in a new segment");
        if let Err(e) = self.next_segment() {
            tracing::error!(error = %e, "cannot open a new audit segment");
            return None;
        }
        let mut note = Record::new(kind::FILE_LOST);
        note.reason = Some(format!(
            "active audit file {lost} was deleted or replaced; records through seq {} were in it",
            self.tail.seq
        ));
        note.detail =
            Some(serde_json::json!({ "file": lost, "through_seq": self.tail.seq }).into());
        Some(note)
    }

    /// Continues the chain in a new segment and leaves the slow half of the
    /// switch (sync the old one and sign its end, sync the directory,
    /// prune) to [`Inner::housekeeping`].
    fn next_segment(&mut self) -> std::io::Result<()> {
        let next = Tail::create(
            &self.options.dir,
            self.tail.index + 1,
            self.tail.seq,
            self.tail.hash,
        )?;
        let closed = std::mem::replace(&mut self.tail, next);
        self.rotated.push(CheckpointDue {
            seq: closed.seq,
            hash: closed.hash,
            file: closed.file,
        });
        Ok(())
    }

    fn maybe_rotate(&mut self) {
        let by_size = self.options.rotate_bytes > 0 && self.tail.len >= self.options.rotate_bytes;
        let by_age = self
            .options
            .rotate_age
            .is_some_and(|age| self.tail.opened.elapsed() >= age && self.tail.len > 0);
        if !(by_size || by_age) {
            return;
        }
        if let Err(e) = self.next_segment() {
            tracing::error!(error = %e, "cannot rotate the audit log; continuing in the current segment");
            return;
        }
        tracing::info!(segment = %self.tail.path.display(), "audit log rotated");
    }
}

#[cfg(test)]
mod tests;

/// History a directory lost before this start: what start-up refuses to
/// serve on without `--audit-accept-gap`.
#[derive(Debug, Default)]
struct LostHistory {
    gaps: Vec<String>,
    /// Signed checkpoints beyond the log's head (seq, hash): a cut or
    /// rolled-back tail.
    stale_checkpoints: Vec<(u64, String)>,
    missing_segments: Vec<String>,
    missing_checkpoint_file: bool,
}

fn lost_history(dir: &std::path::Path, files: &[(u64, PathBuf)], head_seq: u64) -> LostHistory {
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
    fn drop_stale_checkpoints(&self, dir: &std::path::Path, head_seq: u64) -> std::io::Result<()> {
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

    fn record(&self) -> Record {
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
