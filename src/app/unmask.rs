//! Unmask: ciphertexts opened for a reader with `see:clear` on each label,
//! only for the domain and object they were sealed for, answered whole or
//! not at all; every attempt audited.

use std::collections::{BTreeMap, HashMap};

use super::{decision_id, masking::ReadNames, records, AppError, Caller, Core};
use crate::{
    audit::{kind, Receipt},
    keys::{Opened, SealedFor},
    limits::Reveals,
    mask::{self, UnmaskError},
    metrics::Rpc,
    policy::{
        reading::{reader, refusal},
        SEE_CLEAR,
    },
    proto::json::Struct,
};

/// Ciphertexts (alone, or inside records) a reader asks to open.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnmaskCall {
    pub subject: String,
    pub object: String,
    pub domain: String,
    pub attributes: HashMap<String, String>,
    pub values: Vec<String>,
    pub records: Vec<Struct>,
}

/// Opened values and records. Built only here, from the receipt of the
/// call's durable record.
#[derive(Debug)]
pub struct Unmasked {
    pub values: Vec<String>,
    pub records: Vec<Struct>,
    pub decision_id: String,
    receipt: Receipt,
}

impl Unmasked {
    pub fn receipt(&self) -> &Receipt {
        &self.receipt
    }
}

/// Why Unmask refused an envelope, and (for one sealed elsewhere) what it
/// was sealed for, for the audit record.
struct Refusal {
    why: String,
    sealed_for: Option<SealedFor>,
}

impl Core {
    pub async fn unmask(
        &self,
        caller: &Caller<'_>,
        call: UnmaskCall,
    ) -> Result<Unmasked, AppError> {
        self.observed(
            Rpc::Unmask,
            caller,
            self.unmask_unobserved(caller, call),
            |_| true,
        )
        .await
    }

    async fn unmask_unobserved(
        &self,
        caller: &Caller<'_>,
        mut call: UnmaskCall,
    ) -> Result<Unmasked, AppError> {
        let policy = self.policies.snapshot();
        let names = ReadNames {
            rpc: "Unmask",
            subject: &call.subject,
            object: &call.object,
            domain: &call.domain,
            attributes: &call.attributes,
            items: call.records.len() + call.values.len(),
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
        let verdict = policy.engine.decide(&asker)?;
        let reason = verdict.reason(&asker);
        if !verdict.allowed() {
            let message = refusal(&asker, &reason);
            return Err(self
                .refuse_reading(kind::UNMASK, &id, &asker, reason, &policy.version, message)
                .await);
        }
        if let Err(exceeded) = self.check_rates(&policy, &asker).await {
            return Err(self
                .refuse_limited(kind::UNMASK, &id, &asker, exceeded, &policy.version)
                .await);
        }
        // Opened values are counted against reveal quotas, then settled all
        // at once: an Unmask is answered whole or not at all.
        let mut reveals = Reveals::counting(self.quotas_for(&policy, &asker));

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
        let keys = &self.keys;
        let mut opened = Vec::new();
        let mut outcome: Result<(), UnmaskError<Refusal>> = Ok(());
        // `values` are single ciphertexts: anything else is an error, not
        // something to pass through.
        for value in call.values.iter_mut() {
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
            for item in call.records.iter_mut() {
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
                    .refuse_reading(kind::UNMASK, &id, &asker, why.clone(), &policy.version, why)
                    .await
                {
                    AppError::Refused(_) => Err(error.into()),
                    unaudited => Err(unaudited),
                }
            }
            Err(UnmaskError::Refused(Refusal { why, sealed_for })) => {
                let mut record = records::reading(
                    kind::UNMASK,
                    &self.redactor,
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
                self.audit.append_one(record).await?;
                Err(AppError::Refused(why))
            }
            Ok(()) => {
                if let Err(exceeded) = self.limiter.settle_all(&reveals).await {
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
                    &self.redactor,
                    &id,
                    &asker,
                    true,
                    reason,
                    &policy.version,
                );
                record.detail = Some(serde_json::json!({ "opened": labels }).into());
                let receipt = self.record(record).await?;
                Ok(Unmasked {
                    values: call.values,
                    records: call.records,
                    decision_id: id,
                    receipt,
                })
            }
        }
    }
}
