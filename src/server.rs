//! Assembly of the running sidecar: policy store, identity, audit writer,
//! gRPC services (with health and reflection) on every listener, and an
//! orderly shutdown.
//!
//! Life of the process: load and validate the policy (exit on error) →
//! open the audit log (repairing a crash-torn tail) and record start-up →
//! bind every listener → serve → on the shutdown signal stop accepting,
//! finish in-flight calls, record shutdown, sync, remove Unix sockets.

use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio::net::{TcpListener, UnixListener};
use tokio_stream::{wrappers::UnixListenerStream, StreamExt};
use tonic::transport::{server::TcpIncoming, Server};
use tonic_health::ServingStatus;

use crate::{
    audit::{
        checkpoint, kind, AuditError, AuditLog, AuditOptions, FailurePolicy, Record, Redactor,
    },
    authn::{Authenticator, JwtVerifier, KeyError},
    cli::OnFailure,
    config::{AuthConfig, Config, ListenAddr},
    grpc::{
        admin::reload_and_audit, io::CoalescedWrites, AccessControlService, AuditService,
        DataMaskingService, PolicyAdminService, Shared,
    },
    keys::{Keyring, KeyringError},
    policy::watch::Watcher,
    policy::{PolicyError, PolicyStore},
    proto::{
        access_control_server::AccessControlServer, audit_server::AuditServer,
        data_masking_server::DataMaskingServer, policy_admin_server::PolicyAdminServer,
        FILE_DESCRIPTOR_SET,
    },
};

/// How long shutdown waits for in-flight calls and open connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("policy in {}:\n{source}", .dir.display())]
    Policy {
        dir: PathBuf,
        #[source]
        source: PolicyError,
    },
    #[error("jwt key: {0}")]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error("audit key: {0}")]
    AuditKey(#[from] checkpoint::KeyFileError),
    #[error("cannot listen on {addr}: {message}")]
    Bind { addr: String, message: String },
    #[error("server on {addr} failed: {message}")]
    Serve { addr: String, message: String },
}

enum Bound {
    Tcp(TcpListener, SocketAddr),
    Unix(UnixListener, PathBuf),
}

impl Bound {
    fn describe(&self) -> String {
        match self {
            Bound::Tcp(_, addr) => addr.to_string(),
            Bound::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }
}

async fn bind(addr: &ListenAddr) -> Result<Bound, ServerError> {
    let fail = |message: String| ServerError::Bind {
        addr: addr.to_string(),
        message,
    };
    match addr {
        ListenAddr::Tcp(socket) => {
            let listener = TcpListener::bind(socket)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let local = listener.local_addr().map_err(|e| fail(e.to_string()))?;
            Ok(Bound::Tcp(listener, local))
        }
        ListenAddr::Unix(path) => {
            if path.exists() {
                // A socket file nobody answers on is left over from a crash.
                if tokio::net::UnixStream::connect(path).await.is_ok() {
                    return Err(fail("another process is serving on this socket".into()));
                }
                std::fs::remove_file(path)
                    .map_err(|e| fail(format!("cannot remove the stale socket file: {e}")))?;
            }
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
            }
            let listener = UnixListener::bind(path).map_err(|e| fail(e.to_string()))?;
            Ok(Bound::Unix(listener, path.clone()))
        }
    }
}

