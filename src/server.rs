//! Assembly of the running sidecar: policy store, identity, audit writer,
//! gRPC services (with health and reflection) on every listener, and an
//! orderly shutdown.
//!
//! [`App::build`] does everything that can fail on configuration (load and
//! validate the policy, read keys, open the audit log, repairing a
//! crash-torn tail, and record start-up); [`App::serve`] serves bound
//! [`Listener`]s until `shutdown` resolves, then stops accepting, finishes
//! in-flight calls, records shutdown, syncs and removes its Unix sockets.
//! Binding and signals stay with the caller (the binary, or a test that
//! binds port 0), in the spirit of mini-redis's `run(listener, shutdown)`.

use std::{future::Future, path::PathBuf, sync::Arc, time::Duration};

use tokio::sync::Semaphore;
use tokio_stream::StreamExt;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::{
    app::{reload_and_audit, Core, MAX_CONCURRENT_EXPORTS},
    audit::{checkpoint, AuditError, AuditLog, Record, Redactor},
    authn::{AuthMode, Authenticator, KeyError},
    config::Config,
    grpc::ext_authz::{ExtAuthzServer, ExtAuthzService},
    grpc::{
        io::CoalescedWrites, status::oversize_as_resource_exhausted, AccessControlService,
        AuditService, DataMaskingService, PolicyAdminService,
    },
    keys::{Keyring, KeyringError, KeyringLocation},
    limits::Limiter,
    listen::{Connection, ConnectionLimits, Incoming, Listener, Plane, Protocol},
    metrics::Metrics,
    policy::{shadow::Shadow, watch::Watcher, PolicyError, PolicyStore},
    proto::{
        access_control_server::AccessControlServer, audit_server::AuditServer,
        data_masking_server::DataMaskingServer, policy_admin_server::PolicyAdminServer,
        FILE_DESCRIPTOR_SET,
    },
    tls::{ServerTls, Surface, TlsError},
    witness::{ShipState, Shipper},
};

/// Connections the HTTP, metrics and admin listeners share at least,
/// however low `--max-connections` is.
const SIDE_CONNECTIONS_AT_LEAST: usize = 16;

/// How long shutdown waits for in-flight calls and open connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("policy in {} (--policies):\n{source}", .dir.display())]
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
    #[error("TLS (--tls-cert, --tls-key, --tls-client-ca): {0}")]
    Tls(#[from] TlsError),
    #[error("[limits]: {0}")]
    Limits(String),
    #[error("server on {addr} failed: {message}")]
    Serve { addr: String, message: String },
}

/// A sidecar ready to serve: every file read, the audit log open.
#[derive(Debug)]
pub struct App {
    core: Arc<Core>,
    /// Reload when the policy files change.
    watch: bool,
    auth: AuthMode,
    connections: ConnectionLimits,
    /// TLS of every TCP listener, when configured.
    tls: Option<Arc<ServerTls>>,
    /// Ships the audit log to the witness (`--ship-to`), once serving.
    shipper: Option<Shipper>,
}

/// Reloads the live (and shadow) policy, audited like every reload. Cheap
/// to clone; the binary hands one to its SIGHUP handler.
#[derive(Debug, Clone)]
pub struct Reloader {
    core: Arc<Core>,
}

impl Reloader {
    pub async fn reload(&self, trigger: &str) {
        let _ = self.core.reload(trigger).await;
    }
}

