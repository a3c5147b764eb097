//! The plain-HTTP surface: Prometheus metrics and probes for orchestrators
//! that do not speak gRPC health.
//!
//! `GET /metrics` is the exposition (OpenMetrics text, which Prometheus and
//! every agent that scrapes it read); `GET /healthz` answers 200 while the
//! process serves; `GET /readyz` 200 while the audit log can be written
//! (vigil answers nothing unaudited, so it is not ready otherwise) and 503
//! with the reason when not. Nothing here reads a request body or names a
//! subject.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    routing::get,
    Router,
};

use crate::app::Core;

pub mod api;

/// The content type of OpenMetrics 1.0 text.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn metrics_router(core: Arc<Core>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(core)
}

async fn metrics(State(core): State<Arc<Core>>) -> impl IntoResponse {
    // Reading the audit directory's sizes touches the disk: off the
    // runtime's worker threads.
    let text = tokio::task::spawn_blocking(move || core.render_metrics())
        .await
        .unwrap_or_else(|_| String::from("# the metrics could not be rendered\n# EOF\n"));
    ([(header::CONTENT_TYPE, OPENMETRICS)], text)
}

async fn ready(State(core): State<Arc<Core>>) -> impl IntoResponse {
    // The witness is a detail, never a reason to stop answering: shipping
    // catches up, and a fork is an alert, not an outage.
    let witness = core
        .witness
        .as_ref()
        .map(|w| format!("{}\n", w.summary(core.audit.written_seq())))
        .unwrap_or_default();
    // So is the limits store: while it is away vigil answers on local
    // budgets (degraded), it does not stop.
    let limits = match core.limiter.shared() {
        Some(store) if store.is_up() => format!("limits: shared in {}\n", store.shown),
        Some(store) => format!(
            "limits: degraded: {} unreachable; call rates use this sidecar's share, \
             reveal quotas fail closed\n",
            store.shown
        ),
        None => String::new(),
    };
    if core.audit.is_healthy() {
        (StatusCode::OK, format!("ready\n{witness}{limits}"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the audit log cannot be written\n{witness}{limits}"),
        )
    }
}
