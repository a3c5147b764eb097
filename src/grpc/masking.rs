//! `vigil.v1.DataMasking`: Mask and Unmask, governed by the same policy as
//! access and audited without clear values.

use std::{collections::BTreeMap, sync::Arc};

use serde::Serialize;
use tonic::{Request, Response, Status};

use super::{authorization, decision_id, status::check_fields, Shared};
use crate::{
    audit::{kind, Detail, Record},
    authn::Principal,
    authz::AccessRequest,
    keys::CipherError,
    mask::{self, FieldAction, Masker, UnmaskError},
    policy::{PolicySet, SEE_CLEAR},
    proto::{
        self, data_masking_server::DataMasking, MaskRequest, MaskResponse, UnmaskRequest,
        UnmaskResponse,
    },
};

/// The action a subject needs on an object to receive its records at all.
pub const READ: &str = "read";

#[derive(Debug, Clone)]
pub struct DataMaskingService {
    shared: Arc<Shared>,
}

impl DataMaskingService {
    pub fn new(shared: Arc<Shared>) -> DataMaskingService {
        DataMaskingService { shared }
    }

    async fn principal<T>(
        &self,
        request: &Request<T>,
        subject: &str,
        object: &str,
        records: usize,
        rpc: &str,
    ) -> Result<Principal, Status> {
        check_fields(
            "",
            &[
                ("subject", subject, self.shared.authn.is_trusted()),
                ("object", object, true),
            ],
        )?;
        let limit = self.shared.limits.max_batch_items;
        if records > limit {
            return Err(Status::resource_exhausted(format!(
                "{records} records in one call; the limit is {limit} (max_batch_items); send smaller batches"
            )));
        }
        match self
            .shared
            .authn
            .authenticate(authorization(request), subject)
        {
            Ok(principal) => Ok(principal),
            Err(error) => Err(self.shared.refuse(error, subject, rpc).await),
        }
    }

    /// Starts the call's audit record and checks `read` on the object; a
    /// denial is audited and refused.
    async fn admit(
        &self,
        kind: &'static str,
        asker: &AccessRequest<'_>,
        policy: &PolicySet,
    ) -> Result<Record, Status> {
        let mut record = Record::new(kind);
        record.id = Some(decision_id());
        record.sub = Some(self.shared.redactor.subject(asker.subject));
        record.obj = Some(asker.object.to_owned());
        record.act = Some(READ.to_owned());
        if !asker.domain.is_empty() {
            record.dom = Some(asker.domain.to_owned());
        }
        record.pv = Some(policy.version.clone());
        let verdict = policy.engine.decide(asker)?;
        record.reason = Some(verdict.reason(asker));
        if verdict.allowed() {
            record.allowed = Some(true);
            return Ok(record);
        }
        record.allowed = Some(false);
        let reason = record.reason.clone().unwrap_or_default();
        self.shared.audit.append_one(record).await?;
        Err(Status::permission_denied(format!(
            "{} may not read {}: {reason}",
            asker.subject, asker.object
        )))
    }
}

impl DataMaskingService {
    /// Shadow evaluation for masking: the treatment the candidate policy
    /// would give each label this call used, where it differs from the live
    /// one. Counted and returned for the audit record; never served.
    fn shadow_treatments(
        &self,
        asker: &AccessRequest<'_>,
        actions: &[FieldAction],
    ) -> Option<serde_json::Value> {
        let shadow = self.shared.shadow.as_ref()?.snapshot();
        let mut live: BTreeMap<&str, &str> = BTreeMap::new();
        for action in actions {
            live.entry(action.label.as_str())
                .or_insert(action.treatment.as_str());
        }
        let mut divergences = Vec::new();
        for (label, live_treatment) in live {
            let candidate = match shadow.classification.labels.get(label) {
                Some(known) => match shadow.grant(asker, known) {
                    Some((treatment, _)) => treatment.to_string(),
                    None => known.default.to_string(),
                },
                None => "unclassified".to_owned(),
            };
            if candidate != live_treatment {
                divergences.push(serde_json::json!({ "label": label, "live": live_treatment, "candidate": candidate }));
            }
        }
        if divergences.is_empty() {
            return None;
        }
        self.shared
            .shadow_divergences
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(object = %asker.object, labels = divergences.len(), "shadow policy masks differently");
        Some(serde_json::json!({ "pv": shadow.version, "treatments": divergences }))
    }
}

/// The asker of a Mask/Unmask call as a `read` request on its object.
fn reader<'a>(
    principal: &'a Principal,
    object: &'a str,
    domain: &'a str,
    attributes: &'a std::collections::HashMap<String, String>,
) -> AccessRequest<'a> {
    AccessRequest {
        subject: &principal.subject,
        extra_roles: &principal.roles,
        object,
        action: READ,
        domain,
        attributes,
    }
}

/// A Mask call's audit detail. Keys in alphabetical order, as the
/// `serde_json` maps it replaced wrote them.
#[derive(Serialize)]
struct MaskSummary<'a> {
    fields: Vec<FieldCount<'a>>,
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