impl App {
    /// Loads and validates everything `config` names and opens the audit
    /// log with its start-up record. Nothing is served yet.
    pub async fn build(config: Config) -> Result<App, ServerError> {
        let policies = open_store(&config.policies).await?;
        let policy = policies.snapshot();
        for warning in &policy.warnings {
            tracing::warn!("{warning}");
        }
        let authn = Authenticator::from_settings(&config.auth)?;
        let auth = config.auth.mode();
        let tls = config
            .tls
            .clone()
            .map(ServerTls::load)
            .transpose()?
            .map(Arc::new);

        let listen: Vec<String> = config.listeners.iter().map(ToString::to_string).collect();
        let startup = Record::startup(
            &policy.version,
            serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "listen": listen,
                "auth": auth.name(),
                "audit_sync": config.audit.sync.name(),
                "policy_rules": policy.engine.policy_rules(),
            }),
        );
        drop(policy);
        // Everything that can fail on a file is read before the audit log
        // opens: a start-up record is written only for a sidecar that
        // serves.
        let signing_key = checkpoint::load_or_create_signing_key(&config.audit.signing_key_file)?;
        let redactor = Redactor::from_options(&config.redaction)?;
        let keys = Arc::new(Keyring::open(&config.keyring)?);
        let shadow = match &config.shadow_policies {
            Some(dir) => {
                let shadow = Shadow::open(dir)
                    .await
                    .map_err(|source| ServerError::Policy {
                        dir: dir.clone(),
                        source,
                    })?;
                tracing::info!(dir = %dir.display(), version = %shadow.store().snapshot().version, "shadow policy loaded: divergences are audited, live answers served");
                Some(Arc::new(shadow))
            }
            None => None,
        };
        let (audit, _) = AuditLog::open(config.audit.clone(), signing_key, startup)?;
        // Shipping starts with serving; retention is held back from now on.
        let witness = config.ship.clone().map(|settings| {
            let state = Arc::new(ShipState::default());
            let shipper = Shipper {
                settings,
                audit: audit.clone(),
                state: state.clone(),
                prune_limit: audit.hold_pruning_until_shipped(),
            };
            (shipper, state)
        });
        let metrics = Arc::new(Metrics::new(audit.metrics().clone()));
        let core = Arc::new(Core {
            metrics,
            policies: Arc::new(policies),
            audit,
            authn,
            limits: config.limits,
            redactor,
            admin_role: config.admin_role,
            admin_uids: config.admin_uids,
            audit_dir: config.audit.dir,
            shadow,
            keys,
            exports: Arc::new(Semaphore::new(MAX_CONCURRENT_EXPORTS)),
            refusals: Default::default(),
            witness: witness.as_ref().map(|(_, state)| state.clone()),
            limiter: Arc::new(Limiter::new(config.limit_store).map_err(ServerError::Limits)?),
            mapping: config.http_mapping,
        });
        Ok(App {
            core,
            watch: config.watch,
            auth,
            connections: config.connections,
            tls,
            shipper: witness.map(|(shipper, _)| shipper),
        })
    }

    /// `--check-config`: reads and validates what [`App::build`] reads (the
    /// policy set, the shadow set, the identity settings and their key
    /// files, a named keyring), without opening the audit log or binding a
    /// listener. Returns the summary `vigil serve` would start with.
    pub async fn check(config: &Config) -> Result<String, ServerError> {
        let policies = open_store(&config.policies).await?;
        let policy = policies.snapshot();
        for warning in &policy.warnings {
            tracing::warn!("{warning}");
        }
        Authenticator::from_settings(&config.auth)?;
        if let Some(files) = &config.tls {
            ServerTls::load(files.clone())?;
        }
        if let KeyringLocation::Given(_) = config.keyring {
            Keyring::open(&config.keyring)?;
        }
        if let Some(dir) = &config.shadow_policies {
            Shadow::open(dir)
                .await
                .map_err(|source| ServerError::Policy {
                    dir: dir.clone(),
                    source,
                })?;
        }
        let list = |addrs: &[crate::listen::ListenAddr]| {
            if addrs.is_empty() {
                "off".to_owned()
            } else {
                addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        Ok(format!(
            "configuration ok: policies {} (version {}, {} rules, {} warning(s)); auth {}; \
             audit {} (sync {}); listen {}; admin {}; metrics {}",
            config.policies.display(),
            policy.version,
            policy.engine.policy_rules(),
            policy.warnings.len(),
            config.auth.mode().name(),
            config.audit.dir.display(),
            config.audit.sync.name(),
            list(&config.listeners),
            list(&config.admin_listeners),
            list(&config.metrics_listeners),
        ))
    }

    pub fn reloader(&self) -> Reloader {
        Reloader {
            core: self.core.clone(),
        }
    }

    /// Serves every listener until `shutdown` resolves (or a listener fails
    /// on its own), then stops gracefully and closes the audit log.
    pub async fn serve(
        self,
        listeners: Vec<(Plane, Listener)>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let core = self.core;
        let audit = core.audit.clone();
        let max_message_bytes = core.limits.max_message_bytes;
        let request_timeout = core.limits.request_timeout;
        // A file size limit (RLIMIT_FSIZE) must make audit writes fail, and
        // so fail closed, rather than kill the process with SIGXFSZ.
        #[cfg(target_os = "linux")]
        let _file_size_signal =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(25)).ok();

        let watch_task = self
            .watch
            .then(|| tokio::spawn(reload_on_change(core.clone())));

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<AccessControlServer<AccessControlService>>()
            .await;
        let health_task = tokio::spawn(watch_audit_health(health.clone(), audit.clone()));
        let refusals_task = tokio::spawn(record_counted_refusals(core.clone()));
        let jwks_task = tokio::spawn(reload_jwks_on_change(core.clone()));
        let tls_task = self
            .tls
            .clone()
            .map(|tls| tokio::spawn(reload_tls_on_change(tls)));
        let shipping = match self.shipper.map(Shipper::spawn).transpose() {
            Ok(shipping) => shipping,
            Err(e) => {
                tracing::error!(error = %e, "the witness shipper cannot start; records stay local");
                None
            }
        };
        let limits_task = core
            .limiter
            .shared()
            .map(|store| tokio::spawn(store.clone().keep_connected()));

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
        // One permit per open connection: the gRPC data plane's own pool,
        // and a smaller one the HTTP, metrics and admin listeners share, so
        // slow clients of those can never take the data plane's places.
        let permits = Arc::new(Semaphore::new(self.connections.max_connections));
        let side_permits = Arc::new(Semaphore::new(
            (self.connections.max_connections / 4).max(SIDE_CONNECTIONS_AT_LEAST),
        ));
        let mut servers = Vec::new();
        let mut sockets = Vec::new();
        // One line an operator reads to know what runs: policy, audit,
        // identity and every address.
        let addresses: Vec<String> = listeners
            .iter()
            .map(|(plane, listener)| format!("{} {}", plane.name(), listener.local_addr()))
            .collect();
        tracing::info!(
            policies = %core.policies.dir().display(),
            policy_version = %core.policies.snapshot().version,
            audit_dir = %core.audit_dir.display(),
            auth = self.auth.name(),
            listeners = %addresses.join(", "),
            "vigil {} serving",
            env!("CARGO_PKG_VERSION")
        );
        let mut http_servers = Vec::new();
        for (plane, listener) in listeners {
            let address = listener.local_addr().to_string();
            if let Listener::Unix(_, path) = &listener {
                sockets.push(path.clone());
            }
            let surface = match plane {
                Plane::Data | Plane::Admin => Surface::Grpc,
                Plane::Http => Surface::Http,
                Plane::Metrics => Surface::Metrics,
            };
            let (protocol, pool) = match plane {
                Plane::Data => (Protocol::Http2, &permits),
                Plane::Admin => (Protocol::Http2, &side_permits),
                Plane::Http | Plane::Metrics => (Protocol::Http1, &side_permits),
            };
            let incoming = listener.incoming(
                protocol,
                pool.clone(),
                self.connections,
                self.tls.clone().map(|tls| (tls, surface)),
            );
            if matches!(plane, Plane::Metrics | Plane::Http) {
                tracing::debug!(address = %address, plane = plane.name(), "listening");
                let mut stop = stop_rx.clone();
                let signal = async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                };
                let router = if plane == Plane::Http {
                    crate::http::api::router(core.clone())
                } else {
                    crate::http::metrics_router(core.clone())
                };
                http_servers.push(tokio::spawn(serve_http(incoming, router, signal)));
                continue;
            }
            let access = AccessControlServer::new(AccessControlService::new(core.clone()))
                .max_decoding_message_size(max_message_bytes);
            let router = Server::builder()
                .max_concurrent_streams(self.connections.max_concurrent_streams)
                .http2_keepalive_interval(self.connections.keepalive())
                .http2_keepalive_timeout(Some(ConnectionLimits::KEEPALIVE_TIMEOUT))
                .timeout(request_timeout)
                .layer(tower::util::MapResponseLayer::new(
                    oversize_as_resource_exhausted,
                ))
                .add_service(access)
                .add_service(AuditServer::new(AuditService::new(core.clone(), plane)))
                .add_service(PolicyAdminServer::new(PolicyAdminService::new(
                    core.clone(),
                    plane,
                )))
                .add_service(
                    DataMaskingServer::new(DataMaskingService::new(core.clone()))
                        .max_decoding_message_size(max_message_bytes),
                )
                .add_service(ExtAuthzServer::new(
                    ExtAuthzService::new(core.clone()),
                    max_message_bytes,
                ))
                .add_service(health_service.clone())
                .add_service(reflection_v1.clone())
                .add_service(reflection_v1alpha.clone());
            let mut stop = stop_rx.clone();
            let signal = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            tracing::debug!(address = %address, plane = plane.name(), "listening");
            let incoming = incoming.map(|accepted| accepted.map(CoalescedWrites::new));
            let task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, signal));
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
        // connection go does not keep the process (and the audit flush)
        // hostage.
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
        for task in http_servers {
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                tracing::warn!("the metrics listener did not stop in the grace period");
            }
        }
        health_task.abort();
        refusals_task.abort();
        jwks_task.abort();
        if let Some(task) = tls_task {
            task.abort();
        }
        if let Some(shipping) = shipping {
            // What the shutdown record adds ships on the next start.
            shipping.stop().await;
        }
        if let Some(task) = limits_task {
            task.abort();
        }
        for record in core.counted_refusals(true) {
            let _ = audit.append_one(record).await;
        }
        if let Some(task) = watch_task {
            task.abort();
        }

        let reason = match &failure {
            None => "orderly shutdown".to_owned(),
            Some(e) => e.to_string(),
        };
        let closed = audit.close(Record::shutdown(reason)).await;
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
}

