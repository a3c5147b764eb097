//! `vigil.v1.DataMasking`: Mask and Unmask, governed by the same policy as
//! access and audited without clear values.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use serde::Serialize;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{
    decision_id, observe_call, records,
    status::{check_attributes, check_fields, InputError, RpcError},
    Metadata, Shared,
};
use crate::{
    audit::{kind, Detail, Receipt},
    authn::Principal,
    authz::AccessRequest,
    keys::{Opened, SealedFor},
    limits::{Exceeded, Reveals},
    mask::{self, FieldAction, UnmaskError},
    metrics::Rpc,
    policy::{
        reading::{reader, refusal, MaskLimits, Reading},
        SEE_CLEAR,
    },
    proto::{
        self, data_masking_server::DataMasking, MaskRequest, MaskResponse, UnmaskRequest,
        UnmaskResponse,
    },
    telemetry::{self, Stage},
};

/// Why Unmask refused an envelope, and (for one sealed elsewhere) what it
/// was sealed for, for the audit record.
struct Refusal {
    why: String,
    sealed_for: Option<SealedFor>,
}

/// A Mask or Unmask call as checked before anything else: what it names,
/// how many items it carries, and its name for audit records.
trait ReadCall {
    const RPC: &'static str;
    fn subject(&self) -> &str;
    fn object(&self) -> &str;
    fn domain(&self) -> &str;
    fn attributes(&self) -> &std::collections::HashMap<String, String>;
    fn items(&self) -> usize;
}

/// The four names both calls share, and their item count.
macro_rules! read_call {
    ($message:ty, $rpc:literal, |$m:ident| $items:expr) => {
        impl ReadCall for $message {
            const RPC: &'static str = $rpc;
            fn subject(&self) -> &str {
                &self.subject
            }
            fn object(&self) -> &str {
                &self.object
            }
            fn domain(&self) -> &str {
                &self.domain
            }
            fn attributes(&self) -> &std::collections::HashMap<String, String> {
                &self.attributes
            }
            fn items(&self) -> usize {
                let $m = self;
                $items
            }
        }
    };
}

read_call!(MaskRequest, "Mask", |m| m.records.len());
read_call!(UnmaskRequest, "Unmask", |m| m.records.len()
    + m.values.len());

#[derive(Debug, Clone)]
pub struct DataMaskingService {
    shared: Arc<Shared>,
}

impl DataMaskingService {
    pub fn new(shared: Arc<Shared>) -> DataMaskingService {
        DataMaskingService { shared }
    }

    /// Checks the call's size and fields, then authenticates it.
    async fn principal<T: ReadCall>(&self, request: &Request<T>) -> Result<Principal, RpcError> {
        let call = request.get_ref();
        let (subject, records) = (call.subject(), call.items());
        check_fields(
            "",
            &[
                ("subject", subject, self.shared.authn.is_trusted()),
                ("object", call.object(), true),
                ("domain", call.domain(), false),
            ],
        )?;
        check_attributes("", call.attributes(), self.shared.limits.max_attributes)?;
        let limit = self.shared.limits.max_batch_items;
        if records > limit {
            return Err(InputError::TooManyRecords {
                count: records,
                limit,
            }
            .into());
        }
        self.shared.authenticate(request, subject, T::RPC).await
    }

