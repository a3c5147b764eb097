//! The policy loader and the live policy snapshot.
//!
//! Owns the shared state "which policy is in force": an [`ArcSwap`] of an
//! immutable [`PolicySet`]. Loading reads every file, validates it, builds
//! the engine, and only then swaps; a request reads one snapshot for its
//! whole life, so its decision, masking and audit record agree on a version.
//!
//! Architecture invariant: a policy set that fails to load never replaces
//! the one in force.

/// The policy directory used when none is given.
pub const DEFAULT_DIR: &str = "policies";

pub mod cases;
pub mod constraints;
mod cycles;
pub mod diff;
pub mod files;
pub mod lint;
pub mod reading;
pub mod shadow;
pub mod watch;

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::{
    authz::{AccessRequest, Engine, EngineError},
    limits::{Limits, LIMITS_FILE},
    mask::{self, rules::CLASSIFICATION_FILE, Classification, Grant, Label, Treatment},
};
use files::{Problem, MODEL_FILE, POLICY_FILE};

/// A loaded, validated, immutable policy set.
#[derive(Debug)]
pub struct PolicySet {
    /// Content hash of the policy files (first 16 hex digits of SHA-256).
    pub version: String,
    pub engine: Engine,
    /// Field classification (`classification.toml`; empty when absent).
    pub classification: Classification,
    /// Why Mask cannot run on this set: its classification is missing or
    /// defines no labels, and does not say `masking = "off"`. Masking then
    /// fails closed (every field would come back in clear).
    pub unclassified: Option<String>,
    pub loaded_at: SystemTime,
    /// Findings that do not stop loading (duplicates, ...).
    pub warnings: Vec<Problem>,
    /// Call rates and reveal quotas (`limits.toml`; none when absent).
    pub limits: Limits,
    /// Label grants already decided on this snapshot (a reload brings a
    /// new, empty cache): Mask resolves the same few per asker every call.
    grant_cache: Mutex<GrantCache>,
}

/// (subject, extra roles, domain, label). Requests with attributes are not
/// cached: ABAC conditions may depend on them.
type GrantKey = (String, Vec<String>, String, String);

/// Entries kept before the grant cache starts over.
const GRANT_CACHE_LIMIT: usize = 65_536;
/// Bytes of keys kept before the grant cache starts over: a caller choosing
/// long subjects, roles or domains cannot grow it past this.
const GRANT_CACHE_BYTES: usize = 16 << 20;

/// Label grants already decided on this snapshot, bounded in entries and in
/// the bytes of their keys.
#[derive(Debug, Default)]
struct GrantCache {
    entries: HashMap<GrantKey, Grant>,
    key_bytes: usize,
}

