//! The audit writer: one thread owns the chain head and the active segment.
//!
//! Handlers hand complete records to [`AuditLog::append`] and await their
//! receipts; the writer assigns `seq` and `prev`, writes, and makes the
//! records durable before any receipt is sent. In `batch` mode every record
//! that arrived while the previous fdatasync ran is written and synced
//! together (group commit), so no handler waits behind a lock held across
//! an fsync and one sync covers many decisions.
//!
//! The writer also rotates segments (by size and age), signs checkpoints
//! (periodically, at rotation and at shutdown), prunes old segments that a
//! checkpoint covers, notices an active file that was deleted or replaced,
//! and reports health.
//!
//! Architecture invariant: a receipt exists only for a record that is on
//! disk (and synced, unless sync is `off`). A failed write rolls the file and
//! the head back and fails every record of that group.

use std::{
    fs::{self, File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use ed25519_dalek::SigningKey;
use tokio::sync::{mpsc, oneshot};

use super::{
    checkpoint::{self, CheckpointWriter},
    record::{self, kind, Hash, Record, GENESIS},
};
use crate::cli::SyncMode;

/// Proof that a record is in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
    pub hash: Hash,
}

impl Receipt {
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit log in {dir}: {message}")]
    Open { dir: PathBuf, message: String },
    #[error("{file}: offset {offset}: {message}")]
    Corrupt { file: PathBuf, offset: u64, message: String },
    #[error("audit log write failed, decision not recorded: {0}")]
    Write(String),
    #[error("audit log cannot keep up: no room in its queue after {0:?}")]
    Overloaded(Duration),
    #[error("audit log is closed")]
    Closed,
}

/// What happens to requests while the log cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Answer UNAVAILABLE at once: never an unaudited decision.
    FailClosed,
    /// Keep retrying the write for up to this long, then fail closed.
    Block(Duration),
}

#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub dir: PathBuf,
    pub sync: SyncMode,
    /// Appends waiting for the writer before new appends wait (then fail).
    pub queue_depth: usize,
    /// How long an append waits for queue room before failing closed.
    pub enqueue_timeout: Duration,
    pub on_failure: FailurePolicy,
    /// Start a new segment once the active one reaches this size (0: never).
    pub rotate_bytes: u64,
    /// Start a new segment once the active one is this old.
    pub rotate_age: Option<Duration>,
    /// Keep at most this many segments; older ones are pruned.
    pub retain_segments: Option<usize>,
    /// Sign a checkpoint this often when the head has moved.
    pub checkpoint_every: Duration,
    pub signing_key: SigningKey,
}

impl AuditOptions {
    pub fn new(dir: impl Into<PathBuf>, sync: SyncMode, signing_key: SigningKey) -> AuditOptions {
        AuditOptions {
            dir: dir.into(),
            sync,
            queue_depth: 16_384,
            enqueue_timeout: Duration::from_secs(2),
            on_failure: FailurePolicy::FailClosed,
            rotate_bytes: 64 << 20,
            rotate_age: None,
            retain_segments: None,
            checkpoint_every: Duration::from_secs(10),
            signing_key,
        }
    }
}

enum Command {
    Append { records: Vec<Record>, done: oneshot::Sender<Result<Vec<Receipt>, AuditError>> },
    Close { last: Box<Record>, done: oneshot::Sender<Result<Receipt, AuditError>> },
}

/// Handle to the audit writer. Cloning is shallow.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Command>,
    healthy: Arc<AtomicBool>,
    enqueue_timeout: Duration,
}

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
struct Tail {
    index: u64,
    path: PathBuf,
    file: File,
    len: u64,
    seq: u64,
    hash: Hash,
    opened: Instant,
}

