//! `--otlp-endpoint`: vigil's spans reach an OTLP collector (one started
//! here, speaking the collector's own gRPC service), continue the caller's
//! W3C trace, name the decision id and never a subject or object; log
//! lines carry the trace id.

use crate::common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{repo_path, Launch};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        trace_service_server::{TraceService, TraceServiceServer},
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    },
    trace::v1::Span,
};
use vigil::proto::AuthorizeRequest;

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(text) => Some(text.clone()),
            other => Some(format!("{other:?}")),
        })
}

#[tokio::test]
async fn spans_continue_the_callers_trace_and_name_only_the_decision() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let mut launch = Launch::new(repo_path("policies"))
        .args(["--otlp-endpoint", &format!("http://{address}")])
        .subprocess();
    launch.envs.push(("VIGIL_LOG".into(), "debug".into()));
    let vigil = launch.start();
    let mut client = vigil.client().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = tonic::Request::new(AuthorizeRequest {
        subject: "alice".into(),
        object: "crm.customers".into(),
        action: "read".into(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    let answer = client.authorize(request).await.unwrap().into_inner();
    assert!(answer.allowed);
    // Shutdown flushes the spans still queued.
    let (_, stderr, _dir) = vigil.terminate().await;

    let spans = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            {
                let spans = collector.spans.lock().unwrap();
                if spans
                    .iter()
                    .any(|s| s.name == "vigil.v1.AccessControl/Authorize")
                {
                    return spans.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the collector received the call's span");
    server.abort();

    let call = spans
        .iter()
        .find(|s| s.name == "vigil.v1.AccessControl/Authorize")
        .unwrap();
    assert_eq!(
        hex::encode(&call.trace_id),
        trace_id,
        "continues the caller's trace"
    );
    assert_eq!(hex::encode(&call.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(
        attribute(call, "decision_id").as_deref(),
        Some(answer.decision_id.as_str())
    );
    for stage in ["authn", "decision", "audit_wait"] {
        let child = spans.iter().find(|s| s.name == stage).unwrap_or_else(|| {
            panic!(
                "no `{stage}` span in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
        assert_eq!(child.trace_id, call.trace_id, "{stage}");
    }
    for span in &spans {
        let events = span.events.iter().flat_map(|event| event.attributes.iter());
        for kv in span.attributes.iter().chain(events) {
            let text = format!("{:?}", kv.value);
            for secret in ["alice", "crm.customers"] {
                assert!(
                    !text.contains(secret),
                    "span {} carries `{secret}`: {kv:?}",
                    span.name
                );
            }
        }
    }
    // Log lines inside the call carry its trace id.
    assert!(
        stderr
            .lines()
            .any(|line| line.contains("decision") && line.contains(trace_id)),
        "{stderr}"
    );
}
