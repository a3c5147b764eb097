//! Mask: the records a service is about to return, each field treated as
//! the policy grants the reader, audited without clear values.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::{
    check_attributes, check_fields, decision_id, records, AppError, Caller, Core, InputError,
};
use crate::{
    audit::{kind, Detail, Receipt},
    authn::Principal,
    authz::AccessRequest,
    limits::Exceeded,
    mask::{self, FieldAction},
    metrics::Rpc,
    policy::{
        reading::{reader, refusal, MaskLimits, Reading},
        PolicySet,
    },
    proto::json::Struct,
    telemetry::{self, Stage},
};

/// Records `subject` is about to receive from `object`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MaskCall {
    pub subject: String,
    pub object: String,
    pub domain: String,
    pub attributes: HashMap<String, String>,
    pub records: Vec<Struct>,
}

/// Masked records and what was done to each field. Built only here, from
/// the receipt of the call's durable record.
#[derive(Debug)]
pub struct Masked {
    pub records: Vec<Struct>,
    pub actions: Vec<FieldAction>,
    pub decision_id: String,
    pub policy_version: String,
    /// When a reveal quota weakened a value: ms until it allows again.
    pub retry_after_ms: u64,
    receipt: Receipt,
}

impl Masked {
    pub fn receipt(&self) -> &Receipt {
        &self.receipt
    }
}

/// What Mask and Unmask both ask of a call before anything else: the
/// fields they name, within bounds, and at most `max_batch_items` items.
pub(super) struct ReadNames<'a> {
    pub rpc: &'static str,
    pub subject: &'a str,
    pub object: &'a str,
    pub domain: &'a str,
    pub attributes: &'a HashMap<String, String>,
    pub items: usize,
}

impl Core {
    /// Checks a Mask or Unmask call's size and fields against one snapshot,
    /// then authenticates it.
    pub(super) async fn reader_principal(
        &self,
        caller: &Caller<'_>,
        policy: &PolicySet,
        call: ReadNames<'_>,
    ) -> Result<Principal, AppError> {
        check_fields(
            "",
            &[
                ("subject", call.subject, self.authn.is_trusted()),
                ("object", call.object, true),
                ("domain", call.domain, false),
            ],
        )?;
        check_attributes("", call.attributes, self.limits.max_attributes)?;
        let limit = self.limits.max_batch_items;
        if call.items > limit {
            return Err(InputError::TooManyRecords {
                count: call.items,
                limit,
            }
            .into());
        }
        self.authenticate(caller, policy, call.subject, call.rpc)
            .await
    }

    pub async fn mask(&self, caller: &Caller<'_>, call: MaskCall) -> Result<Masked, AppError> {
        let result = self
            .observed(
                Rpc::Mask,
                caller,
                self.mask_unobserved(caller, call),
                |_| true,
            )
            .await;
        if let Ok(answer) = &result {
            self.metrics.count_mask_fields(
                answer
                    .actions
                    .iter()
                    .map(|action| (action.label.as_str(), action.treatment.as_str())),
            );
        }
        result
    }

