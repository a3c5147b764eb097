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

/// `N` per `period`, with bursts of up to `burst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowance {
    pub count: NonZeroU32,
    pub period: Duration,
    pub burst: NonZeroU32,
    /// As written (`100/s`), for reasons.
    pub text: String,
}

impl Allowance {
    /// The same allowance times `fraction` (at least 1), for a sidecar's
    /// share of a shared budget while the store is unreachable.
    fn scaled(&self, fraction: f64) -> Allowance {
        let scale = |n: NonZeroU32| {
            NonZeroU32::new(((n.get() as f64) * fraction).floor() as u32).unwrap_or(NonZeroU32::MIN)
        };
        Allowance {
            count: scale(self.count),
            burst: scale(self.burst),
            ..self.clone()
        }
    }

    fn interval(&self) -> Duration {
        (self.period / self.count.get()).max(Duration::from_nanos(1))
    }
}

/// What a rule counts per.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    Subject,
    SubjectObject,
    /// One budget for every member of the rule's role.
    Role,
}

impl Per {
    fn text(self) -> &'static str {
        match self {
            Per::Subject => "per subject",
            Per::SubjectObject => "per subject and object",
            Per::Role => "shared by the role",
        }
    }
}

/// Which calls a rule covers; `None` covers any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub subject: Option<String>,
    /// Held through the policy's role graph or the token's roles.
    pub role: Option<String>,
    /// `*` matches any run of characters.
    pub object: Option<String>,
    pub action: Option<String>,
    pub domain: Option<String>,
}

/// What a quota counts: values of a label, or of every label of a level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Label(String),
    Level(String),
}

/// A rule's budgets in this process: the full one (local mode) and the
/// sidecar's share used while the shared store is unreachable.
#[derive(Debug, Default)]
pub struct Buckets {
    local: OnceLock<LocalBucket>,
    fallback: OnceLock<LocalBucket>,
}

/// A `[[rate]]` rule.
#[derive(Debug)]
pub struct Rate {
    pub name: String,
    pub line: usize,
    pub scope: Scope,
    pub allowance: Allowance,
    pub per: Per,
    /// Digest of everything above but the line: a rule that keeps it keeps
    /// its budgets over a reload, here and in Redis.
    fingerprint: u64,
    buckets: Arc<Buckets>,
}

/// A `[[quota]]` rule: values shown in clear.
#[derive(Debug)]
pub struct Quota {
    pub name: String,
    pub line: usize,
    pub scope: Scope,
    pub target: Target,
    pub allowance: Allowance,
    pub per: Per,
    fingerprint: u64,
    buckets: Arc<Buckets>,
}

impl Rate {
    pub fn new(name: String, line: usize, scope: Scope, allowance: Allowance, per: Per) -> Rate {
        Rate {
            fingerprint: fingerprint(&[&name, &scope, &allowance, &per]),
            name,
            line,
            scope,
            allowance,
            per,
            buckets: Default::default(),
        }
    }
}

impl Quota {
    pub fn new(
        name: String,
        line: usize,
        scope: Scope,
        target: Target,
        allowance: Allowance,
        per: Per,
    ) -> Quota {
        Quota {
            fingerprint: fingerprint(&[&name, &scope, &target, &allowance, &per]),
            name,
            line,
            scope,
            target,
            allowance,
            per,
            buckets: Default::default(),
        }
    }
}

/// A policy set's limits (empty without `limits.toml`).
#[derive(Debug, Default)]
pub struct Limits {
    pub rates: Vec<Rate>,
    pub quotas: Vec<Quota>,
}

/// A call as limits see it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub subject: &'a str,
    /// The token's roles, held besides the policy's grants.
    pub roles: &'a [String],
    pub object: &'a str,
    pub action: &'a str,
    pub domain: &'a str,
}

/// `*` matches any run of characters (Casbin's keyMatch, on any text).
fn wildcard(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

impl Scope {
    fn covers(&self, call: &Call<'_>, holds_role: &dyn Fn(&str) -> bool) -> bool {
        self.subject.as_deref().is_none_or(|s| s == call.subject)
            && self.action.as_deref().is_none_or(|a| a == call.action)
            && self
                .object
                .as_deref()
                .is_none_or(|o| wildcard(o, call.object))
            && self
                .domain
                .as_deref()
                .is_none_or(|d| wildcard(d, call.domain))
            && self.role.as_deref().is_none_or(|role| {
                call.roles.iter().any(|r| r == role) || call.subject == role || holds_role(role)
            })
    }
}

/// Process-wide key for local tables: keyed, so callers cannot aim
/// collisions at another subject's budget.
static LOCAL_KEYS: LazyLock<std::hash::RandomState> = LazyLock::new(std::hash::RandomState::new);

/// A rule that covers one call, with the call's key in it.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    pub name: &'a str,
    pub allowance: &'a Allowance,
    per: Per,
    target: Option<&'a Target>,
    buckets: &'a Arc<Buckets>,
    /// The spec's digest: a changed rule starts fresh budgets in Redis as
    /// it does in memory.
    fingerprint: u64,
    subject: &'a str,
    object: &'a str,
}

