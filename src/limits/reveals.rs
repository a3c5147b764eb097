//! One Mask or Unmask call's reveal budget: spent per value locally, or
//! counted, then leased from the shared store in one round trip.

use super::*;

/// How one call's reveals are budgeted.
#[derive(Debug)]
pub(super) enum RevealMode {
    /// No quota covers the call.
    Unlimited,
    /// Each value takes from the local bucket.
    Local,
    /// Counted, nothing taken (the first pass with a shared store, and
    /// Unmask, which settles all at once).
    Count,
    /// What the shared store granted, per quota.
    Allowance(Vec<u32>),
    /// The shared store could not be asked: nothing beyond quota is clear.
    Closed,
}

/// One call's reveal budget across the quotas that cover it.
#[derive(Debug)]
pub struct Reveals<'a> {
    pub(super) quotas: Vec<Matched<'a>>,
    pub(super) mode: RevealMode,
    /// Per quota: values counted (or taken).
    pub(super) counted: Vec<u32>,
    /// Values weakened per quota, for the audit record.
    pub spent: BTreeMap<String, u64>,
    /// Until the first spent quota allows a value again.
    pub retry_after: Duration,
    /// Whose local buckets a value takes from.
    pub(super) limiter: Option<&'a Limiter>,
}

impl<'a> Reveals<'a> {
    pub(super) fn new(quotas: Vec<Matched<'a>>, mode: RevealMode) -> Reveals<'a> {
        Reveals {
            counted: vec![0; quotas.len()],
            quotas,
            mode,
            spent: BTreeMap::new(),
            retry_after: Duration::ZERO,
            limiter: None,
        }
    }

    /// No quota applies (tests, the CLI, policy cases).
    pub fn unlimited() -> Reveals<'static> {
        Reveals::new(Vec::new(), RevealMode::Unlimited)
    }

    /// Counting only, nothing spent (Unmask, before [`Limiter::settle_all`]).
    pub fn counting(quotas: Vec<Matched<'a>>) -> Reveals<'a> {
        Reveals::new(quotas, RevealMode::Count)
    }

    /// What each quota would take from the shared store: what was counted.
    pub(super) fn asks(&self, prefix: &str) -> Vec<Ask> {
        self.quotas
            .iter()
            .zip(&self.counted)
            .map(|(m, &n)| m.ask(prefix, n))
            .collect()
    }

    /// Whether the call must be counted before it is masked (a shared
    /// store takes the whole count in one round trip).
    pub fn needs_count(&self) -> bool {
        matches!(self.mode, RevealMode::Count)
    }

    /// One value of `label` (of `level`) about to be shown in clear: every
    /// quota covering it must allow it; `Err` names the one that did not.
    pub fn reveal(&mut self, label: &str, level: &str) -> Result<(), String> {
        if let RevealMode::Unlimited = self.mode {
            return Ok(());
        }
        for (i, m) in self.quotas.iter().enumerate() {
            let covers = match m.target {
                Some(Target::Label(l)) => l == label,
                Some(Target::Level(l)) => l == level,
                None => false,
            };
            if !covers {
                continue;
            }
            let allowed = match &mut self.mode {
                RevealMode::Unlimited | RevealMode::Count => true,
                RevealMode::Local => match self.limiter {
                    Some(limiter) => {
                        match limiter.local(m.buckets, m.allowance).take(m.local_key()) {
                            Ok(()) => true,
                            Err(wait) => {
                                self.retry_after = self.retry_after.max(wait);
                                false
                            }
                        }
                    }
                    None => false,
                },
                RevealMode::Allowance(left) => {
                    if left[i] > 0 {
                        left[i] -= 1;
                        true
                    } else {
                        false
                    }
                }
                RevealMode::Closed => false,
            };
            if !allowed {
                *self.spent.entry(m.name.to_owned()).or_default() += 1;
                return Err(m.name.to_owned());
            }
            self.counted[i] = self.counted[i].saturating_add(1);
        }
        Ok(())
    }
}