/// tonic reports an oversize request as OUT_OF_RANGE; vigil's contract is
/// RESOURCE_EXHAUSTED with the limit named.
fn oversize_as_resource_exhausted(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let headers = response.headers_mut();
    let out_of_range = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"11");
    let too_large = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| {
            m.contains("message%20length%20too%20large") || m.contains("message length too large")
        });
    if out_of_range && too_large {
        let message = headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let decoded = percent_decode(message);
        let friendly = format!(
            "request too large ({decoded}); raise max_message_bytes or send smaller requests"
        );
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
        if let Ok(value) = http::HeaderValue::from_str(&percent_encode(&friendly)) {
            headers.insert("grpc-message", value);
        }
    }
    response
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Runs the sidecar until `shutdown` resolves, then stops gracefully.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let policies = PolicyStore::open(&config.policies)
        .await
        .map_err(|source| ServerError::Policy {
            dir: config.policies.clone(),
            source,
        })?;
    let policy = policies.snapshot();
    for warning in &policy.warnings {
        tracing::warn!("{warning}");
    }

    let (authn, auth_name) = match &config.auth {
        AuthConfig::Trusted { forced_remote } => {
            if *forced_remote {
                tracing::warn!(
                    "--auth trusted on a listener reachable from other hosts (forced): any caller can claim any subject"
                );
            }
            (Authenticator::Trusted, "trusted")
        }
        AuthConfig::Jwt(jwt) => {
            if matches!(jwt.keys, crate::config::JwtKeySource::DevSecret(_)) {
                tracing::warn!(
                    "--auth jwt without a key option: verifying with the local development secret"
                );
            }
            (
                Authenticator::Jwt(Box::new(JwtVerifier::from_config(jwt)?)),
                "jwt",
            )
        }
    };

    let mut bound = Vec::new();
    for addr in &config.listeners {
        bound.push(bind(addr).await?);
    }
    let addresses: Vec<String> = bound.iter().map(Bound::describe).collect();

    let mut startup = Record::new(kind::STARTUP);
    startup.pv = Some(policy.version.clone());
    startup.detail = Some(
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "listen": addresses,
            "auth": auth_name,
            "audit_sync": format!("{:?}", config.audit.sync).to_lowercase(),
            "policy_rules": policy.engine.policy_rules(),
        })
        .into(),
    );
    drop(policy);
    let audit_config = &config.audit;
    let signing_key = checkpoint::load_or_create_signing_key(&audit_config.signing_key_file)?;
    let mut options = AuditOptions::new(&audit_config.dir, audit_config.sync, signing_key);
    options.on_failure = match audit_config.on_failure {
        OnFailure::FailClosed => FailurePolicy::FailClosed,
        OnFailure::Block => FailurePolicy::Block(audit_config.block_timeout),
    };
    options.rotate_bytes = audit_config.rotate_bytes;
    options.rotate_age = audit_config.rotate_age;
    options.retain_segments = audit_config.retain_segments;
    options.checkpoint_every = audit_config.checkpoint_every;
    let redactor = if audit_config.hmac_attributes.is_empty() && !audit_config.hmac_subjects {
        Redactor::default()
    } else {
        let key = checkpoint::load_or_create_secret(&audit_config.hmac_key_file)?;
        Redactor::new(
            key,
            audit_config.hmac_attributes.iter().cloned(),
            audit_config.hmac_subjects,
        )
    };
    let (audit, _) = AuditLog::open(options, startup)?;

    let shadow = match &config.shadow_policies {
        Some(dir) => {
            let store = PolicyStore::open(dir)
                .await
                .map_err(|source| ServerError::Policy {
                    dir: dir.clone(),
                    source,
                })?;
            tracing::info!(dir = %dir.display(), version = %store.snapshot().version, "shadow policy loaded: divergences are audited, live answers served");
            Some(Arc::new(store))
        }
        None => None,
    };
    let shared = Arc::new(Shared {
        policies: Arc::new(policies),
        audit: audit.clone(),
        authn,
        limits: config.limits,
        redactor,
        admin_role: config.admin_role.clone(),
        audit_dir: config.audit.dir.clone(),
        shadow,
        shadow_divergences: Default::default(),
        keys: Arc::new(Keyring::load_or_create(&config.keyring)?),
    });
    // A file size limit (RLIMIT_FSIZE) must make audit writes fail, and so
    // fail closed, rather than kill the process with SIGXFSZ.
    #[cfg(target_os = "linux")]
    let _file_size_signal =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(25)).ok();

    // Installed before any listener is announced, so a SIGHUP sent as soon
    // as vigil is up reloads instead of killing the process.
    #[cfg(unix)]
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    #[cfg(not(unix))]
    let hangup = None;
    let reload_task = tokio::spawn(reload_on_change_or_sighup(
        shared.clone(),
        config.watch,
        hangup,
    ));

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<AccessControlServer<AccessControlService>>()
        .await;
    let health_task = tokio::spawn(watch_audit_health(health.clone(), audit.clone()));

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor set was produced by protox at build time");
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the embedded descriptor set was produced by protox at build time");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    let mut sockets = Vec::new();
    for listener in bound {
        let address = listener.describe();
        let access = AccessControlServer::new(AccessControlService::new(shared.clone()))
            .max_decoding_message_size(config.limits.max_message_bytes);
        let router = Server::builder()
            .layer(tower::util::MapResponseLayer::new(
                oversize_as_resource_exhausted,
            ))
            .add_service(access)
            .add_service(AuditServer::new(AuditService::new(shared.clone())))
            .add_service(PolicyAdminServer::new(PolicyAdminService::new(
                shared.clone(),
            )))
            .add_service(
                DataMaskingServer::new(DataMaskingService::new(shared.clone()))
                    .max_decoding_message_size(config.limits.max_message_bytes),
            )
            .add_service(health_service.clone())
            .add_service(reflection_v1.clone())
            .add_service(reflection_v1alpha.clone());
        let mut stop = stop_rx.clone();
        let signal = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        tracing::info!(address = %address, auth = auth_name, "listening");
        println!("listening on {address}");
        let task = match listener {
            Bound::Tcp(listener, _) => {
                let incoming = TcpIncoming::from(listener)
                    .with_nodelay(Some(true))
                    .map(|accepted| accepted.map(CoalescedWrites::new));
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, signal))
            }
            Bound::Unix(listener, path) => {
                sockets.push(path);
                let incoming = UnixListenerStream::new(listener)
                    .map(|accepted| accepted.map(CoalescedWrites::new));
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, signal))
            }
        };
        servers.push((address, task));
    }

    // Serve until asked to stop or until a server fails on its own.
    let mut failure = None;
    tokio::select! {
        () = shutdown => tracing::info!("shutting down: finishing in-flight calls"),
        (addr, message) = first_server_exit(&mut servers) => {
            failure = Some(ServerError::Serve { addr, message });
        }
    }
    let _ = stop_tx.send(true);
    // In-flight calls get a grace period; a peer that never lets its
    // connection go does not keep the process (and the audit flush) hostage.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    for (address, mut task) in servers {
        match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::error!(address = %address, error = %e, "server stopped with an error")
            }
            Ok(Err(e)) => tracing::error!(address = %address, error = %e, "server task failed"),
            Err(_) => {
                tracing::warn!(address = %address, grace = ?SHUTDOWN_GRACE, "connections still open after the grace period; closing them");
                task.abort();
            }
        }
    }
    health_task.abort();
    reload_task.abort();

    let mut last = Record::new(kind::SHUTDOWN);
    last.reason = Some(match &failure {
        None => "orderly shutdown".to_owned(),
        Some(e) => e.to_string(),
    });
    let closed = audit.close(last).await;
    for path in sockets {
        let _ = std::fs::remove_file(&path);
    }
    if let Some(failure) = failure {
        return Err(failure);
    }
    closed?;
    tracing::info!("stopped");
    Ok(())
}