impl Matched<'_> {
    fn parts(&self) -> (&str, &str) {
        match self.per {
            Per::Subject => (self.subject, ""),
            Per::SubjectObject => (self.subject, self.object),
            Per::Role => ("", ""),
        }
    }

    fn local_key(&self) -> u64 {
        LOCAL_KEYS.hash_one(self.parts())
    }

    fn shared_key(&self, prefix: &str) -> String {
        let (subject, object) = self.parts();
        let mut digest = Sha256::new();
        for part in [subject, object] {
            digest.update((part.len() as u64).to_be_bytes());
            digest.update(part.as_bytes());
        }
        let digest = digest.finalize();
        format!(
            "{prefix}{}:{:016x}:{}",
            self.name,
            self.fingerprint,
            hex::encode(&digest[..16])
        )
    }

    fn ask(&self, prefix: &str, n: u32) -> Ask {
        Ask {
            key: self.shared_key(prefix),
            interval_us: self.allowance.interval().as_micros().max(1) as u64,
            burst: self.allowance.burst.get(),
            n,
        }
    }

    fn describe(&self) -> String {
        format!("{} {}", self.allowance.text, self.per.text())
    }
}

fn fingerprint(parts: &[&dyn std::fmt::Debug]) -> u64 {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update(format!("{part:?}\0").as_bytes());
    }
    let digest = digest.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

impl Limits {
    /// Reads `limits.toml`'s text; `labels` and `levels` say which the
    /// classification defines.
    pub fn parse(
        text: &str,
        labels: &dyn Fn(&str) -> bool,
        levels: &dyn Fn(&str) -> bool,
    ) -> Result<Limits, Vec<Problem>> {
        let (rates, quotas) = file::parse(text, labels, levels)?;
        Ok(Limits { rates, quotas })
    }

    pub fn is_empty(&self) -> bool {
        self.rates.is_empty() && self.quotas.is_empty()
    }

    /// The same rules with budgets of their own, untouched (policy cases
    /// run on these, never on the live budgets).
    pub fn fresh(&self) -> Limits {
        Limits {
            rates: self
                .rates
                .iter()
                .map(|rate| {
                    Rate::new(
                        rate.name.clone(),
                        rate.line,
                        rate.scope.clone(),
                        rate.allowance.clone(),
                        rate.per,
                    )
                })
                .collect(),
            quotas: self
                .quotas
                .iter()
                .map(|quota| {
                    Quota::new(
                        quota.name.clone(),
                        quota.line,
                        quota.scope.clone(),
                        quota.target.clone(),
                        quota.allowance.clone(),
                        quota.per,
                    )
                })
                .collect(),
        }
    }

    /// Takes over the budgets of `previous`'s rules that did not change
    /// (same name, scope, allowance and keying).
    pub fn carry_over(&mut self, previous: &Limits) {
        for rate in &mut self.rates {
            if let Some(old) = previous
                .rates
                .iter()
                .find(|old| old.fingerprint == rate.fingerprint)
            {
                rate.buckets = old.buckets.clone();
            }
        }
        for quota in &mut self.quotas {
            if let Some(old) = previous
                .quotas
                .iter()
                .find(|old| old.fingerprint == quota.fingerprint)
            {
                quota.buckets = old.buckets.clone();
            }
        }
    }

    /// The rate rules covering `call`.
    pub fn rates_for<'a>(
        &'a self,
        call: &Call<'a>,
        holds_role: &dyn Fn(&str) -> bool,
    ) -> Vec<Matched<'a>> {
        self.rates
            .iter()
            .filter(|rate| rate.scope.covers(call, holds_role))
            .map(|rate| Matched {
                name: &rate.name,
                allowance: &rate.allowance,
                per: rate.per,
                target: None,
                buckets: &rate.buckets,
                fingerprint: rate.fingerprint,
                subject: call.subject,
                object: call.object,
            })
            .collect()
    }

    /// The reveal quotas covering a Mask or Unmask call (any action).
    pub fn quotas_for<'a>(
        &'a self,
        call: &Call<'a>,
        holds_role: &dyn Fn(&str) -> bool,
    ) -> Vec<Matched<'a>> {
        let any_action = Call {
            action: "",
            ..*call
        };
        self.quotas
            .iter()
            .filter(|quota| quota.scope.covers(&any_action, holds_role))
            .map(|quota| Matched {
                name: &quota.name,
                allowance: &quota.allowance,
                per: quota.per,
                target: Some(&quota.target),
                buckets: &quota.buckets,
                fingerprint: quota.fingerprint,
                subject: call.subject,
                object: call.object,
            })
            .collect()
    }
}

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
                        let m = &reveals.quotas[0];
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

/// How one call's reveals are budgeted.
#[derive(Debug)]
enum RevealMode {
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
    quotas: Vec<Matched<'a>>,
    mode: RevealMode,
    /// Per quota: values counted (or taken).
    counted: Vec<u32>,
    /// Values weakened per quota, for the audit record.
    pub spent: BTreeMap<String, u64>,
    /// Until the first spent quota allows a value again.
    pub retry_after: Duration,
    /// Whose local buckets a value takes from.
    limiter: Option<&'a Limiter>,
}

impl<'a> Reveals<'a> {
    fn new(quotas: Vec<Matched<'a>>, mode: RevealMode) -> Reveals<'a> {
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
    fn asks(&self, prefix: &str) -> Vec<Ask> {
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
