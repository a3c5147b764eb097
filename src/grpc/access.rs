//! `vigil.v1.AccessControl`: Authorize and AuthorizeBatch.

use std::{collections::HashMap, sync::Arc};

use tonic::{Request, Response, Status};

use super::{
    authorization, decision_id,
    status::{check_fields, InputError},
    Shared, MAX_FIELD_BYTES,
};
use crate::{
    audit::{kind, Record},
    authn::Principal,
    authz::AccessRequest,
    policy::PolicySet,
    proto::{
        access_control_server::AccessControl, AuthorizeBatchRequest, AuthorizeBatchResponse,
        AuthorizeRequest, AuthorizeResponse,
    },
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

/// A decided request, ready to be audited and answered.
struct Decided {
    record: Record,
    response: AuthorizeResponse,
}

fn check_input(
    request: &AuthorizeRequest,
    prefix: &str,
    subject_required: bool,
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
    for (key, value) in &request.attributes {
        if key.len() + value.len() > MAX_FIELD_BYTES {
            return Err(InputError::TooLong {
                field: format!("{prefix}attributes[{key:?}]"),
                len: key.len() + value.len(),
                limit: MAX_FIELD_BYTES,
            });
        }
    }
    Ok(())
}

fn decide(
    shared: &Shared,
    policy: &PolicySet,
    principal: &Principal,
    request: &AuthorizeRequest,
) -> Result<Decided, Status> {
    let access = AccessRequest {
        subject: &principal.subject,
        extra_roles: &principal.roles,
        object: &request.object,
        action: &request.action,
        domain: &request.domain,
        attributes: &request.attributes,
    };
    let verdict = policy.engine.decide(&access)?;
    let allowed = verdict.allowed();
    let reason = verdict.reason(&access);
    let id = decision_id();
    tracing::debug!(decision_id = %id, subject = %principal.subject, object = %request.object, action = %request.action, allowed, "decision");

    let mut record = Record::new(kind::DECISION);
    record.id = Some(id.clone());
    record.sub = Some(shared.redactor.subject(&principal.subject));
    record.obj = Some(request.object.clone());
    record.act = Some(request.action.clone());
    if !request.domain.is_empty() {
        record.dom = Some(request.domain.clone());
    }
    record.attrs = shared.redactor.attributes(&request.attributes);
    record.allowed = Some(allowed);
    record.reason = Some(reason.clone());
    record.pv = Some(policy.version.clone());
    let mut detail = serde_json::Map::new();
    if !principal.roles.is_empty() {
        detail.insert("token_roles".into(), serde_json::json!(principal.roles));
    }
    if let Some(shadow) = &shared.shadow {
        let candidate = shadow.snapshot();
        // A shadow failure never affects the live answer.
        if let Ok(shadow_verdict) = candidate.engine.decide(&access) {
            if shadow_verdict.allowed() != allowed {
                shared
                    .shadow_divergences
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(decision_id = %id, live = allowed, candidate = shadow_verdict.allowed(), "shadow policy diverges");
                detail.insert(
                    "shadow".into(),
                    serde_json::json!({
                        "pv": candidate.version,
                        "allowed": shadow_verdict.allowed(),
                        "reason": shadow_verdict.reason(&access),
                    }),
                );
            }
        }
    }
    if !detail.is_empty() {
        record.detail = Some(serde_json::Value::Object(detail).into());
    }
    let response = AuthorizeResponse {
        allowed,
        decision_id: id,
        reason,
        policy_version: policy.version.clone(),
        audit_seq: 0,
        audit_hash: String::new(),
    };
    Ok(Decided { record, response })
}

#[tonic::async_trait]
impl AccessControl for AccessControlService {
    async fn authorize(
        &self,
        request: Request<AuthorizeRequest>,
    ) -> Result<Response<AuthorizeResponse>, Status> {
        let token = authorization(&request).map(str::to_owned);
        let request = request.into_inner();
        let trusted = self.shared.authn.is_trusted();
        check_input(&request, "", trusted)?;
        let principal = match self
            .shared
            .authn
            .authenticate(token.as_deref(), &request.subject)
        {
            Ok(principal) => principal,
            Err(error) => {
                return Err(self
                    .shared
                    .refuse(error, &request.subject, "Authorize")
                    .await)
            }
        };
        let policy = self.shared.policies.snapshot();
        let Decided {
            record,
            mut response,
        } = decide(&self.shared, &policy, &principal, &request)?;
        let receipt = self.shared.audit.append_one(record).await?;
        response.audit_seq = receipt.seq;
        response.audit_hash = receipt.hash_hex();
        Ok(Response::new(response))
    }

    async fn authorize_batch(
        &self,
        request: Request<AuthorizeBatchRequest>,
    ) -> Result<Response<AuthorizeBatchResponse>, Status> {
        let token = authorization(&request).map(str::to_owned);
        let batch = request.into_inner();
        let limit = self.shared.limits.max_batch_items;
        if batch.requests.len() > limit {
            return Err(InputError::TooManyItems {
                count: batch.requests.len(),
                limit,
            }
            .into());
        }
        let trusted = self.shared.authn.is_trusted();
        for (index, item) in batch.requests.iter().enumerate() {
            check_input(item, &format!("requests[{index}]."), trusted)?;
        }
        if batch.requests.is_empty() {
            return Ok(Response::new(AuthorizeBatchResponse {
                responses: Vec::new(),
            }));
        }

        // In jwt mode one token covers the batch: verify it once, then hold
        // every item's subject to it.
        let mut principals: HashMap<&str, Principal> = HashMap::new();
        for item in &batch.requests {
            if principals.contains_key(item.subject.as_str()) {
                continue;
            }
            match self
                .shared
                .authn
                .authenticate(token.as_deref(), &item.subject)
            {
                Ok(principal) => {
                    principals.insert(&item.subject, principal);
                }
                Err(error) => {
                    return Err(self
                        .shared
                        .refuse(error, &item.subject, "AuthorizeBatch")
                        .await)
                }
            }
        }

        let policy = self.shared.policies.snapshot();
        let mut records = Vec::with_capacity(batch.requests.len());
        let mut responses = Vec::with_capacity(batch.requests.len());
        for (index, item) in batch.requests.iter().enumerate() {
            let principal = &principals[item.subject.as_str()];
            let decided = decide(&self.shared, &policy, principal, item).map_err(|status| {
                Status::new(
                    status.code(),
                    format!("requests[{index}]: {}", status.message()),
                )
            })?;
            records.push(decided.record);
            responses.push(decided.response);
        }
        let receipts = self.shared.audit.append(records).await?;
        for (response, receipt) in responses.iter_mut().zip(receipts) {
            response.audit_seq = receipt.seq;
            response.audit_hash = receipt.hash_hex();
        }
        Ok(Response::new(AuthorizeBatchResponse { responses }))
    }
}
