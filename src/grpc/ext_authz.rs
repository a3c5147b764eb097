//! Envoy's external authorization (`envoy.service.auth.v3.Authorization`,
//! ext_authz v3) on vigil's gRPC listeners: Envoy and Istio (CUSTOM
//! action) ask `Check` for every request, and get the same audited
//! decision as `Authorize`.
//!
//! The `[http]` mapping (crate::gateway) turns the HTTP request Envoy
//! describes into a Casbin request. The subject: in jwt mode the bearer
//! token of the request's `authorization` header; in trusted mode, and in
//! mtls mode when Envoy's own certificate names a configured gateway
//! (`--mtls-gateway`), the mapping's `subject_header` (set by an earlier
//! filter) or else the mTLS peer principal Envoy reports (a SPIFFE ID); in
//! mtls mode for any other caller, the caller's own certificate.
//! `context_extensions` of the route may set `object`, `action` and
//! `domain` directly.

use std::sync::Arc;

use envoy_types::ext_authz::v3::{
    pb::{Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HttpStatusCode},
    CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
};
use tonic::{
    codegen::{Body, BoxFuture, StdError},
    Code, Request, Response, Status,
};

use super::codec::LeanCodec;

use super::{status::retry_after_ms, AccessControlService, Shared};
use crate::{
    gateway::{
        retry_after_seconds, HttpMapping, Mapped, DECISION_HEADER, DENIED_REASON,
        RATE_LIMITED_REASON,
    },
    proto::AuthorizeRequest,
};

/// Envoy's Authorization service, served with vigil's lean codec: the
/// server generated in envoy-types hard-codes tonic's codec, whose 8 KiB
/// buffers per call cost a gateway check more than its decision.
#[derive(Clone)]
pub struct ExtAuthzServer {
    inner: Arc<ExtAuthzService>,
    max_decoding_message_size: usize,
}

impl ExtAuthzServer {
    pub fn new(service: ExtAuthzService, max_decoding_message_size: usize) -> ExtAuthzServer {
        ExtAuthzServer {
            inner: Arc::new(service),
            max_decoding_message_size,
        }
    }
}

impl tonic::server::NamedService for ExtAuthzServer {
    const NAME: &'static str = "envoy.service.auth.v3.Authorization";
}

const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// One `Check`, as tonic's unary plumbing calls it.
struct CheckCall(Arc<ExtAuthzService>);

impl tonic::server::UnaryService<CheckRequest> for CheckCall {
    type Response = CheckResponse;
    type Future = BoxFuture<tonic::Response<CheckResponse>, Status>;

    fn call(&mut self, request: Request<CheckRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { Ok(tonic::Response::new(service.answer(request).await)) })
    }
}

impl<B> tower::Service<http::Request<B>> for ExtAuthzServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != CHECK_PATH {
            return Box::pin(async { Ok(super::status::unimplemented_method()) });
        }
        let service = self.inner.clone();
        let max = self.max_decoding_message_size;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(LeanCodec::default())
                .apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(CheckCall(service), request).await)
        })
    }
}

#[derive(Clone)]
pub struct ExtAuthzService {
    access: AccessControlService,
    shared: Arc<Shared>,
    mapping: Arc<HttpMapping>,
}

impl ExtAuthzService {
    pub fn new(shared: Arc<Shared>, mapping: Arc<HttpMapping>) -> ExtAuthzService {
        ExtAuthzService {
            access: AccessControlService::new(shared.clone()),
            shared,
            mapping,
        }
    }
}

/// A denial Envoy sends to its client: the HTTP status and a small JSON
/// body naming the decision (never the rule); with `Retry-After` when a
/// rate limit denied it (`retry_after_ms` above 0).
fn denied(
    code: Code,
    http: HttpStatusCode,
    message: &str,
    decision: Option<&str>,
    retry_after_ms: u64,
) -> CheckResponse {
    // Written directly: the id is base64url, only the message needs JSON
    // escaping (a denial is half the traffic of a gateway).
    let body = format!(
        r#"{{"allowed":false,"decisionId":"{}","reason":{}}}"#,
        decision.unwrap_or_default(),
        serde_json::Value::from(message)
    );
    let mut builder = DeniedHttpResponseBuilder::new();
    builder
        .set_http_status(http)
        .add_header("content-type", "application/json", None, false)
        .set_body(body);
    if let Some(id) = decision {
        builder.add_header(DECISION_HEADER, id, None, false);
    }
    if retry_after_ms > 0 {
        builder.add_header(
            "retry-after",
            retry_after_seconds(retry_after_ms),
            None,
            false,
        );
    }
    let response: DeniedHttpResponse = builder.build();
    let mut check = with_code(code, message);
    check.set_http_response(response);
    check
}

