//! Authorize and AuthorizeBatch: one decision (or many) on one policy
//! snapshot, rate limits spent on what the policy allowed, each answer
//! built from its audit record's receipt.

use std::collections::HashMap;

use tracing::Instrument;

use super::{
    check_attributes, check_fields, decision_id, records::DecisionRecord, AppError, Caller, Core,
    InputError,
};
use crate::{
    audit::{Receipt, Record},
    authn::Principal,
    authz::AccessRequest,
    metrics::{Outcome, Rpc},
    policy::PolicySet,
    telemetry::{self, Stage},
};

/// One access question: may `subject` do `action` on `object` (in
/// `domain`), given `attributes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessCall {
    pub subject: String,
    pub object: String,
    pub action: String,
    pub domain: String,
    pub attributes: HashMap<String, String>,
}

/// An audited decision. Its fields are private: only this module builds
/// one, from the receipt of its durable record.
#[derive(Debug, Clone)]
pub struct Authorized {
    allowed: bool,
    decision_id: String,
    reason: String,
    policy_version: String,
    /// A rate limit's deny: which, and when it allows again (ms).
    limited: Option<(String, u64)>,
    receipt: Receipt,
}

impl Authorized {
    pub fn allowed(&self) -> bool {
        self.allowed
    }
    pub fn decision_id(&self) -> &str {
        &self.decision_id
    }
    pub fn reason(&self) -> &str {
        &self.reason
    }
    pub fn policy_version(&self) -> &str {
        &self.policy_version
    }
    /// The limit that turned an allow into this deny, if one did.
    pub fn limit(&self) -> Option<&str> {
        self.limited.as_ref().map(|(limit, _)| limit.as_str())
    }
    /// Milliseconds until the limit allows again (0 when none denied).
    pub fn retry_after_ms(&self) -> u64 {
        self.limited.as_ref().map_or(0, |(_, ms)| *ms)
    }
    pub fn receipt(&self) -> &Receipt {
        &self.receipt
    }
    /// Every part, moved out: the adapters' encoders take them whole.
    pub fn into_parts(self) -> AuthorizedParts {
        let (limit, retry_after_ms) = self.limited.unwrap_or_default();
        AuthorizedParts {
            allowed: self.allowed,
            decision_id: self.decision_id,
            reason: self.reason,
            policy_version: self.policy_version,
            limit,
            retry_after_ms,
            receipt: self.receipt,
        }
    }
}

/// An [`Authorized`] taken apart (it can be taken apart, not put
/// together).
#[derive(Debug)]
pub struct AuthorizedParts {
    pub allowed: bool,
    pub decision_id: String,
    pub reason: String,
    pub policy_version: String,
    /// Empty when no limit denied.
    pub limit: String,
    pub retry_after_ms: u64,
    pub receipt: Receipt,
}

/// A decided request waiting for its receipt.
pub(super) struct Decided {
    allowed: bool,
    decision_id: String,
    reason: String,
    policy_version: String,
    limited: Option<(String, u64)>,
}

impl Decided {
    /// The answer to the caller, carrying the proof its record is durable.
    pub(super) fn answer(self, receipt: Receipt) -> Authorized {
        Authorized {
            allowed: self.allowed,
            decision_id: self.decision_id,
            reason: self.reason,
            policy_version: self.policy_version,
            limited: self.limited,
            receipt,
        }
    }

    pub(super) fn decision_id(&self) -> &str {
        &self.decision_id
    }
}

fn check_input(
    request: &AccessCall,
    prefix: &str,
    subject_required: bool,
    max_attributes: usize,
) -> Result<(), InputError> {
    check_fields(
        prefix,
        &[
            ("subject", &request.subject, subject_required),
            ("object", &request.object, true),
            ("action", &request.action, true),
            ("domain", &request.domain, false),
        ],
    )?;
    check_attributes(prefix, &request.attributes, max_attributes)
}

impl Core {
    /// Authorize: checked, authenticated, decided on one snapshot, rates
    /// spent, audited, answered.
    pub async fn authorize(
        &self,
        caller: &Caller<'_>,
        request: AccessCall,
    ) -> Result<Authorized, AppError> {
        self.observed(
            Rpc::Authorize,
            caller,
            self.authorize_unobserved(caller, request, "Authorize"),
            Authorized::allowed,
        )
        .await
    }

    /// Authorize without its own span and count: the gateway check runs
    /// it inside its own.
    pub(super) async fn authorize_unobserved(
        &self,
        caller: &Caller<'_>,
        request: AccessCall,
        rpc: &str,
    ) -> Result<Authorized, AppError> {
        let trusted = self.authn.is_trusted();
        check_input(&request, "", trusted, self.limits.max_attributes)?;
        let policy = self.policies.snapshot();
        let principal = self
            .authenticate(caller, &policy, &request.subject, rpc)
            .await?;
        let (decided, record) = self.decide(&policy, &principal, &request).await?;
        telemetry::record_decision(&tracing::Span::current(), decided.decision_id());
        let receipt = self.record(record).await?;
        Ok(decided.answer(receipt))
    }

