//! Limits kept in this process: governor's GCRA, one state per key, in a
//! store whose memory is bounded whatever callers send.
//!
//! A key is a 64-bit keyed digest of what the rule counts per (subject,
//! subject and object, or the rule itself), so a key costs the same ~40
//! bytes however long the subject. Past `max_keys`, idle keys (those whose
//! state equals a fresh one) are swept; if the table is still full, new
//! keys share one overflow state of the rule: a flood of distinct subjects
//! gets one budget between them, stricter than each would have alone,
//! never more memory.

use std::{
    num::NonZeroU32,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use governor::{
    clock::{Clock, MonotonicClock},
    nanos::Nanos,
    state::{keyed::ShrinkableKeyedStateStore, InMemoryState, NotKeyed, StateStore},
    Quota, RateLimiter,
};

use super::Allowance;

/// Shards of the key table: calls for different keys rarely wait on one
/// lock.
const SHARDS: usize = 16;

/// Per-key states, at most `capacity` of them, plus the overflow state new
/// keys share when the table is full.
#[derive(Debug)]
pub struct BoundedStore {
    shards: [Mutex<foldhash::HashMap<u64, InMemoryState>>; SHARDS],
    /// At most this many keys across every shard: the bound is the
    /// table's, not each shard's, so the table holds exactly `capacity`
    /// keys before the overflow state is shared (a shard filling first
    /// would send keys to it early; rounded shards would hold more).
    capacity: usize,
    entries: AtomicUsize,
    overflow: InMemoryState,
    /// Checks that went to the overflow state (shared with the bucket:
    /// the limiter does not hand its store out).
    overflowed: Arc<AtomicU64>,
}

impl BoundedStore {
    fn new(capacity: usize, overflowed: Arc<AtomicU64>) -> BoundedStore {
        BoundedStore {
            shards: std::array::from_fn(|_| Mutex::new(foldhash::HashMap::default())),
            capacity: capacity.max(1),
            entries: AtomicUsize::new(0),
            overflow: InMemoryState::default(),
            overflowed,
        }
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, foldhash::HashMap<u64, InMemoryState>> {
        // The low bits pick the shard; the map hashes the key again.
        self.shards[(key % SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A state's theoretical arrival time, read without changing it.
fn arrival(state: &InMemoryState) -> u64 {
    state
        .measure_and_replace(&NotKeyed::NonKey, |tat| {
            Err::<((), Nanos), u64>(tat.map_or(0, Nanos::as_u64))
        })
        .err()
        .unwrap_or(0)
}

impl StateStore for BoundedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut shard = self.shard(*key);
        if let Some(state) = shard.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        // Reserve a place first: two new keys racing for the last one
        // cannot both take it.
        if self.entries.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.entries.fetch_sub(1, Ordering::Relaxed);
            drop(shard);
            self.overflowed.fetch_add(1, Ordering::Relaxed);
            return self.overflow.measure_and_replace(&NotKeyed::NonKey, f);
        }
        shard
            .entry(*key)
            .or_default()
            .measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl ShrinkableKeyedStateStore<u64> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        let drop_below = drop_below.as_u64();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            let before = shard.len();
            shard.retain(|_, state| arrival(state) > drop_below);
            self.entries
                .fetch_sub(before - shard.len(), Ordering::Relaxed);
        }
    }

    fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One rule's local budgets: a GCRA state per key.
pub struct LocalBucket {
    limiter: RateLimiter<u64, BoundedStore, MonotonicClock>,
    clock: MonotonicClock,
    capacity: usize,
    /// When the table was last swept (the clock's nanoseconds since this
    /// bucket began), so a full table is swept at most once a second.
    last_sweep: AtomicU64,
    started: std::time::Instant,
    overflowed: Arc<AtomicU64>,
}

impl std::fmt::Debug for LocalBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBucket")
            .field("keys", &self.limiter.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// How long a sweep of a full table waits for the next one.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl LocalBucket {
    pub fn new(allowance: &Allowance, capacity: usize) -> LocalBucket {
        let clock = MonotonicClock;
        let interval = (allowance.period / allowance.count.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(interval)
            .expect("a period of at least 1 ns")
            .allow_burst(allowance.burst);
        let started = clock.now();
        let overflowed = Arc::new(AtomicU64::new(0));
        let store = BoundedStore::new(capacity, overflowed.clone());
        LocalBucket {
            limiter: RateLimiter::new(quota, store, clock.clone()),
            overflowed,
            clock,
            capacity,
            last_sweep: AtomicU64::new(0),
            started,
        }
    }

    /// Takes one unit for `key`; `Err` holds how long until one is free.
    pub fn take(&self, key: u64) -> Result<(), Duration> {
        self.sweep_if_full();
        self.limiter
            .check_key(&key)
            .map_err(|until| until.wait_time_from(self.clock.now()))
    }

    /// Takes `n` units for `key`, all or none; `Err` holds how long until
    /// they are free (`Duration::MAX`: never, `n` exceeds the burst).
    pub fn take_all(&self, key: u64, n: u32) -> Result<(), Duration> {
        let Some(n) = NonZeroU32::new(n) else {
            return Ok(());
        };
        self.sweep_if_full();
        match self.limiter.check_key_n(&key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(until)) => Err(until.wait_time_from(self.clock.now())),
            Err(_) => Err(Duration::MAX),
        }
    }

    /// Keys held now (tests and metrics).
    pub fn keys(&self) -> usize {
        self.limiter.len()
    }

    /// Checks that shared the overflow state because the table was full.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    fn sweep_if_full(&self) {
        if self.limiter.len() < self.capacity * 7 / 8 {
            return;
        }
        let now = self.clock.now().duration_since(self.started).as_nanos() as u64;
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY.as_nanos() as u64 && last != 0 {
            return;
        }
        if self
            .last_sweep
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.limiter.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `max_keys` is the table's bound, and past it one overflow budget is
    /// shared: 1/h over 1,000 keys and 3,000 subjects allows 1,000 + 1.
    #[test]
    fn past_max_keys_one_overflow_budget() {
        let allowance = Allowance {
            count: NonZeroU32::MIN,
            period: Duration::from_secs(3600),
            burst: NonZeroU32::MIN,
            text: "1/h".into(),
        };
        let bucket = LocalBucket::new(&allowance, 1000);
        let mut allowed = 0;
        let mut first_denial = None;
        for subject in 0..3000u64 {
            // Keys are keyed digests: spread them as those are spread.
            let key = subject.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            if bucket.take(key).is_ok() {
                allowed += 1;
            } else if first_denial.is_none() {
                first_denial = Some(subject + 1);
            }
        }
        assert_eq!(allowed, 1001);
        assert_eq!(first_denial, Some(1002));
        assert_eq!(bucket.keys(), 1000);
    }
}
