//! TLS and mTLS on TCP listeners, with certificates made here (rcgen): the
//! gRPC and HTTP surfaces over TLS, the mTLS subject (a SPIFFE ID), gateways
//! vouching for end subjects, and certificate rotation under load with no
//! failed call.

use crate::common;

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use common::{envoy_check, port_of, repo_path, request, Launch, Vigil};
use envoy_types::pb::envoy::service::auth::v3::{
    authorization_client::AuthorizationClient, CheckRequest,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::{
    self,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use vigil::proto::access_control_client::AccessControlClient;

const LOADER: &str = "spiffe://example.org/ns/etl/sa/loader";
const ENVOY: &str = "spiffe://example.org/ns/edge/sa/envoy";

/// A test certificate authority.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A certificate and its key, in PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate for `dns` names and `uris` SANs, with common name `cn`.
    fn issue(&self, cn: &str, dns: &[&str], uris: &[&str]) -> Leaf {
        let mut params =
            CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        for uri in uris {
            params
                .subject_alt_names
                .push(SanType::URI(uri.to_string().try_into().unwrap()));
        }
        if dns.contains(&"localhost") {
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
        }
        let key = KeyPair::generate().unwrap();
        Leaf {
            cert: params.signed_by(&key, &self.issuer).unwrap().pem(),
            key: key.serialize_pem(),
        }
    }
}

/// The shipped example policy plus rules for workload identities.
fn policies_with_workloads(dir: &Path) -> PathBuf {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for file in ["model.conf", "classification.toml"] {
        std::fs::copy(repo_path("policies").join(file), policies.join(file)).unwrap();
    }
    let mut csv = std::fs::read_to_string(repo_path("policies/policy.csv")).unwrap();
    csv.push_str(&format!("\ng, {LOADER}, analyst\n"));
    std::fs::write(policies.join("policy.csv"), csv).unwrap();
    policies
}

/// Writes the server's files; returns (cert, key, client CA) paths.
fn server_files(dir: &Path, ca: &Ca, server: &Leaf) -> (PathBuf, PathBuf, PathBuf) {
    let paths = (
        dir.join("server.crt"),
        dir.join("server.key"),
        dir.join("clients-ca.crt"),
    );
    std::fs::write(&paths.0, &server.cert).unwrap();
    std::fs::write(&paths.1, &server.key).unwrap();
    std::fs::write(&paths.2, &ca.pem).unwrap();
    paths
}

fn tls_args(files: &(PathBuf, PathBuf, PathBuf), mutual: bool) -> Vec<String> {
    let mut args = vec![
        "--tls-cert".to_owned(),
        files.0.display().to_string(),
        "--tls-key".to_owned(),
        files.1.display().to_string(),
    ];
    if mutual {
        args.extend(["--tls-client-ca".to_owned(), files.2.display().to_string()]);
    }
    args
}

fn port(vigil: &Vigil) -> u16 {
    port_of(vigil.tcp.as_ref().unwrap())
}

async fn tls_channel(port: u16, ca: &Ca, client: Option<&Leaf>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.pem))
        .domain_name("localhost");
    if let Some(client) = client {
        tls = tls.identity(Identity::from_pem(&client.cert, &client.key));
    }
    Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// A raw TLS connection (rustls), to see which certificate the server