fn cipher_status(error: CipherError) -> Status {
    match error {
        CipherError::UnknownKey(_) => {
            Status::failed_precondition(format!("{error}; add the key to the keyring"))
        }
        _ => Status::invalid_argument(error.to_string()),
    }
}

#[tonic::async_trait]
impl DataMasking for DataMaskingService {
    async fn mask(&self, request: Request<MaskRequest>) -> Result<Response<MaskResponse>, Status> {
        let principal = {
            let message = request.get_ref();
            self.principal(
                &request,
                &message.subject,
                &message.object,
                message.records.len(),
                "Mask",
            )
            .await?
        };
        let mut message = request.into_inner();
        let policy = self.shared.policies.snapshot();
        let asker = reader(
            &principal,
            &message.object,
            &message.domain,
            &message.attributes,
        );
        let mut record = self.admit(kind::MASK, &asker, &policy).await?;

        let keys = self.shared.keys.clone();
        let visibility = |label: &mask::Label| policy.grant(&asker, label);
        let mut masker = Masker::new(
            &policy.classification,
            &message.object,
            &keys,
            visibility,
            self.shared.limits.max_depth,
        );
        let mut actions = Vec::new();
        for (index, item) in message.records.iter_mut().enumerate() {
            masker
                .mask(index, item, &mut actions)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        drop(masker);

        record.detail = Some(Detail::new(&MaskSummary {
            fields: summarize(&actions),
            records: message.records.len(),
            shadow: self.shadow_treatments(&asker, &actions),
        }));
        let id = record.id.clone().unwrap_or_default();
        let receipt = self.shared.audit.append_one(record).await?;
        Ok(Response::new(MaskResponse {
            records: message.records,
            actions: actions
                .into_iter()
                .map(|a| proto::FieldAction {
                    record_index: a.record_index as u32,
                    path: a.path,
                    label: a.label,
                    treatment: a.treatment,
                    rule: a.rule,
                })
                .collect(),
            decision_id: id,
            audit_seq: receipt.seq,
            audit_hash: receipt.hash_hex(),
            policy_version: policy.version.clone(),
        }))
    }

    async fn unmask(
        &self,
        request: Request<UnmaskRequest>,
    ) -> Result<Response<UnmaskResponse>, Status> {
        let principal = {
            let message = request.get_ref();
            let count = message.records.len() + message.values.len();
            self.principal(&request, &message.subject, &message.object, count, "Unmask")
                .await?
        };
        let mut message = request.into_inner();
        let policy = self.shared.policies.snapshot();
        let asker = reader(
            &principal,
            &message.object,
            &message.domain,
            &message.attributes,
        );
        let mut record = self.admit(kind::UNMASK, &asker, &policy).await?;

        // Unmask is `see:clear` on every label it opens; one refusal fails
        // the whole call, so nothing is returned half-opened.
        let mut allow = |label: &str| -> Result<(), String> {
            let Some(known) = policy.classification.labels.get(label) else {
                return Err(format!("label {label:?} is not in the classification"));
            };
            match policy.grant(&asker, known) {
                Some((mask::Treatment::Clear, _)) => Ok(()),
                _ => Err(format!(
                    "{} may not {SEE_CLEAR} label {label}",
                    asker.subject
                )),
            }
        };
        let keys = self.shared.keys.clone();
        let mut opened = Vec::new();
        let mut outcome: Result<(), UnmaskError<String>> = Ok(());
        // `values` are single ciphertexts: anything else is an error, not
        // something to pass through.
        for value in message.values.iter_mut() {
            let opened_value =
                keys.decrypt(value)
                    .map_err(UnmaskError::Cipher)
                    .and_then(|(label, clear)| {
                        allow(&label)
                            .map(|()| (label, clear))
                            .map_err(UnmaskError::Refused)
                    });
            match opened_value {
                Ok((label, clear)) => {
                    opened.push(label);
                    *value = clear;
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        if outcome.is_ok() {
            for item in message.records.iter_mut() {
                if let Err(e) = mask::unmask_record(item, &keys, &mut allow, &mut opened) {
                    outcome = Err(e);
                    break;
                }
            }
        }
        let mut labels: BTreeMap<&str, u64> = BTreeMap::new();
        for label in &opened {
            *labels.entry(label).or_default() += 1;
        }
        match outcome {
            Err(UnmaskError::Cipher(error)) => Err(cipher_status(error)),
            Err(UnmaskError::Refused(why)) => {
                record.allowed = Some(false);
                record.reason = Some(why.clone());
                self.shared.audit.append_one(record).await?;
                Err(Status::permission_denied(why))
            }
            Ok(()) => {
                record.detail = Some(serde_json::json!({ "opened": labels }).into());
                let id = record.id.clone().unwrap_or_default();
                let receipt = self.shared.audit.append_one(record).await?;
                Ok(Response::new(UnmaskResponse {
                    values: message.values,
                    records: message.records,
                    decision_id: id,
                    audit_seq: receipt.seq,
                    audit_hash: receipt.hash_hex(),
                }))
            }
        }
    }
}
