//! One validated, typed [`Config`] for `vigil serve`, built from (lowest to
//! highest precedence) defaults, the TOML config file, environment variables
//! and flags. Every problem is collected and reported at once, so an operator
//! fixes a config in one round.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::{
    app::Limits,
    audit::{self, options::key_home, AuditOptions, OnFailure, RedactionOptions, SyncMode},
    authn::{self, AuthMode, AuthSettings, JwtKeySource, JwtSettings, MtlsSettings},
    cli::ServeArgs,
    gateway::HttpMapping,
    keys::KeyringLocation,
    limits::LimitOptions,
    listen::{ConnectionLimits, ListenAddr},
    logging::LogFormat,
    policy,
    telemetry::TraceSettings,
    tls::{SubjectName, TlsFiles},
    witness::ShipSettings,
};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// Everything `vigil serve` needs, validated. Each part is its domain's own
/// option type: the config only assembles them.
#[derive(Debug, Clone)]
pub struct Config {
    pub policies: PathBuf,
    pub listeners: Vec<ListenAddr>,
    /// Where the admin services are served; none by default.
    pub admin_listeners: Vec<ListenAddr>,
    /// Where Prometheus scrapes `/metrics`; none by default.
    pub metrics_listeners: Vec<ListenAddr>,
    /// The HTTP/JSON API and `/v1/check`; none by default.
    pub http_listeners: Vec<ListenAddr>,
    pub http_mapping: std::sync::Arc<HttpMapping>,
    /// Who may call them on a trusted-mode admin socket.
    pub admin_uids: Vec<u32>,
    pub audit: AuditOptions,
    /// Values written to the audit log only as keyed digests.
    pub redaction: RedactionOptions,
    pub auth: AuthSettings,
    /// TLS of every TCP listener, when a certificate is configured.
    pub tls: Option<TlsFiles>,
    pub limits: Limits,
    pub connections: ConnectionLimits,
    /// From the config file; the `--log-format` flag wins over it.
    pub log_format: Option<LogFormat>,
    /// Role allowed to call the Audit and PolicyAdmin services in jwt mode.
    pub admin_role: String,
    pub shadow_policies: Option<PathBuf>,
    /// Reload when the policy files change.
    pub watch: bool,
    /// Field encryption keyring (the default one is created if missing).
    pub keyring: KeyringLocation,
    /// Request-handling threads; 0 means one per available core.
    pub worker_threads: usize,
    /// `--check-config`: validate, report, exit.
    pub check_only: bool,
    /// Trace export, when `--otlp-endpoint` is given.
    pub tracing: Option<TraceSettings>,
    /// Shipping the audit chain to a witness, when `--ship-to` is given.
    pub ship: Option<ShipSettings>,
    /// Where limits.toml's budgets are kept (`[limits]`).
    pub limit_store: LimitOptions,
}

