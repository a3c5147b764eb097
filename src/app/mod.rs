//! The application: every use case vigil answers, whatever door a call
//! came in by. gRPC, the HTTP/JSON API, `/v1/check` and Envoy's ext_authz
//! are adapters: each decodes its protocol into a [`Caller`] and a plain
//! request, calls [`Core`], and renders the typed answer or the
//! [`AppError`] (whose every protocol's response is in [`respond`], the one
//! refusal table).
//!
//! Invariants kept here, for every door alike:
//! - an answer is built from the audit writer's [`Receipt`]: `Authorized`,
//!   `Masked`, `Unmasked` and `Checked` have private fields set only by the
//!   use cases after `AuditLog::append` returned, so an unaudited answer
//!   does not type-check;
//! - a call reads one policy snapshot, taken once and passed down;
//! - every refusal the core gives (identity, input it can attribute, the
//!   policy, a limit) is audited before it is returned.
//!
//! [`Receipt`]: crate::audit::Receipt

mod access;
mod admin;
mod audit;
mod caller;
mod check;
mod identity;
mod input;
mod masking;
mod records;
mod refusals;
pub mod respond;
mod unmask;

use std::{future::Future, path::PathBuf, sync::Arc, time::Instant};

use tracing::Instrument;

pub use access::{AccessCall, Authorized, AuthorizedParts};
pub use admin::reload_and_audit;
pub use audit::{Export, ExportCall};
pub use caller::Caller;
pub use check::{
    CheckCall, Checked, Door, Original, Verdict, DECISION_HEADER, DENIED_REASON,
    RATE_LIMITED_REASON,
};
pub use input::{check_attributes, check_fields, InputError, MAX_FIELD_BYTES};
pub use masking::{MaskCall, Masked};
pub use respond::{retry_after_seconds, AppError, Code, Response};
pub use unmask::{UnmaskCall, Unmasked};

use crate::{
    audit::{AuditLog, Redactor},
    authn::Authenticator,
    authz::AccessRequest,
    gateway::HttpMapping,
    keys::Keyring,
    limits::{Call, Exceeded, Limiter, Matched},
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

/// The running application: what every use case reads. Adapters hold it in
/// an `Arc`; cloning that is shallow.
#[derive(Debug)]
pub struct Core {
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
    /// How a gateway's HTTP request becomes a Casbin request (`[http]`).
    pub mapping: Arc<HttpMapping>,
}

/// Audit exports served at once; more are RESOURCE_EXHAUSTED.
pub const MAX_CONCURRENT_EXPORTS: usize = 4;

/// A fresh decision id: 128 random bits in unpadded base64url (22
/// characters; compact because every audit record carries one).
pub fn decision_id() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

/// The span name of a use case as its front door calls it.
fn span_name(rpc: Rpc) -> &'static str {
    match rpc {
        Rpc::Authorize => "vigil.v1.AccessControl/Authorize",
        Rpc::AuthorizeBatch => "vigil.v1.AccessControl/AuthorizeBatch",
        Rpc::Mask => "vigil.v1.DataMasking/Mask",
        Rpc::Unmask => "vigil.v1.DataMasking/Unmask",
        Rpc::Check => "envoy.service.auth.v3.Authorization/Check",
        Rpc::HttpCheck => "GET /v1/check",
    }
}

impl Core {
    /// Runs one use case inside its call span and counts how it ended:
    /// allow or deny as `allowed` reads the answer, deny for a refusal by
    /// the policy, error for anything else. The one wrapper of every door.
    async fn observed<T>(
        &self,
        rpc: Rpc,
        caller: &Caller<'_>,
        work: impl Future<Output = Result<T, AppError>>,
        allowed: impl Fn(&T) -> bool,
    ) -> Result<T, AppError> {
        let started = Instant::now();
        let span = telemetry::call_span(span_name(rpc), caller);
        let result = work.instrument(span).await;
        let outcome = match &result {
            Ok(answer) => Outcome::of(allowed(answer)),
            Err(AppError::Refused(_) | AppError::Limited { .. }) => Outcome::Deny,
            Err(_) => Outcome::Error,
        };
        self.metrics.observe_call(rpc, outcome, started);
        result
    }

    /// Appends a call's record and waits until it is durable, traced as
    /// the call's `audit_wait`.
    async fn record(
        &self,
        record: crate::audit::Record,
    ) -> Result<crate::audit::Receipt, crate::audit::AuditError> {
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
                lag_records: w.lag_records(self.audit.written_seq()),
                lag_seconds: w.lag_seconds(self.audit.written_seq()),
                connected: w.connected.load(std::sync::atomic::Ordering::Relaxed),
                stopped: w.fork().is_some(),
            }),
            limits_store_up: self.limiter.shared().map(|store| store.is_up()),
        })
    }

    /// The aggregate records of closed refusal windows (all at shutdown).
    pub fn counted_refusals(&self, everything: bool) -> Vec<crate::audit::Record> {
        self.refusals.take_closed(everything)
    }

    /// Spends one call from every rate of `policy` covering `access`;
    /// `Err` when one is spent (the call is then a deny).
    async fn check_rates(
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
    fn quotas_for<'p>(&self, policy: &'p PolicySet, asker: &AccessRequest<'p>) -> Vec<Matched<'p>> {
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