/// Serves HTTP/1.1 (the JSON API, metrics, probes) until `signal`.
async fn serve_http(
    incoming: Incoming,
    router: axum::Router,
    signal: impl Future<Output = ()> + Send + 'static,
) {
    let served = axum::serve(
        incoming,
        router.into_make_service_with_connect_info::<Connection>(),
    )
    .with_graceful_shutdown(signal)
    .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "an HTTP listener stopped");
    }
}

/// How often the TLS files are re-read: rotations land within it.
const TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Swaps in rotated certificates; a broken rotation is logged once and the
/// working configuration keeps serving.
async fn reload_tls_on_change(tls: Arc<ServerTls>) {
    let mut ticks = tokio::time::interval(TLS_RELOAD_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let files = tls.clone();
        match tokio::task::spawn_blocking(move || files.reload_if_changed()).await {
            Ok(Ok(true)) => tracing::info!("TLS certificate rotated: new handshakes use it"),
            Ok(Ok(false)) | Err(_) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "TLS files changed but cannot be used; still serving the previous certificate")
            }
        }
    }
}

async fn open_store(dir: &std::path::Path) -> Result<PolicyStore, ServerError> {
    PolicyStore::open(dir)
        .await
        .map_err(|source| ServerError::Policy {
            dir: dir.to_owned(),
            source,
        })
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

/// Reloads the live (and shadow) policy when its files change.
async fn reload_on_change(core: Arc<Core>) {
    let mut live_watcher = Watcher::new(core.policies.dir());
    let mut shadow_watcher = core.shadow.as_ref().map(|s| Watcher::new(s.store().dir()));
    loop {
        let shadow_changed = async {
            match shadow_watcher.as_mut() {
                Some(watcher) => watcher.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = live_watcher.changed() => {
                let _ = reload_and_audit(&core, &core.policies, "file_change").await;
            }
            () = shadow_changed => {
                if let Some(shadow) = &core.shadow {
                    let _ = reload_and_audit(&core, shadow.store(), "file_change").await;
                }
            }
        }
    }
}

/// Identity providers rotate their signing keys: a JWKS file is read again
/// when it changes (polled, like the policy files, so a Kubernetes secret's
/// symlink swap is seen too). A file that does not parse keeps the keys in
/// force.
async fn reload_jwks_on_change(core: Arc<Core>) {
    let Authenticator::Jwt(verifier) = &core.authn else {
        return;
    };
    let Some(path) = verifier.jwks_file().map(std::path::Path::to_path_buf) else {
        return;
    };
    let stamp = |path: &std::path::Path| {
        std::fs::metadata(path).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.len(), m.mtime(), m.mtime_nsec(), m.ino())
        })
    };
    let mut last = stamp(&path);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = stamp(&path);
        if now == last {
            continue;
        }
        last = now;
        match verifier.reload_jwks() {
            Ok(keys) => tracing::info!(file = %path.display(), keys, "JWKS reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "JWKS changed but cannot be read; the previous keys stay in force")
            }
        }
    }
}

/// Records the totals of refusals counted rather than recorded, as each
/// peer's window closes.
async fn record_counted_refusals(core: Arc<Core>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for record in core.counted_refusals(false) {
            if let Err(e) = core.audit.append_one(record).await {
                tracing::error!(error = %e, "cannot record counted authentication refusals");
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
