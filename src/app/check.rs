//! The gateway check: one HTTP request a gateway is about to forward
//! (nginx `auth_request` and Traefik `forwardAuth` through `/v1/check`,
//! Envoy through ext_authz `Check`), mapped to a Casbin request, decided,
//! limited, audited and answered the same way whichever gateway asked.
//!
//! The subject: when the gateway may name it (trusted mode, or mtls mode
//! with the gateway's own certificate configured by `--mtls-gateway`), the
//! mapping's `subject_header`, else the mTLS peer principal the gateway
//! reports (Envoy's `source.principal`); an empty one is a missing one, an
//! audited 401. Otherwise the described request's own credentials (its
//! bearer token, the connection's certificate) say who it is.

use super::{decision_id, AccessCall, AppError, Authorized, Caller, Core};
use crate::{
    audit::{kind, Receipt},
    authn::AuthnError,
    authz::AccessRequest,
    gateway::{Described, MappingError},
    metrics::Rpc,
};

/// The header naming the decision of a gateway check (to the upstream when
/// allowed, to the client when denied).
pub const DECISION_HEADER: &str = "x-vigil-decision-id";

/// What a gateway's client is told of a denial: the rule that denied stays
/// in the audit log, found by the decision id.
pub const DENIED_REASON: &str =
    "denied by policy; the decision id finds the rule in vigil's audit log";

/// What a gateway's client is told when a rate limit denied the call.
pub const RATE_LIMITED_REASON: &str =
    "rate limited; retry after the time in Retry-After (the decision id finds the limit in vigil's audit log)";

/// Which gateway protocol asked: metrics and spans name the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// Envoy's ext_authz `Authorization/Check`.
    ExtAuthz,
    /// `/v1/check` (nginx, Traefik).
    Http,
}

impl Door {
    fn rpc(self) -> Rpc {
        match self {
            Door::ExtAuthz => Rpc::Check,
            Door::Http => Rpc::HttpCheck,
        }
    }
}

/// Where the original request's method, path and host come from.
#[derive(Debug, Clone, Copy)]
pub enum Original<'a> {
    /// Fields of the gateway's own protocol (Envoy's `HttpRequest`); the
    /// path as the client sent it, query included.
    Given(Described<'a>),
    /// A subrequest's headers, read as the configured `[http] gateway`
    /// sets them.
    FromHeaders,
}

/// The request a gateway describes.
pub struct CheckCall<'a> {
    pub door: Door,
    pub original: Original<'a>,
    /// The described request's headers, by lowercase name.
    pub headers: &'a (dyn Fn(&str) -> Option<&'a str> + Sync),
    /// The client's mTLS principal as the gateway verified it, if any.
    pub peer_principal: Option<&'a str>,
    /// The route's own choices (Envoy's `context_extensions`), which win
    /// over the mapping.
    pub object: Option<&'a str>,
    pub action: Option<&'a str>,
    pub domain: Option<&'a str>,
}

/// How a gateway should treat the request it asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
    /// Allowed by the policy, denied by a rate limit.
    Limited,
}

/// An audited gateway decision (it holds the [`Authorized`] answer, and
/// with it the receipt).
#[derive(Debug)]
pub struct Checked(Authorized);

impl Checked {
    pub fn verdict(&self) -> Verdict {
        if self.0.allowed() {
            Verdict::Allowed
        } else if self.0.limit().is_some() {
            Verdict::Limited
        } else {
            Verdict::Denied
        }
    }
    pub fn decision_id(&self) -> &str {
        self.0.decision_id()
    }
    pub fn retry_after_ms(&self) -> u64 {
        self.0.retry_after_ms()
    }
    pub fn receipt(&self) -> &Receipt {
        self.0.receipt()
    }
    /// What the gateway's client is told of a denial; nothing for an allow.
    pub fn denial_reason(&self) -> Option<&'static str> {
        match self.verdict() {
            Verdict::Allowed => None,
            Verdict::Denied => Some(DENIED_REASON),
            Verdict::Limited => Some(RATE_LIMITED_REASON),
        }
    }
}

