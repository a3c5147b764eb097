//! The TOML config file as serde reads it: keys mirror the flags
//! (underscores or dashes), sections for `[audit]`, `[audit.ship]`,
//! `[limits]` and `[http]`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{
    audit::{OnFailure, SyncMode},
    authn::AuthMode,
    gateway::HttpMapping,
    logging::LogFormat,
    tls::SubjectName,
};

/// The TOML file. Keys mirror the flags (underscores or dashes).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) policies: Option<PathBuf>,
    pub(super) listen: Option<OneOrMany>,
    #[serde(alias = "admin-listen")]
    pub(super) admin_listen: Option<OneOrMany>,
    #[serde(alias = "metrics-listen")]
    pub(super) metrics_listen: Option<String>,
    #[serde(alias = "http-listen")]
    pub(super) http_listen: Option<String>,
    /// How `GET /v1/check` maps HTTP requests (see `http::mapping`).
    pub(super) http: Option<HttpMapping>,
    #[serde(alias = "otlp-endpoint")]
    pub(super) otlp_endpoint: Option<String>,
    #[serde(alias = "trace-sample-ratio")]
    pub(super) trace_sample_ratio: Option<f64>,
    #[serde(alias = "admin-uids")]
    pub(super) admin_uids: Option<Vec<u32>>,
    #[serde(alias = "audit-dir")]
    pub(super) audit_dir: Option<PathBuf>,
    #[serde(alias = "audit-sync")]
    pub(super) audit_sync: Option<SyncMode>,
    pub(super) audit: Option<FileAudit>,
    pub(super) auth: Option<AuthMode>,
    #[serde(alias = "force-trusted-remote")]
    pub(super) force_trusted_remote: Option<bool>,
    #[serde(alias = "force-plaintext-jwt")]
    pub(super) force_plaintext_jwt: Option<bool>,
    #[serde(alias = "tls-cert")]
    pub(super) tls_cert: Option<PathBuf>,
    #[serde(alias = "tls-key")]
    pub(super) tls_key: Option<PathBuf>,
    #[serde(alias = "tls-client-ca")]
    pub(super) tls_client_ca: Option<PathBuf>,
    #[serde(alias = "mtls-subject")]
    pub(super) mtls_subject: Option<SubjectName>,
    #[serde(alias = "mtls-gateway", alias = "mtls_gateways")]
    pub(super) mtls_gateway: Option<Vec<String>>,
    #[serde(alias = "jwt-secret-file")]
    pub(super) jwt_secret_file: Option<PathBuf>,
    #[serde(alias = "jwt-public-key-file")]
    pub(super) jwt_public_key_file: Option<PathBuf>,
    #[serde(alias = "jwks-file")]
    pub(super) jwks_file: Option<PathBuf>,
    #[serde(alias = "jwt-issuer")]
    pub(super) jwt_issuer: Option<String>,
    #[serde(alias = "jwt-audience")]
    pub(super) jwt_audience: Option<String>,
    #[serde(alias = "jwt-any-issuer")]
    pub(super) jwt_any_issuer: Option<bool>,
    #[serde(alias = "jwt-any-audience")]
    pub(super) jwt_any_audience: Option<bool>,
    #[serde(alias = "jwt-roles-claim")]
    pub(super) jwt_roles_claim: Option<String>,
    #[serde(alias = "jwt-leeway")]
    pub(super) jwt_leeway: Option<toml::Value>,
    #[serde(alias = "max-message-bytes")]
    pub(super) max_message_bytes: Option<usize>,
    #[serde(alias = "max-batch-items")]
    pub(super) max_batch_items: Option<usize>,
    #[serde(alias = "max-depth")]
    pub(super) max_depth: Option<usize>,
    #[serde(alias = "max-attributes")]
    pub(super) max_attributes: Option<usize>,
    #[serde(alias = "max-mask-values")]
    pub(super) max_mask_values: Option<usize>,
    #[serde(alias = "request-timeout")]
    pub(super) request_timeout: Option<String>,
    #[serde(alias = "max-connections")]
    pub(super) max_connections: Option<usize>,
    #[serde(alias = "max-concurrent-streams")]
    pub(super) max_concurrent_streams: Option<u32>,
    #[serde(alias = "handshake-timeout")]
    pub(super) handshake_timeout: Option<String>,
    #[serde(alias = "idle-timeout")]
    pub(super) idle_timeout: Option<String>,
    #[serde(alias = "keepalive-interval")]
    pub(super) keepalive_interval: Option<String>,
    pub(super) keyring: Option<PathBuf>,
    #[serde(alias = "log-format")]
    pub(super) log_format: Option<LogFormat>,
    #[serde(alias = "admin-role")]
    pub(super) admin_role: Option<String>,
    #[serde(alias = "shadow-policies")]
    pub(super) shadow_policies: Option<PathBuf>,
    pub(super) watch: Option<bool>,
    #[serde(alias = "worker-threads")]
    pub(super) worker_threads: Option<usize>,
    /// `[limits]`: where limits.toml's budgets are kept.
    pub(super) limits: Option<FileLimits>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLimits {
    /// `redis://…`: budgets shared by every sidecar using that Redis.
    pub(super) backend: Option<String>,
    #[serde(alias = "fallback-fraction")]
    pub(super) fallback_fraction: Option<f64>,
    #[serde(alias = "max-keys")]
    pub(super) max_keys: Option<usize>,
    pub(super) timeout: Option<String>,
    pub(super) prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAudit {
    pub(super) dir: Option<PathBuf>,
    pub(super) sync: Option<SyncMode>,
    #[serde(alias = "on-failure")]
    pub(super) on_failure: Option<OnFailure>,
    #[serde(alias = "block-timeout")]
    pub(super) block_timeout: Option<String>,
    #[serde(alias = "rotate-bytes")]
    pub(super) rotate_bytes: Option<u64>,
    #[serde(alias = "rotate-age")]
    pub(super) rotate_age: Option<String>,
    #[serde(alias = "retain-segments")]
    pub(super) retain_segments: Option<usize>,
    #[serde(alias = "checkpoint-every")]
    pub(super) checkpoint_every: Option<String>,
    #[serde(alias = "signing-key-file")]
    pub(super) signing_key_file: Option<PathBuf>,
    #[serde(alias = "hmac-key-file")]
    pub(super) hmac_key_file: Option<PathBuf>,
    #[serde(alias = "hmac-attributes")]
    pub(super) hmac_attributes: Option<Vec<String>>,
    #[serde(alias = "hmac-subjects")]
    pub(super) hmac_subjects: Option<bool>,
    /// `[audit.ship]`: the witness.
    pub(super) ship: Option<FileShip>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileShip {
    /// `postgres://…` of the witness store.
    pub(super) to: Option<String>,
    pub(super) chain: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

pub(super) fn read_file_config(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
}
