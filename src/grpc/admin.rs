//! `vigil.v1.PolicyAdmin` and the one reload path every trigger (file
//! change, SIGHUP, RPC) goes through, so each reload is audited the same way.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{records, RpcError, Shared};
use crate::{
    listen::Plane,
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
    if std::ptr::eq(store, &*shared.policies) {
        shared.metrics.count_reload(result.is_ok());
    }
    match &result {
        Ok(reloaded) => {
            tracing::info!(trigger, version = %reloaded.version, changed = reloaded.changed, "policy reloaded")
        }
        Err(error) => tracing::error!(
            trigger,
            "policy reload rejected, previous policy keeps serving:\n{error}"
        ),
    }
    let record = records::reload(
        &store.dir().display().to_string(),
        trigger,
        &result,
        &store.snapshot().version,
    );
    if let Err(e) = shared.audit.append_one(record).await {
        tracing::error!(error = %e, "cannot audit a policy reload");
    }
    result
}

#[derive(Debug, Clone)]
pub struct PolicyAdminService {
    shared: Arc<Shared>,
    /// The plane of the listener this instance serves.
    plane: Plane,
}

impl PolicyAdminService {
    pub fn new(shared: Arc<Shared>, plane: Plane) -> PolicyAdminService {
        PolicyAdminService { shared, plane }
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
                .map(|s| s.store().snapshot().version.clone())
                .unwrap_or_default(),
            shadow_divergences: self.shared.shadow.as_ref().map_or(0, |s| s.divergences()),
            witness_lag_records: self.shared.witness.as_ref().map_or(0, |w| w.lag_records()),
            witness_lag_seconds: self
                .shared
                .witness
                .as_ref()
                .map_or(0.0, |w| w.lag_seconds()),
            witness_status: self
                .shared
                .witness
                .as_ref()
                .map(|w| w.summary())
                .unwrap_or_default(),
        }
    }
}

impl PolicyAdminService {
    async fn reload_policies(
        &self,
        request: Request<ReloadPoliciesRequest>,
    ) -> Result<ReloadPoliciesResponse, RpcError> {
        self.shared
            .admit_admin(&request, "ReloadPolicies", self.plane)
            .await?;
        let reloaded = reload_and_audit(&self.shared, &self.shared.policies, "rpc")
            .await
            .map_err(RpcError::ReloadRejected)?;
        if let Some(shadow) = &self.shared.shadow {
            let _ = reload_and_audit(&self.shared, shadow.store(), "rpc").await;
        }
        Ok(ReloadPoliciesResponse {
            changed: reloaded.changed,
            status: Some(self.status()),
        })
    }
}

#[tonic::async_trait]
impl PolicyAdmin for PolicyAdminService {
    async fn reload_policies(
        &self,
        request: Request<ReloadPoliciesRequest>,
    ) -> Result<Response<ReloadPoliciesResponse>, Status> {
        Ok(Response::new(
            PolicyAdminService::reload_policies(self, request).await?,
        ))
    }

    async fn get_policy_status(
        &self,
        request: Request<GetPolicyStatusRequest>,
    ) -> Result<Response<PolicyStatus>, Status> {
        self.shared
            .admit_admin(&request, "GetPolicyStatus", self.plane)
            .await?;
        Ok(Response::new(self.status()))
    }
}