impl AuditLog {
    /// Opens (or creates) the log, repairs a torn tail left by a crash, and
    /// starts the writer. `startup` is the first record written.
    pub fn open(options: AuditOptions, startup: Record) -> Result<(AuditLog, Receipt), AuditError> {
        let open_error = |message: String| AuditError::Open { dir: options.dir.clone(), message };
        fs::create_dir_all(&options.dir).map_err(|e| open_error(format!("cannot create the directory: {e}")))?;
        let files = segments(&options.dir).map_err(|e| open_error(format!("cannot list the directory: {e}")))?;
        let (index, path) = files.last().cloned().unwrap_or_else(|| (1, options.dir.join(segment_name(1))));
        let (mut tail, recovery) = open_tail(index, &path)?;
        if tail.len == 0 && tail.seq == 0 && files.len() > 1 {
            // An empty newest segment after a crash right after rotation:
            // the head is at the end of the one before it.
            let (prev_index, prev_path) = &files[files.len() - 2];
            let (previous, _) = open_tail(*prev_index, prev_path)?;
            tail.seq = previous.seq;
            tail.hash = previous.hash;
        }
        let checkpoints = CheckpointWriter::open(&options.dir, options.signing_key.clone())
            .map_err(|e| open_error(format!("cannot open {}: {e}", checkpoint::CHECKPOINT_FILE)))?;

        let (tx, rx) = mpsc::channel(options.queue_depth.max(1));
        let healthy = Arc::new(AtomicBool::new(true));
        let mut writer = Writer {
            tail,
            checkpoints,
            healthy: healthy.clone(),
            buf: Vec::with_capacity(1 << 16),
            failed_since: None,
            last_checkpoint: Instant::now(),
            options: options.clone(),
        };

        // Written before the writer thread exists: the repair note and the
        // startup record, so a broken disk stops start-up rather than the
        // first request.
        let mut first = Vec::new();
        if let Some(recovery) = recovery {
            first.push(recovery);
        }
        first.push(startup);
        let receipts = writer.commit(&mut first)?;
        let startup_receipt = *receipts.last().expect("one receipt per record");

        std::thread::Builder::new()
            .name("vigil-audit".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| open_error(format!("cannot start the writer thread: {e}")))?;
        Ok((AuditLog { tx, healthy, enqueue_timeout: options.enqueue_timeout }, startup_receipt))
    }

    /// Appends records in order and returns once they are durable.
    pub async fn append(&self, records: Vec<Record>) -> Result<Vec<Receipt>, AuditError> {
        let (done, receipts) = oneshot::channel();
        let command = Command::Append { records, done };
        match tokio::time::timeout(self.enqueue_timeout, self.tx.send(command)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(AuditError::Closed),
            Err(_) => return Err(AuditError::Overloaded(self.enqueue_timeout)),
        }
        receipts.await.map_err(|_| AuditError::Closed)?
    }

    pub async fn append_one(&self, record: Record) -> Result<Receipt, AuditError> {
        let receipts = self.append(vec![record]).await?;
        Ok(receipts[0])
    }

    /// Writes `last` (the shutdown record), signs a final checkpoint, syncs,
    /// and stops the writer. Appends after this fail with
    /// [`AuditError::Closed`].
    pub async fn close(&self, last: Record) -> Result<Receipt, AuditError> {
        let (done, receipt) = oneshot::channel();
        self.tx.send(Command::Close { last: Box::new(last), done }).await.map_err(|_| AuditError::Closed)?;
        receipt.await.map_err(|_| AuditError::Closed)?
    }

    /// False while the log cannot be written.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// Opens a segment and finds the chain head at its end. A final line that
/// is incomplete or fails its hash is what a crash mid-write leaves: it is
/// cut off (kept beside the log for inspection) and a recovery record
/// describing the cut is returned for writing.
fn open_tail(index: u64, path: &Path) -> Result<(Tail, Option<Record>), AuditError> {
    let corrupt = |offset: u64, message: String| AuditError::Corrupt { file: path.to_owned(), offset, message };
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| corrupt(0, format!("cannot open: {e}")))?;
    let len = file.metadata().map_err(|e| corrupt(0, e.to_string()))?.len();
    let tail = |file, len, seq, hash| Tail { index, path: path.to_owned(), file, len, seq, hash, opened: Instant::now() };
    if len == 0 {
        return Ok((tail(file, 0, 0, GENESIS), None));
    }

    // A crash can only damage the last writes; look at the last 4 MiB.
    const WINDOW: u64 = 4 << 20;
    let start = len.saturating_sub(WINDOW);
    let mut window = Vec::with_capacity((len - start) as usize);
    file.seek(SeekFrom::Start(start)).map_err(|e| corrupt(start, e.to_string()))?;
    file.read_to_end(&mut window).map_err(|e| corrupt(start, e.to_string()))?;

