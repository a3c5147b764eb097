//! Who the caller is, for every use case: authentication with its refusal
//! audited, and the admission of admin calls.

use super::{records, refusals, AppError, Caller, Core};
use crate::{
    authn::{Authenticator, AuthnError, Principal},
    listen::{Peer, Plane},
    policy::PolicySet,
    telemetry::{self, Stage},
};

impl Core {
    /// Authenticates a call against the call's `policy` snapshot (a
    /// token's roles count only where that policy defines them); a refusal
    /// is audited, then returned.
    pub(super) async fn authenticate(
        &self,
        caller: &Caller<'_>,
        policy: &PolicySet,
        claimed_subject: &str,
        rpc: &str,
    ) -> Result<Principal, AppError> {
        let verified = {
            let _authenticating = telemetry::stage(Stage::Authn).entered();
            self.authn
                .authenticate(caller.credentials(), claimed_subject)
        };
        match verified {
            Ok(mut principal) => {
                if !principal.roles.is_empty() {
                    self.keep_policy_roles(policy, &mut principal);
                }
                Ok(principal)
            }
            Err(error) => Err(self
                .refuse(error, claimed_subject, rpc, caller.peer())
                .await),
        }
    }

    /// A token's roles count only where they name roles of the policy (or
    /// the configured admin role): a roles claim naming a user must not
    /// hand out that user's permissions.
    fn keep_policy_roles(&self, policy: &PolicySet, principal: &mut Principal) {
        principal.roles.retain(|role| {
            let known = *role == self.admin_role || policy.engine.is_token_role(role);
            if !known {
                tracing::warn!(role = %role, "a token names a role the policy does not define (a user?); it is ignored");
            }
            known
        });
    }

    /// Audits a refused identity (or counts it, past a few from one
    /// peer), then returns the refusal.
    pub(super) async fn refuse(
        &self,
        error: AuthnError,
        claimed_subject: &str,
        rpc: &str,
        peer: Option<Peer>,
    ) -> AppError {
        let peer = refusals::peer_key(peer);
        // Logged like it is audited: one by one only for the first few
        // from a peer, so a flood fills neither the disk nor the log.
        self.metrics.count_auth_failure(error.code());
        if let refusals::Refusal::Record = self.refusals.admit(&peer) {
            tracing::info!(rpc, code = error.code(), peer = %peer, "authentication refused");
            let record =
                records::authn_failure(&self.redactor, claimed_subject, &error, rpc, &peer);
            if let Err(audit_error) = self.audit.append_one(record).await {
                return audit_error.into();
            }
        }
        error.into()
    }

    /// Admin calls (Audit, PolicyAdmin). In jwt and mtls mode the caller
    /// needs the admin role, from its token or from the policy's role
    /// graph, on any listener. In trusted mode anyone local could claim
    /// anything, so they are served only on an admin socket (`plane`), to
    /// the configured uids as the kernel reports them (SO_PEERCRED). Every
    /// outcome is audited with the peer.
    pub async fn admit_admin(
        &self,
        caller: &Caller<'_>,
        rpc: &'static str,
        plane: Plane,
    ) -> Result<Principal, AppError> {
        let peer = caller.peer();
        let (principal, admitted, reason) = match (&self.authn, plane, peer) {
            (Authenticator::Jwt(_) | Authenticator::Mtls(_), _, _) => {
                let policy = self.policies.snapshot();
                let principal = self.authenticate(caller, &policy, "", rpc).await?;
                let admitted = principal.roles.contains(&self.admin_role)
                    || policy.engine.has_role(&principal.subject, &self.admin_role);
                let reason = if admitted {
                    format!("{rpc} by an administrator")
                } else {
                    format!("{rpc} requires the {} role", self.admin_role)
                };
                (principal, admitted, reason)
            }
            (Authenticator::Trusted, Plane::Admin, Some(Peer::Unix(Some(cred)))) => {
                let admitted = self.admin_uids.contains(&cred.uid);
                let reason = if admitted {
                    format!("{rpc} by admin uid {}", cred.uid)
                } else {
                    format!(
                        "{rpc} refused: uid {} is not an admin uid (--admin-uids)",
                        cred.uid
                    )
                };
                (local_principal(peer), admitted, reason)
            }
            (Authenticator::Trusted, _, _) => (
                local_principal(peer),
                false,
                format!(
                    "{rpc} in trusted mode is served only on an admin socket \
                     (--admin-listen unix:PATH), where vigil checks the caller's uid"
                ),
            ),
        };
        let record = records::admin(
            &self.redactor,
            &principal.subject,
            rpc,
            admitted,
            reason.clone(),
            peer,
        );
        self.audit.append_one(record).await?;
        if admitted {
            Ok(principal)
        } else {
            Err(AppError::Refused(reason))
        }
    }
}

/// Who a trusted-mode admin caller is: the local peer, as the kernel says.
fn local_principal(peer: Option<Peer>) -> Principal {
    let subject = match peer {
        Some(Peer::Unix(Some(cred))) => format!("local-uid-{}", cred.uid),
        _ => "local-trusted".to_owned(),
    };
    Principal {
        subject,
        roles: Vec::new(),
    }
}
