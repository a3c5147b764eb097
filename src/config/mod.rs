//! One validated, typed [`Config`] for `vigil serve`, built from (lowest to
//! highest precedence) defaults, the TOML config file, environment variables
//! and flags. Every problem is collected and reported at once, so an operator
//! fixes a config in one round.

mod file;
mod sections;
#[cfg(test)]
mod tests;

use std::{path::PathBuf, time::Duration};

use crate::{
    app::Limits,
    audit::{AuditOptions, RedactionOptions},
    authn::AuthSettings,
    cli::ServeArgs,
    gateway::HttpMapping,
    keys::KeyringLocation,
    limits::LimitOptions,
    listen::{ConnectionLimits, ListenAddr},
    logging::LogFormat,
    policy,
    telemetry::TraceSettings,
    tls::TlsFiles,
    witness::ShipSettings,
};

/// The problems found so far, all reported together.
type Problems = Vec<String>;

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

impl Config {
    /// Builds the config for `vigil serve`: the file read once, then one
    /// function per part, each taking its flags over its file keys (ripgrep's
    /// `HiArgs::from_low_args`), every problem reported at once.
    pub fn from_args(mut args: ServeArgs) -> Result<Config, ConfigError> {
        let mut problems = Problems::new();
        let mut file = match &args.config {
            Some(path) => file::read_file_config(path).unwrap_or_else(|problem| {
                problems.push(problem);
                file::FileConfig::default()
            }),
            None => file::FileConfig::default(),
        };
        let file = &mut file;
        let policies = args
            .policies
            .take()
            .or(file.policies.take())
            .unwrap_or_else(|| PathBuf::from(policy::DEFAULT_DIR));
        let listeners = sections::listeners(&mut args, file, &mut problems);
        let http_mapping = file.http.take().unwrap_or_default();
        problems.extend(http_mapping.problems());
        let tracing = sections::tracing(&mut args, file, &mut problems);
        let admin_uids = if !args.admin_uids.is_empty() {
            std::mem::take(&mut args.admin_uids)
        } else {
            file.admin_uids
                .take()
                .unwrap_or_else(|| own_uid().into_iter().collect())
        };
        let (audit, redaction, ship) = sections::audit(&mut args, file, &mut problems);
        let (connections, request_timeout) = sections::connections(&mut args, file, &mut problems);
        let tls = sections::tls(&mut args, file, &mut problems);
        let auth = sections::auth(&mut args, file, &listeners, tls.as_ref(), &mut problems);
        let limits = sections::call_limits(&args, file, request_timeout, &mut problems);
        let limit_store = sections::limit_store(
            args.limits_backend.take(),
            file.limits.take().unwrap_or_default(),
            &mut problems,
        );
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(Config {
            policies,
            listeners: listeners.data,
            admin_listeners: listeners.admin,
            metrics_listeners: listeners.metrics,
            http_listeners: listeners.http,
            http_mapping: std::sync::Arc::new(http_mapping),
            admin_uids,
            audit,
            redaction,
            auth,
            tls,
            limits,
            connections,
            log_format: file.log_format,
            admin_role: args
                .admin_role
                .take()
                .or(file.admin_role.take())
                .unwrap_or_else(|| "admin".to_owned()),
            shadow_policies: args.shadow_policies.take().or(file.shadow_policies.take()),
            watch: args.watch.or(file.watch).unwrap_or(true),
            check_only: args.check_config,
            tracing,
            ship,
            limit_store,
            keyring: KeyringLocation::from_flag(args.keyring.take().or(file.keyring.take())),
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

/// Accepts `30s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like \"30s\" or \"5m\" ({e})"))
}
