//! The rules of limits.toml as the snapshot holds them: allowances, what
//! a rule counts per, its scope, and which rules cover a call.

use super::*;

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
    pub(super) fn scaled(&self, fraction: f64) -> Allowance {
        let scale = |n: NonZeroU32| {
            NonZeroU32::new(((n.get() as f64) * fraction).floor() as u32).unwrap_or(NonZeroU32::MIN)
        };
        Allowance {
            count: scale(self.count),
            burst: scale(self.burst),
            ..self.clone()
        }
    }

    pub(super) fn interval(&self) -> Duration {
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
    pub(super) fn text(self) -> &'static str {
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
    pub(super) local: OnceLock<LocalBucket>,
    pub(super) fallback: OnceLock<LocalBucket>,
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
    pub(super) fingerprint: u64,
    pub(super) buckets: Arc<Buckets>,
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
    pub(super) fingerprint: u64,
    pub(super) buckets: Arc<Buckets>,
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
pub(super) fn wildcard(pattern: &str, text: &str) -> bool {
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
    pub(super) fn covers(&self, call: &Call<'_>, holds_role: &dyn Fn(&str) -> bool) -> bool {
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
pub(super) static LOCAL_KEYS: LazyLock<std::hash::RandomState> =
    LazyLock::new(std::hash::RandomState::new);

/// A rule that covers one call, with the call's key in it.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    pub name: &'a str,
    pub allowance: &'a Allowance,
    pub(super) per: Per,
    pub(super) target: Option<&'a Target>,
    pub(super) buckets: &'a Arc<Buckets>,
    /// The spec's digest: a changed rule starts fresh budgets in Redis as
    /// it does in memory.
    pub(super) fingerprint: u64,
    pub(super) subject: &'a str,
    pub(super) object: &'a str,
}

impl Matched<'_> {
    pub(super) fn parts(&self) -> (&str, &str) {
        match self.per {
            Per::Subject => (self.subject, ""),
            Per::SubjectObject => (self.subject, self.object),
            Per::Role => ("", ""),
        }
    }

    pub(super) fn local_key(&self) -> u64 {
        LOCAL_KEYS.hash_one(self.parts())
    }

    pub(super) fn shared_key(&self, prefix: &str) -> String {
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

    pub(super) fn ask(&self, prefix: &str, n: u32) -> Ask {
        Ask {
            key: self.shared_key(prefix),
            interval_us: self.allowance.interval().as_micros().max(1) as u64,
            burst: self.allowance.burst.get(),
            n,
        }
    }

    pub(super) fn describe(&self) -> String {
        format!("{} {}", self.allowance.text, self.per.text())
    }
}

pub(super) fn fingerprint(parts: &[&dyn std::fmt::Debug]) -> u64 {
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
