//! `vigil.v1.AccessControl`: Authorize and AuthorizeBatch.

use std::{collections::HashMap, sync::Arc, time::Instant};

use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{
    decision_id, observe_call,
    records::DecisionRecord,
    status::{check_attributes, check_fields, InputError, RpcError},
    Metadata, Shared,
};
use crate::{
    audit::{Receipt, Record},
    authn::Principal,
    authz::AccessRequest,
    metrics::{Outcome, Rpc},
    policy::PolicySet,
    proto::{
        access_control_server::AccessControl, AuthorizeBatchRequest, AuthorizeBatchResponse,
        AuthorizeRequest, AuthorizeResponse,
    },
    telemetry::{self, Stage},
};

#[derive(Debug, Clone)]
pub struct AccessControlService {
    shared: Arc<Shared>,
}

impl AccessControlService {
    pub fn new(shared: Arc<Shared>) -> AccessControlService {
        AccessControlService { shared }
    }
}

/// A decided request, whose answer can only be given once its audit
/// record's [`Receipt`] exists.
struct Decided {
    allowed: bool,
    decision_id: String,
    reason: String,
    policy_version: String,
    /// A rate limit's deny: which, and when it allows again.
    limited: Option<(String, u64)>,
}

impl Decided {
    /// The answer to the caller, carrying the proof its record is durable.
    fn answer(
        Decided {
            allowed,
            decision_id,
            reason,
            policy_version,
            limited,
        }: Decided,
        receipt: Receipt,
    ) -> AuthorizeResponse {
        let (limit, retry_after_ms) = limited.unwrap_or_default();
        AuthorizeResponse {
            allowed,
            decision_id,
            reason,
            policy_version,
            audit_seq: receipt.seq(),
            audit_hash: receipt.hash_hex(),
            retry_after_ms,
            limit,
        }
    }
}

fn check_input(
    request: &AuthorizeRequest,
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

/// Decides one request on `policy`, then spends its rate limits if the
/// policy allowed it; returns the decision and the record the writer must
/// make durable before it is answered (with the shadow policy's differing
/// answer, if one is configured).
async fn decide(
    shared: &Shared,
    policy: &PolicySet,
    principal: &Principal,
    request: &AuthorizeRequest,
) -> Result<(Decided, Record), RpcError> {
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
    let shadow = shared
        .shadow
        .as_ref()
        .and_then(|shadow| shadow.compare_decision(&access, verdict_allowed));
    let mut limited = None;
    if verdict_allowed {
        if let Err(exceeded) = shared.check_rates(policy, &access).await {
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
    .build(&shared.redactor);
    let decided = Decided {
        allowed,
        decision_id: id,
        reason,
        policy_version: policy.version.clone(),
        limited,
    };
    Ok((decided, record))
}

impl AccessControlService {
    async fn authorize(
        &self,
        request: Request<AuthorizeRequest>,
    ) -> Result<AuthorizeResponse, RpcError> {
        let trusted = self.shared.authn.is_trusted();
        let max_attributes = self.shared.limits.max_attributes;
        check_input(request.get_ref(), "", trusted, max_attributes)?;
        let principal = self
            .shared
            .authenticate(&request, &request.get_ref().subject, "Authorize")
            .await?;
        let request = request.into_inner();
        let policy = self.shared.policies.snapshot();
        let (decided, record) = decide(&self.shared, &policy, &principal, &request).await?;
        telemetry::record_decision(&tracing::Span::current(), &decided.decision_id);
        let receipt = self.shared.record(record).await?;
        Ok(Decided::answer(decided, receipt))
    }

    async fn authorize_batch(
        &self,
        request: Request<AuthorizeBatchRequest>,
    ) -> Result<AuthorizeBatchResponse, RpcError> {
        let batch = request.get_ref();
        let limit = self.shared.limits.max_batch_items;
        if batch.requests.len() > limit {
            return Err(InputError::TooManyItems {
                count: batch.requests.len(),
                limit,
            }
            .into());
        }
        let trusted = self.shared.authn.is_trusted();
        let max_attributes = self.shared.limits.max_attributes;
        for (index, item) in batch.requests.iter().enumerate() {
            check_input(
                item,
                &format!("requests[{index}]."),
                trusted,
                max_attributes,
            )?;
        }
        if batch.requests.is_empty() {
            return Ok(AuthorizeBatchResponse {
                responses: Vec::new(),
            });
        }

        // In jwt mode one token covers the batch: verify it once, then hold
        // every item's subject to it.
        let mut principals: HashMap<&str, Principal> = HashMap::new();
        for item in &batch.requests {
            if principals.contains_key(item.subject.as_str()) {
                continue;
            }
            let principal = self
                .shared
                .authenticate(&request, &item.subject, "AuthorizeBatch")
                .await?;
            principals.insert(&item.subject, principal);
        }

        let policy = self.shared.policies.snapshot();
        let mut records = Vec::with_capacity(batch.requests.len());
        let mut decisions = Vec::with_capacity(batch.requests.len());
        for (index, item) in batch.requests.iter().enumerate() {
            let principal = &principals[item.subject.as_str()];
            let (decided, record) = decide(&self.shared, &policy, principal, item)
                .await
                .map_err(|error| error.in_item(index))?;
            records.push(record);
            decisions.push(decided);
        }
        let receipts = self
            .shared
            .audit
            .append(records)
            .instrument(telemetry::stage(Stage::AuditWait))
            .await?;
        let responses = decisions
            .into_iter()
            .zip(receipts)
            .map(|(decided, receipt)| Decided::answer(decided, receipt))
            .collect();
        Ok(AuthorizeBatchResponse { responses })
    }
}

impl AccessControlService {
    /// Authorize as its RPC answers it (traced and counted), without the
    /// boxed future of the trait method: the gateways' front-ends call it
    /// inside futures of their own.
    pub(crate) async fn authorize_observed(
        &self,
        request: Request<AuthorizeRequest>,
    ) -> Result<AuthorizeResponse, Status> {
        let started = Instant::now();
        let span = telemetry::call_span(
            "vigil.v1.AccessControl/Authorize",
            &Metadata(request.metadata()),
        );
        let result = AccessControlService::authorize(self, request)
            .instrument(span)
            .await;
        observe_call(&self.shared, Rpc::Authorize, started, &result, |answer| {
            answer.allowed
        });
        Ok(result?)
    }
}

#[tonic::async_trait]
impl AccessControl for AccessControlService {
    async fn authorize(
        &self,
        request: Request<AuthorizeRequest>,
    ) -> Result<Response<AuthorizeResponse>, Status> {
        self.authorize_observed(request).await.map(Response::new)
    }

    /// Counted per item: each is a decision.
    async fn authorize_batch(
        &self,
        request: Request<AuthorizeBatchRequest>,
    ) -> Result<Response<AuthorizeBatchResponse>, Status> {
        let started = Instant::now();
        let span = telemetry::call_span(
            "vigil.v1.AccessControl/AuthorizeBatch",
            &Metadata(request.metadata()),
        );
        let result = AccessControlService::authorize_batch(self, request)
            .instrument(span)
            .await;
        match &result {
            Ok(batch) => {
                let metrics = &self.shared.metrics;
                for answer in &batch.responses {
                    metrics.count_decision(Rpc::AuthorizeBatch, Outcome::of(answer.allowed));
                }
                metrics.observe_latency(Rpc::AuthorizeBatch, started);
            }
            Err(_) => observe_call(&self.shared, Rpc::AuthorizeBatch, started, &result, |_| {
                false
            }),
        }
        Ok(Response::new(result?))
    }
}