    // Complete lines end with '\n'; walk them backwards to the last good one.
    let mut end = window.iter().rposition(|&b| b == b'\n').map(|i| i + 1);
    while let Some(line_end) = end {
        let line_start = window[..line_end - 1].iter().rposition(|&b| b == b'\n').map(|i| i + 1);
        let Some(line_start) = line_start.or((start == 0).then_some(0)) else { break };
        if let Ok(checked) = record::decode(&window[line_start..line_end - 1]) {
            let good_len = start + line_end as u64;
            let recovery = if good_len < len {
                Some(cut_tail(path, &mut file, &window[line_end..], good_len, len, checked.record.seq)?)
            } else {
                None
            };
            return Ok((tail(file, good_len, checked.record.seq, checked.hash), recovery));
        }
        end = (line_start > 0).then_some(line_start);
    }
    if start == 0 && window.iter().all(|&b| b != b'\n') {
        // Not a single complete line: the crash hit the very first record.
        let recovery = cut_tail(path, &mut file, &window, 0, len, 0)?;
        return Ok((tail(file, 0, 0, GENESIS), Some(recovery)));
    }
    Err(corrupt(
        start,
        "no intact record at the end of the file; this is not damage a crash leaves. \
         Run `vigil audit verify` and move the file aside to start a new log"
            .to_owned(),
    ))
}

fn cut_tail(path: &Path, file: &mut File, torn: &[u8], good_len: u64, len: u64, last_seq: u64) -> Result<Record, AuditError> {
    let corrupt = |message: String| AuditError::Corrupt { file: path.to_owned(), offset: good_len, message };
    let mut saved = path.as_os_str().to_owned();
    saved.push(format!(".torn-{good_len}"));
    let saved = PathBuf::from(saved);
    fs::write(&saved, torn).map_err(|e| corrupt(format!("cannot save the torn tail: {e}")))?;
    file.set_len(good_len).map_err(|e| corrupt(format!("cannot truncate the torn tail: {e}")))?;
    file.sync_all().map_err(|e| corrupt(format!("cannot sync after truncating: {e}")))?;
    tracing::warn!(file = %path.display(), offset = good_len, bytes = len - good_len, "audit log: cut a torn final record left by a crash");
    let mut recovery = Record::new(kind::RECOVERY);
    recovery.reason = Some("torn final record left by an interrupted write was cut off".to_owned());
    recovery.detail = Some(serde_json::json!({
        "file": path.file_name().map(|n| n.to_string_lossy().into_owned()),
        "after_seq": last_seq,
        "offset": good_len,
        "bytes": len - good_len,
        "saved_to": saved.file_name().map(|n| n.to_string_lossy().into_owned()),
    }));
    Ok(recovery)
}

struct Writer {
    tail: Tail,
    checkpoints: CheckpointWriter,
    healthy: Arc<AtomicBool>,
    buf: Vec<u8>,
    /// Set while writes fail: when, and how many groups failed.
    failed_since: Option<(String, u64)>,
    last_checkpoint: Instant,
    options: AuditOptions,
}

/// Most commands folded into one group commit.
const MAX_GROUP: usize = 4096;
/// Most yields while gathering a group.
const GATHER_YIELDS: usize = 16;

