//! Envoy's external authorization (`envoy.service.auth.v3.Authorization`,
//! ext_authz v3) on vigil's gRPC listeners: Envoy and Istio (CUSTOM
//! action) ask `Check` for every request. This adapter reads the HTTP
//! request Envoy describes (its headers, the peer principal Envoy verified,
//! the route's `context_extensions` for `object`, `action`, `domain`) into
//! the core's gateway check (`app::check`), the same one `/v1/check`
//! uses, and renders its answer as Envoy expects it.

use std::sync::Arc;

use envoy_types::ext_authz::v3::{
    pb::{
        Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
        HttpStatusCode,
    },
    CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
};
use tonic::{
    codegen::{Body, BoxFuture, StdError},
    Code, Request, Response, Status,
};

use crate::{
    app::{
        retry_after_seconds, AppError, Caller, CheckCall, Checked, Core, Door, Original,
        Response as Refusal, Verdict, DECISION_HEADER,
    },
    gateway::Described,
    proto::codec::LeanCodec,
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
struct UnaryCheck(Arc<ExtAuthzService>);

impl tonic::server::UnaryService<CheckRequest> for UnaryCheck {
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
            Ok(grpc.unary(UnaryCheck(service), request).await)
        })
    }
}

#[derive(Clone)]
pub struct ExtAuthzService {
    core: Arc<Core>,
}

impl ExtAuthzService {
    pub fn new(core: Arc<Core>) -> ExtAuthzService {
        ExtAuthzService { core }
    }
}

/// A denial Envoy sends to its client: the HTTP status and a small JSON
/// body naming the decision (never the rule); with `Retry-After` when a
/// rate limit denied it (`retry_after_ms` above 0).
fn denied(
    code: Code,
    http: u16,
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
        .set_http_status(HttpStatusCode::try_from(http as i32).unwrap_or(HttpStatusCode::Forbidden))
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
    /// One Check through the core's gateway check. Reads the request where
    /// it lies (a CheckRequest is large: moving it costs more than its
    /// mapping).
    async fn answer(&self, request: Request<CheckRequest>) -> CheckResponse {
        let connection = request.extensions().get::<crate::listen::Connection>();
        let attributes = request.get_ref().attributes.as_ref();
        let Some(http) = attributes
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
        else {
            return denied(
                Code::InvalidArgument,
                400,
                "the check carries no HTTP request attributes",
                None,
                0,
            );
        };
        let header = |name: &str| http.headers.get(name).map(String::as_str);
        let extension = |name: &str| {
            attributes
                .and_then(|a| a.context_extensions.get(name))
                .map(String::as_str)
        };
        // The described request's own credentials and trace context: Envoy
        // forwards the client's, not its own.
        let caller = Caller::new(connection, header);
        let call = CheckCall {
            door: Door::ExtAuthz,
            original: Original::Given(Described {
                method: &http.method,
                host: &http.host,
                uri: &http.path,
            }),
            headers: &header,
            peer_principal: attributes
                .and_then(|a| a.source.as_ref())
                .map(|peer| peer.principal.as_str()),
            object: extension("object"),
            action: extension("action"),
            domain: extension("domain"),
        };
        match self.core.check(&caller, call).await {
            Ok(checked) => render(&checked),
            Err(error) => refused(error),
        }
    }
}

/// A decided check as Envoy takes it.
fn render(checked: &Checked) -> CheckResponse {
    match checked.verdict() {
        Verdict::Allowed => {
            let mut ok = OkHttpResponseBuilder::new();
            // Overwrite: a client-sent decision id must never reach the
            // upstream beside vigil's.
            ok.add_header(
                DECISION_HEADER,
                checked.decision_id(),
                Some(HeaderAppendAction::OverwriteIfExistsOrAdd),
                false,
            );
            let mut check = with_code(Code::Ok, "");
            check.set_http_response(ok.build());
            check
        }
        Verdict::Limited => denied(
            Code::ResourceExhausted,
            429,
            checked.denial_reason().unwrap_or_default(),
            Some(checked.decision_id()),
            checked.retry_after_ms(),
        ),
        Verdict::Denied => denied(
            Code::PermissionDenied,
            403,
            checked.denial_reason().unwrap_or_default(),
            Some(checked.decision_id()),
            0,
        ),
    }
}

/// A refusal from the core's table, as Envoy sends it to its client.
fn refused(error: AppError) -> CheckResponse {
    let Refusal {
        code,
        http,
        message,
        retry_after_ms,
    } = Refusal::from(error);
    denied(
        Code::from_i32(code as i32),
        http,
        &message,
        None,
        retry_after_ms,
    )
}