type ServerTask = tokio::task::JoinHandle<Result<(), tonic::transport::Error>>;

/// Resolves when any server task ends (which only happens on failure
/// before shutdown is requested).
async fn first_server_exit(servers: &mut [(String, ServerTask)]) -> (String, String) {
    if servers.is_empty() {
        return std::future::pending().await;
    }
    std::future::poll_fn(|cx| {
        for (address, task) in servers.iter_mut() {
            if let std::task::Poll::Ready(result) = std::pin::Pin::new(task).poll(cx) {
                let message = match result {
                    Ok(Ok(())) => "stopped unexpectedly".to_owned(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                return std::task::Poll::Ready((address.clone(), message));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangup = ();

/// Reloads the live (and shadow) policy when its files change (if
/// watching) and on SIGHUP.
async fn reload_on_change_or_sighup(shared: Arc<Shared>, watch: bool, mut hangup: Option<Hangup>) {
    let mut live_watcher = Watcher::new(shared.policies.dir());
    let mut shadow_watcher = shared.shadow.as_ref().map(|s| Watcher::new(s.dir()));
    loop {
        #[cfg(unix)]
        let hangup_signal = async {
            match hangup.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup_signal = std::future::pending::<()>();
        let shadow_changed = async {
            match shadow_watcher.as_mut() {
                Some(watcher) if watch => watcher.changed().await,
                _ => std::future::pending().await,
            }
        };
        let live_changed = async {
            if watch {
                live_watcher.changed().await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            () = hangup_signal => {
                let _ = reload_and_audit(&shared, &shared.policies, "sighup").await;
                if let Some(shadow) = &shared.shadow {
                    let _ = reload_and_audit(&shared, shadow, "sighup").await;
                }
            }
            () = live_changed => {
                let _ = reload_and_audit(&shared, &shared.policies, "file_change").await;
            }
            () = shadow_changed => {
                if let Some(shadow) = &shared.shadow {
                    let _ = reload_and_audit(&shared, shadow, "file_change").await;
                }
            }
        }
    }
}

/// Health follows the audit log: NOT_SERVING while it cannot be written,
/// SERVING again once it can.
async fn watch_audit_health(health: tonic_health::server::HealthReporter, audit: AuditLog) {
    let mut last = true;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let healthy = audit.is_healthy();
        if healthy != last {
            let status = if healthy {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            health.set_service_status("", status).await;
            health
                .set_service_status("vigil.v1.AccessControl", status)
                .await;
            last = healthy;
        }
    }
}
