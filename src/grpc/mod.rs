//! The gRPC surface: the only code that knows prost types. Each handler
//! decodes, authenticates, calls the core on one policy snapshot, audits,
//! and encodes.

mod access;
pub mod admin;
mod audit;
pub mod codec;
pub mod ext_authz;
pub mod io;
pub mod masking;
mod records;
pub mod refusals;
pub mod status;

use std::{path::PathBuf, sync::Arc, time::Instant};

pub use access::AccessControlService;
pub use admin::PolicyAdminService;
pub use audit::AuditService;
pub use masking::DataMaskingService;
pub use status::RpcError;

use crate::{
    audit::{AuditLog, Redactor},
    authn::{Authenticator, AuthnError, Credentials, Principal},
    authz::AccessRequest,
    keys::Keyring,
    limits::{Call, Exceeded, Limiter, Matched},
    listen::{Connection, Peer, Plane},
    metrics::{Metrics, Outcome, Rpc, ScrapeState},
    policy::{shadow::Shadow, PolicySet, PolicyStore},
    telemetry::{self, Stage},
};

/// Bounds on what one call may ask of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_message_bytes: usize,
    /// Most items in one AuthorizeBatch, and most records in one Mask.
    pub max_batch_items: usize,
    /// Deepest nesting accepted in a record.
    pub max_depth: usize,
    /// Most attributes in one request.
    pub max_attributes: usize,
    /// Most values one Mask call may visit (fields, list items, and the
    /// spans treated inside strings): the bound on one call's work.
    pub max_mask_values: usize,
    /// Longest a call may take before it is answered DEADLINE_EXCEEDED.
    pub request_timeout: std::time::Duration,
}

/// What every handler shares. Cloning the `Arc` around it is shallow.
#[derive(Debug)]
pub struct Shared {
    pub policies: Arc<PolicyStore>,
    pub audit: AuditLog,
    pub authn: Authenticator,
    pub limits: Limits,
    /// Turns sensitive values into keyed digests before they are audited.
    pub redactor: Redactor,
    pub admin_role: String,
    /// Who may call admin services on a trusted-mode admin socket.
    pub admin_uids: Vec<u32>,
    pub audit_dir: PathBuf,
    /// Candidate policy evaluated beside the live one (shadow mode).
    pub shadow: Option<Arc<Shadow>>,
    pub keys: Arc<Keyring>,
    /// Refusals per peer: past a few, counted rather than recorded.
    pub refusals: refusals::RefusalLimiter,
    /// Audit exports running at once (each reads files on a blocking
    /// thread): [`MAX_CONCURRENT_EXPORTS`] permits.
    pub exports: Arc<tokio::sync::Semaphore>,
    /// Counted here, served by the metrics listener.
    pub metrics: Arc<Metrics>,
    /// The audit witness shipper's state, when `--ship-to` is on.
    pub witness: Option<Arc<crate::witness::ShipState>>,
    /// The budgets of limits.toml's rates and quotas.
    pub limiter: Arc<Limiter>,
}

/// A call that arrived over HTTP or through a gateway, as a gRPC caller
/// would send it: the headers vigil reads from metadata (the bearer token,
/// the trace context) copied over from `header` (lowercase names), and the
/// connection it came on (its peer, its client certificate).
pub fn forwarded<'h, T>(
    message: T,
    header: impl Fn(&str) -> Option<&'h str>,
    via: Via,
) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    for name in ["authorization", "traceparent", "tracestate"] {
        if let Some(value) = header(name).and_then(|v| v.parse().ok()) {
            request.metadata_mut().insert(name, value);
        }
    }
    if let Some(connection) = via.connection {
        request.extensions_mut().insert(connection);
    }
    if via.vouched_by_gateway {
        request.extensions_mut().insert(VouchedByGateway);
    }
    request
}

/// How a forwarded call reached vigil.
#[derive(Debug, Clone, Default)]
pub struct Via {
    pub connection: Option<Connection>,
    /// The gateway named the end subject (see
    /// `Authenticator::gateway_names_subject`).
    pub vouched_by_gateway: bool,
}

/// Request extension only vigil's own front-ends insert: a caller cannot
/// send extensions, only metadata.
#[derive(Debug, Clone, Copy)]
struct VouchedByGateway;

/// The connection a call came on, as the listener recorded it.
pub(crate) fn connection_of<T>(request: &tonic::Request<T>) -> Option<&Connection> {
    request.extensions().get::<Connection>()
}

pub(crate) fn peer_of<T>(request: &tonic::Request<T>) -> Option<Peer> {
    connection_of(request).map(|connection| connection.peer)
}

/// A call's gRPC metadata, where its `traceparent` is read.
pub(crate) struct Metadata<'a>(pub &'a tonic::metadata::MetadataMap);

impl telemetry::Headers for Metadata<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.0.get(name)?.to_str().ok()
    }
}

/// Counts a finished call in the metrics: allow or deny as `allowed` reads
/// the answer, deny for a refusal by the policy, error for anything else.
fn observe_call<T>(
    shared: &Shared,
    rpc: Rpc,
    started: Instant,
    result: &Result<T, RpcError>,
    allowed: impl Fn(&T) -> bool,
) {
    let outcome = match result {
        Ok(answer) => Outcome::of(allowed(answer)),
        Err(RpcError::Refused(_)) => Outcome::Deny,
        Err(_) => Outcome::Error,
    };
    shared.metrics.observe_call(rpc, outcome, started);
}

