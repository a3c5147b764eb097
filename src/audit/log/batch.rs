//! A batch: records chained onto the head but not yet written, and the
//! one outcome every call in it waits for (group commit).

use std::{
    fs::File,
    sync::{Arc, OnceLock},
};

use tokio::sync::Notify;

use super::AuditError;
use crate::audit::record::Hash;

/// Records chained onto the head but not yet written, and the outcome all
/// the calls in them share.
#[derive(Debug)]
pub(super) struct Batch {
    pub(super) bytes: Vec<u8>,
    pub(super) records: usize,
    pub(super) last_seq: u64,
    pub(super) last_hash: Hash,
    pub(super) outcome: Arc<Outcome>,
}

/// Settled once, when a batch is durable (or lost); wakes every waiter with
/// one notification.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    result: OnceLock<Result<(), AuditError>>,
    settled: Notify,
}

impl Outcome {
    pub(super) fn settle(&self, result: Result<(), AuditError>) {
        let _ = self.result.set(result);
        self.settled.notify_waiters();
    }

    /// Settles from the sync thread. The wake-up is sent from a task on the
    /// handlers' runtime: woken from there, the waiting handlers queue up
    /// locally ahead of their connections, which then flush all their
    /// answers with one write each. Woken from afar, they trickle in one by
    /// one and every answer costs a `writev` of its own.
    pub(super) fn settle_from_sync_thread(
        self: Arc<Self>,
        result: Result<(), AuditError>,
        runtime: Option<&tokio::runtime::Handle>,
    ) {
        let _ = self.result.set(result);
        let wake = WakeOnDrop(self);
        match runtime {
            // Dropped unrun if the runtime is gone: the wake happens anyway.
            Some(runtime) => drop(runtime.spawn(async move { drop(wake) })),
            None => drop(wake),
        }
    }

    pub(super) async fn wait(&self) -> Result<(), AuditError> {
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            // Registered before the check, so a settle in between still
            // wakes this waiter.
            settled.as_mut().enable();
            if let Some(result) = self.result.get() {
                return result.clone();
            }
            settled.await;
        }
    }
}

struct WakeOnDrop(Arc<Outcome>);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        self.0.settled.notify_waiters();
    }
}

/// A batch just written: who waits for it, the segment to sync, and
/// whether the write worked.
pub(super) struct Written {
    pub(super) outcome: Arc<Outcome>,
    pub(super) file: Arc<File>,
    pub(super) result: Result<(), AuditError>,
}
