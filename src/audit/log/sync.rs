//! The sync thread (writes and fdatasyncs batches, gathers groups, does
//! the writer's housekeeping, probes a failing disk) and, with sync `off`,
//! the flusher task that writes joined batches on the handlers' runtime.

use std::{
    sync::{atomic::Ordering, Arc, MutexGuard},
    time::{Duration, Instant},
};

use super::{AuditError, Checkpoint, Core, Durability, Inner, Written};

/// Most records one fdatasync waits to gather.
const MAX_GROUP: usize = 4096;
/// Most yields while gathering a group.
const GATHER_YIELDS: usize = 16;
/// How often an unhealthy log probes whether writing works again.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// With sync `off`, how often the sync thread fdatasyncs in the background:
/// the most a power failure can take.
pub const OFF_FLUSH_EVERY: Duration = Duration::from_millis(200);

/// With sync `off`, appends closer together than this share one `write`:
/// under load a call's own `write` (and the `fstat` of a new batch) cost
/// more than its decision; one stream, calls 100+ µs apart, writes at once.
pub(super) const OFF_COALESCE_WITHIN: Duration = Duration::from_micros(50);

/// The `off` mode's flusher: writes everything queued when asked, as a
/// task on the handlers' runtime, so the calls runnable before it have
/// joined the batch; their wake-ups come back on the same runtime.
pub(super) async fn flush_when_asked(inner: Arc<Inner>) {
    let Durability::Off(flusher) = &inner.durability else {
        return;
    };
    loop {
        flusher.requested.notified().await;
        let mut core = inner.core();
        if core.closed {
            return;
        }
        core.flush_requested = false;
        // A failed write settles the waiting calls with its error.
        let _ = core.write_queued(None);
    }
}

/// The sync thread: writes and fdatasyncs queued batches (`batch` and
/// `always` modes), signs due checkpoints, probes a failing disk, and with
/// sync `off` flushes in the background.
pub(super) fn run_sync(inner: Arc<Inner>) {
    let _fail_queued = FailQueuedOnExit(&inner);
    let idle_wait = if inner.durability.is_off() {
        OFF_FLUSH_EVERY.min(PROBE_EVERY)
    } else {
        PROBE_EVERY
    };
    let mut last_flush = Instant::now();
    let mut core = inner.core();
    loop {
        if core.closed {
            return;
        }
        if core.queue.is_empty() {
            core.syncer_asleep = true;
            core = inner
                .batch_queued
                .wait_timeout(core, idle_wait)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
            core.syncer_asleep = false;
            if core.closed {
                return;
            }
            if core.queue.is_empty() {
                if inner.durability.is_off() && last_flush.elapsed() >= OFF_FLUSH_EVERY {
                    // Nobody waits for this sync; it bounds what a power
                    // failure can take. Outside the lock: appends go on.
                    let file = core.tail.file.clone();
                    drop(core);
                    if let Err(e) = file.sync_data() {
                        tracing::error!(error = %e, "background fdatasync of the audit log failed");
                    }
                    last_flush = Instant::now();
                    core = inner.core();
                }
                core.probe_if_failing();
                drop(core);
                inner.housekeeping(Checkpoint::WhenDue);
                core = inner.core();
                continue;
            }
        }
        if matches!(inner.durability, Durability::Batch) {
            core = gather(&inner, core);
        }
        let Some(Written {
            outcome,
            file,
            result,
        }) = core.write_front()
        else {
            continue;
        };
        // The next batch fills while this one syncs.
        drop(core);
        let result = result.and_then(|()| {
            let started = Instant::now();
            let synced = file.sync_data();
            inner.metrics.observe_fsync(started.elapsed());
            synced.map_err(|e| {
                inner.healthy.store(false, Ordering::Relaxed);
                inner.metrics.write_failures.inc();
                tracing::error!(error = %e, "audit log fdatasync failed; failing the waiting requests closed");
                AuditError::Write(format!("fdatasync: {e}"))
            })
        });
        outcome.settle_from_sync_thread(result, inner.runtime.get());
        inner.housekeeping(Checkpoint::WhenDue);
        core = inner.core();
    }
}

/// Group commit needs a group. When handlers share a core with this
/// thread, writing at the first call would sync calls one by one; yielding
/// lets runnable handlers chain theirs first. When nothing else is
/// runnable, the yield returns at once.
fn gather<'a>(inner: &'a Inner, mut core: MutexGuard<'a, Core>) -> MutexGuard<'a, Core> {
    for _ in 0..GATHER_YIELDS {
        let before = core.queued_records;
        drop(core);
        std::thread::yield_now();
        core = inner.core();
        if core.queued_records == before || core.queued_records >= MAX_GROUP {
            break;
        }
    }
    core
}

/// However the sync thread ends (even by a panic), nobody may wait forever
/// for a batch it will not write: the log closes and queued calls fail.
struct FailQueuedOnExit<'a>(&'a Inner);

impl Drop for FailQueuedOnExit<'_> {
    fn drop(&mut self) {
        let mut core = self.0.core();
        core.closed = true;
        core.queued_records = 0;
        for batch in core.queue.drain(..) {
            batch.outcome.settle(Err(AuditError::Closed));
        }
    }
}
