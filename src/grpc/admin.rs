//! `vigil.v1.PolicyAdmin` and the one reload path every trigger (file
//! change, SIGHUP, RPC) goes through, so each reload is audited the same way.

use std::sync::{atomic::Ordering, Arc};

use tonic::{Request, Response, Status};

use super::Shared;
use crate::{
    audit::{kind, Record},
    policy::{PolicyError, PolicyStore, Reloaded},
    proto::{
        policy_admin_server::PolicyAdmin, GetPolicyStatusRequest, PolicyStatus,
        ReloadPoliciesRequest, ReloadPoliciesResponse,
    },
};

/// Reloads `store`, audits the outcome (success with both versions, or the
/// failure with its `file:line` problems) and logs it.
pub async fn reload_and_audit(
    shared: &Shared,
    store: &PolicyStore,
    trigger: &str,
) -> Result<Reloaded, PolicyError> {
    let result = store.reload().await;
    let mut record = Record::new(kind::RELOAD);
    record.obj = Some(store.dir().display().to_string());
    match &result {
        Ok(reloaded) => {
            record.allowed = Some(true);
            record.pv = Some(reloaded.version.clone());
            record.reason = Some(if reloaded.changed {
                format!(
                    "policy {} replaced {}",
                    reloaded.version, reloaded.previous_version
                )
            } else {
                format!("policy unchanged at {}", reloaded.version)
            });
            record.detail = Some(
                serde_json::json!({
                    "trigger": trigger,
                    "previous": reloaded.previous_version,
                    "changed": reloaded.changed,
                })
                .into(),
            );
            tracing::info!(trigger, version = %reloaded.version, changed = reloaded.changed, "policy reloaded");
        }
        Err(error) => {
            record.allowed = Some(false);
            record.pv = Some(store.snapshot().version.clone());
            record.reason = Some(format!(
                "reload rejected, previous policy keeps serving: {error}"
            ));
            record.detail = Some(serde_json::json!({ "trigger": trigger }).into());
            tracing::error!(
                trigger,
                "policy reload rejected, previous policy keeps serving:\n{error}"
            );
        }
    }
    if let Err(e) = shared.audit.append_one(record).await {
        tracing::error!(error = %e, "cannot audit a policy reload");
    }
    result
}

#[derive(Debug, Clone)]
pub struct PolicyAdminService {
    shared: Arc<Shared>,
}

impl PolicyAdminService {
    pub fn new(shared: Arc<Shared>) -> PolicyAdminService {
        PolicyAdminService { shared }
    }

    fn status(&self) -> PolicyStatus {
        let policy = self.shared.policies.snapshot();
        let last = self.shared.policies.last_reload();
        let time = |t: std::time::SystemTime| humantime::format_rfc3339_millis(t).to_string();
        PolicyStatus {
            policy_version: policy.version.clone(),
            loaded_at: time(policy.loaded_at),
            policy_rules: policy.engine.policy_rules() as u64,
            grouping_rules: policy.engine.grouping_rules() as u64,
            roles: policy.engine.roles() as u64,
            last_reload_error: last.error.unwrap_or_default(),
            last_reload_at: last.at.map(time).unwrap_or_default(),
            classification_rules: (policy.classification.rules.len()
                + policy.classification.detectors.len()) as u64,
            shadow_policy_version: self
                .shared
                .shadow
                .as_ref()
                .map(|s| s.snapshot().version.clone())
                .unwrap_or_default(),
            shadow_divergences: self.shared.shadow_divergences.load(Ordering::Relaxed),
        }
    }
}

#[tonic::async_trait]
impl PolicyAdmin for PolicyAdminService {
    async fn reload_policies(
        &self,
        request: Request<ReloadPoliciesRequest>,
    ) -> Result<Response<ReloadPoliciesResponse>, Status> {
        self.shared.admit_admin(&request, "ReloadPolicies").await?;
        let reloaded = reload_and_audit(&self.shared, &self.shared.policies, "rpc")
            .await
            .map_err(|e| {
                Status::failed_precondition(format!(
                    "policy rejected, the previous one keeps serving:\n{e}"
                ))
            })?;
        if let Some(shadow) = &self.shared.shadow {
            let _ = reload_and_audit(&self.shared, shadow, "rpc").await;
        }
        Ok(Response::new(ReloadPoliciesResponse {
            changed: reloaded.changed,
            status: Some(self.status()),
        }))
    }

    async fn get_policy_status(
        &self,
        request: Request<GetPolicyStatusRequest>,
    ) -> Result<Response<PolicyStatus>, Status> {
        self.shared.admit_admin(&request, "GetPolicyStatus").await?;
        Ok(Response::new(self.status()))
    }
}
