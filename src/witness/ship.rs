//! The shipper: tails the local segments (the exact bytes written) and
//! appends them to the witness store in batches, in the background.
//!
//! Nothing here is on a decision's path: answers wait only for the local
//! disk. The shipper resumes from the store's head after restarts and
//! outages (re-sending the head record, which the store accepts only with
//! identical bytes), holds local retention back to what the store
//! acknowledged, and stops for good at a fork.

use std::{
    fs::File,
    io::{BufRead, BufReader, Seek, SeekFrom},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime},
};

use super::store::{ShippedCheckpoint, ShippedLine, Store, WitnessError};
use crate::audit::{
    checkpoint::{self, CHECKPOINT_FILE},
    kind, record, segment_name, segments, AuditLog, Record,
};

/// Lines per append: big enough to amortize a round trip, small enough
/// that one transaction stays short.
const BATCH: usize = 2_000;

/// How long the shipper sleeps when it has caught up.
const IDLE: Duration = Duration::from_millis(100);

#[derive(Clone, PartialEq, Eq)]
pub struct ShipSettings {
    /// `postgres://…` of the witness store.
    pub url: String,
    /// The chain's id in the store.
    pub chain: String,
}

impl std::fmt::Debug for ShipSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection string may hold a password.
        f.debug_struct("ShipSettings")
            .field("chain", &self.chain)
            .finish_non_exhaustive()
    }
}

/// What the shipper reports, read by metrics, health and GetPolicyStatus.
#[derive(Debug, Default)]
pub struct ShipState {
    /// Highest seq the store acknowledged.
    pub shipped_seq: AtomicU64,
    /// Highest seq found locally.
    pub local_seq: AtomicU64,
    pub connected: AtomicBool,
    /// When the oldest record not yet shipped was written.
    oldest_unshipped: Mutex<Option<SystemTime>>,
    /// Set once a fork stopped the shipper.
    fork: Mutex<Option<String>>,
    last_error: Mutex<Option<String>>,
}

impl ShipState {
    /// Records written locally (`written`: the writer's head, read by the
    /// caller at this moment) and not yet in the store. Counted from the
    /// writer, not from what the shipper last read, so the lag grows while
    /// the store is away and the shipper reads nothing.
    pub fn lag_records(&self, written: u64) -> u64 {
        written
            .max(self.local_seq.load(Ordering::Relaxed))
            .saturating_sub(self.shipped_seq.load(Ordering::Relaxed))
    }

    /// Age of the oldest record not yet in the store (zero when caught up).
    pub fn lag_seconds(&self, written: u64) -> f64 {
        if self.lag_records(written) == 0 {
            return 0.0;
        }
        lock(&self.oldest_unshipped)
            .and_then(|written| written.elapsed().ok())
            .map_or(0.0, |age| age.as_secs_f64())
    }

    pub fn fork(&self) -> Option<String> {
        lock(&self.fork).clone()
    }

    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    /// One line for health details and logs.
    pub fn summary(&self, written: u64) -> String {
        match (self.fork(), self.connected.load(Ordering::Relaxed)) {
            (Some(fork), _) => format!("witness: STOPPED, {fork}"),
            (None, true) => format!(
                "witness: shipping, lag {} record(s), {:.1} s",
                self.lag_records(written),
                self.lag_seconds(written)
            ),
            (None, false) => format!(
                "witness: unreachable ({}), lag {} record(s), {:.1} s",
                self.last_error().unwrap_or_else(|| "connecting".into()),
                self.lag_records(written),
                self.lag_seconds(written)
            ),
        }
    }
}

/// A store's error text as one short line: it reaches `/readyz` and
/// the log, and a store may say anything (a forged `witness: shipping`
/// line after a newline, megabytes).
fn one_line(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    if text.chars().count() > 200 {
        line.push('…');
    }
    line
}