impl Core {
    /// One gateway check, counted and traced under its door's name.
    pub async fn check(
        &self,
        caller: &Caller<'_>,
        call: CheckCall<'_>,
    ) -> Result<Checked, AppError> {
        let rpc = call.door.rpc();
        self.observed(
            rpc,
            caller,
            self.check_unobserved(caller, call),
            |checked| checked.verdict() == Verdict::Allowed,
        )
        .await
    }

    async fn check_unobserved(
        &self,
        caller: &Caller<'_>,
        call: CheckCall<'_>,
    ) -> Result<Checked, AppError> {
        let rpc = match call.door {
            Door::ExtAuthz => "Check",
            Door::Http => "/v1/check",
        };
        let names_subject = self.authn.gateway_names_subject(
            caller
                .connection()
                .and_then(|c| c.client_certificate.as_deref()),
        );
        let mapped = match call.original {
            Original::Given(described) => Ok(described),
            Original::FromHeaders => self.mapping.described(call.headers),
        }
        .and_then(|described| {
            self.mapping.map(
                described.method,
                described.host,
                described.uri,
                call.headers,
            )
        });
        let (caller, subject) = if names_subject {
            let from_header = self
                .mapping
                .subject_header
                .as_deref()
                .and_then(|name| (call.headers)(&name.to_ascii_lowercase()));
            // Empty is missing: a gateway that cleared the header has named
            // no one.
            match from_header
                .or(call.peer_principal)
                .filter(|s| !s.is_empty())
            {
                Some(subject) => (caller.vouched(), subject.to_owned()),
                None => {
                    let error = AuthnError::NoGatewaySubject {
                        header: self
                            .mapping
                            .subject_header
                            .clone()
                            .unwrap_or_else(|| "(not configured)".to_owned()),
                    };
                    return Err(self.refuse(error, "", rpc, caller.peer()).await);
                }
            }
        } else {
            // The described request's own credentials name it.
            (*caller, String::new())
        };
        let mapped = match mapped {
            Ok(mapped) => mapped,
            Err(error) => return Err(self.refuse_unmapped(&caller, &subject, rpc, error).await),
        };
        let request = AccessCall {
            subject,
            object: call.object.map_or(mapped.object, str::to_owned),
            action: call.action.map_or(mapped.action, str::to_owned),
            domain: call.domain.map_or(mapped.domain, str::to_owned),
            attributes: Default::default(),
        };
        let authorized = self.authorize_unobserved(&caller, request, rpc).await?;
        Ok(Checked(authorized))
    }

    /// A gateway request that cannot be mapped unambiguously: refused (400)
    /// and audited as a denied decision of its authenticated caller, on the
    /// object `unmappable`.
    async fn refuse_unmapped(
        &self,
        caller: &Caller<'_>,
        subject: &str,
        rpc: &str,
        error: MappingError,
    ) -> AppError {
        let policy = self.policies.snapshot();
        let principal = match self.authenticate(caller, &policy, subject, rpc).await {
            Ok(principal) => principal,
            Err(refused) => return refused,
        };
        let attributes = Default::default();
        let asker = AccessRequest {
            subject: &principal.subject,
            extra_roles: &principal.roles,
            object: "unmappable",
            action: "",
            domain: "",
            attributes: &attributes,
        };
        let id = decision_id();
        let reason = error.to_string();
        // Recorded as any refused read is; answered 400, not 403: the
        // request, not the policy, is at fault.
        match self
            .refuse_reading(
                kind::DECISION,
                &id,
                &asker,
                reason.clone(),
                &policy.version,
                reason,
            )
            .await
        {
            AppError::Refused(why) => AppError::Unmappable(format!("decision {id}: {why}")),
            unaudited => unaudited,
        }
    }
}