/// A response with its google.rpc.Status, built without a `tonic::Status`
/// (which allocates metadata this answer never carries).
fn with_code(code: Code, message: &str) -> CheckResponse {
    CheckResponse {
        status: Some(envoy_types::pb::google::rpc::Status {
            code: code as i32,
            message: message.to_owned(),
            details: Vec::new(),
        }),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthzService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        Ok(Response::new(self.answer(request).await))
    }
}

impl ExtAuthzService {
    /// One Check, decided through Authorize. Reads the request where it
    /// lies (a CheckRequest is large: moving it costs more than its
    /// mapping) and awaits Authorize unboxed.
    async fn answer(&self, request: Request<CheckRequest>) -> CheckResponse {
        let connection = super::connection_of(&request).cloned();
        let names_subject = self.shared.authn.gateway_names_subject(
            connection
                .as_ref()
                .and_then(|c| c.client_certificate.as_deref()),
        );
        let attributes = request.get_ref().attributes.as_ref();
        let Some(http) = attributes
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
        else {
            return denied(
                Code::InvalidArgument,
                HttpStatusCode::BadRequest,
                "the check carries no HTTP request attributes",
                None,
                0,
            );
        };
        let header = |name: &str| http.headers.get(name).map(String::as_str);
        let extensions = attributes.map(|a| &a.context_extensions);
        let extension = |name: &str| extensions.and_then(|e| e.get(name)).cloned();
        let Mapped {
            mut object,
            mut action,
            mut domain,
        } = self
            .mapping
            .map(&http.method, &http.host, &http.path, header);
        if let Some(value) = extension("object") {
            object = value;
        }
        if let Some(value) = extension("action") {
            action = value;
        }
        if let Some(value) = extension("domain") {
            domain = value;
        }
        let subject = if names_subject {
            let from_header = self
                .mapping
                .subject_header
                .as_deref()
                .and_then(|name| header(&name.to_ascii_lowercase()));
            let from_peer = attributes
                .and_then(|a| a.source.as_ref())
                .map(|peer| peer.principal.as_str())
                .filter(|p| !p.is_empty());
            match from_header.or(from_peer) {
                Some(subject) => subject.to_owned(),
                None => {
                    return denied(
                        Code::Unauthenticated,
                        HttpStatusCode::Unauthorized,
                        "no subject: no subject header ([http] subject_header) and no mTLS peer principal",
                        None,
                        0,
                    )
                }
            }
        } else {
            String::new()
        };
        let authorize = super::forwarded(
            AuthorizeRequest {
                subject,
                object,
                action,
                domain,
                attributes: Default::default(),
            },
            header,
            super::Via {
                connection,
                vouched_by_gateway: names_subject,
            },
        );
        match self.access.authorize_observed(authorize).await {
            Ok(answer) => {
                if answer.allowed {
                    let mut ok = OkHttpResponseBuilder::new();
                    ok.add_header(DECISION_HEADER, &answer.decision_id, None, false);
                    let mut check = with_code(Code::Ok, "");
                    check.set_http_response(ok.build());
                    check
                } else if !answer.limit.is_empty() {
                    denied(
                        Code::ResourceExhausted,
                        HttpStatusCode::TooManyRequests,
                        RATE_LIMITED_REASON,
                        Some(&answer.decision_id),
                        answer.retry_after_ms,
                    )
                } else {
                    denied(
                        Code::PermissionDenied,
                        HttpStatusCode::Forbidden,
                        DENIED_REASON,
                        Some(&answer.decision_id),
                        0,
                    )
                }
            }
            Err(status) => {
                let http = match status.code() {
                    Code::Unauthenticated => HttpStatusCode::Unauthorized,
                    Code::PermissionDenied => HttpStatusCode::Forbidden,
                    Code::InvalidArgument => HttpStatusCode::BadRequest,
                    Code::ResourceExhausted => HttpStatusCode::TooManyRequests,
                    _ => HttpStatusCode::ServiceUnavailable,
                };
                let wait = retry_after_ms(&status);
                denied(status.code(), http, status.message(), None, wait)
            }
        }
    }
}