fn lock<T: Clone>(mutex: &Mutex<T>) -> T {
    mutex.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn set<T>(mutex: &Mutex<T>, value: T) {
    *mutex.lock().unwrap_or_else(|e| e.into_inner()) = value;
}

/// The background task that ships one audit directory.
#[derive(Debug)]
pub struct Shipper {
    pub settings: ShipSettings,
    pub audit: AuditLog,
    pub state: Arc<ShipState>,
    /// Retention's limit: segments above it are not pruned.
    pub prune_limit: Arc<AtomicU64>,
}

/// The shipper thread's nice value: under CPU saturation decisions come
/// first and shipping takes what is left (the lag shows it, and it
/// catches up when load drops); an idle sidecar ships at full speed. At
/// nice 10 the shipper still took 5–7% of a saturated server's core and
/// saturated Authorize ran at 0.77–0.90× of shipping off; at 19 the
/// server's CPU per answer is the same with shipping on and off (bench
/// section (w)).
const SHIPPER_NICE: i32 = 19;

/// Shipping on its own thread; stopped by [`Shipping::stop`].
#[derive(Debug)]
pub struct Shipping {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Shipping {
    /// Stops shipping; what is not shipped yet ships on the next start.
    pub async fn stop(self) {
        let Shipping { stop, thread } = self;
        drop(stop);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

impl Shipper {
    /// Runs [`Shipper::run`] on a thread of its own, with its own runtime,
    /// at a lower scheduling priority than the threads that answer calls.
    pub fn spawn(self) -> std::io::Result<Shipping> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("vigil-witness".into())
            .spawn(move || {
                let tid = rustix::thread::gettid();
                if let Err(e) = rustix::process::setpriority_process(Some(tid), SHIPPER_NICE) {
                    tracing::debug!(error = %e, "the witness shipper keeps the decisions' priority");
                }
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::error!(error = %e, "the witness shipper cannot start its runtime; records stay local");
                        return;
                    }
                };
                runtime.block_on(async move {
                    tokio::select! {
                        () = self.run() => {}
                        _ = stopped => {}
                    }
                });
            })?;
        Ok(Shipping { stop, thread })
    }

    /// Ships until a fork stops it (then audits and reports the fork).
    /// Outages are retried with a growing pause; decisions never wait.
    pub async fn run(self) {
        let mut pause = Duration::from_millis(200);
        loop {
            match self.ship_until_error().await {
                Err(WitnessError::Fork { chain, seq, what }) => {
                    let message = format!("fork in chain {chain} at seq {seq}: {what}");
                    self.stop(message).await;
                    return;
                }
                Err(WitnessError::Stopped { reason, .. }) => {
                    self.stop(reason).await;
                    return;
                }
                Err(WitnessError::Local(message)) => {
                    self.stop(message).await;
                    return;
                }
                Err(WitnessError::OtherKey { chain }) => {
                    self.stop(format!(
                        "chain {chain} is registered at the witness with another public key"
                    ))
                    .await;
                    return;
                }
                Err(e) => {
                    self.state.connected.store(false, Ordering::Relaxed);
                    // Records written from now on wait at least this long;
                    // earlier unshipped ones keep their own time.
                    self.state
                        .oldest_unshipped
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert_with(SystemTime::now);
                    tracing::warn!(error = %e, retry_in = ?pause, "the audit witness is unreachable; records stay local and ship once it is back");
                    set(&self.state.last_error, Some(one_line(&e.to_string())));
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Ok(()) => return,
            }
        }
    }

    async fn stop(&self, message: String) {
        tracing::error!(chain = %self.settings.chain, "audit shipping stopped: {message}");
        set(&self.state.fork, Some(message.clone()));
        self.state.connected.store(false, Ordering::Relaxed);
        let mut record = Record::new(kind::WITNESS_FORK);
        record.reason = Some(format!("the audit witness refused this chain: {message}"));
        let _ = self.audit.append_one(record).await;
    }

    async fn ship_until_error(&self) -> Result<(), WitnessError> {
        let dir = self.audit.dir().to_owned();
        let mut store = Store::connect(&self.settings.url).await?;
        let public_key = std::fs::read_to_string(dir.join(checkpoint::PUBLIC_KEY_FILE))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_owned();
        store
            .register(
                &self.settings.chain,
                &public_key,
                &host,
                &dir.display().to_string(),
            )
            .await?;
        let head = store.head(&self.settings.chain).await?;
        if let Some(reason) = head.stopped {
            return Err(WitnessError::Stopped {
                chain: self.settings.chain.clone(),
                reason,
            });
        }
        // The store's word is checked before it counts: a head past this
        // log's is a fork (a witness that lies, or a log cut behind it), and
        // the head it claims is acknowledged only once the store has taken
        // this log's own record at that seq, byte for byte, below.
        let written = self.audit.written_seq();
        if head.seq > written {
            let what = format!(
                "the witness claims a head at seq {} past this log's {written}; nothing is \
                 acknowledged or pruned on its word",
                head.seq
            );
            let _ = store
                .record_fork(&self.settings.chain, head.seq, None, None, &what)
                .await;
            return Err(WitnessError::Fork {
                chain: self.settings.chain.clone(),
                seq: head.seq,
                what,
            });
        }
        self.state.connected.store(true, Ordering::Relaxed);
        set(&self.state.last_error, None);
        tracing::info!(chain = %self.settings.chain, head = head.seq, "shipping the audit log to the witness");
        // The head record again: the store takes it only byte for byte, so
        // a local rewrite of what was shipped is caught at once.
        let mut cursor = Cursor::at(&dir, head.seq.max(1));
        let mut checkpoints = CheckpointTail::new(&dir);
        loop {
            let lines = cursor
                .read(BATCH)
                .map_err(|e| WitnessError::Local(e.to_string()))?;
            // The writer's head, not what this batch read: lag is counted
            // past the batch size.
            let local = self.audit.written_seq().max(cursor.last_seen);
            self.state.local_seq.fetch_max(local, Ordering::Relaxed);
            if let Some(first) = lines
                .iter()
                .find(|l| l.seq > self.state.shipped_seq.load(Ordering::Relaxed))
            {
                let written = humantime::parse_rfc3339_weak(&first.ts).ok();
                set(&self.state.oldest_unshipped, written);
            }
            if !lines.is_empty() {
                let acknowledged = store.append(&self.settings.chain, &lines, local).await?;
                self.acknowledge(acknowledged);
                if cursor.caught_up {
                    set(&self.state.oldest_unshipped, None);
                }
            }
            // Checkpoints the store can hold (their records shipped).
            let due = checkpoints.due(self.state.shipped_seq.load(Ordering::Relaxed));
            if !due.is_empty() {
                store.add_checkpoints(&self.settings.chain, &due).await?;
            }
            if lines.len() < BATCH {
                tokio::time::sleep(IDLE).await;
            }
        }
    }

    fn acknowledge(&self, seq: u64) {
        self.state.shipped_seq.fetch_max(seq, Ordering::Relaxed);
        self.prune_limit.fetch_max(seq, Ordering::Release);
    }
}

/// Signed checkpoints as their exact lines, read as `checkpoints.jsonl`
/// grows (the writer only appends to it), each once.
struct CheckpointTail {
    path: PathBuf,
    offset: u64,
    /// Read, but their records are not in the store yet.
    pending: Vec<ShippedCheckpoint>,
}

impl CheckpointTail {
    fn new(dir: &Path) -> CheckpointTail {
        CheckpointTail {
            path: dir.join(CHECKPOINT_FILE),
            offset: 0,
            pending: Vec::new(),
        }
    }

    /// The checkpoints whose records the store holds (seq up to
    /// `shipped`), oldest first, each returned once.
    fn due(&mut self, shipped: u64) -> Vec<ShippedCheckpoint> {
        if let Ok(mut file) = File::open(&self.path) {
            let _ = file.seek(SeekFrom::Start(self.offset));
            let mut line = String::new();
            let mut reader = BufReader::new(file);
            // Complete lines only: a half-written one is read next time.
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.ends_with('\n') {
                self.offset += line.len() as u64;
                let text = line.trim_end();
                if let Ok(parsed) = serde_json::from_str::<checkpoint::Checkpoint>(text) {
                    self.pending.push(ShippedCheckpoint {
                        seq: parsed.seq,
                        head: parsed.head,
                        line: text.to_owned(),
                    });
                }
                line.clear();
            }
        }
        let ready = self.pending.partition_point(|c| c.seq <= shipped);
        self.pending.drain(..ready).collect()
    }
}

/// A reading position in the local segments.
struct Cursor {
    dir: PathBuf,
    /// The segment being read, once found.
    segment: Option<u64>,
    offset: u64,
    /// The first seq still to ship.
    next_seq: u64,
    /// Highest seq read so far.
    last_seen: u64,
    /// The last read reached the end of the newest segment.
    caught_up: bool,
}

impl Cursor {
    fn at(dir: &Path, next_seq: u64) -> Cursor {
        Cursor {
            dir: dir.to_owned(),
            segment: None,
            offset: 0,
            next_seq,
            last_seen: 0,
            caught_up: false,
        }
    }

    /// Up to `max` complete lines from `next_seq` on. A half-written last
    /// line is left for the next read.
    fn read(&mut self, max: usize) -> std::io::Result<Vec<ShippedLine>> {
        let mut out = Vec::new();
        self.caught_up = false;
        loop {
            let files = segments(&self.dir)?;
            let Some(index) = self.segment.or_else(|| files.first().map(|(i, _)| *i)) else {
                self.caught_up = true;
                return Ok(out);
            };
            if self.segment.is_none() {
                self.segment = Some(index);
                self.offset = 0;
            }
            let path = self.dir.join(segment_name(index));
            let mut file = match File::open(&path) {
                Ok(file) => file,
                // Pruned under us (its records were shipped): go on.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match files.iter().find(|(i, _)| *i > index) {
                        Some((next, _)) => {
                            self.segment = Some(*next);
                            self.offset = 0;
                            continue;
                        }
                        None => {
                            self.caught_up = true;
                            return Ok(out);
                        }
                    }
                }
                Err(e) => return Err(e),
            };
            file.seek(SeekFrom::Start(self.offset))?;
            let mut reader = BufReader::with_capacity(1 << 20, file);
            let mut line = Vec::with_capacity(512);
            loop {
                line.clear();
                let read = reader.read_until(b'\n', &mut line)?;
                if read == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                self.offset += read as u64;
                let body = &line[..line.len() - 1];
                // The line's own fields, not re-hashed: the store checks
                // the chain as it appends, and verification the hashes.
                let fields = record::stored_fields(body).ok_or_else(|| {
                    std::io::Error::other(format!(
                        "{} offset {}: not a record line",
                        path.display(),
                        self.offset - read as u64
                    ))
                })?;
                self.last_seen = self.last_seen.max(fields.seq);
                if fields.seq < self.next_seq {
                    continue;
                }
                out.push(ShippedLine {
                    seq: fields.seq,
                    ts: fields.ts.to_owned(),
                    kind: fields.kind.to_owned(),
                    hash: fields.hash.to_owned(),
                    prev: fields.prev.to_owned(),
                    line: String::from_utf8_lossy(body).into_owned(),
                });
                self.next_seq = fields.seq + 1;
                if out.len() >= max {
                    return Ok(out);
                }
            }
            // The end of this segment: the next one, if it exists.
            match files.iter().find(|(i, _)| *i > index) {
                Some((next, _)) => {
                    self.segment = Some(*next);
                    self.offset = 0;
                }
                None => {
                    self.caught_up = true;
                    return Ok(out);
                }
            }
        }
    }
}
