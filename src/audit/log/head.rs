//! The chain head: what is in the active segment, the open batch and the
//! queue of batches waiting for the disk. Held under the writer's short
//! lock; every method here runs inside it, none syncs or awaits.

use super::*;

#[derive(Debug)]
pub(super) struct Core {
    /// What is in the file: the segment being written and the chain head
    /// at its end.
    pub(super) tail: Tail,
    /// The chain head including queued batches (`seq`, hash).
    pub(super) head: (u64, Hash),
    /// Chained but not yet written, oldest first. In `batch` mode at most
    /// one batch waits while the sync thread writes and syncs the one
    /// before; in `always` mode one per call; in `off` mode the batch the
    /// flusher task is about to write.
    pub(super) queue: VecDeque<Batch>,
    pub(super) queued_records: usize,
    /// A written batch's buffer, kept for the next batch.
    pub(super) spare: Vec<u8>,
    /// The sync thread sleeps on `Inner::batch_queued` and must be woken.
    pub(super) syncer_asleep: bool,
    /// With sync `off`: the flusher task has been asked to write the queue.
    pub(super) flush_requested: bool,
    /// With sync `off`: when the last call appended (busy or quiet).
    pub(super) last_append: Instant,
    /// Segments closed by rotation whose slow half (sync, sign the end,
    /// sync the directory, prune) [`Inner::housekeeping`] still owes.
    pub(super) rotated: Vec<CheckpointDue>,
    /// The newest seq handed to a signer.
    pub(super) checkpointed_seq: u64,
    pub(super) healthy: Arc<AtomicBool>,
    /// Set while writes fail: when, and how many attempts failed.
    pub(super) failed_since: Option<(String, u64)>,
    pub(super) last_checkpoint: Instant,
    pub(super) options: AuditOptions,
    pub(super) closed: bool,
    pub(super) metrics: AuditMetrics,
}

impl Core {
    /// Chains `records` onto the head: into the open batch when `join`,
    /// else into a new one, which first gets the notes the log owes.
    /// Returns their receipts and the outcome to wait for.
    pub(super) fn chain(
        &mut self,
        records: &mut [Record],
        join: bool,
    ) -> (Vec<Receipt>, Arc<Outcome>) {
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
    pub(super) fn encode(
        &mut self,
        records: &mut [Record],
        mut receipts: Option<&mut Vec<Receipt>>,
    ) {
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
    pub(super) fn write_front(&mut self) -> Option<Written> {
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
    pub(super) fn write_queued(
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
    pub(super) fn probe_if_failing(&mut self) {
        if !self.closed && self.failed_since.is_some() {
            self.chain(&mut [], false);
        }
    }

    /// The checkpoint to sign now, if any: the head on disk, when it moved
    /// since the last one and one is due (or asked for). Signing happens
    /// outside the lock ([`Inner::sign`]).
    pub(super) fn checkpoint_due(&mut self, when: Checkpoint) -> Option<CheckpointDue> {
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

    pub(super) fn checkpoint_is_due(&self) -> bool {
        self.last_checkpoint.elapsed() >= self.options.checkpoint_every
    }

    /// Records the writer itself owes the log at the start of a batch: that
    /// the active file vanished, or (unless a queued batch already says so)
    /// that writing resumed after a failure.
    pub(super) fn notes(&mut self) -> Vec<Record> {
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
    pub(super) fn check_active_file(&mut self) -> Option<Record> {
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
    pub(super) fn next_segment(&mut self) -> std::io::Result<()> {
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

    pub(super) fn maybe_rotate(&mut self) {
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