impl Shared {
    /// Appends a call's record and waits until it is durable, traced as
    /// the call's `audit_wait`.
    pub(crate) async fn record(
        &self,
        record: crate::audit::Record,
    ) -> Result<crate::audit::Receipt, crate::audit::AuditError> {
        use tracing::Instrument;
        self.audit
            .append_one(record)
            .instrument(telemetry::stage(Stage::AuditWait))
            .await
    }

    /// The metrics exposition, with the state read at this moment.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(&ScrapeState {
            audit: self.audit.scrape_state(),
            policy_version: self.policies.snapshot().version.clone(),
            shadow_divergences: self.shadow.as_ref().map_or(0, |s| s.divergences()),
            witness: self.witness.as_ref().map(|w| crate::metrics::WitnessState {
                lag_records: w.lag_records(),
                lag_seconds: w.lag_seconds(),
                connected: w.connected.load(std::sync::atomic::Ordering::Relaxed),
                stopped: w.fork().is_some(),
            }),
            limits_store_up: self.limiter.shared().map(|store| store.is_up()),
        })
    }
}

impl Shared {
    /// Spends one call from every rate of `policy` covering `access`;
    /// `Err` when one is spent (the call is then a deny).
    pub(crate) async fn check_rates(
        &self,
        policy: &PolicySet,
        access: &AccessRequest<'_>,
    ) -> Result<(), Exceeded> {
        if policy.limits.rates.is_empty() {
            return Ok(());
        }
        let matched = policy.limits.rates_for(&limit_call(access), &|role| {
            policy.holds_role(access.subject, access.domain, role)
        });
        if matched.is_empty() {
            // No rate covers the call: nothing was checked.
            return Ok(());
        }
        match self.limiter.check_rates(&matched).await {
            Ok(via) => {
                self.metrics.count_limit_check(via.name(), None);
                Ok(())
            }
            Err(exceeded) => {
                self.metrics
                    .count_limit_check(exceeded.via.name(), Some(&exceeded.limit));
                Err(exceeded)
            }
        }
    }

    /// The reveal quotas of `policy` covering a reader.
    pub(crate) fn quotas_for<'p>(
        &self,
        policy: &'p PolicySet,
        asker: &AccessRequest<'p>,
    ) -> Vec<Matched<'p>> {
        if policy.limits.quotas.is_empty() {
            return Vec::new();
        }
        policy.limits.quotas_for(&limit_call(asker), &|role| {
            policy.holds_role(asker.subject, asker.domain, role)
        })
    }
}

/// A request as limits see it.
fn limit_call<'a>(access: &AccessRequest<'a>) -> Call<'a> {
    Call {
        subject: access.subject,
        roles: access.extra_roles,
        object: access.object,
        action: access.action,
        domain: access.domain,
    }
}

/// Audit exports served at once; more are RESOURCE_EXHAUSTED.
pub const MAX_CONCURRENT_EXPORTS: usize = 4;

impl Shared {
    /// Authenticates a call; a refusal is audited, then returned.
    pub(crate) async fn authenticate<T>(
        &self,
        request: &tonic::Request<T>,
        claimed_subject: &str,
        rpc: &str,
    ) -> Result<Principal, RpcError> {
        let verified = {
            let _authenticating = telemetry::stage(Stage::Authn).entered();
            let credentials = Credentials {
                authorization: authorization(request),
                client_certificate: connection_of(request)
                    .and_then(|c| c.client_certificate.as_deref()),
                vouched_by_gateway: request.extensions().get::<VouchedByGateway>().is_some(),
            };
            self.authn.authenticate(credentials, claimed_subject)
        };
        match verified {
            Ok(mut principal) => {
                if !principal.roles.is_empty() {
                    self.keep_policy_roles(&mut principal);
                }
                Ok(principal)
            }
            Err(error) => {
                let peer = peer_of(request);
                Err(self.refuse(error, claimed_subject, rpc, peer).await)
            }
        }
    }

    /// A token's roles count only where they name roles of the policy (or
    /// the configured admin role): a roles claim naming a user must not
    /// hand out that user's permissions.
    fn keep_policy_roles(&self, principal: &mut Principal) {
        let policy = self.policies.snapshot();
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
    async fn refuse(
        &self,
        error: AuthnError,
        claimed_subject: &str,
        rpc: &str,
        peer: Option<Peer>,
    ) -> RpcError {
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
    /// graph, on any listener. In trusted mode anyone local could claim anything, so they
    /// are served only on an admin socket (`plane`), to the configured
    /// uids as the kernel reports them (SO_PEERCRED). Every outcome is
    /// audited with the peer.
    pub(crate) async fn admit_admin<T>(
        &self,
        request: &tonic::Request<T>,
        rpc: &'static str,
        plane: Plane,
    ) -> Result<Principal, RpcError> {
        let peer = peer_of(request);
        let (principal, admitted, reason) = match (&self.authn, plane, peer) {
            (Authenticator::Jwt(_) | Authenticator::Mtls(_), _, _) => {
                let principal = self.authenticate(request, "", rpc).await?;
                let admitted = principal.roles.contains(&self.admin_role)
                    || self
                        .policies
                        .snapshot()
                        .engine
                        .has_role(&principal.subject, &self.admin_role);
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
            Err(RpcError::Refused(reason))
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

/// Longest subject, object, action, domain or attribute accepted.
pub const MAX_FIELD_BYTES: usize = 4096;

/// A fresh decision id: 128 random bits in unpadded base64url (22
/// characters; compact because every audit record carries one).
pub fn decision_id() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

fn authorization<T>(request: &tonic::Request<T>) -> Option<&str> {
    request
        .metadata()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
}
