//! The audit writer: one thread owns the chain head and the active file.
//!
//! Handlers hand complete records to [`AuditLog::append`] and await their
//! receipts; the writer assigns `seq` and `prev`, writes, and makes the
//! records durable before any receipt is sent. In `batch` mode every record
//! that arrived while the previous fdatasync ran is written and synced
//! together (group commit), so no handler waits behind a lock held across
//! an fsync and one sync covers many decisions.
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
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};

use super::record::{self, kind, Hash, Record, GENESIS};
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

#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub dir: PathBuf,
    pub sync: SyncMode,
    /// Records waiting for the writer before appends wait (then fail).
    pub queue_depth: usize,
    /// How long an append waits for queue room before failing closed.
    pub enqueue_timeout: Duration,
}

impl AuditOptions {
    pub fn new(dir: impl Into<PathBuf>, sync: SyncMode) -> AuditOptions {
        AuditOptions { dir: dir.into(), sync, queue_depth: 16_384, enqueue_timeout: Duration::from_secs(2) }
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

/// The file the log is appended to and the chain head at its end.
struct Tail {
    path: PathBuf,
    file: File,
    len: u64,
    seq: u64,
    hash: Hash,
}

pub const FILE_PREFIX: &str = "audit-";
pub const FILE_SUFFIX: &str = ".jsonl";

fn segment_name(index: u64) -> String {
    format!("{FILE_PREFIX}{index:06}{FILE_SUFFIX}")
}

/// Audit files in `dir`, in chain order.
pub fn segment_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<(u64, PathBuf)> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let index = name.strip_prefix(FILE_PREFIX)?.strip_suffix(FILE_SUFFIX)?.parse().ok()?;
            Some((index, entry.path()))
        })
        .collect();
    files.sort();
    Ok(files.into_iter().map(|(_, path)| path).collect())
}

impl AuditLog {
    /// Opens (or creates) the log, repairs a torn tail left by a crash, and
    /// starts the writer. `startup` is the first record written.
    pub fn open(options: AuditOptions, startup: Record) -> Result<(AuditLog, Receipt), AuditError> {
        let open_error = |message: String| AuditError::Open { dir: options.dir.clone(), message };
        fs::create_dir_all(&options.dir).map_err(|e| open_error(format!("cannot create the directory: {e}")))?;
        let files = segment_files(&options.dir).map_err(|e| open_error(format!("cannot list the directory: {e}")))?;
        let path = files.last().cloned().unwrap_or_else(|| options.dir.join(segment_name(1)));
        let (tail, recovery) = open_tail(&path)?;

        let (tx, rx) = mpsc::channel(options.queue_depth.max(1));
        let healthy = Arc::new(AtomicBool::new(true));
        let mut writer = Writer { tail, sync: options.sync, healthy: healthy.clone(), buf: Vec::with_capacity(1 << 16) };

        // Records written before the writer thread exists: the repair note
        // and the startup record, synchronously, so a broken disk stops
        // start-up instead of the first request.
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

    /// Writes `last` (the shutdown record), syncs, and stops the writer.
    /// Appends after this fail with [`AuditError::Closed`].
    pub async fn close(&self, last: Record) -> Result<Receipt, AuditError> {
        let (done, receipt) = oneshot::channel();
        self.tx.send(Command::Close { last: Box::new(last), done }).await.map_err(|_| AuditError::Closed)?;
        receipt.await.map_err(|_| AuditError::Closed)?
    }

    /// False while the last write failed.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// Opens the last segment and finds the chain head at its end. A final
/// line that is incomplete or fails its hash is what a crash mid-write
/// leaves: it is cut off (kept beside the log for inspection) and a
/// recovery record describing the cut is returned for writing.
fn open_tail(path: &Path) -> Result<(Tail, Option<Record>), AuditError> {
    let corrupt = |offset: u64, message: String| AuditError::Corrupt { file: path.to_owned(), offset, message };
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| corrupt(0, format!("cannot open: {e}")))?;
    let len = file.metadata().map_err(|e| corrupt(0, e.to_string()))?.len();
    if len == 0 {
        return Ok((Tail { path: path.to_owned(), file, len: 0, seq: 0, hash: GENESIS }, None));
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
            let tail = Tail { path: path.to_owned(), file, len: good_len, seq: checked.record.seq, hash: checked.hash };
            return Ok((tail, recovery));
        }
        end = (line_start > 0).then_some(line_start);
    }
    if start == 0 && window.iter().all(|&b| b != b'\n') {
        // Not a single complete line: the crash hit the very first record.
        let recovery = cut_tail(path, &mut file, &window, 0, len, 0)?;
        return Ok((Tail { path: path.to_owned(), file, len: 0, seq: 0, hash: GENESIS }, Some(recovery)));
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
        "after_seq": last_seq,
        "offset": good_len,
        "bytes": len - good_len,
        "saved_to": saved.file_name().map(|n| n.to_string_lossy().into_owned()),
    }));
    Ok(recovery)
}

struct Writer {
    tail: Tail,
    sync: SyncMode,
    healthy: Arc<AtomicBool>,
    buf: Vec<u8>,
}

/// Most commands folded into one group commit.
const MAX_GROUP: usize = 4096;

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut group = Vec::with_capacity(64);
        while let Some(command) = rx.blocking_recv() {
            group.push(command);
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(command) => group.push(command),
                    Err(_) => break,
                }
            }
            if self.commit_group(&mut group) {
                return;
            }
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
                    closing = Some((last, done));
                    break;
                }
            }
        }
        // Anything queued after a close is refused below by dropping it.
        group.clear();
        let result = self.commit(&mut records);
        match result {
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
            let result = self.commit(&mut [*last]).map(|receipts| receipts[0]);
            let _ = done.send(result);
            return true;
        }
        false
    }

    /// Writes and syncs `records`, assigning their chain fields. All or
    /// nothing: on failure the file and the head are rolled back.
    fn commit(&mut self, records: &mut [Record]) -> Result<Vec<Receipt>, AuditError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let (start_seq, start_hash) = (self.tail.seq, self.tail.hash);
        self.buf.clear();
        let mut receipts = Vec::with_capacity(records.len());
        let mut seq = self.tail.seq;
        let mut hash = self.tail.hash;
        let mut written = 0u64;
        let result = (|| {
            for record in records.iter_mut() {
                seq += 1;
                record.seq = seq;
                record.prev = record::hash_text(&hash);
                hash = record::encode(record, &mut self.buf);
                receipts.push(Receipt { seq, hash });
                if self.sync == SyncMode::Always {
                    written += self.buf.len() as u64;
                    self.tail.file.write_all(&self.buf)?;
                    self.tail.file.sync_data()?;
                    self.buf.clear();
                }
            }
            written += self.buf.len() as u64;
            self.tail.file.write_all(&self.buf)?;
            if self.sync == SyncMode::Batch {
                self.tail.file.sync_data()?;
            }
            Ok::<(), std::io::Error>(())
        })();
        match result {
            Ok(()) => {
                self.tail.seq = seq;
                self.tail.hash = hash;
                self.tail.len += written;
                self.healthy.store(true, Ordering::Relaxed);
                Ok(receipts)
            }
            Err(e) => {
                self.healthy.store(false, Ordering::Relaxed);
                // Roll back whatever part of the group reached the file.
                let _ = self.tail.file.set_len(self.tail.len);
                self.tail.seq = start_seq;
                self.tail.hash = start_hash;
                tracing::error!(file = %self.tail.path.display(), error = %e, "audit log write failed; failing the affected requests closed");
                Err(AuditError::Write(format!("{}: {e}", self.tail.path.display())))
            }
        }
    }
}
