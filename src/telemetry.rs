//! OpenTelemetry traces (`--otlp-endpoint`; off by default).
//!
//! Each call is a span named after its RPC, continued from the caller's
//! W3C `traceparent` when it sends one, with children for what takes its
//! time: authentication, the decision, masking and the wait for the audit
//! record to be durable. Spans carry the decision id (the key into the
//! audit log), never a subject, object, attribute or value: a tracing
//! backend is not the audit log and must not become a copy of it.
//!
//! Off, every span here is `Span::none()`: a request pays one atomic load.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::{propagation::TextMapPropagator, trace::TraceContextExt};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
    Resource,
};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Where and how much to trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// Share of new traces sampled (0.0 … 1.0); a caller's sampled
    /// `traceparent` is always followed.
    pub sample_ratio: f64,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot set up OTLP trace export to {endpoint} (--otlp-endpoint): {message}")]
pub struct TelemetryError {
    endpoint: String,
    message: String,
}

/// Builds the exporter and provider. Must run inside the Tokio runtime
/// (tonic's client is bound to it); the caller keeps the provider to
/// flush it at exit and hands its tracer to the log subscriber.
pub fn start(settings: &TraceSettings) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(settings.endpoint.clone())
        .build()
        .map_err(|e| TelemetryError {
            endpoint: settings.endpoint.clone(),
            message: e.to_string(),
        })?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio,
        ))))
        .with_resource(
            Resource::builder_empty()
                .with_service_name("vigil")
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION"),
                ))
                .build(),
        )
        .build();
    ENABLED.store(true, Ordering::Relaxed);
    Ok(provider)
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// What a call's span continues from: its request headers (gRPC metadata
/// or HTTP), read by name.
pub trait Headers {
    fn header(&self, name: &str) -> Option<&str>;
}

struct Extract<'a, H: Headers>(&'a H);

impl<H: Headers> opentelemetry::propagation::Extractor for Extract<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.header(key)
    }

    fn keys(&self) -> Vec<&str> {
        ["traceparent", "tracestate"]
            .into_iter()
            .filter(|key| self.0.header(key).is_some())
            .collect()
    }
}

/// The span of one call, child of the caller's trace if it sent a
/// `traceparent`. Its `trace_id` field puts the trace id on every log line
/// written inside it; `decision_id` is recorded once known.
pub fn call_span(rpc: &'static str, headers: &impl Headers) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "call",
        otel.name = rpc,
        rpc.system = "grpc",
        rpc.method = rpc,
        decision_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    let parent = TraceContextPropagator::new().extract(&Extract(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let trace_id = span.context().span().span_context().trace_id();
    span.record("trace_id", tracing::field::display(trace_id));
    span
}

/// The parts of a call worth a span of their own.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    Authn,
    Decision,
    Masking,
    AuditWait,
}

/// A child span of the current call (none when tracing is off).
pub fn stage(stage: Stage) -> Span {
    if !enabled() {
        return Span::none();
    }
    match stage {
        Stage::Authn => tracing::info_span!("authn"),
        Stage::Decision => tracing::info_span!("decision", decision_id = tracing::field::Empty),
        Stage::Masking => tracing::info_span!("masking"),
        Stage::AuditWait => tracing::info_span!("audit_wait"),
    }
}

/// Names the decision on the current span, if it has the field.
pub fn record_decision(span: &Span, decision_id: &str) {
    if !span.is_none() {
        span.record("decision_id", decision_id);
    }
}
