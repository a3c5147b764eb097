//! Governance limits: call rates and reveal quotas from a policy set's
//! `limits.toml`, kept in this process (governor) or shared by a service's
//! sidecars through Redis.
//!
//! Limits only take away: they are checked after the policy allowed a
//! call, and turn it into a deny (a rate) or weaken a treatment (a reveal
//! quota). Rules are part of the policy snapshot; their budgets (the
//! [`Buckets`]) are carried over a reload for every rule that did not
//! change, so a reload neither resets nor forgets a subject's spending.

pub mod file;
pub mod local;
pub mod shared;

use std::{
    collections::BTreeMap,
    hash::BuildHasher,
    num::NonZeroU32,
    sync::{Arc, LazyLock, OnceLock},
    time::Duration,
};

use sha2::{Digest, Sha256};

pub use file::LIMITS_FILE;
use local::LocalBucket;
use shared::{Ask, Mode, SharedStore};

use crate::diagnostics::Problem;

mod reveals;
mod rules;
pub use reveals::*;
pub use rules::*;

/// How the process keeps limits (vigil's `[limits]` configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct LimitOptions {
    /// `redis://…`: budgets shared through Redis; `None`: in this process.
    pub backend: Option<String>,
    /// This sidecar's share of a shared call rate while Redis is
    /// unreachable.
    pub fallback_fraction: f64,
    /// Keys each rule keeps in memory (the bound on its table).
    pub max_keys: usize,
    /// How long a check waits for Redis before falling back.
    pub timeout: Duration,
    /// Prefix of Redis keys: one per service sharing budgets.
    pub prefix: String,
}

impl Default for LimitOptions {
    fn default() -> LimitOptions {
        LimitOptions {
            backend: None,
            fallback_fraction: 0.5,
            max_keys: 100_000,
            timeout: Duration::from_millis(50),
            prefix: "vigil:limit:".to_owned(),
        }
    }
}

/// Where a check was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Local,
    Shared,
    /// The shared store did not answer: the local share decided.
    Fallback,
}

impl Via {
    /// As metrics label it.
    pub fn name(self) -> &'static str {
        match self {
            Via::Local => "local",
            Via::Shared => "shared",
            Via::Fallback => "fallback",
        }
    }
}

/// A call over a rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub limit: String,
    pub reason: String,
    pub retry_after: Duration,
    pub via: Via,
}

/// Keeps the budgets: in this process, or in Redis with a local fallback.
#[derive(Debug)]
pub struct Limiter {
    options: LimitOptions,
    shared: Option<Arc<SharedStore>>,
}

/// `retry_after` in whole milliseconds, at least 1 when there is a wait.
pub fn millis(wait: Duration) -> u64 {
    if wait.is_zero() {
        0
    } else {
        (wait.as_micros().div_ceil(1000) as u64).max(1)
    }
}

impl Limiter {
    pub fn new(options: LimitOptions) -> Result<Limiter, String> {
        let shared = match &options.backend {
            None => None,
            Some(url) => Some(Arc::new(SharedStore::new(
                url,
                &options.prefix,
                options.timeout,
            )?)),
        };
        Ok(Limiter { options, shared })
    }

    /// The shared store, when budgets are shared (to keep it connected,
    /// and for health).
    pub fn shared(&self) -> Option<&Arc<SharedStore>> {
        self.shared.as_ref()
    }