fn drain(rx: &mut mpsc::Receiver<Command>, group: &mut Vec<Command>) {
    while group.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(command) => group.push(command),
            Err(_) => break,
        }
    }
}
/// How often an unhealthy log probes whether writing works again.
const PROBE_EVERY: Duration = Duration::from_millis(250);

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        // A private single-threaded runtime gives the blocking writer a
        // receive with a timeout (for checkpoints and health probes).
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!(error = %e, "audit writer cannot start its timer; audit log stopped");
                return;
            }
        };
        let mut group = Vec::with_capacity(64);
        loop {
            let wait = if self.failed_since.is_some() { PROBE_EVERY } else { self.options.checkpoint_every };
            match runtime.block_on(async { tokio::time::timeout(wait, rx.recv()).await }) {
                Ok(Some(command)) => group.push(command),
                Ok(None) => return,
                Err(_) => {
                    self.idle();
                    continue;
                }
            }
            drain(&mut rx, &mut group);
            // Group commit needs a group. When request handlers share a core
            // with this thread, waking it on the first record would write
            // records one by one; yielding lets runnable handlers enqueue
            // theirs first. When nothing else is runnable, the yield returns
            // at once.
            for _ in 0..GATHER_YIELDS {
                let before = group.len();
                std::thread::yield_now();
                drain(&mut rx, &mut group);
                if group.len() == before || group.len() >= MAX_GROUP {
                    break;
                }
            }
            if self.commit_group(&mut group) {
                return;
            }
            if self.last_checkpoint.elapsed() >= self.options.checkpoint_every {
                self.checkpoint();
            }
        }
    }

    /// Nothing to write: probe a failed log, or sign a due checkpoint.
    fn idle(&mut self) {
        if self.failed_since.is_some() {
            let _ = self.commit(&mut []);
        } else {
            self.checkpoint();
        }
    }

    fn checkpoint(&mut self) {
        self.last_checkpoint = Instant::now();
        if let Err(e) = self.checkpoints.write(self.tail.seq, &self.tail.hash) {
            tracing::error!(error = %e, "cannot write an audit checkpoint");
        }
    }

    /// Commits the records of every append in `group`; returns true after a
    /// close command.
    fn commit_group(&mut self, group: &mut Vec<Command>) -> bool {
        let mut records = Vec::new();
        let mut waiters = Vec::with_capacity(group.len());
        let mut closing = None;
        for command in group.drain(..) {
            match command {
                Command::Append { records: batch, done } => {
                    waiters.push((batch.len(), done));
                    records.extend(batch);
                }
                Command::Close { last, done } => {
                    // Appends queued behind a close are dropped: their
                    // callers see the log closed.
                    closing = Some((last, done));
                    break;
                }
            }
        }
        group.clear();
        match self.commit(&mut records) {
            Ok(receipts) => {
                let mut rest = receipts.as_slice();
                for (count, done) in waiters {
                    let (mine, others) = rest.split_at(count);
                    rest = others;
                    let _ = done.send(Ok(mine.to_vec()));
                }
            }
            Err(e) => {
                for (_, done) in waiters {
                    let _ = done.send(Err(e.clone()));
                }
            }
        }
        if let Some((last, done)) = closing {
            let result = self.commit(&mut [*last]).map(|receipts| receipts[receipts.len() - 1]);
            self.checkpoint();
            let _ = done.send(result);
            return true;
        }
        false
    }

    /// Writes and syncs `records` (plus any notes the writer owes the log),
    /// honouring the failure policy. Returns one receipt per given record.
    fn commit(&mut self, records: &mut [Record]) -> Result<Vec<Receipt>, AuditError> {
        let deadline = match self.options.on_failure {
            FailurePolicy::FailClosed => None,
            FailurePolicy::Block(limit) => Some(Instant::now() + limit),
        };
        loop {
            let mut notes = self.notes();
            if notes.is_empty() && records.is_empty() {
                return Ok(Vec::new());
            }
            match self.write(&mut notes, records) {
                Ok(receipts) => {
                    if let Some((since, failures)) = self.failed_since.take() {
                        tracing::info!(%since, failures, "audit log writable again");
                    }
                    self.healthy.store(true, Ordering::Relaxed);
                    self.maybe_rotate();
                    return Ok(receipts);
                }
                Err(e) => {
                    self.healthy.store(false, Ordering::Relaxed);
                    let failures = self.failed_since.get_or_insert_with(|| (record::now_rfc3339(), 0));
                    failures.1 += 1;
                    match deadline {
                        Some(deadline) if Instant::now() < deadline && !records.is_empty() => {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        _ => return Err(e),
                    }
                }
            }
        }
    }

    /// Records the writer itself owes the log before the next group: that
    /// writing resumed after a failure, or that the active file vanished.
    fn notes(&mut self) -> Vec<Record> {
        let mut notes = Vec::new();
        if let Some(lost) = self.check_active_file() {
            notes.push(lost);
        }
        if let Some((since, failures)) = &self.failed_since {
            let mut resumed = Record::new(kind::RESUMED);
            resumed.reason = Some("audit log writable again after write failures".to_owned());
            resumed.detail = Some(serde_json::json!({ "failing_since": since, "failed_groups": failures }));
            notes.push(resumed);
        }
        notes
    }

    /// A deleted or replaced active file must not swallow records: move to a
    /// fresh segment and say what happened.
    fn check_active_file(&mut self) -> Option<Record> {
        let same = match (fs::metadata(&self.tail.path), self.tail.file.metadata()) {
            (Ok(on_disk), Ok(open)) => same_file(&on_disk, &open),
            _ => false,
        };
        if same {
            return None;
        }
        let lost = self.tail.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        tracing::error!(file = %lost, "the active audit file was deleted or replaced; continuing in a new segment");
        if let Err(e) = self.open_segment(self.tail.index + 1) {
            tracing::error!(error = %e, "cannot open a new audit segment");
            return None;
        }
        let mut note = Record::new(kind::FILE_LOST);
        note.reason = Some(format!(
            "active audit file {lost} was deleted or replaced; records through seq {} were in it",
            self.tail.seq
        ));
        note.detail = Some(serde_json::json!({ "file": lost, "through_seq": self.tail.seq }));
        Some(note)
    }

    fn open_segment(&mut self, index: u64) -> std::io::Result<()> {
        let path = self.options.dir.join(segment_name(index));
        let file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        File::open(&self.options.dir).and_then(|dir| dir.sync_all())?;
        self.tail.index = index;
        self.tail.path = path;
        self.tail.file = file;
        self.tail.len = 0;
        self.tail.opened = Instant::now();
        Ok(())
    }

    fn maybe_rotate(&mut self) {
        let by_size = self.options.rotate_bytes > 0 && self.tail.len >= self.options.rotate_bytes;
        let by_age = self.options.rotate_age.is_some_and(|age| self.tail.opened.elapsed() >= age && self.tail.len > 0);
        if !(by_size || by_age) {
            return;
        }
        // The checkpoint at the end of a segment is what lets it be pruned.
        self.checkpoint();
        if let Err(e) = self.open_segment(self.tail.index + 1) {
            tracing::error!(error = %e, "cannot rotate the audit log; continuing in the current segment");
            return;
        }
        tracing::info!(segment = %self.tail.path.display(), "audit log rotated");
        self.prune();
    }

    fn prune(&mut self) {
        let Some(keep) = self.options.retain_segments else { return };
        let Ok(files) = segments(&self.options.dir) else { return };
        if files.len() <= keep.max(1) {
            return;
        }
        let covered: std::collections::HashSet<u64> = checkpoint::read_checkpoints(&self.options.dir.join(checkpoint::CHECKPOINT_FILE))
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.seq)
            .collect();
        let mut removed = Vec::new();
        let mut through_seq = 0;
        for (_, path) in &files[..files.len() - keep.max(1)] {
            let Ok((tail, _)) = open_tail(0, path) else { break };
            if !covered.contains(&tail.seq) {
                break;
            }
            if fs::remove_file(path).is_err() {
                break;
            }
            through_seq = tail.seq;
            removed.push(path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        }
        if removed.is_empty() {
            return;
        }
        let mut note = Record::new(kind::PRUNE);
        note.reason = Some(format!("retention removed {} segment(s); a signed checkpoint covers seq 1..={through_seq}", removed.len()));
        note.detail = Some(serde_json::json!({ "removed": removed, "through_seq": through_seq }));
        if let Err(e) = self.write(&mut [note], &mut []) {
            tracing::error!(error = %e, "cannot record pruning in the audit log");
        }
    }

    /// One attempt: `notes` then `records`, written and synced as a unit.
    fn write(&mut self, notes: &mut [Record], records: &mut [Record]) -> Result<Vec<Receipt>, AuditError> {
        let mut seq = self.tail.seq;
        let mut hash = self.tail.hash;
        let mut written = 0u64;
        let mut receipts = Vec::with_capacity(records.len());
        self.buf.clear();
        let sync = self.options.sync;
        let result = (|| {
            for (is_note, record) in notes.iter_mut().map(|r| (true, r)).chain(records.iter_mut().map(|r| (false, r))) {
                seq += 1;
                record.seq = seq;
                record.prev = record::hash_text(&hash);
                hash = record::encode(record, &mut self.buf);
                if !is_note {
                    receipts.push(Receipt { seq, hash });
                }
                if sync == SyncMode::Always {
                    self.tail.file.write_all(&self.buf)?;
                    written += self.buf.len() as u64;
                    self.buf.clear();
                    self.tail.file.sync_data()?;
                }
            }
            self.tail.file.write_all(&self.buf)?;
            written += self.buf.len() as u64;
            if sync == SyncMode::Batch {
                self.tail.file.sync_data()?;
            }
            Ok::<(), std::io::Error>(())
        })();
        match result {
            Ok(()) => {
                self.tail.seq = seq;
                self.tail.hash = hash;
                self.tail.len += written;
                Ok(receipts)
            }
            Err(e) => {
                // Roll back whatever part of the group reached the file.
                let _ = self.tail.file.set_len(self.tail.len);
                tracing::error!(file = %self.tail.path.display(), error = %e, "audit log write failed; failing the affected requests closed");
                Err(AuditError::Write(format!("{}: {e}", self.tail.path.display())))
            }
        }
    }
}

#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.len() == b.len()
}
