//! One function per part of the configuration, each reading its flags
//! over its file keys (flags win), taking what it uses out of both and
//! adding its problems to the one list reported at the end.

use std::{mem, path::PathBuf, time::Duration};

use super::{
    file::{FileConfig, FileLimits, OneOrMany},
    parse_duration, Problems, DEFAULT_LISTEN,
};
use crate::{
    app::Limits,
    audit::{self, options::key_home, AuditOptions, RedactionOptions, SyncMode},
    authn::{self, AuthMode, AuthSettings, JwtKeySource, JwtSettings, MtlsSettings},
    cli::ServeArgs,
    limits::LimitOptions,
    listen::{ConnectionLimits, ListenAddr},
    telemetry::TraceSettings,
    tls::{SubjectName, TlsFiles},
    witness::ShipSettings,
};

/// Where vigil listens, by plane.
pub(super) struct Listeners {
    pub data: Vec<ListenAddr>,
    pub admin: Vec<ListenAddr>,
    pub metrics: Vec<ListenAddr>,
    pub http: Vec<ListenAddr>,
}

impl Listeners {
    /// TCP listeners from which other hosts reach the data plane, the HTTP
    /// API and the admin plane (the metrics listener names no subject).
    fn off_host(&self) -> Vec<String> {
        self.data
            .iter()
            .chain(&self.http)
            .chain(&self.admin)
            .filter(|l| !l.is_local())
            .map(ToString::to_string)
            .collect()
    }
}

fn one_or_many(flag: Vec<String>, file: Option<OneOrMany>, default: Vec<String>) -> Vec<String> {
    if !flag.is_empty() {
        return flag;
    }
    match file {
        Some(OneOrMany::One(one)) => vec![one],
        Some(OneOrMany::Many(many)) => many,
        None => default,
    }
}

fn parse_all(specs: &[String], flag: &str, problems: &mut Problems) -> Vec<ListenAddr> {
    let mut addrs = Vec::new();
    for spec in specs {
        match ListenAddr::parse(spec) {
            Ok(addr) => addrs.push(addr),
            Err(problem) if flag.is_empty() => problems.push(problem),
            Err(problem) => problems.push(format!("{flag}: {problem}")),
        }
    }
    addrs
}

pub(super) fn listeners(
    args: &mut ServeArgs,
    file: &mut FileConfig,
    problems: &mut Problems,
) -> Listeners {
    let data = one_or_many(
        mem::take(&mut args.listen),
        file.listen.take(),
        vec![DEFAULT_LISTEN.to_owned()],
    );
    let admin = one_or_many(
        mem::take(&mut args.admin_listen),
        file.admin_listen.take(),
        Vec::new(),
    );
    let metrics: Vec<String> = args
        .metrics_listen
        .take()
        .or(file.metrics_listen.take())
        .into_iter()
        .collect();
    let http: Vec<String> = args
        .http_listen
        .take()
        .or(file.http_listen.take())
        .into_iter()
        .collect();
    let listeners = Listeners {
        data: parse_all(&data, "", problems),
        admin: parse_all(&admin, "--admin-listen", problems),
        metrics: parse_all(&metrics, "--metrics-listen", problems),
        http: parse_all(&http, "--http-listen", problems),
    };
    if listeners.data.is_empty() && problems.is_empty() {
        problems.push("no listen address given".to_owned());
    }
    listeners
}

pub(super) fn tracing(
    args: &mut ServeArgs,
    file: &mut FileConfig,
    problems: &mut Problems,
) -> Option<TraceSettings> {
    let sample_ratio = args
        .trace_sample_ratio
        .or(file.trace_sample_ratio)
        .unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        problems.push(format!(
            "--trace-sample-ratio {sample_ratio}: must be between 0.0 and 1.0"
        ));
    }
    args.otlp_endpoint
        .take()
        .or(file.otlp_endpoint.take())
        .map(|endpoint| TraceSettings {
            endpoint,
            sample_ratio,
        })
}

