//! Reload: the one path every trigger (file change, SIGHUP, the
//! ReloadPolicies call) goes through, so each reload is counted, logged
//! and audited the same way.

use super::{records, AppError, Caller, Core};
use crate::{
    listen::Plane,
    policy::{PolicyError, PolicyStore, Reloaded},
};

/// Reloads `store`, audits the outcome (success with both versions, or the
/// failure with its `file:line` problems) and logs it.
pub async fn reload_and_audit(
    core: &Core,
    store: &PolicyStore,
    trigger: &str,
) -> Result<Reloaded, PolicyError> {
    let result = store.reload().await;
    if std::ptr::eq(store, &*core.policies) {
        core.metrics.count_reload(result.is_ok());
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
    if let Err(e) = core.audit.append_one(record).await {
        tracing::error!(error = %e, "cannot audit a policy reload");
    }
    result
}

impl Core {
    /// Reloads the live policy and then the shadow one, for `trigger`.
    /// The live policy's outcome is returned; the shadow's is audited.
    pub async fn reload(&self, trigger: &str) -> Result<Reloaded, PolicyError> {
        let live = reload_and_audit(self, &self.policies, trigger).await;
        if let Some(shadow) = &self.shadow {
            let _ = reload_and_audit(self, shadow.store(), trigger).await;
        }
        live
    }

    /// ReloadPolicies: an admin's reload, admitted and audited.
    pub async fn reload_by_admin(
        &self,
        caller: &Caller<'_>,
        plane: Plane,
    ) -> Result<Reloaded, AppError> {
        self.admit_admin(caller, "ReloadPolicies", plane).await?;
        self.reload("rpc").await.map_err(AppError::ReloadRejected)
    }
}