fn key_bytes((subject, roles, domain, label): &GrantKey) -> usize {
    // A fixed charge per entry and per role covers the strings' headers.
    64 + subject.len()
        + domain.len()
        + label.len()
        + roles.iter().map(|r| 24 + r.len()).sum::<usize>()
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", ProblemList(.0))]
    Invalid(Vec<Problem>),
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Go Casbin's `NewEnforcer` makes the domains of `g`'s grants keyMatch
/// patterns by itself when the matcher says `keyMatch(r.dom, p.dom)`
/// (`registerDomainMatchingFunc`); vigil does the same unless
/// `[role_matching]` says otherwise, and says so in a warning.
fn domains_as_go_matches_them(
    model_text: &str,
    outline: &files::ModelOutline,
    matching: &mut std::collections::HashMap<String, crate::authz::Matching>,
) -> Option<Problem> {
    let line = *outline.lines.get("m")?;
    let matcher: String = model_text
        .lines()
        .nth(line.checked_sub(1)?)?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let says_so =
        matcher.contains("keyMatch(r.dom,p.dom)") || matcher.contains("keyMatch(r_dom,p_dom)");
    if !says_so || outline.arity("g").is_none_or(|arity| arity < 3) {
        return None;
    }
    let slot = matching.entry("g".to_owned()).or_default();
    if slot.domains.is_some() {
        return None;
    }
    slot.domains = Some(crate::authz::MatchingFunction::KeyMatch);
    Some(Problem {
        file: MODEL_FILE.to_owned(),
        line,
        message: "the matcher's keyMatch(r.dom, p.dom) makes the domains of g's grants keyMatch \
                  patterns too, as Go Casbin does (state it, or another function, with \
                  [role_matching] g.domain = keyMatch)"
            .to_owned(),
    })
}

impl PolicySet {
    /// Reads and validates a policy directory.
    pub async fn load(dir: &Path) -> Result<PolicySet, PolicyError> {
        // Go Casbin reads `#` and `;` as comments anywhere on a model line
        // (casbin-rs only at the start) and block matchers as one
        // expression: both evaluators see the text Go evaluates.
        let (model_text, role_matching) = files::model_as_evaluated(&read(dir, MODEL_FILE).await?)
            .map_err(PolicyError::Invalid)?;
        let (model_text, constraints) = constraints::take_constraints(&model_text);
        let policy_text = read(dir, POLICY_FILE).await?;
        let limits_text = optional(dir, LIMITS_FILE).await?.unwrap_or_default();
        let classification_file = optional(dir, CLASSIFICATION_FILE).await?;
        let missing = classification_file.is_none();
        let classification_text = classification_file.unwrap_or_default();
        let classification =
            mask::rules::parse(&classification_text).map_err(PolicyError::Invalid)?;
        let unclassified =
            (!classification.masking_off && classification.labels.is_empty()).then(|| {
                let path = dir.join(CLASSIFICATION_FILE);
                let what = if missing {
                    "is missing"
                } else {
                    "defines no labels"
                };
                format!(
                    "{} {what}, so every field would be returned in clear; define labels there, \
                     or write masking = \"off\" in it if this data needs no masking",
                    path.display()
                )
            });

        let limits = Limits::parse(
            &limits_text,
            &|label| classification.labels.contains_key(label),
            &|level| classification.levels.iter().any(|l| l == level),
        )
        .map_err(PolicyError::Invalid)?;

        let outline = files::parse_model(&model_text).map_err(PolicyError::Invalid)?;
        let (mut rules, mut warnings) =
            files::check_rules(&outline, files::parse_policy_csv(&policy_text))
                .map_err(PolicyError::Invalid)?;
        files::order_by_priority(&outline, &mut rules).map_err(PolicyError::Invalid)?;
        files::order_by_subject_priority(&outline, &mut rules);
        let broken = constraints::check(&constraints, &rules, outline.arity("g").is_some());
        if !broken.is_empty() {
            return Err(PolicyError::Invalid(broken));
        }
        let cycles = cycles::cycles(&rules);
        if !cycles.is_empty() {
            return Err(PolicyError::Invalid(cycles));
        }
        // Casbin's parser does not read link condition parameters
        // (`g = _, _, (_, _)`): it sees the role part; vigil checks them.
        let (casbin_model_text, conditions) = files::take_role_conditions(&model_text);
        let casbin_model_text = files::subject_priority_as_priority(&casbin_model_text);
        let mut matching = files::check_role_matching(&outline, &role_matching, &conditions)
            .map_err(PolicyError::Invalid)?;
        warnings.extend(domains_as_go_matches_them(
            &model_text,
            &outline,
            &mut matching,
        ));
        let engine = Engine::build_with_matching(&casbin_model_text, &rules, &matching)
            .await
            .map_err(|e| {
                let about_matcher = e.to_string().to_lowercase().contains("matcher");
                let line = if about_matcher {
                    outline.lines.get("m").copied()
                } else {
                    None
                };
                let file = if matches!(e, EngineError::Policy(_)) && !about_matcher {
                    POLICY_FILE
                } else {
                    MODEL_FILE
                };
                let message = match &e {
                    EngineError::Model(inner) | EngineError::Policy(inner) if about_matcher => {
                        inner.clone()
                    }
                    _ => e.to_string(),
                };
                PolicyError::Invalid(vec![Problem {
                    file: file.to_owned(),
                    line: line.unwrap_or(0),
                    message,
                }])
            })?;

        // A compiled matcher names only functions and tokens that exist
        // (the compiler takes nothing else); the probe, a full casbin-rs
        // scan of every rule, is for the models it did not compile.
        let probe = if engine.is_compiled() {
            None
        } else {
            engine.probe_matcher()
        };
        if let Some(why) = probe {
            // Name what is missing as the model writes it (`r.sbu`, not
            // casbin-rs's `r_sbu`).
            let missing = match why.strip_prefix("variable not found: ") {
                Some(name) => format!(": `{}` does not exist", name.replacen('_', ".", 1)),
                None if why.contains("Unknown property") => format!(
                    ": {why} (request values are strings; an attribute is a request token of \
                     its own, e.g. `r = sub, obj, act, age`)"
                ),
                None => format!(": {why}"),
            };
            return Err(PolicyError::Invalid(vec![Problem {
                file: MODEL_FILE.to_owned(),
                line: outline.lines.get("m").copied().unwrap_or(0),
                message: format!(
                    "the matcher cannot be evaluated, so every request would be denied{missing}"
                ),
            }]));
        }

        let mut hasher = Sha256::new();
        for (name, text) in [
            (MODEL_FILE, &model_text),
            (POLICY_FILE, &policy_text),
            (CLASSIFICATION_FILE, &classification_text),
            (LIMITS_FILE, &limits_text),
        ] {
            // A set without limits.toml keeps the version it had before
            // limits existed.
            if name == LIMITS_FILE && text.is_empty() {
                continue;
            }
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update((text.len() as u64).to_be_bytes());
            hasher.update(text.as_bytes());
        }
        let version = hex::encode(&hasher.finalize()[..8]);
        Ok(PolicySet {
            version,
            engine,
            classification,
            unclassified,
            loaded_at: SystemTime::now(),
            warnings,
            limits,
            grant_cache: Mutex::new(GrantCache::default()),
        })
    }

    /// Whether `subject` holds `role` in `domain` through the policy's
    /// role graph (for limits that name a role).
    pub fn holds_role(&self, subject: &str, domain: &str, role: &str) -> bool {
        self.engine.holds_role(subject, domain, role)
    }

    /// The best grant below `see:clear` (`see:pseudonym`, then
    /// `see:masked`), for a value past a reveal quota.
    pub fn weaker_grant(&self, asker: &AccessRequest<'_>, label: &Label) -> Grant {
        self.decide_grant_from(asker, label, 1)
    }

    /// What the policy lets the asker see of `label`: the most visible of
    /// `see:clear`, `see:pseudonym`, `see:masked` that it allows on object
    /// `label:<name>` or `level:<level>`, decided like any other request
    /// (roles, domains and deny rules apply). `None`: no grant, the label's
    /// default treatment applies.
    pub fn grant(&self, asker: &AccessRequest<'_>, label: &Label) -> Grant {
        if !asker.attributes.is_empty() {
            return self.decide_grant(asker, label);
        }
        let key: GrantKey = (
            asker.subject.to_owned(),
            asker.extra_roles.to_vec(),
            asker.domain.to_owned(),
            label.name.clone(),
        );
        let cache = || {
            self.grant_cache
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        if let Some(grant) = cache().entries.get(&key) {
            return grant.clone();
        }
        let grant = self.decide_grant(asker, label);
        let size = key_bytes(&key);
        let mut cache = cache();
        if cache.entries.len() >= GRANT_CACHE_LIMIT || cache.key_bytes + size > GRANT_CACHE_BYTES {
            cache.entries = HashMap::new();
            cache.key_bytes = 0;
        }
        if cache.entries.insert(key, grant.clone()).is_none() {
            cache.key_bytes += size;
        }
        grant
    }

    fn decide_grant(&self, asker: &AccessRequest<'_>, label: &Label) -> Grant {
        self.decide_grant_from(asker, label, 0)
    }

    /// The most visible grant from the `first`th level down.
    fn decide_grant_from(&self, asker: &AccessRequest<'_>, label: &Label, first: usize) -> Grant {
        const LEVELS: [(&str, Treatment); 3] = [
            (SEE_CLEAR, Treatment::Clear),
            ("see:pseudonym", Treatment::Pseudonym),
            (
                "see:masked",
                Treatment::Mask {
                    keep_first: None,
                    keep_last: None,
                },
            ),
        ];
        let objects = [
            format!("label:{}", label.name),
            format!("level:{}", label.level),
        ];
        for (action, treatment) in LEVELS.into_iter().skip(first) {
            for object in &objects {
                let request = AccessRequest {
                    object,
                    action,
                    ..*asker
                };
                if let Ok(verdict) = self.engine.decide(&request) {
                    if verdict.allowed() {
                        return Some((
                            treatment,
                            format!("{action} on {object}: {}", verdict.reason(&request)),
                        ));
                    }
                }
            }
        }
        None
    }
}

/// The action that lets a subject see a label in clear (and Unmask it).
pub const SEE_CLEAR: &str = "see:clear";

/// A file the set may do without: `None` when it does not exist.
async fn optional(dir: &Path, name: &str) -> Result<Option<String>, PolicyError> {
    match tokio::fs::read_to_string(dir.join(name)).await {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PolicyError::Read {
            path: dir.join(name),
            source,
        }),
    }
}

async fn read(dir: &Path, name: &str) -> Result<String, PolicyError> {
    let path = dir.join(name);
    tokio::fs::read_to_string(&path)
        .await
        .map_err(|source| PolicyError::Read { path, source })
}

/// The policy in force plus how it got there. Cloning the `Arc` is the way
/// to share it.
#[derive(Debug)]
pub struct PolicyStore {
    dir: PathBuf,
    current: ArcSwap<PolicySet>,
    last_reload: Mutex<ReloadRecord>,
    reloading: tokio::sync::Mutex<()>,
}

/// Outcome of the latest reload attempt, for status reporting.
#[derive(Debug, Clone, Default)]
pub struct ReloadRecord {
    pub at: Option<SystemTime>,
    pub error: Option<String>,
}

/// What a successful reload changed.
#[derive(Debug, Clone)]
pub struct Reloaded {
    pub previous_version: String,
    pub version: String,
    /// False when the files hash to the version already in force (nothing
    /// was swapped).
    pub changed: bool,
}

impl PolicyStore {
    pub async fn open(dir: &Path) -> Result<PolicyStore, PolicyError> {
        let set = PolicySet::load(dir).await?;
        Ok(PolicyStore {
            dir: dir.to_owned(),
            current: ArcSwap::from_pointee(set),
            last_reload: Mutex::new(ReloadRecord::default()),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// The snapshot a request should use for its whole life.
    pub fn snapshot(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the directory again and swaps the new set in if it is valid
    /// and different. Concurrent reloads are serialized; requests are not
    /// held up: they keep reading the old snapshot until the swap.
    pub async fn reload(&self) -> Result<Reloaded, PolicyError> {
        let _one_at_a_time = self.reloading.lock().await;
        let dir = self.dir.clone();
        // Building a large policy is CPU work: keep it off the request
        // threads.
        let handle = tokio::runtime::Handle::current();
        let result = tokio::task::spawn_blocking(move || handle.block_on(PolicySet::load(&dir)))
            .await
            .unwrap_or_else(|e| {
                Err(PolicyError::Invalid(vec![Problem {
                    file: "policy".into(),
                    line: 0,
                    message: format!("loader task failed: {e}"),
                }]))
            });
        let mut record = self
            .last_reload
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        record.at = Some(SystemTime::now());
        match result {
            Ok(mut set) => {
                record.error = None;
                let previous = self.current.load();
                set.limits.carry_over(&previous.limits);
                let (previous_version, version) = (previous.version.clone(), set.version.clone());
                let changed = previous_version != version;
                if changed {
                    self.current.store(Arc::new(set));
                }
                Ok(Reloaded {
                    previous_version,
                    version,
                    changed,
                })
            }
            Err(e) => {
                record.error = Some(e.to_string());
                Err(e)
            }
        }
    }

    pub fn last_reload(&self) -> ReloadRecord {
        self.last_reload
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}