/// All problems found in one configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// The TOML file. Keys mirror the flags (underscores or dashes).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    policies: Option<PathBuf>,
    listen: Option<OneOrMany>,
    #[serde(alias = "admin-listen")]
    admin_listen: Option<OneOrMany>,
    #[serde(alias = "metrics-listen")]
    metrics_listen: Option<String>,
    #[serde(alias = "http-listen")]
    http_listen: Option<String>,
    /// How `GET /v1/check` maps HTTP requests (see `http::mapping`).
    http: Option<HttpMapping>,
    #[serde(alias = "otlp-endpoint")]
    otlp_endpoint: Option<String>,
    #[serde(alias = "trace-sample-ratio")]
    trace_sample_ratio: Option<f64>,
    #[serde(alias = "admin-uids")]
    admin_uids: Option<Vec<u32>>,
    #[serde(alias = "audit-dir")]
    audit_dir: Option<PathBuf>,
    #[serde(alias = "audit-sync")]
    audit_sync: Option<SyncMode>,
    audit: Option<FileAudit>,
    auth: Option<AuthMode>,
    #[serde(alias = "force-trusted-remote")]
    force_trusted_remote: Option<bool>,
    #[serde(alias = "force-plaintext-jwt")]
    force_plaintext_jwt: Option<bool>,
    #[serde(alias = "tls-cert")]
    tls_cert: Option<PathBuf>,
    #[serde(alias = "tls-key")]
    tls_key: Option<PathBuf>,
    #[serde(alias = "tls-client-ca")]
    tls_client_ca: Option<PathBuf>,
    #[serde(alias = "mtls-subject")]
    mtls_subject: Option<SubjectName>,
    #[serde(alias = "mtls-gateway", alias = "mtls_gateways")]
    mtls_gateway: Option<Vec<String>>,
    #[serde(alias = "jwt-secret-file")]
    jwt_secret_file: Option<PathBuf>,
    #[serde(alias = "jwt-public-key-file")]
    jwt_public_key_file: Option<PathBuf>,
    #[serde(alias = "jwks-file")]
    jwks_file: Option<PathBuf>,
    #[serde(alias = "jwt-issuer")]
    jwt_issuer: Option<String>,
    #[serde(alias = "jwt-audience")]
    jwt_audience: Option<String>,
    #[serde(alias = "jwt-any-audience")]
    jwt_any_audience: Option<bool>,
    #[serde(alias = "jwt-roles-claim")]
    jwt_roles_claim: Option<String>,
    #[serde(alias = "jwt-leeway")]
    jwt_leeway: Option<toml::Value>,
    #[serde(alias = "max-message-bytes")]
    max_message_bytes: Option<usize>,
    #[serde(alias = "max-batch-items")]
    max_batch_items: Option<usize>,
    #[serde(alias = "max-depth")]
    max_depth: Option<usize>,
    #[serde(alias = "max-attributes")]
    max_attributes: Option<usize>,
    #[serde(alias = "max-mask-values")]
    max_mask_values: Option<usize>,
    #[serde(alias = "request-timeout")]
    request_timeout: Option<String>,
    #[serde(alias = "max-connections")]
    max_connections: Option<usize>,
    #[serde(alias = "max-concurrent-streams")]
    max_concurrent_streams: Option<u32>,
    #[serde(alias = "handshake-timeout")]
    handshake_timeout: Option<String>,
    #[serde(alias = "idle-timeout")]
    idle_timeout: Option<String>,
    #[serde(alias = "keepalive-interval")]
    keepalive_interval: Option<String>,
    keyring: Option<PathBuf>,
    #[serde(alias = "log-format")]
    log_format: Option<LogFormat>,
    #[serde(alias = "admin-role")]
    admin_role: Option<String>,
    #[serde(alias = "shadow-policies")]
    shadow_policies: Option<PathBuf>,
    watch: Option<bool>,
    #[serde(alias = "worker-threads")]
    worker_threads: Option<usize>,
    /// `[limits]`: where limits.toml's budgets are kept.
    limits: Option<FileLimits>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    /// `redis://…`: budgets shared by every sidecar using that Redis.
    backend: Option<String>,
    #[serde(alias = "fallback-fraction")]
    fallback_fraction: Option<f64>,
    #[serde(alias = "max-keys")]
    max_keys: Option<usize>,
    timeout: Option<String>,
    prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAudit {
    dir: Option<PathBuf>,
    sync: Option<SyncMode>,
    #[serde(alias = "on-failure")]
    on_failure: Option<OnFailure>,
    #[serde(alias = "block-timeout")]
    block_timeout: Option<String>,
    #[serde(alias = "rotate-bytes")]
    rotate_bytes: Option<u64>,
    #[serde(alias = "rotate-age")]
    rotate_age: Option<String>,
    #[serde(alias = "retain-segments")]
    retain_segments: Option<usize>,
    #[serde(alias = "checkpoint-every")]
    checkpoint_every: Option<String>,
    #[serde(alias = "signing-key-file")]
    signing_key_file: Option<PathBuf>,
    #[serde(alias = "hmac-key-file")]
    hmac_key_file: Option<PathBuf>,
    #[serde(alias = "hmac-attributes")]
    hmac_attributes: Option<Vec<String>>,
    #[serde(alias = "hmac-subjects")]
    hmac_subjects: Option<bool>,
    /// `[audit.ship]`: the witness.
    ship: Option<FileShip>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShip {
    /// `postgres://…` of the witness store.
    to: Option<String>,
    chain: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Config {
    /// Builds the config for `vigil serve`.
    pub fn from_args(args: ServeArgs) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let file = match &args.config {
            Some(path) => read_file_config(path).unwrap_or_else(|problem| {
                problems.push(problem);
                FileConfig::default()
            }),
            None => FileConfig::default(),
        };
        let file_audit = file.audit.unwrap_or_default();

        let policies = args
            .policies
            .or(file.policies)
            .unwrap_or_else(|| PathBuf::from(policy::DEFAULT_DIR));

        let listen_specs = if !args.listen.is_empty() {
            args.listen
        } else {
            match file.listen {
                Some(OneOrMany::One(one)) => vec![one],
                Some(OneOrMany::Many(many)) => many,
                None => vec![DEFAULT_LISTEN.to_owned()],
            }
        };
        let mut listeners = Vec::new();
        for spec in &listen_specs {
            match ListenAddr::parse(spec) {
                Ok(addr) => listeners.push(addr),
                Err(problem) => problems.push(problem),
            }
        }
        let admin_specs = if !args.admin_listen.is_empty() {
            args.admin_listen
        } else {
            match file.admin_listen {
                Some(OneOrMany::One(one)) => vec![one],
                Some(OneOrMany::Many(many)) => many,
                None => Vec::new(),
            }
        };
        let mut admin_listeners = Vec::new();
        for spec in &admin_specs {
            match ListenAddr::parse(spec) {
                Ok(addr) => admin_listeners.push(addr),
                Err(problem) => problems.push(format!("--admin-listen: {problem}")),
            }
        }
        let mut metrics_listeners = Vec::new();
        if let Some(spec) = args.metrics_listen.or(file.metrics_listen) {
            match ListenAddr::parse(&spec) {
                Ok(addr) => metrics_listeners.push(addr),
                Err(problem) => problems.push(format!("--metrics-listen: {problem}")),
            }
        }
        let mut http_listeners = Vec::new();
        if let Some(spec) = args.http_listen.or(file.http_listen) {
            match ListenAddr::parse(&spec) {
                Ok(addr) => http_listeners.push(addr),
                Err(problem) => problems.push(format!("--http-listen: {problem}")),
            }
        }
        let http_mapping = file.http.unwrap_or_default();
        problems.extend(http_mapping.problems());
        let sample_ratio = args
            .trace_sample_ratio
            .or(file.trace_sample_ratio)
            .unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample_ratio) {
            problems.push(format!(
                "--trace-sample-ratio {sample_ratio}: must be between 0.0 and 1.0"
            ));
        }
        let tracing = args
            .otlp_endpoint
            .or(file.otlp_endpoint)
            .map(|endpoint| TraceSettings {
                endpoint,
                sample_ratio,
            });
        let admin_uids = if !args.admin_uids.is_empty() {
            args.admin_uids
        } else {
            file.admin_uids
                .unwrap_or_else(|| own_uid().into_iter().collect())
        };
        if listeners.is_empty() && problems.is_empty() {
            problems.push("no listen address given".to_owned());
        }

        let dir = args
            .audit_dir
            .or(file.audit_dir)
            .or(file_audit.dir)
            .unwrap_or_else(|| PathBuf::from(audit::options::DEFAULT_DIR));
        let key_home = key_home(&dir);
        let mut duration =
            |name: &str, flag: Option<String>, file: Option<String>, default: Option<Duration>| {
                match flag.or(file) {
                    Some(text) => match parse_duration(&text) {
                        Ok(d) => Some(d),
                        Err(problem) => {
                            problems.push(format!("{name}: {problem}"));
                            default
                        }
                    },
                    None => default,
                }
            };
        let block_timeout = duration(
            "audit block_timeout",
            args.audit_block_timeout,
            file_audit.block_timeout,
            Some(Duration::from_secs(5)),
        );
        let rotate_age = duration(
            "audit rotate_age",
            args.audit_rotate_age,
            file_audit.rotate_age,
            None,
        );
        let checkpoint_every = duration(
            "audit checkpoint_every",
            args.audit_checkpoint_every,
            file_audit.checkpoint_every,
            Some(Duration::from_secs(10)),
        );
        let connection_defaults = ConnectionLimits::defaults();
        let request_timeout = duration(
            "request_timeout",
            args.request_timeout,
            file.request_timeout,
            Some(Duration::from_secs(30)),
        )
        .unwrap_or(Duration::from_secs(30));
        let handshake_timeout = duration(
            "handshake_timeout",
            args.handshake_timeout,
            file.handshake_timeout,
            Some(connection_defaults.handshake_timeout),
        )
        .unwrap_or(connection_defaults.handshake_timeout);
        let idle_timeout = duration(
            "idle_timeout",
            args.idle_timeout,
            file.idle_timeout,
            Some(connection_defaults.idle_timeout),
        )
        .unwrap_or(connection_defaults.idle_timeout);
        let keepalive_interval = duration(
            "keepalive_interval",
            args.keepalive_interval,
            file.keepalive_interval,
            Some(connection_defaults.keepalive_interval),
        )
        .unwrap_or(connection_defaults.keepalive_interval);
        let connections = ConnectionLimits {
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(connection_defaults.max_connections),
            max_concurrent_streams: args
                .max_concurrent_streams
                .or(file.max_concurrent_streams)
                .unwrap_or(connection_defaults.max_concurrent_streams),
            handshake_timeout,
            idle_timeout,
            keepalive_interval,
        };
        let defaults = AuditOptions::new(&dir, SyncMode::Batch);
        let audit = AuditOptions {
            accept_gap: args.audit_accept_gap,
            sync: args
                .audit_sync
                .or(file.audit_sync)
                .or(file_audit.sync)
                .unwrap_or(defaults.sync),
            on_failure: args
                .audit_on_failure
                .or(file_audit.on_failure)
                .unwrap_or(defaults.on_failure),
            block_timeout: block_timeout.unwrap_or(defaults.block_timeout),
            rotate_bytes: args
                .audit_rotate_bytes
                .or(file_audit.rotate_bytes)
                .unwrap_or(defaults.rotate_bytes),
            rotate_age,
            retain_segments: args.audit_retain_segments.or(file_audit.retain_segments),
            checkpoint_every: checkpoint_every
                .unwrap_or(defaults.checkpoint_every)
                .max(Duration::from_millis(10)),
            signing_key_file: args
                .audit_signing_key
                .or(file_audit.signing_key_file)
                .unwrap_or(defaults.signing_key_file),
            dir,
            queue_depth: defaults.queue_depth,
        };
        let file_ship = file_audit.ship.unwrap_or_default();
        let ship = args.ship_to.or(file_ship.to).map(|url| ShipSettings {
            chain: args
                .ship_chain
                .or(file_ship.chain)
                .unwrap_or_else(|| crate::witness::default_chain_id(&audit.dir)),
            url,
        });
        if let Some(ship) = &ship {
            if !ship.url.starts_with("postgres://")
                && !ship.url.starts_with("postgresql://")
                && !ship.url.contains('=')
            {
                // Not echoed: it may hold a password.
                problems.push(
                    "--ship-to is not a PostgreSQL connection string (postgres://user@host:port/db)"
                        .to_owned(),
                );
            }
        }
        let redaction = RedactionOptions {
            key_file: args
                .audit_hmac_key_file
                .or(file_audit.hmac_key_file)
                .unwrap_or_else(|| key_home.join("audit-hmac.key")),
            attributes: if args.audit_hmac_attributes.is_empty() {
                file_audit.hmac_attributes.unwrap_or_default()
            } else {
                args.audit_hmac_attributes
            },
            subjects: args.audit_hmac_subjects || file_audit.hmac_subjects.unwrap_or(false),
        };
        if audit.retain_segments == Some(0) {
            problems.push("audit retain_segments must be at least 1".to_owned());
        }

        let tls = match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
            args.tls_client_ca.or(file.tls_client_ca),
        ) {
            (Some(cert), Some(key), client_ca) => Some(TlsFiles {
                cert,
                key,
                client_ca,
            }),
            (None, None, None) => None,
            (cert, key, _) => {
                problems.push(format!(
                    "TLS needs both --tls-cert and --tls-key{}",
                    match (cert, key) {
                        (None, None) => " (--tls-client-ca alone configures nothing)",
                        (None, _) => "; --tls-cert is missing",
                        _ => "; --tls-key is missing",
                    }
                ));
                None
            }
        };
        let mutual_tls = tls.as_ref().is_some_and(|tls| tls.client_ca.is_some());
        // TCP listeners from which other hosts reach the data plane, the
        // HTTP API and the admin plane (the metrics listener names no
        // subject).
        let remote: Vec<String> = listeners
            .iter()
            .chain(&http_listeners)
            .chain(&admin_listeners)
            .filter(|l| !l.is_local())
            .map(ToString::to_string)
            .collect();
        let mode = args.auth.or(file.auth).unwrap_or(AuthMode::Trusted);
        let force_remote = args.force_trusted_remote || file.force_trusted_remote.unwrap_or(false);
        let force_plaintext_jwt =
            args.force_plaintext_jwt || file.force_plaintext_jwt.unwrap_or(false);
        let auth = match mode {
            AuthMode::Trusted => {
                // The HTTP API decides on the caller's word too (the JSON
                // subject, a gateway's subject header). On mTLS listeners
                // only holders of a certificate from the client CA call.
                if !remote.is_empty() && !force_remote && !mutual_tls {
                    problems.push(format!(
                        "--auth trusted takes the caller's word for its subject, so it is only allowed on \
                         loopback or unix: listeners or with mTLS (--tls-client-ca), but {} is reachable \
                         from other hosts; use --auth jwt or --auth mtls, or pass --force-trusted-remote \
                         if the network is otherwise protected",
                        remote.join(", ")
                    ));
                }
                let remote = if mutual_tls { Vec::new() } else { remote };
                AuthSettings::Trusted {
                    forced_remote: !remote.is_empty() && force_remote,
                }
            }
            AuthMode::Mtls => {
                if !mutual_tls {
                    problems.push(
                        "--auth mtls takes the subject from the client certificate, so it needs \
                         --tls-cert, --tls-key and --tls-client-ca"
                            .to_owned(),
                    );
                }
                AuthSettings::Mtls(MtlsSettings {
                    subject_name: args
                        .mtls_subject
                        .or(file.mtls_subject)
                        .unwrap_or(SubjectName::Spiffe),
                    gateways: if args.mtls_gateway.is_empty() {
                        file.mtls_gateway.unwrap_or_default()
                    } else {
                        args.mtls_gateway
                    },
                })
            }
            AuthMode::Jwt => {
                if tls.is_none() && !remote.is_empty() && !force_plaintext_jwt {
                    problems.push(format!(
                        "--auth jwt without TLS would take bearer tokens in clear from other hosts on {}; \
                         give --tls-cert and --tls-key, or pass --force-plaintext-jwt if the network \
                         encrypts them otherwise (a mesh sidecar)",
                        remote.join(", ")
                    ));
                }
                let secret = args.jwt_secret_file.or(file.jwt_secret_file);
                let pem = args.jwt_public_key_file.or(file.jwt_public_key_file);
                let jwks = args.jwks_file.or(file.jwks_file);
                let given: Vec<JwtKeySource> = [
                    secret.map(JwtKeySource::Secret),
                    pem.map(JwtKeySource::PublicKeyPem),
                    jwks.map(JwtKeySource::Jwks),
                ]
                .into_iter()
                .flatten()
                .collect();
                let keys = match given.len() {
                    0 => JwtKeySource::DevSecret(PathBuf::from(authn::DEV_SECRET_FILE)),
                    1 => given.into_iter().next().expect("length checked above"),
                    _ => {
                        problems.push(
                            "give exactly one of --jwt-secret-file, --jwt-public-key-file and --jwks-file"
                                .to_owned(),
                        );
                        JwtKeySource::DevSecret(PathBuf::from(authn::DEV_SECRET_FILE))
                    }
                };
                let leeway = match (args.jwt_leeway, file.jwt_leeway) {
                    (Some(flag), _) => parse_duration(&flag),
                    (None, Some(toml::Value::Integer(secs))) if secs >= 0 => {
                        Ok(Duration::from_secs(secs as u64))
                    }
                    (None, Some(toml::Value::String(s))) => parse_duration(&s),
                    (None, Some(other)) => Err(format!(
                        "jwt_leeway must be a duration like \"30s\", got {other}"
                    )),
                    (None, None) => Ok(Duration::from_secs(30)),
                };
                let leeway = leeway.unwrap_or_else(|problem| {
                    problems.push(problem);
                    Duration::from_secs(30)
                });
                let audience = args.jwt_audience.or(file.jwt_audience);
                let any_audience = args.jwt_any_audience || file.jwt_any_audience.unwrap_or(false);
                // A key that signs tokens for several services would let a
                // token for any of them in. The development secret signs
                // only vigil's own tokens.
                if audience.is_none()
                    && !any_audience
                    && !matches!(keys, JwtKeySource::DevSecret(_))
                {
                    problems.push(
                        "--auth jwt needs --jwt-audience (vigil's name in the tokens' aud claim), \
                         or tokens minted for other services are accepted; pass --jwt-any-audience \
                         to accept any audience on purpose"
                            .to_owned(),
                    );
                }
                AuthSettings::Jwt(JwtSettings {
                    keys,
                    issuer: args.jwt_issuer.or(file.jwt_issuer),
                    audience,
                    roles_claim: args
                        .jwt_roles_claim
                        .or(file.jwt_roles_claim)
                        .unwrap_or_else(|| "roles".to_owned()),
                    leeway,
                })
            }
        };

        let limits = Limits {
            max_message_bytes: args
                .max_message_bytes
                .or(file.max_message_bytes)
                .unwrap_or(4 << 20),
            max_batch_items: args
                .max_batch_items
                .or(file.max_batch_items)
                .unwrap_or(1000),
            max_depth: args.max_depth.or(file.max_depth).unwrap_or(32),
            max_attributes: args.max_attributes.or(file.max_attributes).unwrap_or(64),
            max_mask_values: args
                .max_mask_values
                .or(file.max_mask_values)
                .unwrap_or(200_000),
            request_timeout,
        };
        if limits.max_message_bytes < 1024 {
            problems.push(format!(
                "max_message_bytes {} is below the 1024-byte minimum",
                limits.max_message_bytes
            ));
        }
        for (name, value) in [
            ("max_connections", connections.max_connections),
            (
                "max_concurrent_streams",
                connections.max_concurrent_streams as usize,
            ),
            ("max_attributes", limits.max_attributes),
            ("max_mask_values", limits.max_mask_values),
        ] {
            if value == 0 {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        if limits.max_batch_items == 0 {
            problems.push("max_batch_items must be at least 1".to_owned());
        }

        if let AuthSettings::Trusted { .. } = &auth {
            for addr in &admin_listeners {
                if !matches!(addr, ListenAddr::Unix(_)) {
                    problems.push(format!(
                        "--admin-listen {addr}: in trusted mode the admin listener must be a unix: socket, \
                         where vigil checks the caller's uid (--admin-uids); use --auth jwt for a TCP admin listener"
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        let admin_role = args
            .admin_role
            .or(file.admin_role)
            .unwrap_or_else(|| "admin".to_owned());
        let limit_store = limit_options(args.limits_backend, file.limits.unwrap_or_default())
            .map_err(|problems| ConfigError { problems })?;
        Ok(Config {
            policies,
            listeners,
            admin_listeners,
            metrics_listeners,
            http_listeners,
            http_mapping: std::sync::Arc::new(http_mapping),
            admin_uids,
            audit,
            redaction,
            auth,
            tls,
            limits,
            connections,
            log_format: file.log_format,
            admin_role,
            shadow_policies: args.shadow_policies.or(file.shadow_policies),
            watch: args.watch.or(file.watch).unwrap_or(true),
            check_only: args.check_config,
            tracing,
            ship,
            limit_store,
            keyring: KeyringLocation::from_flag(args.keyring.or(file.keyring)),
            worker_threads: args.worker_threads.or(file.worker_threads).unwrap_or(0),
        })
    }

    /// The runtime `serve` runs on. One thread (a core-limited sidecar, or
    /// `worker_threads = 1`) gets tokio's current-thread scheduler: with a
    /// single worker the multi-thread scheduler only adds cross-thread
    /// wake-ups, and halves the requests one core serves.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let threads = match self.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        if threads == 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
        }
    }
}

/// The uid this process runs as: the owner of its /proc entry.
fn own_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

fn read_file_config(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
}

/// `[limits]` with `--limits-backend` over its `backend`.
fn limit_options(flag: Option<String>, file: FileLimits) -> Result<LimitOptions, Vec<String>> {
    let defaults = LimitOptions::default();
    let mut problems = Vec::new();
    let backend = flag.or(file.backend).filter(|b| !b.is_empty());
    if let Some(url) = &backend {
        let shown = crate::limits::shared::without_password(url);
        if !["redis://", "rediss://", "redis+unix://", "unix://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            problems.push(format!(
                "[limits] backend {shown:?} is not a Redis URL (redis://host:port/db or unix:///path/redis.sock)"
            ));
        }
    }
    let fallback_fraction = file.fallback_fraction.unwrap_or(defaults.fallback_fraction);
    if !(fallback_fraction > 0.0 && fallback_fraction <= 1.0) {
        problems.push(format!(
            "[limits] fallback_fraction {fallback_fraction} must be above 0 and at most 1: \
             this sidecar's share of a shared rate while Redis is unreachable"
        ));
    }
    let max_keys = file.max_keys.unwrap_or(defaults.max_keys);
    if max_keys < 16 {
        problems.push(format!("[limits] max_keys {max_keys} must be at least 16"));
    }
    let timeout = match file.timeout.as_deref().map(parse_duration) {
        None => defaults.timeout,
        Some(Ok(timeout)) if !timeout.is_zero() => timeout,
        Some(Ok(_)) => {
            problems.push("[limits] timeout must be above 0".to_owned());
            defaults.timeout
        }
        Some(Err(e)) => {
            problems.push(format!("[limits] timeout: {e}"));
            defaults.timeout
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(LimitOptions {
        backend,
        fallback_fraction,
        max_keys,
        timeout,
        prefix: file.prefix.unwrap_or(defaults.prefix),
    })
}

/// Accepts `30s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like \"30s\" or \"5m\" ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args() -> ServeArgs {
        ServeArgs::default()
    }

    #[test]
    fn defaults_are_local_and_trusted() {
        let config = Config::from_args(serve_args()).unwrap();
        assert_eq!(
            config.listeners,
            vec![ListenAddr::parse(DEFAULT_LISTEN).unwrap()]
        );
        assert!(matches!(
            config.auth,
            AuthSettings::Trusted {
                forced_remote: false
            }
        ));
        assert_eq!(config.audit.sync, SyncMode::Batch);
    }

    #[test]
    fn trusted_on_a_remote_listener_needs_force() {
        let mut args = serve_args();
        args.listen = vec!["0.0.0.0:5000".into(), "unix:/tmp/x.sock".into()];
        let err = Config::from_args(args).unwrap_err();
        assert!(err.to_string().contains("0.0.0.0:5000"), "{err}");

        let mut args = serve_args();
        args.http_listen = Some("0.0.0.0:8080".into());
        let err = Config::from_args(args).unwrap_err();
        assert!(err.to_string().contains("0.0.0.0:8080"), "{err}");

        let mut args = serve_args();
        args.listen = vec!["0.0.0.0:5000".into()];
        args.force_trusted_remote = true;
        let config = Config::from_args(args).unwrap();
        assert!(matches!(
            config.auth,
            AuthSettings::Trusted {
                forced_remote: true
            }
        ));
    }

    #[test]
    fn jwt_in_clear_off_host_needs_tls_or_force() {
        let remote_jwt = || {
            let mut args = serve_args();
            args.listen = vec!["0.0.0.0:5000".into()];
            args.auth = Some(AuthMode::Jwt);
            args
        };
        let err = Config::from_args(remote_jwt()).unwrap_err();
        assert!(
            err.to_string().contains("--tls-cert") && err.to_string().contains("0.0.0.0:5000"),
            "{err}"
        );
        let mut forced = remote_jwt();
        forced.force_plaintext_jwt = true;
        assert!(Config::from_args(forced).is_ok());
        let mut tls = remote_jwt();
        tls.tls_cert = Some("server.crt".into());
        tls.tls_key = Some("server.key".into());
        assert!(Config::from_args(tls).unwrap().tls.is_some());
        // Loopback stays allowed in clear.
        let mut local = serve_args();
        local.auth = Some(AuthMode::Jwt);
        assert!(Config::from_args(local).is_ok());
    }

    #[test]
    fn mtls_needs_a_client_ca_and_lets_trusted_mode_off_host() {
        let mut args = serve_args();
        args.auth = Some(AuthMode::Mtls);
        args.tls_cert = Some("server.crt".into());
        args.tls_key = Some("server.key".into());
        let err = Config::from_args(args).unwrap_err();
        assert!(err.to_string().contains("--tls-client-ca"), "{err}");

        let mut args = serve_args();
        args.tls_key = Some("server.key".into());
        let err = Config::from_args(args).unwrap_err();
        assert!(err.to_string().contains("--tls-cert is missing"), "{err}");

        // Trusted mode on an mTLS listener: only certificate holders call.
        let mut args = serve_args();
        args.listen = vec!["0.0.0.0:5000".into()];
        args.tls_cert = Some("server.crt".into());
        args.tls_key = Some("server.key".into());
        args.tls_client_ca = Some("ca.crt".into());
        let config = Config::from_args(args).unwrap();
        assert!(matches!(
            config.auth,
            AuthSettings::Trusted {
                forced_remote: false
            }
        ));
    }

    #[test]
    fn shipping_names_its_chain_and_never_echoes_the_connection_string() {
        let mut args = serve_args();
        args.ship_to = Some("postgres://vigil:s3cret@db.internal:5432/witness".into());
        let config = Config::from_args(args).unwrap();
        let ship = config.ship.unwrap();
        assert!(ship.chain.ends_with("vigil-data/audit"), "{}", ship.chain);
        assert!(!format!("{ship:?}").contains("s3cret"));

        let mut args = serve_args();
        args.ship_to = Some("mysql://root:s3cret@db".into());
        let err = Config::from_args(args).unwrap_err().to_string();
        assert!(
            err.contains("--ship-to") && !err.contains("s3cret"),
            "{err}"
        );
    }

    #[test]
    fn all_problems_are_reported_together() {
        let mut args = serve_args();
        args.listen = vec!["not an address".into()];
        args.auth = Some(AuthMode::Jwt);
        args.jwt_leeway = Some("soon".into());
        args.max_batch_items = Some(0);
        let err = Config::from_args(args).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
    }

    #[test]
    fn jwt_with_a_key_needs_an_audience_unless_waived() {
        let mut args = serve_args();
        args.auth = Some(AuthMode::Jwt);
        args.jwt_secret_file = Some("secret".into());
        let err = Config::from_args(args).unwrap_err();
        assert!(err.to_string().contains("--jwt-audience"), "{err}");

        let mut args = serve_args();
        args.auth = Some(AuthMode::Jwt);
        args.jwt_secret_file = Some("secret".into());
        args.jwt_any_audience = true;
        assert!(Config::from_args(args).is_ok());

        // The development secret signs only vigil's own tokens.
        let mut args = serve_args();
        args.auth = Some(AuthMode::Jwt);
        assert!(Config::from_args(args).is_ok());
    }

    #[test]
    fn the_log_format_comes_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vigil.toml");
        std::fs::write(&file, "log_format = \"json\"\n").unwrap();
        let mut args = serve_args();
        args.config = Some(file);
        let config = Config::from_args(args).unwrap();
        assert_eq!(config.log_format, Some(LogFormat::Json));
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vigil.toml");
        std::fs::write(
            &file,
            "policies = \"from-file\"\nlisten = [\"127.0.0.1:7000\"]\n[audit]\nsync = \"always\"\n",
        )
        .unwrap();
        let mut args = serve_args();
        args.config = Some(file);
        args.policies = Some("from-flag".into());
        let config = Config::from_args(args).unwrap();
        assert_eq!(config.policies, PathBuf::from("from-flag"));
        assert_eq!(config.listeners[0].to_string(), "127.0.0.1:7000");
        assert_eq!(config.audit.sync, SyncMode::Always);
    }
}