/// presents and to speak HTTP/1.1.
async fn rustls_connect(
    port: u16,
    ca: &Ca,
    client: Option<&Leaf>,
    alpn: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        Some(client) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(client.cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(client.key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// The subject of every decision in the audit log, in order.
fn decided_subjects(vigil: &Vigil) -> Vec<String> {
    common::audit_lines(&vigil.audit_dir)
        .into_iter()
        .map(|(_, line)| serde_json::from_str::<serde_json::Value>(&line).unwrap())
        .filter(|r| r["kind"] == "decision")
        .map(|d| d["sub"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn grpc_over_tls_and_no_plaintext_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("vigil test CA");
    let files = server_files(dir.path(), &ca, &ca.issue("vigil", &["localhost"], &[]));
    let vigil = Launch::new(repo_path("policies"))
        .args(tls_args(&files, false))
        .start();
    let port = port(&vigil);

    let channel = tls_channel(port, &ca, None).await.unwrap();
    let answer = AccessControlClient::new(channel)
        .authorize(request("alice", "crm.customers", "read"))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.allowed, "{answer:?}");

    // A plaintext HTTP/2 client gets no answer from a TLS listener.
    let plaintext = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    let refused = AccessControlClient::new(plaintext)
        .authorize(request("alice", "crm.customers", "read"))
        .await;
    assert!(refused.is_err(), "plaintext was answered: {refused:?}");

    // A client that does not trust the server's CA refuses it.
    let stranger = Ca::new("another CA");
    assert!(tls_channel(port, &stranger, None).await.is_err());
}

/// Whether a call over a TLS connection with `client`'s certificate gets an
/// answer (under TLS 1.3 a refused certificate surfaces after the client's
/// side of the handshake, at the first read).
async fn answered(port: u16, ca: &Ca, client: Option<&Leaf>) -> bool {
    let Ok(channel) = tls_channel(port, ca, client).await else {
        return false;
    };
    AccessControlClient::new(channel)
        .authorize(request("", "crm.customers", "read"))
        .await
        .is_ok()
}

#[tokio::test]
async fn mtls_subject_is_the_client_spiffe_id() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mesh CA");
    let files = server_files(dir.path(), &ca, &ca.issue("vigil", &["localhost"], &[]));
    let policies = policies_with_workloads(dir.path());
    let vigil = Launch::new(policies)
        .args(tls_args(&files, true))
        .args(["--auth", "mtls"])
        .start();
    let port = port(&vigil);
    let loader = ca.issue("loader", &[], &[LOADER]);

    let mut client = AccessControlClient::new(tls_channel(port, &ca, Some(&loader)).await.unwrap());
    // The subject comes from the certificate; the request need not name it.
    let allowed = client
        .authorize(request("", "crm.customers", "read"))
        .await
        .unwrap()
        .into_inner();
    assert!(allowed.allowed, "{allowed:?}");
    let denied = client
        .authorize(request("", "finance.payments", "write"))
        .await
        .unwrap()
        .into_inner();
    assert!(!denied.allowed, "{denied:?}");
    // Naming another subject is refused, not decided for that subject.
    let spoofed = client
        .authorize(request("dave", "crm.customers", "read"))
        .await
        .unwrap_err();
    assert_eq!(spoofed.code(), tonic::Code::PermissionDenied, "{spoofed:?}");

    // A certificate without a SPIFFE ID names no subject.
    let plain = ca.issue("someone", &["someone.example.org"], &[]);
    let mut unnamed = AccessControlClient::new(tls_channel(port, &ca, Some(&plain)).await.unwrap());
    let refused = unnamed
        .authorize(request("", "crm.customers", "read"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(refused.message().contains("spiffe"), "{refused:?}");

    // No client certificate, or one from another CA: no answer.
    assert!(!answered(port, &ca, None).await);
    let rogue = Ca::new("rogue CA").issue("loader", &[], &[LOADER]);
    assert!(!answered(port, &ca, Some(&rogue)).await);
    assert!(answered(port, &ca, Some(&loader)).await);

    let subjects = decided_subjects(&vigil);
    assert_eq!(subjects, [LOADER, LOADER, LOADER], "{subjects:?}");
}

/// A GET Envoy checks for `user` (in `x-user`, none when empty) or the
/// peer `principal`.
fn check(path: &str, user: &str, principal: &str) -> CheckRequest {
    let headers: &[(&str, &str)] = if user.is_empty() {
        &[]
    } else {
        &[("x-user", user)]
    };
    envoy_check("GET", path, headers, principal)
}

#[tokio::test]
async fn only_configured_gateways_name_the_end_subject() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mesh CA");
    let files = server_files(dir.path(), &ca, &ca.issue("vigil", &["localhost"], &[]));
    let config = common::datasets_config(dir.path());
    let vigil = Launch::new(policies_with_workloads(dir.path()))
        .args(tls_args(&files, true))
        .args(["--auth", "mtls", "--mtls-gateway", ENVOY])
        .args(["--config", config.to_str().unwrap()])
        .start();
    let port = port(&vigil);

    let envoy = ca.issue("envoy", &[], &[ENVOY]);
    let mut gateway = AuthorizationClient::new(tls_channel(port, &ca, Some(&envoy)).await.unwrap());
    let allowed = gateway
        .check(check("/v1/datasets/crm.customers/rows", "alice", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(allowed.status.map(|s| s.code), Some(0));
    let by_principal = gateway
        .check(check("/v1/datasets/crm.customers/rows", "", LOADER))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_principal.status.map(|s| s.code), Some(0));

    // Another workload cannot claim to be alice: it is its own subject.
    let loader = ca.issue("loader", &[], &[LOADER]);
    let mut workload =
        AuthorizationClient::new(tls_channel(port, &ca, Some(&loader)).await.unwrap());
    let own = workload
        .check(check("/v1/datasets/hr.employees/rows", "dave", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        own.status.map(|s| s.code),
        Some(tonic::Code::PermissionDenied as i32)
    );

    let subjects = decided_subjects(&vigil);
    assert_eq!(subjects, ["alice", LOADER, LOADER], "{subjects:?}");
}

/// One HTTP/1.1 exchange over `stream`; the status code and body.
async fn http_exchange(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn http_api_over_mtls_takes_the_certificate_subject() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mesh CA");
    let files = server_files(dir.path(), &ca, &ca.issue("vigil", &["localhost"], &[]));
    let vigil = Launch::new(policies_with_workloads(dir.path()))
        .args(tls_args(&files, true))
        .args(["--auth", "mtls", "--http-listen", "127.0.0.1:0"])
        .start();
    let http_port = port_of(vigil.http.as_ref().unwrap());
    let loader = ca.issue("loader", &[], &[LOADER]);
    let stream = rustls_connect(http_port, &ca, Some(&loader), b"http/1.1")
        .await
        .unwrap();
    let (status, body) = http_exchange(
        stream,
        "POST",
        "/v1/authorize",
        r#"{"object":"crm.customers","action":"read"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""allowed":true"#), "{body}");

    // Plaintext HTTP on the TLS port gets nothing usable.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", http_port))
        .await
        .unwrap();
    let (status, _) = http_exchange(tcp, "POST", "/v1/authorize", "{}").await;
    assert_ne!(status, 200);

    let subjects = decided_subjects(&vigil);
    assert_eq!(subjects, [LOADER], "{subjects:?}");
}

/// The DER of the leaf certificate a new handshake is shown.
async fn served_leaf(port: u16, ca: &Ca) -> Vec<u8> {
    let tls = rustls_connect(port, ca, None, b"h2").await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn leaf_der(leaf: &Leaf) -> Vec<u8> {
    CertificateDer::from_pem_slice(leaf.cert.as_bytes())
        .unwrap()
        .to_vec()
}

/// Replaces a file the way cert-manager and SPIRE agents do: a new file
/// renamed over the old one.
fn replace(path: &Path, contents: &str) {
    let staged = path.with_extension("new");
    std::fs::write(&staged, contents).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_load_fails_no_call() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("rotating CA");
    let first = ca.issue("vigil-1", &["localhost"], &[]);
    let files = server_files(dir.path(), &ca, &first);
    let vigil = Launch::new(repo_path("policies"))
        .args(tls_args(&files, false))
        .start();
    let port = port(&vigil);
    assert_eq!(served_leaf(port, &ca).await, leaf_der(&first));

    let ca = Arc::new(ca);
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for fresh_connections in [false, false, true, true] {
        let (ca, stop, calls) = (ca.clone(), stop.clone(), calls.clone());
        load.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut kept = None;
            while !stop.load(Ordering::Relaxed) {
                // Half the workers reuse one connection across the
                // rotation, half handshake for every call.
                let channel = match (&kept, fresh_connections) {
                    (Some(channel), false) => Ok(Channel::clone(channel)),
                    _ => tls_channel(port, &ca, None).await,
                };
                let channel = match channel {
                    Ok(channel) => channel,
                    Err(e) => {
                        failures.push(e);
                        continue;
                    }
                };
                if !fresh_connections {
                    kept = Some(channel.clone());
                }
                match AccessControlClient::new(channel)
                    .authorize(request("alice", "crm.customers", "read"))
                    .await
                {
                    Ok(answer) if answer.get_ref().allowed => {
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                    other => failures.push(format!("{other:?}")),
                }
            }
            failures
        }));
    }

    // Events, not time: the load is under way, then carries on across
    // each step of the renewal.
    let progressed = |from: u64| {
        let calls = calls.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while calls.load(Ordering::Relaxed) < from + 20 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the load stalled at {} calls",
                    calls.load(Ordering::Relaxed)
                );
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    progressed(0).await;
    // The renewal: key first, then certificate (a reload may catch the
    // new key beside the old certificate, and must keep serving).
    let second = ca.issue("vigil-2", &["localhost"], &[]);
    replace(&files.1, &second.key);
    progressed(calls.load(Ordering::Relaxed)).await;
    replace(&files.0, &second.cert);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while served_leaf(port, &ca).await != leaf_der(&second) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated certificate was not served within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = calls.load(Ordering::Relaxed);
    progressed(before).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for worker in load {
        failures.extend(worker.await.unwrap());
    }
    assert!(failures.is_empty(), "failed calls: {failures:?}");
}