    async fn mask_unobserved(
        &self,
        caller: &Caller<'_>,
        mut call: MaskCall,
    ) -> Result<Masked, AppError> {
        let policy = self.policies.snapshot();
        let names = ReadNames {
            rpc: "Mask",
            subject: &call.subject,
            object: &call.object,
            domain: &call.domain,
            attributes: &call.attributes,
            items: call.records.len(),
        };
        let principal = self.reader_principal(caller, &policy, names).await?;
        let asker = reader(
            &principal.subject,
            &principal.roles,
            &call.object,
            &call.domain,
            &call.attributes,
        );
        let id = decision_id();
        telemetry::record_decision(&tracing::Span::current(), &id);
        let limits = MaskLimits {
            max_depth: self.limits.max_depth,
            max_values: self.limits.max_mask_values,
        };
        let reveals = self.limiter.reveals(self.quotas_for(&policy, &asker));
        let counting = reveals.needs_count();
        let (reason, mut masker) = match policy.masker_for(&asker, &self.keys, limits, reveals)? {
            Reading::Admitted { reason, masker } => (reason, masker),
            Reading::Denied { reason } => {
                let message = refusal(&asker, &reason);
                return Err(self
                    .refuse_reading(kind::MASK, &id, &asker, reason, &policy.version, message)
                    .await);
            }
        };
        if let Err(exceeded) = self.check_rates(&policy, &asker).await {
            return Err(self
                .refuse_limited(kind::MASK, &id, &asker, exceeded, &policy.version)
                .await);
        }
        if counting {
            // Shared quotas: count what this call would show in clear, take
            // it from Redis in one round trip, then mask within what was
            // granted. The counting pass runs on a copy; `read` was decided
            // once, above.
            let mut copy = call.records.clone();
            let mut ignored = Vec::new();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for (index, item) in copy.iter_mut().enumerate() {
                    if masker.mask(index, item, &mut ignored).is_err() {
                        break;
                    }
                }
            }));
            let mut reveals = masker.into_visibility().reveals;
            self.limiter.lease(&mut reveals).await;
            masker = policy.admitted_masker(&asker, &self.keys, limits, reveals);
        }
        let mut actions = Vec::new();
        let masking = telemetry::stage(Stage::Masking).entered();
        // A bug in masking must not take the call's answer (or its audit
        // record) with it: the panic is caught, audited, and refused.
        let masked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for (index, item) in call.records.iter_mut().enumerate() {
                masker.mask(index, item, &mut actions)?;
            }
            Ok::<(), mask::MaskError>(())
        }));
        let reveals = masker.into_visibility().reveals;
        drop(masking);
        match masked {
            Ok(result) => result?,
            Err(_) => {
                let why = "masking failed inside vigil; no records were returned".to_owned();
                let refused = self
                    .refuse_reading(kind::MASK, &id, &asker, why.clone(), &policy.version, why)
                    .await;
                return Err(match refused {
                    AppError::Refused(why) => AppError::Internal(format!("decision {id}: {why}")),
                    unaudited => unaudited,
                });
            }
        }

        let mut record = records::reading(
            kind::MASK,
            &self.redactor,
            &id,
            &asker,
            true,
            reason,
            &policy.version,
        );
        self.metrics.count_quota_weakened(&reveals.spent);
        let retry_after_ms = if reveals.spent.is_empty() {
            0
        } else {
            crate::limits::millis(reveals.retry_after)
        };
        record.detail = Some(Detail::new(&MaskSummary {
            fields: summarize(&actions),
            invalid: invalid_by_label(&actions),
            quota: reveals.spent,
            records: call.records.len(),
            shadow: self
                .shadow
                .as_ref()
                .and_then(|shadow| shadow.compare_treatments(&asker, &actions)),
        }));
        let receipt = self.record(record).await?;
        Ok(Masked {
            records: call.records,
            actions,
            decision_id: id,
            policy_version: policy.version.clone(),
            retry_after_ms,
            receipt,
        })
    }

    /// Audits a read the policy allowed and a limit refused, naming the
    /// limit, then returns RESOURCE_EXHAUSTED with when to retry.
    pub(super) async fn refuse_limited(
        &self,
        kind: &'static str,
        id: &str,
        asker: &AccessRequest<'_>,
        exceeded: Exceeded,
        policy_version: &str,
    ) -> AppError {
        let mut record = records::reading(
            kind,
            &self.redactor,
            id,
            asker,
            false,
            exceeded.reason.clone(),
            policy_version,
        );
        record.detail = Some(serde_json::json!({ "limit": exceeded.limit }).into());
        match self.audit.append_one(record).await {
            Ok(_) => AppError::Limited {
                reason: format!("decision {id}: {}", exceeded.reason),
                retry_after_ms: crate::limits::millis(exceeded.retry_after),
            },
            Err(error) => error.into(),
        }
    }

    /// Audits a refused read (or unmask) with `reason`, then returns the
    /// refusal with `message`.
    pub(super) async fn refuse_reading(
        &self,
        kind: &'static str,
        id: &str,
        asker: &AccessRequest<'_>,
        reason: String,
        policy_version: &str,
        message: String,
    ) -> AppError {
        let record = records::reading(
            kind,
            &self.redactor,
            id,
            asker,
            false,
            reason,
            policy_version,
        );
        match self.audit.append_one(record).await {
            Ok(_) => AppError::Refused(message),
            Err(error) => error.into(),
        }
    }
}

/// Invalid values per label (counts, never values): the data-quality
/// view of a Mask call.
fn invalid_by_label(actions: &[FieldAction]) -> BTreeMap<&str, u64> {
    let mut invalid = BTreeMap::new();
    for action in actions.iter().filter(|a| a.valid == Some(false)) {
        *invalid.entry(action.label.as_str()).or_default() += 1;
    }
    invalid
}

/// A Mask call's audit detail. Keys in alphabetical order, as the
/// `serde_json` maps it replaced wrote them.
#[derive(Serialize)]
struct MaskSummary<'a> {
    fields: Vec<FieldCount<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    invalid: BTreeMap<&'a str, u64>,
    /// Values weakened per reveal quota spent.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    quota: BTreeMap<String, u64>,
    records: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    shadow: Option<serde_json::Value>,
}

/// How many fields at one path got one treatment. Never values.
#[derive(Serialize)]
struct FieldCount<'a> {
    count: u64,
    label: &'a str,
    path: &'a str,
    treatment: &'a str,
}

/// Field actions summarized for the audit record: which paths got which
/// treatment, how often; list indexes fold into their list's path.
fn summarize(actions: &[FieldAction]) -> Vec<FieldCount<'_>> {
    let mut counts: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    for action in actions {
        let path = match action.path.rfind("[") {
            Some(i) if action.path[i..].contains("..") => &action.path[..i],
            _ => action.path.as_str(),
        };
        *counts
            .entry((path, &action.label, &action.treatment))
            .or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((path, label, treatment), count)| FieldCount {
            count,
            label,
            path,
            treatment,
        })
        .collect()
}