    /// AuthorizeBatch: every item checked first, one token verified once
    /// per subject, all decided on one snapshot, audited as one group.
    /// Counted per item: each is a decision.
    pub async fn authorize_batch(
        &self,
        caller: &Caller<'_>,
        requests: Vec<AccessCall>,
    ) -> Result<Vec<Authorized>, AppError> {
        let started = std::time::Instant::now();
        let span = telemetry::call_span(super::span_name(Rpc::AuthorizeBatch), caller);
        let result = self
            .authorize_batch_unobserved(caller, requests)
            .instrument(span)
            .await;
        match &result {
            Ok(answers) => {
                for answer in answers {
                    self.metrics
                        .count_decision(Rpc::AuthorizeBatch, Outcome::of(answer.allowed));
                }
                self.metrics.observe_latency(Rpc::AuthorizeBatch, started);
            }
            Err(_) => self
                .metrics
                .observe_call(Rpc::AuthorizeBatch, Outcome::Error, started),
        }
        result
    }

    async fn authorize_batch_unobserved(
        &self,
        caller: &Caller<'_>,
        requests: Vec<AccessCall>,
    ) -> Result<Vec<Authorized>, AppError> {
        let limit = self.limits.max_batch_items;
        if requests.len() > limit {
            return Err(InputError::TooManyItems {
                count: requests.len(),
                limit,
            }
            .into());
        }
        let trusted = self.authn.is_trusted();
        for (index, item) in requests.iter().enumerate() {
            check_input(
                item,
                &format!("requests[{index}]."),
                trusted,
                self.limits.max_attributes,
            )?;
        }
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let policy = self.policies.snapshot();
        // In jwt mode one token covers the batch: verify it once, then hold
        // every item's subject to it.
        let mut principals: HashMap<&str, Principal> = HashMap::new();
        for item in &requests {
            if principals.contains_key(item.subject.as_str()) {
                continue;
            }
            let principal = self
                .authenticate(caller, &policy, &item.subject, "AuthorizeBatch")
                .await?;
            principals.insert(&item.subject, principal);
        }

        let mut records = Vec::with_capacity(requests.len());
        let mut decisions = Vec::with_capacity(requests.len());
        for (index, item) in requests.iter().enumerate() {
            let principal = &principals[item.subject.as_str()];
            let (decided, record) = self
                .decide(&policy, principal, item)
                .await
                .map_err(|error| error.in_item(index))?;
            records.push(record);
            decisions.push(decided);
        }
        let receipts = self
            .audit
            .append(records)
            .instrument(telemetry::stage(Stage::AuditWait))
            .await?;
        Ok(decisions
            .into_iter()
            .zip(receipts)
            .map(|(decided, receipt)| decided.answer(receipt))
            .collect())
    }

    /// Decides one request on `policy`, then spends its rate limits if the
    /// policy allowed it; returns the decision and the record the writer
    /// must make durable before it is answered (with the shadow policy's
    /// differing answer, if one is configured).
    pub(super) async fn decide(
        &self,
        policy: &PolicySet,
        principal: &Principal,
        request: &AccessCall,
    ) -> Result<(Decided, Record), AppError> {
        let access = AccessRequest {
            subject: &principal.subject,
            extra_roles: &principal.roles,
            object: &request.object,
            action: &request.action,
            domain: &request.domain,
            attributes: &request.attributes,
        };
        let span = telemetry::stage(Stage::Decision);
        let (verdict_allowed, mut reason, id) = {
            let _deciding = span.enter();
            let verdict = policy.engine.decide(&access)?;
            let id = decision_id();
            telemetry::record_decision(&span, &id);
            (verdict.allowed(), verdict.reason(&access), id)
        };
        // The shadow compares policies, not budgets.
        let shadow = self
            .shadow
            .as_ref()
            .and_then(|shadow| shadow.compare_decision(&access, verdict_allowed));
        let mut limited = None;
        if verdict_allowed {
            if let Err(exceeded) = self.check_rates(policy, &access).await {
                reason = exceeded.reason;
                limited = Some((exceeded.limit, crate::limits::millis(exceeded.retry_after)));
            }
        }
        let allowed = verdict_allowed && limited.is_none();
        tracing::debug!(decision_id = %id, subject = %principal.subject, object = %request.object, action = %request.action, allowed, "decision");
        let record = DecisionRecord {
            id: &id,
            principal,
            access: &access,
            attributes: &request.attributes,
            allowed,
            reason: &reason,
            policy_version: &policy.version,
            shadow,
            limit: limited.as_ref().map(|(limit, _)| limit.as_str()),
        }
        .build(&self.redactor);
        let decided = Decided {
            allowed,
            decision_id: id,
            reason,
            policy_version: policy.version.clone(),
            limited,
        };
        Ok((decided, record))
    }
}
