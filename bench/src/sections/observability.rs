//! Section (o): what observing vigil costs. Saturated durable Authorize on
//! three servers measured in turn, twice each (the machine drifts over a
//! run): plain, with `--metrics-listen` (scraped once a second, as a
//! Prometheus would), and with `--otlp-endpoint` at 100% sampling into an
//! OTLP collector that accepts and drops every span.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_server::{TraceService, TraceServiceServer},
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use crate::*;

/// An OTLP collector that counts spans and keeps none.
#[derive(Clone, Default)]
struct Sink {
    spans: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.spans.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Scrapes `/metrics` every second until dropped, as Prometheus would.
fn scrape_every_second(address: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(&address).await {
                let _ = stream
                    .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                    .await;
                let mut sink = Vec::new();
                let _ = stream.read_to_end(&mut sink).await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

pub(crate) async fn run(run: &mut Run<'_>) {
    let settings = run.settings;
    let report = &mut *run.report;
    report.section(
        "(o) Observability cost: saturated durable Authorize (TCP, lean generator, 1,024 streams), best of two turns each",
        "| server | req/s | ×plain | p50 µs | p99 µs | server CPU µs/call |",
    );
    let sink = Sink::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("collector port");
    let collector = listener.local_addr().expect("collector address");
    let collector_task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(sink.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let metrics_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("its address").port()
    };
    let metrics_address = format!("127.0.0.1:{metrics_port}");
    let otlp = format!("http://{collector}");
    let variants: [(&str, Vec<&str>); 3] = [
        ("plain", vec![]),
        ("metrics on", vec!["--metrics-listen", &metrics_address]),
        ("tracing on, 100% sampled", vec!["--otlp-endpoint", &otlp]),
    ];
    let mut best: Vec<Option<Measured>> = vec![None, None, None];
    for _turn in 0..2 {
        for (index, (_, args)) in variants.iter().enumerate() {
            let server = Server::start(run.vigil, run.policies, args, settings.pinned);
            let scraper = (index == 1).then(|| scrape_every_second(metrics_address.clone()));
            let m = authorize_load(&server, 1024, settings).await;
            if let Some(scraper) = scraper {
                scraper.abort();
            }
            drop(server);
            keep_faster(&mut best[index], m);
        }
    }
    let plain = best[0].as_ref().expect("measured").throughput();
    for ((name, _), m) in variants.iter().zip(&best) {
        let m = m.as_ref().expect("measured");
        report.row(format!(
            "| {name} | {:.0} | {:.3} | {} | {} | {:.2} |",
            m.throughput(),
            m.throughput() / plain,
            micros(m.percentile(0.5)),
            micros(m.percentile(0.99)),
            m.cpu.as_secs_f64() * 1e6 / m.items.max(1) as f64,
        ));
    }
    let with_metrics = best[1].as_ref().expect("measured").throughput() / plain;
    report.target(
        "Authorize saturated with metrics on vs off",
        format!("{with_metrics:.3}×"),
        "≥ 0.97×".into(),
        with_metrics >= 0.97,
    );
    report.note(format!(
        "The OTLP sink received {} spans (a call, authn, decision, audit_wait each).",
        sink.spans.load(Ordering::Relaxed)
    ));
    collector_task.abort();
}