/// A duration from its flag over its file key; a bad one is a problem and
/// `default` stands in.
fn duration(
    problems: &mut Problems,
    name: &str,
    flag: Option<String>,
    file: Option<String>,
    default: Option<Duration>,
) -> Option<Duration> {
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
}

/// `[audit]`: the log, and which values it holds only as digests.
pub(super) fn audit(
    args: &mut ServeArgs,
    file: &mut FileConfig,
    problems: &mut Problems,
) -> (AuditOptions, RedactionOptions, Option<ShipSettings>) {
    let mut file_audit = file.audit.take().unwrap_or_default();
    let dir = args
        .audit_dir
        .take()
        .or(file.audit_dir.take())
        .or(file_audit.dir.take())
        .unwrap_or_else(|| PathBuf::from(audit::options::DEFAULT_DIR));
    let key_home = key_home(&dir);
    let block_timeout = duration(
        problems,
        "audit block_timeout",
        args.audit_block_timeout.take(),
        file_audit.block_timeout.take(),
        Some(Duration::from_secs(5)),
    );
    let rotate_age = duration(
        problems,
        "audit rotate_age",
        args.audit_rotate_age.take(),
        file_audit.rotate_age.take(),
        None,
    );
    let checkpoint_every = duration(
        problems,
        "audit checkpoint_every",
        args.audit_checkpoint_every.take(),
        file_audit.checkpoint_every.take(),
        Some(Duration::from_secs(10)),
    );
    let defaults = AuditOptions::new(&dir, SyncMode::Batch);
    let options = AuditOptions {
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
            .take()
            .or(file_audit.signing_key_file.take())
            .unwrap_or(defaults.signing_key_file),
        dir,
        queue_depth: defaults.queue_depth,
    };
    if options.retain_segments == Some(0) {
        problems.push("audit retain_segments must be at least 1".to_owned());
    }
    let redaction = RedactionOptions {
        key_file: args
            .audit_hmac_key_file
            .take()
            .or(file_audit.hmac_key_file.take())
            .unwrap_or_else(|| key_home.join("audit-hmac.key")),
        attributes: if args.audit_hmac_attributes.is_empty() {
            file_audit.hmac_attributes.take().unwrap_or_default()
        } else {
            mem::take(&mut args.audit_hmac_attributes)
        },
        subjects: args.audit_hmac_subjects || file_audit.hmac_subjects.unwrap_or(false),
    };
    let file_ship = file_audit.ship.take().unwrap_or_default();
    let ship = args
        .ship_to
        .take()
        .or(file_ship.to)
        .map(|url| ShipSettings {
            chain: args
                .ship_chain
                .take()
                .or(file_ship.chain)
                .unwrap_or_else(|| crate::witness::default_chain_id(&options.dir)),
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
    (options, redaction, ship)
}

/// Connection bounds, and how long one call may take.
pub(super) fn connections(
    args: &mut ServeArgs,
    file: &mut FileConfig,
    problems: &mut Problems,
) -> (ConnectionLimits, Duration) {
    let defaults = ConnectionLimits::defaults();
    let mut timeout = |name: &str, flag: Option<String>, file: Option<String>, default| {
        duration(problems, name, flag, file, Some(default)).unwrap_or(default)
    };
    let request_timeout = timeout(
        "request_timeout",
        args.request_timeout.take(),
        file.request_timeout.take(),
        Duration::from_secs(30),
    );
    let handshake_timeout = timeout(
        "handshake_timeout",
        args.handshake_timeout.take(),
        file.handshake_timeout.take(),
        defaults.handshake_timeout,
    );
    let idle_timeout = timeout(
        "idle_timeout",
        args.idle_timeout.take(),
        file.idle_timeout.take(),
        defaults.idle_timeout,
    );
    let keepalive_interval = timeout(
        "keepalive_interval",
        args.keepalive_interval.take(),
        file.keepalive_interval.take(),
        defaults.keepalive_interval,
    );
    let connections = ConnectionLimits {
        max_connections: args
            .max_connections
            .or(file.max_connections)
            .unwrap_or(defaults.max_connections),
        max_concurrent_streams: args
            .max_concurrent_streams
            .or(file.max_concurrent_streams)
            .unwrap_or(defaults.max_concurrent_streams),
        handshake_timeout,
        idle_timeout,
        keepalive_interval,
    };
    for (name, value) in [
        ("max_connections", connections.max_connections),
        (
            "max_concurrent_streams",
            connections.max_concurrent_streams as usize,
        ),
    ] {
        if value == 0 {
            problems.push(format!("{name} must be at least 1"));
        }
    }
    (connections, request_timeout)
}

pub(super) fn tls(
    args: &mut ServeArgs,
    file: &mut FileConfig,
    problems: &mut Problems,
) -> Option<TlsFiles> {
    match (
        args.tls_cert.take().or(file.tls_cert.take()),
        args.tls_key.take().or(file.tls_key.take()),
        args.tls_client_ca.take().or(file.tls_client_ca.take()),
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
    }
}

/// What protects a listener that other hosts reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Transport {
    /// TLS is on (a server certificate).
    pub tls: bool,
    /// Every caller must hold a certificate of the client CA.
    pub mutual_tls: bool,
    pub force_trusted_remote: bool,
    pub force_plaintext_jwt: bool,
}

/// The off-host trust rules: no caller's word and no token in clear from
/// other hosts unless forced. `off_host` lists the listeners other hosts
/// reach, `admin_tcp` the admin listeners that are not Unix sockets.
pub(super) fn off_host_trust(
    mode: AuthMode,
    off_host: &[String],
    admin_tcp: &[String],
    transport: Transport,
) -> Vec<String> {
    let mut problems = Vec::new();
    match mode {
        AuthMode::Trusted => {
            // The HTTP API decides on the caller's word too (the JSON
            // subject, a gateway's subject header). On mTLS listeners only
            // holders of a certificate from the client CA call.
            if !off_host.is_empty() && !transport.force_trusted_remote && !transport.mutual_tls {
                problems.push(format!(
                    "--auth trusted takes the caller's word for its subject, so it is only allowed on \
                     loopback or unix: listeners or with mTLS (--tls-client-ca), but {} is reachable \
                     from other hosts; use --auth jwt or --auth mtls, or pass --force-trusted-remote \
                     if the network is otherwise protected",
                    off_host.join(", ")
                ));
            }
            for addr in admin_tcp {
                problems.push(format!(
                    "--admin-listen {addr}: in trusted mode the admin listener must be a unix: socket, \
                     where vigil checks the caller's uid (--admin-uids); use --auth jwt for a TCP admin listener"
                ));
            }
        }
        AuthMode::Mtls => {
            if !transport.mutual_tls {
                problems.push(
                    "--auth mtls takes the subject from the client certificate, so it needs \
                     --tls-cert, --tls-key and --tls-client-ca"
                        .to_owned(),
                );
            }
        }
        AuthMode::Jwt => {
            if !transport.tls && !off_host.is_empty() && !transport.force_plaintext_jwt {
                problems.push(format!(
                    "--auth jwt without TLS would take bearer tokens in clear from other hosts on {}; \
                     give --tls-cert and --tls-key, or pass --force-plaintext-jwt if the network \
                     encrypts them otherwise (a mesh sidecar)",
                    off_host.join(", ")
                ));
            }
        }
    }
    problems
}

/// How callers are identified, under the off-host trust rules.
pub(super) fn auth(
    args: &mut ServeArgs,
    file: &mut FileConfig,
    listeners: &Listeners,
    tls: Option<&TlsFiles>,
    problems: &mut Problems,
) -> AuthSettings {
    let mode = args.auth.or(file.auth).unwrap_or(AuthMode::Trusted);
    let transport = Transport {
        tls: tls.is_some(),
        mutual_tls: tls.is_some_and(|tls| tls.client_ca.is_some()),
        force_trusted_remote: args.force_trusted_remote
            || file.force_trusted_remote.unwrap_or(false),
        force_plaintext_jwt: args.force_plaintext_jwt || file.force_plaintext_jwt.unwrap_or(false),
    };
    let off_host = listeners.off_host();
    let admin_tcp: Vec<String> = listeners
        .admin
        .iter()
        .filter(|addr| !matches!(addr, ListenAddr::Unix(_)))
        .map(ToString::to_string)
        .collect();
    problems.extend(off_host_trust(mode, &off_host, &admin_tcp, transport));
    match mode {
        AuthMode::Trusted => AuthSettings::Trusted {
            forced_remote: !transport.mutual_tls
                && !off_host.is_empty()
                && transport.force_trusted_remote,
        },
        AuthMode::Mtls => AuthSettings::Mtls(MtlsSettings {
            subject_name: args
                .mtls_subject
                .or(file.mtls_subject)
                .unwrap_or(SubjectName::Spiffe),
            gateways: if args.mtls_gateway.is_empty() {
                file.mtls_gateway.take().unwrap_or_default()
            } else {
                mem::take(&mut args.mtls_gateway)
            },
        }),
        AuthMode::Jwt => AuthSettings::Jwt(jwt(args, file, problems)),
    }
}

fn jwt(args: &mut ServeArgs, file: &mut FileConfig, problems: &mut Problems) -> JwtSettings {
    let given: Vec<JwtKeySource> = [
        args.jwt_secret_file
            .take()
            .or(file.jwt_secret_file.take())
            .map(JwtKeySource::Secret),
        args.jwt_public_key_file
            .take()
            .or(file.jwt_public_key_file.take())
            .map(JwtKeySource::PublicKeyPem),
        args.jwks_file
            .take()
            .or(file.jwks_file.take())
            .map(JwtKeySource::Jwks),
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
    let leeway = match (args.jwt_leeway.take(), file.jwt_leeway.take()) {
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
    let audience = args.jwt_audience.take().or(file.jwt_audience.take());
    let any_audience = args.jwt_any_audience || file.jwt_any_audience.unwrap_or(false);
    // A key that signs tokens for several services would let a token for
    // any of them in. The development secret signs only vigil's own tokens.
    if audience.is_none() && !any_audience && !matches!(keys, JwtKeySource::DevSecret(_)) {
        problems.push(
            "--auth jwt needs --jwt-audience (vigil's name in the tokens' aud claim), \
             or tokens minted for other services are accepted; pass --jwt-any-audience \
             to accept any audience on purpose"
                .to_owned(),
        );
    }
    let issuer = args.jwt_issuer.take().or(file.jwt_issuer.take());
    let any_issuer = args.jwt_any_issuer || file.jwt_any_issuer.unwrap_or(false);
    // Identity providers whose tenants share signing keys and audience
    // would let another tenant's token in.
    if issuer.is_none() && !any_issuer && !matches!(keys, JwtKeySource::DevSecret(_)) {
        problems.push(
            "--auth jwt needs --jwt-issuer (the identity provider, or tenant, in the tokens' iss \
             claim), or tokens another issuer signs with a shared key are accepted; pass \
             --jwt-any-issuer to accept any issuer on purpose"
                .to_owned(),
        );
    }
    JwtSettings {
        keys,
        issuer,
        audience,
        roles_claim: args
            .jwt_roles_claim
            .take()
            .or(file.jwt_roles_claim.take())
            .unwrap_or_else(|| "roles".to_owned()),
        leeway,
    }
}

/// Bounds on what one call may ask.
pub(super) fn call_limits(
    args: &ServeArgs,
    file: &FileConfig,
    request_timeout: Duration,
    problems: &mut Problems,
) -> Limits {
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
        ("max_attributes", limits.max_attributes),
        ("max_mask_values", limits.max_mask_values),
        ("max_batch_items", limits.max_batch_items),
    ] {
        if value == 0 {
            problems.push(format!("{name} must be at least 1"));
        }
    }
    limits
}

/// `[limits]` with `--limits-backend` over its `backend`.
pub(super) fn limit_store(
    flag: Option<String>,
    file: FileLimits,
    problems: &mut Problems,
) -> LimitOptions {
    let defaults = LimitOptions::default();
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
    LimitOptions {
        backend,
        fallback_fraction,
        max_keys,
        timeout,
        prefix: file.prefix.unwrap_or(defaults.prefix),
    }
}