    fn local<'b>(&self, buckets: &'b Buckets, allowance: &Allowance) -> &'b LocalBucket {
        buckets
            .local
            .get_or_init(|| LocalBucket::new(allowance, self.options.max_keys))
    }

    fn fallback<'b>(&self, buckets: &'b Buckets, allowance: &Allowance) -> &'b LocalBucket {
        buckets.fallback.get_or_init(|| {
            LocalBucket::new(
                &allowance.scaled(self.options.fallback_fraction),
                self.options.max_keys,
            )
        })
    }

    /// Takes one call from every rate in `matched`; the first one spent
    /// turns the call into a deny.
    pub async fn check_rates(&self, matched: &[Matched<'_>]) -> Result<Via, Exceeded> {
        if matched.is_empty() {
            return Ok(Via::Local);
        }
        let Some(shared) = &self.shared else {
            return self.check_locally(matched, false);
        };
        let asks: Vec<Ask> = matched.iter().map(|m| m.ask(&shared.prefix, 1)).collect();
        match shared.take(&asks, Mode::All).await {
            Ok(granted) => match granted.granted.iter().position(|&g| g == 0) {
                None => Ok(Via::Shared),
                Some(spent) => Err(exceeded(&matched[spent], granted.retry_after, Via::Shared)),
            },
            Err(_) => self.check_locally(matched, true),
        }
    }

    /// Checks `matched` on this process's budgets, whatever the backend
    /// (policy cases).
    pub fn check_here(&self, matched: &[Matched<'_>]) -> Result<Via, Exceeded> {
        self.check_locally(matched, false)
    }

    fn check_locally(&self, matched: &[Matched<'_>], fallback: bool) -> Result<Via, Exceeded> {
        let via = if fallback { Via::Fallback } else { Via::Local };
        for m in matched {
            let bucket = if fallback {
                self.fallback(m.buckets, m.allowance)
            } else {
                self.local(m.buckets, m.allowance)
            };
            if let Err(wait) = bucket.take(m.local_key()) {
                return Err(exceeded(m, wait, via));
            }
        }
        Ok(via)
    }

    /// The reveal budget of one Mask call: spent value by value in this
    /// process; with a shared store, counted first and then taken in one
    /// round trip ([`Limiter::lease`]).
    pub fn reveals<'a>(&'a self, quotas: Vec<Matched<'a>>) -> Reveals<'a> {
        let mode = if quotas.is_empty() {
            RevealMode::Unlimited
        } else if self.shared.is_some() {
            RevealMode::Count
        } else {
            RevealMode::Local
        };
        let mut reveals = Reveals::new(quotas, mode);
        reveals.limiter = Some(self);
        reveals
    }

    /// Turns a counted budget into what the shared store grants now: each
    /// quota takes what it can of what the call would reveal. Unreachable,
    /// nothing is granted (quotas fail closed).
    pub async fn lease(&self, reveals: &mut Reveals<'_>) {
        let RevealMode::Count = reveals.mode else {
            return;
        };
        let Some(shared) = &self.shared else {
            reveals.mode = RevealMode::Local;
            return;
        };
        let asks = reveals.asks(&shared.prefix);
        reveals.counted.iter_mut().for_each(|n| *n = 0);
        reveals.mode = match shared.take(&asks, Mode::Each).await {
            Ok(granted) => {
                if granted.granted.iter().zip(&asks).any(|(g, a)| *g < a.n) {
                    reveals.retry_after = reveals.retry_after.max(granted.retry_after);
                }
                RevealMode::Allowance(granted.granted)
            }
            // The store logs its own outage once.
            Err(_) => RevealMode::Closed,
        };
    }

    /// Takes what an Unmask call counted, all or nothing: `Err` names the
    /// quota that cannot cover it.
    pub async fn settle_all(&self, reveals: &Reveals<'_>) -> Result<(), Exceeded> {
        if reveals.counted.iter().all(|&n| n == 0) {
            return Ok(());
        }
        let spent = |m: &Matched<'_>, wait: Duration, via: Via, n: u32| {
            let mut exceeded = exceeded(m, wait, via);
            exceeded.reason = format!(
                "reveal quota {} ({}) cannot cover {n} more values in clear now{}",
                m.name,
                m.describe(),
                retry_text(wait)
            );
            exceeded
        };
        match &self.shared {
            Some(shared) => {
                let asks = reveals.asks(&shared.prefix);
                match shared.take(&asks, Mode::All).await {
                    Ok(granted) => match granted
                        .granted
                        .iter()
                        .zip(&asks)
                        .position(|(g, a)| *g < a.n)
                    {
                        None => Ok(()),
                        Some(i) => Err(spent(
                            &reveals.quotas[i],
                            granted.retry_after,
                            Via::Shared,
                            asks[i].n,
                        )),
                    },
                    Err(e) => {
                        // The quota this call's values count against, not
                        // merely the first the reader has.
                        let m = reveals
                            .quotas
                            .iter()
                            .zip(&reveals.counted)
                            .find(|(_, &n)| n > 0)
                            .map_or(&reveals.quotas[0], |(m, _)| m);
                        let mut refused = exceeded(m, Duration::ZERO, Via::Fallback);
                        refused.reason = format!(
                            "reveal quota {} cannot be checked ({e}), so nothing is revealed (quotas fail closed); retry later",
                            m.name
                        );
                        Err(refused)
                    }
                }
            }
            None => {
                for (m, &n) in reveals.quotas.iter().zip(&reveals.counted) {
                    if let Err(wait) = self
                        .local(m.buckets, m.allowance)
                        .take_all(m.local_key(), n)
                    {
                        return Err(spent(m, wait, Via::Local, n));
                    }
                }
                Ok(())
            }
        }
    }
}

fn retry_text(wait: Duration) -> String {
    if wait == Duration::MAX {
        " (more than its burst: never in one call)".to_owned()
    } else if wait.is_zero() {
        String::new()
    } else {
        format!("; retry in {} ms", millis(wait))
    }
}

fn exceeded(m: &Matched<'_>, wait: Duration, via: Via) -> Exceeded {
    Exceeded {
        limit: m.name.to_owned(),
        reason: format!(
            "rate limit {} ({}) exceeded{}",
            m.name,
            m.describe(),
            retry_text(wait)
        ),
        retry_after: if wait == Duration::MAX {
            Duration::ZERO
        } else {
            wait
        },
        via,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_key_match() {
        assert!(wildcard("crm.*", "crm.customers"));
        assert!(wildcard("*", ""));
        assert!(wildcard("/v1/*/rows", "/v1/a/b/rows"));
        assert!(!wildcard("crm.*", "hr.crm.x"));
        assert!(wildcard("crm", "crm"));
        assert!(!wildcard("crm", "crm2"));
        assert!(!wildcard("a*b*a", "ab"));
    }

    fn limits(text: &str) -> Limits {
        Limits::parse(text, &|l| l == "phone", &|l| l == "confidential").unwrap()
    }

    fn call<'a>(subject: &'a str, object: &'a str) -> Call<'a> {
        Call {
            subject,
            roles: &[],
            object,
            action: "read",
            domain: "",
        }
    }

    #[tokio::test]
    async fn a_rate_denies_past_its_burst_and_names_itself() {
        let limits = limits("[[rate]]\nname = \"r\"\nrate = \"5/h\"\n");
        let limiter = Limiter::new(LimitOptions::default()).unwrap();
        let no_roles = |_: &str| false;
        let mut allowed = 0;
        for _ in 0..8 {
            let matched = limits.rates_for(&call("alice", "x"), &no_roles);
            if limiter.check_rates(&matched).await.is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 5);
        let matched = limits.rates_for(&call("alice", "x"), &no_roles);
        let exceeded = limiter.check_rates(&matched).await.unwrap_err();
        assert!(
            exceeded.reason.contains("rate limit r (5/h per subject)"),
            "{}",
            exceeded.reason
        );
        assert!(exceeded.retry_after > Duration::from_secs(600));
        // Another subject has its own budget.
        let matched = limits.rates_for(&call("bob", "x"), &no_roles);
        assert!(limiter.check_rates(&matched).await.is_ok());
    }

    #[tokio::test]
    async fn roles_share_one_budget_and_reloads_keep_spending() {
        let text = "[[rate]]\nname = \"r\"\nrole = \"analyst\"\nrate = \"3/h\"\nper = \"role\"\n";
        let old = limits(text);
        let limiter = Limiter::new(LimitOptions::default()).unwrap();
        let analyst = |role: &str| role == "analyst";
        for subject in ["a", "b", "c"] {
            let matched = old.rates_for(&call(subject, "x"), &analyst);
            assert!(limiter.check_rates(&matched).await.is_ok());
        }
        let mut new = limits(text);
        new.carry_over(&old);
        let matched = new.rates_for(&call("d", "x"), &analyst);
        assert!(
            limiter.check_rates(&matched).await.is_err(),
            "the role's budget is spent"
        );
        // Not an analyst: not covered.
        assert!(new.rates_for(&call("d", "x"), &|_: &str| false).is_empty());
        // A changed rule starts afresh.
        let mut changed = limits(&text.replace("3/h", "4/h"));
        changed.carry_over(&old);
        let matched = changed.rates_for(&call("d", "x"), &analyst);
        assert!(limiter.check_rates(&matched).await.is_ok());
    }

    #[test]
    fn reveals_stop_exactly_at_the_quota() {
        let limits = limits("[[quota]]\nname = \"q\"\nlabel = \"phone\"\nreveals = \"3/h\"\n");
        let limiter = Limiter::new(LimitOptions::default()).unwrap();
        let quotas = limits.quotas_for(&call("alice", "x"), &|_: &str| false);
        let mut reveals = limiter.reveals(quotas);
        let outcomes: Vec<bool> = (0..5)
            .map(|_| reveals.reveal("phone", "confidential").is_ok())
            .collect();
        assert_eq!(outcomes, [true, true, true, false, false]);
        assert!(
            reveals.reveal("email", "confidential").is_ok(),
            "another label is not counted"
        );
        assert_eq!(reveals.spent["q"], 2);
        assert!(reveals.retry_after > Duration::ZERO);
    }

    #[test]
    fn a_flood_of_subjects_stays_within_the_key_bound() {
        let allowance = file::allowance("10/h", None).unwrap();
        let bucket = LocalBucket::new(&allowance, 1_000);
        for subject in 0..50_000u64 {
            let _ = bucket.take(subject.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
        assert!(bucket.keys() <= 1_000 + 16, "{} keys", bucket.keys());
        assert!(bucket.overflowed() > 0);
    }
}
