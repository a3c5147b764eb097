//! `vigil policy diff`: evidence for promoting a policy change. Compares
//! rule lines, and replays recorded decisions against the live and the
//! candidate set.

use std::{collections::HashMap, path::Path};

use super::{files, PolicySet};
use crate::{
    audit::{
        export::{for_each, ExportFilter},
        privacy::HMAC_PREFIX,
        verify::VerifyError,
        Redactor,
    },
    authz::AccessRequest,
};

#[derive(Debug, Default)]
pub struct RuleDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// Rule lines (normalized) in `candidate` but not `live`, and the reverse.
pub fn rule_diff(live_csv: &str, candidate_csv: &str) -> RuleDiff {
    let lines = |text: &str| -> Vec<String> {
        files::parse_policy_csv(text)
            .into_iter()
            .map(|rule| rule.fields.join(", "))
            .collect()
    };
    let (live, candidate) = (lines(live_csv), lines(candidate_csv));
    let live_set: std::collections::HashSet<&String> = live.iter().collect();
    let candidate_set: std::collections::HashSet<&String> = candidate.iter().collect();
    RuleDiff {
        added: candidate
            .iter()
            .filter(|l| !live_set.contains(l))
            .cloned()
            .collect(),
        removed: live
            .iter()
            .filter(|l| !candidate_set.contains(l))
            .cloned()
            .collect(),
    }
}

#[derive(Debug)]
pub struct Change {
    pub seq: u64,
    pub request: String,
    pub live: bool,
    pub candidate: bool,
    pub candidate_reason: String,
}

#[derive(Debug, Default)]
pub struct Replay {
    pub replayed: u64,
    pub changes: Vec<Change>,
    /// Decisions that cannot be replayed because a value was written as an
    /// HMAC digest.
    pub not_replayable: u64,
}

/// Replays every decision record of `audit_dir` against both sets.
pub fn replay(
    audit_dir: &Path,
    live: &PolicySet,
    candidate: &PolicySet,
) -> Result<Replay, VerifyError> {
    let mut replay = Replay::default();
    for_each(
        audit_dir,
        &ExportFilter::default(),
        &Redactor::default(),
        |_, checked| {
            let record = &checked.record;
            if record.kind != crate::audit::kind::DECISION {
                return Ok(());
            }
            let (Some(subject), Some(object), Some(action)) =
                (&record.sub, &record.obj, &record.act)
            else {
                return Ok(());
            };
            let attributes: HashMap<String, String> = record
                .attrs
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect();
            if subject.starts_with(HMAC_PREFIX)
                || attributes.values().any(|v| v.starts_with(HMAC_PREFIX))
            {
                replay.not_replayable += 1;
                return Ok(());
            }
            let roles: Vec<String> = record
                .detail
                .as_ref()
                .and_then(|d| d.to_value().get_mut("token_roles").map(std::mem::take))
                .and_then(|r| serde_json::from_value(r).ok())
                .unwrap_or_default();
            let domain = record.dom.clone().unwrap_or_default();
            let request = AccessRequest {
                subject,
                extra_roles: &roles,
                object,
                action,
                domain: &domain,
                attributes: &attributes,
            };
            let decide = |set: &PolicySet| {
                set.engine
                    .decide(&request)
                    .map(|v| (v.allowed(), v.reason(&request)))
            };
            replay.replayed += 1;
            match (decide(live), decide(candidate)) {
                (Ok((live_allowed, _)), Ok((candidate_allowed, candidate_reason)))
                    if live_allowed != candidate_allowed =>
                {
                    let domain = if domain.is_empty() {
                        String::new()
                    } else {
                        format!(" in {domain}")
                    };
                    replay.changes.push(Change {
                        seq: record.seq,
                        request: format!("{subject} {action} {object}{domain}"),
                        live: live_allowed,
                        candidate: candidate_allowed,
                        candidate_reason,
                    });
                }
                _ => {}
            }
            Ok(())
        },
    )?;
    Ok(replay)
}
