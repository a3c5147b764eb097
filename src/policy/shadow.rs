//! Shadow mode: a candidate policy evaluated beside the live one on real
//! traffic. Where it would answer differently, the difference is counted
//! and returned for the audit record; the live answer is always the one
//! served, and a failing candidate never affects it.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
};

use serde_json::{json, Value};

use super::{PolicyError, PolicyStore};
use crate::{authz::AccessRequest, mask::FieldAction};

/// The candidate policy and how often it disagreed with the live one.
#[derive(Debug)]
pub struct Shadow {
    store: PolicyStore,
    divergences: AtomicU64,
}

impl Shadow {
    pub async fn open(dir: &Path) -> Result<Shadow, PolicyError> {
        Ok(Shadow {
            store: PolicyStore::open(dir).await?,
            divergences: AtomicU64::new(0),
        })
    }

    pub fn store(&self) -> &PolicyStore {
        &self.store
    }

    /// Calls where the candidate would have answered differently.
    pub fn divergences(&self) -> u64 {
        self.divergences.load(Ordering::Relaxed)
    }

    /// The candidate's decision on `access` where it differs from the live
    /// `allowed`, as audit detail.
    pub fn compare_decision(&self, access: &AccessRequest<'_>, allowed: bool) -> Option<Value> {
        let candidate = self.store.snapshot();
        let verdict = candidate.engine.decide(access).ok()?;
        if verdict.allowed() == allowed {
            return None;
        }
        self.divergences.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            live = allowed,
            candidate = verdict.allowed(),
            "shadow policy diverges"
        );
        Some(json!({
            "pv": candidate.version,
            "allowed": verdict.allowed(),
            "reason": verdict.reason(access),
        }))
    }

    /// The treatment the candidate would give each label a Mask call used,
    /// where it differs from the live one, as audit detail.
    pub fn compare_treatments(
        &self,
        asker: &AccessRequest<'_>,
        actions: &[FieldAction],
    ) -> Option<Value> {
        let candidate = self.store.snapshot();
        let mut live: BTreeMap<&str, &str> = BTreeMap::new();
        for action in actions {
            live.entry(action.label.as_str())
                .or_insert(action.treatment.as_str());
        }
        let mut divergences = Vec::new();
        for (label, live_treatment) in live {
            let treatment = match candidate.classification.labels.get(label) {
                Some(known) => match candidate.grant(asker, known) {
                    Some((treatment, _)) => treatment.to_string(),
                    None => known.default.to_string(),
                },
                None => "unclassified".to_owned(),
            };
            if treatment != live_treatment {
                divergences.push(
                    json!({ "label": label, "live": live_treatment, "candidate": treatment }),
                );
            }
        }
        if divergences.is_empty() {
            return None;
        }
        self.divergences.fetch_add(1, Ordering::Relaxed);
        tracing::info!(object = %asker.object, labels = divergences.len(), "shadow policy masks differently");
        Some(json!({ "pv": candidate.version, "treatments": divergences }))
    }
}
