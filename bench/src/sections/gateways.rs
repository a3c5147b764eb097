//! Section (g): the gateway front-ends and TLS. Envoy's ext_authz `Check`
//! and the HTTP/JSON API's `POST /v1/authorize`, saturated, each next to
//! gRPC Authorize measured right before on the same server (and the floor);
//! then Authorize over TLS next to plaintext at 1 and 64 streams, on two
//! servers that differ only in `--tls-cert`.

use std::collections::HashMap;

use envoy_types::pb::envoy::service::auth::v3::{
    attribute_context::{HttpRequest, Request},
    AttributeContext,
};
use http_body_util::{BodyExt, Full};

use crate::*;

/// Concurrent HTTP/1.1 connections (one request in flight on each).
const HTTP_CONNECTIONS: usize = 64;

/// The `[http]` mapping the ext_authz checks are decided through.
const MAPPING: &str = "[http]\nsubject_header = \"x-user\"\n\
    [[http.routes]]\npath = \"/v1/datasets/{dataset}/rows\"\nobject = \"{dataset}\"\n\
    [http.methods]\nGET = \"read\"\nPOST = \"write\"\nDELETE = \"delete\"\nPATCH = \"export\"\n";

/// The Authorize mix as Envoy would describe the HTTP requests.
fn check_mix() -> Vec<CheckRequest> {
    authorize_mix()
        .into_iter()
        .map(|request| {
            let method = match request.action.as_str() {
                "write" => "POST",
                "delete" => "DELETE",
                "export" => "PATCH",
                _ => "GET",
            };
            CheckRequest {
                attributes: Some(AttributeContext {
                    request: Some(Request {
                        http: Some(HttpRequest {
                            method: method.into(),
                            path: format!("/v1/datasets/{}/rows", request.object),
                            host: "api.example.com".into(),
                            headers: HashMap::from([("x-user".into(), request.subject)]),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }
        })
        .collect()
}

/// The Authorize mix as JSON bodies.
fn http_bodies() -> Vec<bytes::Bytes> {
    authorize_mix()
        .iter()
        .map(|r| {
            format!(
                r#"{{"subject":"{}","object":"{}","action":"{}"}}"#,
                r.subject, r.object, r.action
            )
            .into()
        })
        .collect()
}

/// `POST /v1/authorize` over keep-alive HTTP/1.1 connections (hyper's
/// client), one request in flight per connection.
async fn drive_http(server: &Server, bodies: Vec<bytes::Bytes>, settings: &Settings) -> Measured {
    let bodies = Arc::new(bodies);
    let address = server.http.clone();
    let run = |duration: Duration, record: bool| {
        (0..HTTP_CONNECTIONS)
            .map(|connection| {
                let (bodies, address) = (bodies.clone(), address.clone());
                tokio::spawn(async move {
                    let stream = tokio::net::TcpStream::connect(&address)
                        .await
                        .expect("connect http");
                    stream.set_nodelay(true).expect("nodelay");
                    let (mut send, conn) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                            .await
                            .expect("HTTP/1.1 handshake");
                    tokio::spawn(conn);
                    let mut latencies = Vec::with_capacity(if record { 100_000 } else { 0 });
                    let (mut calls, mut errors) = (0u64, 0u64);
                    let deadline = Instant::now() + duration;
                    let mut n = connection;
                    while Instant::now() < deadline {
                        n = n.wrapping_add(7);
                        let started = Instant::now();
                        let request = http::Request::post("/v1/authorize")
                            .header("host", "localhost")
                            .header("content-type", "application/json")
                            .body(Full::new(bodies[n % bodies.len()].clone()))
                            .expect("request");
                        let ok = match send.send_request(request).await {
                            Ok(response) => {
                                let status = response.status();
                                response.into_body().collect().await.is_ok() && status.is_success()
                            }
                            Err(_) => false,
                        };
                        if ok {
                            calls += 1;
                            if record {
                                latencies.push(
                                    (started.elapsed().as_nanos() / 100).min(u128::from(u32::MAX))
                                        as u32,
                                );
                            }
                        } else {
                            errors += 1;
                        }
                    }
                    (calls, calls, errors, latencies)
                })
            })
            .collect::<Vec<_>>()
    };
    measure(server, settings, run).await
}

/// A CA and a server certificate for `localhost`, written into `dir`;
/// returns the CA's PEM and the cert and key paths.
fn certificates(dir: &Path) -> (String, PathBuf, PathBuf) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &issuer).expect("certificate");
    let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (ca_pem, cert_path, key_path)
}

fn row(
    report: &mut Report,
    what: &str,
    generator: &str,
    concurrency: usize,
    m: &Measured,
    reference: &Measured,
    reference_name: &str,
) -> f64 {
    let ratio = m.throughput() / reference.throughput();
    let (busy, generator_busy) = m.busy();
    report.row(format!(
        "| {what} | {generator} | {concurrency} | {:.0} | {ratio:.2} | {} | {} | {:.2} | {busy:.0} / {generator_busy:.0} | {} | {reference_name} | {:.0} |",
        m.throughput(),
        micros(m.percentile(0.5)),
        micros(m.percentile(0.99)),
        m.cpu_per_call().as_secs_f64() * 1e6,
        m.errors,
        reference.throughput(),
    ));
    ratio
}

pub(crate) async fn run(run: &mut Run<'_>) {
    let (vigil, settings, policies) = (run.vigil, run.settings, run.policies);
    let report = &mut *run.report;
    report.section(
        "(g) Gateways and TLS: ext_authz Check (lean generator, 1,024 streams), HTTP/JSON `POST /v1/authorize` (hyper, 64 keep-alive connections), Authorize over TLS vs plaintext (tonic); durable batch audit",
        "| call | generator | concurrency | req/s | ×reference | p50 µs | p99 µs | server CPU µs/call | server / generator busy % | errors | reference | reference req/s |",
    );
    let scratch = tempfile::tempdir().expect("temp dir");
    let config = scratch.path().join("vigil.toml");
    std::fs::write(&config, MAPPING).expect("write config");
    let config = config.display().to_string();
    let server = Server::start(
        vigil,
        policies,
        &["--config", &config, "--http-listen", "127.0.0.1:0"],
        settings.pinned,
    );

    let floor = drive(&server, false, 1024, Call::Floor, Generator::Lean, settings).await;
    let authorize = authorize_load(&server, 1024, settings).await;
    row(
        report,
        "Authorize (gRPC)",
        "lean",
        1024,
        &authorize,
        &floor,
        "floor",
    );
    let check = drive(
        &server,
        false,
        1024,
        Call::ExtAuthz(check_mix()),
        Generator::Lean,
        settings,
    )
    .await;
    let ratio = row(
        report,
        "ext_authz Check",
        "lean",
        1024,
        &check,
        &authorize,
        "Authorize",
    );
    report.target(
        "ext_authz Check saturated vs gRPC Authorize",
        format!(
            "{:.0} req/s = {ratio:.2}× ({:.0})",
            check.throughput(),
            authorize.throughput()
        ),
        "≥ 0.8×".into(),
        ratio >= 0.8,
    );

    let authorize = authorize_load(&server, 1024, settings).await;
    let http = drive_http(&server, http_bodies(), settings).await;
    let ratio = row(
        report,
        "HTTP POST /v1/authorize",
        "hyper",
        HTTP_CONNECTIONS,
        &http,
        &authorize,
        "Authorize",
    );
    report.target(
        "HTTP/JSON /v1/authorize saturated vs gRPC Authorize",
        format!(
            "{:.0} req/s = {ratio:.2}× ({:.0})",
            http.throughput(),
            authorize.throughput()
        ),
        "≥ 0.6×".into(),
        ratio >= 0.6,
    );
    drop(server);

    let (ca, cert, key) = certificates(scratch.path());
    let plain = Server::start(vigil, policies, &[], settings.pinned);
    let mut tls = Server::start(
        vigil,
        policies,
        &[
            "--tls-cert",
            &cert.display().to_string(),
            "--tls-key",
            &key.display().to_string(),
        ],
        settings.pinned,
    );
    tls.tls_ca = Some(ca);
    for streams in [1, 64] {
        let clear = drive(
            &plain,
            false,
            streams,
            Call::Authorize(authorize_mix()),
            Generator::Tonic,
            settings,
        )
        .await;
        let secured = drive(
            &tls,
            false,
            streams,
            Call::Authorize(authorize_mix()),
            Generator::Tonic,
            settings,
        )
        .await;
        row(
            report,
            "Authorize, plaintext TCP",
            "tonic",
            streams,
            &clear,
            &clear,
            "itself",
        );
        let ratio = row(
            report,
            "Authorize, TLS 1.3",
            "tonic",
            streams,
            &secured,
            &clear,
            "plaintext",
        );
        report.note(format!(
            "TLS at {streams} stream(s): {:.0} req/s = {ratio:.2}× plaintext ({:.0}); p99 {} µs vs {} µs",
            secured.throughput(),
            clear.throughput(),
            micros(secured.percentile(0.99)),
            micros(clear.percentile(0.99)),
        ));
    }
}
