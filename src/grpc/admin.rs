//! `vigil.v1.PolicyAdmin`: the core's admin reload and the policy's
//! status, for administrators.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::caller;
use crate::{
    app::Core,
    listen::Plane,
    proto::{
        policy_admin_server::PolicyAdmin, GetPolicyStatusRequest, PolicyStatus,
        ReloadPoliciesRequest, ReloadPoliciesResponse,
    },
};

#[derive(Debug, Clone)]
pub struct PolicyAdminService {
    core: Arc<Core>,
    /// The plane of the listener this instance serves.
    plane: Plane,
}

impl PolicyAdminService {
    pub fn new(core: Arc<Core>, plane: Plane) -> PolicyAdminService {
        PolicyAdminService { core, plane }
    }

    fn status(&self) -> PolicyStatus {
        let policy = self.core.policies.snapshot();
        let last = self.core.policies.last_reload();
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
                .core
                .shadow
                .as_ref()
                .map(|s| s.store().snapshot().version.clone())
                .unwrap_or_default(),
            shadow_divergences: self.core.shadow.as_ref().map_or(0, |s| s.divergences()),
            witness_lag_records: self
                .core
                .witness
                .as_ref()
                .map_or(0, |w| w.lag_records(self.core.audit.written_seq())),
            witness_lag_seconds: self
                .core
                .witness
                .as_ref()
                .map_or(0.0, |w| w.lag_seconds(self.core.audit.written_seq())),
            witness_status: self
                .core
                .witness
                .as_ref()
                .map(|w| w.summary(self.core.audit.written_seq()))
                .unwrap_or_default(),
        }
    }
}

#[tonic::async_trait]
impl PolicyAdmin for PolicyAdminService {
    async fn reload_policies(
        &self,
        request: Request<ReloadPoliciesRequest>,
    ) -> Result<Response<ReloadPoliciesResponse>, Status> {
        let (metadata, extensions, _) = request.into_parts();
        let caller = caller(&metadata, &extensions);
        let reloaded = self.core.reload_by_admin(&caller, self.plane).await?;
        Ok(Response::new(ReloadPoliciesResponse {
            changed: reloaded.changed,
            status: Some(self.status()),
        }))
    }

    async fn get_policy_status(
        &self,
        request: Request<GetPolicyStatusRequest>,
    ) -> Result<Response<PolicyStatus>, Status> {
        let (metadata, extensions, _) = request.into_parts();
        self.core
            .admit_admin(
                &caller(&metadata, &extensions),
                "GetPolicyStatus",
                self.plane,
            )
            .await?;
        Ok(Response::new(self.status()))
    }
}