    async fn mask(&self, request: Request<MaskRequest>) -> Result<MaskResponse, RpcError> {
        let principal = self.principal(&request).await?;
        let mut message = request.into_inner();
        let policy = self.shared.policies.snapshot();
        let asker = reader(
            &principal.subject,
            &principal.roles,
            &message.object,
            &message.domain,
            &message.attributes,
        );
        let id = decision_id();
        telemetry::record_decision(&tracing::Span::current(), &id);
        let limits = MaskLimits {
            max_depth: self.shared.limits.max_depth,
            max_values: self.shared.limits.max_mask_values,
        };
        let reveals = self
            .shared
            .limiter
            .reveals(self.shared.quotas_for(&policy, &asker));
        let counting = reveals.needs_count();
        let reading = policy.masker_for(&asker, &self.shared.keys, limits, reveals)?;
        let (reason, mut masker) = match reading {
            Reading::Admitted { reason, masker } => (reason, masker),
            Reading::Denied { reason } => {
                let message = refusal(&asker, &reason);
                return Err(self
                    .refuse(kind::MASK, &id, &asker, reason, &policy.version, message)
                    .await);
            }
        };
        if let Err(exceeded) = self.shared.check_rates(&policy, &asker).await {
            return Err(self
                .refuse_limited(kind::MASK, &id, &asker, exceeded, &policy.version)
                .await);
        }
        if counting {
            // Shared quotas: count what this call would show in clear, take
            // it from Redis in one round trip, then mask within what was
            // granted. The counting pass runs on a copy.
            let mut copy = message.records.clone();
            let mut ignored = Vec::new();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for (index, item) in copy.iter_mut().enumerate() {
                    if masker.mask(index, item, &mut ignored).is_err() {
                        break;
                    }
                }
            }));
            let mut reveals = masker.into_visibility().reveals;
            self.shared.limiter.lease(&mut reveals).await;
            masker = match policy.masker_for(&asker, &self.shared.keys, limits, reveals)? {
                Reading::Admitted { masker, .. } => masker,
                Reading::Denied { .. } => {
                    return Err(RpcError::Internal(format!(
                        "decision {id}: one snapshot decided read twice differently"
                    )))
                }
            };
        }
        let mut actions = Vec::new();
        let masking = telemetry::stage(Stage::Masking).entered();
        // A bug in masking must not take the call's answer (or its audit
        // record) with it: the panic is caught, audited, and refused.
        let masked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for (index, item) in message.records.iter_mut().enumerate() {
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
                    .refuse(kind::MASK, &id, &asker, why.clone(), &policy.version, why)
                    .await;
                return Err(match refused {
                    RpcError::Refused(why) => RpcError::Internal(format!("decision {id}: {why}")),
                    unaudited => unaudited,
                });
            }
        }

        let mut record = records::reading(
            kind::MASK,
            &self.shared.redactor,
            &id,
            &asker,
            true,
            reason,
            &policy.version,
        );
        self.shared.metrics.count_quota_weakened(&reveals.spent);
        let retry_after_ms = if reveals.spent.is_empty() {
            0
        } else {
            crate::limits::millis(reveals.retry_after)
        };
        record.detail = Some(Detail::new(&MaskSummary {
            fields: summarize(&actions),
            invalid: invalid_by_label(&actions),
            quota: reveals.spent,
            records: message.records.len(),
            shadow: self
                .shared
                .shadow
                .as_ref()
                .and_then(|shadow| shadow.compare_treatments(&asker, &actions)),
        }));
        let receipt = self.shared.record(record).await?;
        Ok(MaskResponse {
            records: message.records,
            actions: actions
                .into_iter()
                .map(|a| proto::FieldAction {
                    record_index: a.record_index as u32,
                    path: a.path,
                    label: a.label,
                    treatment: a.treatment,
                    rule: a.rule,
                    validity: validity_text(a.valid).to_owned(),
                    quota: a.quota.unwrap_or_default(),
                })
                .collect(),
            decision_id: id,
            audit_seq: receipt.seq(),
            audit_hash: receipt.hash_hex(),
            policy_version: policy.version.clone(),
            retry_after_ms,
        })
    }

    async fn unmask(&self, request: Request<UnmaskRequest>) -> Result<UnmaskResponse, RpcError> {
        let principal = self.principal(&request).await?;
        let mut message = request.into_inner();
        let policy = self.shared.policies.snapshot();
        let asker = reader(
            &principal.subject,
            &principal.roles,
            &message.object,
            &message.domain,
            &message.attributes,
        );
        let id = decision_id();
        let verdict = policy.engine.decide(&asker)?;
        let reason = verdict.reason(&asker);
        if !verdict.allowed() {
            let message = refusal(&asker, &reason);
            return Err(self
                .refuse(kind::UNMASK, &id, &asker, reason, &policy.version, message)
                .await);
        }
        if let Err(exceeded) = self.shared.check_rates(&policy, &asker).await {
            return Err(self
                .refuse_limited(kind::UNMASK, &id, &asker, exceeded, &policy.version)
                .await);
        }
        // Opened values are counted against reveal quotas, then settled all
        // at once: an Unmask is answered whole or not at all.
        let mut reveals = Reveals::counting(self.shared.quotas_for(&policy, &asker));

        // Unmask is `see:clear` on every label it opens, for the domain and
        // object the value was sealed for; one refusal fails the whole call,
        // so nothing is returned half-opened.
        let mut allow = |envelope: &Opened| -> Result<(), Refusal> {
            if let Some(sealed_for) = &envelope.sealed_for {
                if sealed_for.domain != asker.domain || sealed_for.object != asker.object {
                    return Err(Refusal {
                        why: format!(
                            "a ciphertext was sealed for another domain or object than {} in {:?}; \
                             it opens only where it was masked",
                            asker.object, asker.domain
                        ),
                        sealed_for: Some(sealed_for.clone()),
                    });
                }
            }
            let label = envelope.label.as_str();
            let refusal = |why: String| Refusal {
                why,
                sealed_for: None,
            };
            let Some(known) = policy.classification.labels.get(label) else {
                return Err(refusal(format!(
                    "label {label:?} is not in the classification"
                )));
            };
            match policy.grant(&asker, known) {
                Some((mask::Treatment::Clear, _)) => {
                    // Counting never refuses; settling below may.
                    let _ = reveals.reveal(&known.name, &known.level);
                    Ok(())
                }
                _ => Err(refusal(format!(
                    "{} may not {SEE_CLEAR} label {label}",
                    asker.subject
                ))),
            }
        };
        let keys = &self.shared.keys;
        let mut opened = Vec::new();
        let mut outcome: Result<(), UnmaskError<Refusal>> = Ok(());
        // `values` are single ciphertexts: anything else is an error, not
        // something to pass through.
        for value in message.values.iter_mut() {
            let opened_value =
                keys.decrypt(value)
                    .map_err(UnmaskError::Cipher)
                    .and_then(|envelope| {
                        allow(&envelope)
                            .map(|()| envelope)
                            .map_err(UnmaskError::Refused)
                    });
            match opened_value {
                Ok(envelope) => {
                    opened.push(envelope.label);
                    *value = envelope.value;
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        if outcome.is_ok() {
            for item in message.records.iter_mut() {
                if let Err(e) = mask::unmask_record(item, keys, &mut allow, &mut opened) {
                    outcome = Err(e);
                    break;
                }
            }
        }
        // Every attempt is audited, a forged or foreign ciphertext too.
        match outcome {
            Err(UnmaskError::Cipher(error)) => {
                let why = format!("ciphertext refused: {error}");
                match self
                    .refuse(kind::UNMASK, &id, &asker, why.clone(), &policy.version, why)
                    .await
                {
                    RpcError::Refused(_) => Err(error.into()),
                    unaudited => Err(unaudited),
                }
            }
            Err(UnmaskError::Refused(Refusal { why, sealed_for })) => {
                let mut record = records::reading(
                    kind::UNMASK,
                    &self.shared.redactor,
                    &id,
                    &asker,
                    false,
                    why.clone(),
                    &policy.version,
                );
                if let Some(sealed_for) = sealed_for {
                    record.detail = Some(
                        serde_json::json!({ "sealed_for": { "obj": sealed_for.object, "dom": sealed_for.domain } })
                            .into(),
                    );
                }
                self.shared.audit.append_one(record).await?;
                Err(RpcError::Refused(why))
            }
            Ok(()) => {
                if let Err(exceeded) = self.shared.limiter.settle_all(&reveals).await {
                    return Err(self
                        .refuse_limited(kind::UNMASK, &id, &asker, exceeded, &policy.version)
                        .await);
                }
                let mut labels: BTreeMap<&str, u64> = BTreeMap::new();
                for label in &opened {
                    *labels.entry(label).or_default() += 1;
                }
                let mut record = records::reading(
                    kind::UNMASK,
                    &self.shared.redactor,
                    &id,
                    &asker,
                    true,
                    reason,
                    &policy.version,
                );
                record.detail = Some(serde_json::json!({ "opened": labels }).into());
                let receipt: Receipt = self.shared.audit.append_one(record).await?;
                Ok(UnmaskResponse {
                    values: message.values,
                    records: message.records,
                    decision_id: id,
                    audit_seq: receipt.seq(),
                    audit_hash: receipt.hash_hex(),
                })
            }
        }
    }

    /// Audits a call the policy allowed and a limit refused, naming the
    /// limit, then returns RESOURCE_EXHAUSTED with when to retry.
    async fn refuse_limited(
        &self,
        kind: &'static str,
        id: &str,
        asker: &AccessRequest<'_>,
        exceeded: Exceeded,
        policy_version: &str,
    ) -> RpcError {
        let mut record = records::reading(
            kind,
            &self.shared.redactor,
            id,
            asker,
            false,
            exceeded.reason.clone(),
            policy_version,
        );
        record.detail = Some(serde_json::json!({ "limit": exceeded.limit }).into());
        match self.shared.audit.append_one(record).await {
            Ok(_) => RpcError::Limited {
                reason: format!("decision {id}: {}", exceeded.reason),
                retry_after_ms: crate::limits::millis(exceeded.retry_after),
            },
            Err(error) => error.into(),
        }
    }

    /// Audits a refused read (or unmask) with `reason`, then returns the
    /// refusal with `message`.
    async fn refuse(
        &self,
        kind: &'static str,
        id: &str,
        asker: &AccessRequest<'_>,
        reason: String,
        policy_version: &str,
        message: String,
    ) -> RpcError {
        let record = records::reading(
            kind,
            &self.shared.redactor,
            id,
            asker,
            false,
            reason,
            policy_version,
        );
        match self.shared.audit.append_one(record).await {
            Ok(_) => RpcError::Refused(message),
            Err(error) => error.into(),
        }
    }
}

fn validity_text(valid: Option<bool>) -> &'static str {
    match valid {
        Some(true) => "valid",
        Some(false) => "invalid",
        None => "",
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

#[tonic::async_trait]
impl DataMasking for DataMaskingService {
    async fn mask(&self, request: Request<MaskRequest>) -> Result<Response<MaskResponse>, Status> {
        let started = Instant::now();
        let span = telemetry::call_span("vigil.v1.DataMasking/Mask", &Metadata(request.metadata()));
        let result = DataMaskingService::mask(self, request)
            .instrument(span)
            .await;
        observe_call(&self.shared, Rpc::Mask, started, &result, |_| true);
        if let Ok(answer) = &result {
            self.shared.metrics.count_mask_fields(
                answer
                    .actions
                    .iter()
                    .map(|action| (action.label.as_str(), action.treatment.as_str())),
            );
        }
        Ok(Response::new(result?))
    }

    async fn unmask(
        &self,
        request: Request<UnmaskRequest>,
    ) -> Result<Response<UnmaskResponse>, Status> {
        let started = Instant::now();
        let span =
            telemetry::call_span("vigil.v1.DataMasking/Unmask", &Metadata(request.metadata()));
        let result = DataMaskingService::unmask(self, request)
            .instrument(span)
            .await;
        observe_call(&self.shared, Rpc::Unmask, started, &result, |_| true);
        Ok(Response::new(result?))
    }
}
